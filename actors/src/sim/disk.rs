//! Durable nodes: the simulated disk ([`SimDisk`]) and what a crash does to
//! it ([`SimDurability`]), the holding of messages until their records are
//! synced, and restarts through the real recovery code.

use super::*;

/// Durable nodes, their simulated disks and what a crash does to them.
#[derive(Clone, Debug)]
pub struct SimDurability {
    /// A sync takes 1 to this many simulated ms.
    pub sync_ms_max: u64,
    /// Executed slots between snapshots written to the disk.
    pub snapshot_every: Slot,
    /// Percent of crashes that keep part of the unsynced writes (a torn
    /// last write, possibly cut inside a record); the others lose them all.
    pub torn_percent: u64,
    /// Percent of crashes that also damage a synced record followed by
    /// another (opt-in): recovery must refuse such a disk.
    pub corrupt_percent: u64,
    /// Broken on purpose (tests that must catch it): Promise and Accepted
    /// leave before their records are synced.
    pub broken_ack_before_sync: bool,
    /// Broken on purpose: recovery takes damage in the middle of the log
    /// for a torn tail and serves from the records before it.
    pub broken_trust_damage: bool,
}

impl Default for SimDurability {
    fn default() -> Self {
        SimDurability {
            sync_ms_max: 4,
            snapshot_every: 40,
            torn_percent: 50,
            corrupt_percent: 0,
            broken_ack_before_sync: false,
            broken_trust_damage: false,
        }
    }
}

/// A durable node's simulated disk: the real record and snapshot encoding
/// in memory, with what a crash may keep of it. Writes land in the newest
/// segment; a sync (a simulated delay) makes everything written before it
/// began durable. A snapshot file is replaced whole once a sync completes
/// (the real one is written aside, fsynced and renamed).
#[derive(Clone, Debug)]
pub struct SimDisk {
    pub(super) member: MemberFile,
    /// Log segments, oldest first; each restart begins a new one.
    pub(super) segments: Vec<Vec<u8>>,
    /// Bytes of the newest segment that are durable.
    pub(super) synced: usize,
    /// A sync in flight covers the newest segment up to here.
    pub(super) syncing: Option<usize>,
    pub(super) snapshot: Option<Vec<u8>>,
    pub(super) snapshot_pending: Option<Vec<u8>>,
    /// What crashes did to it, for reports.
    pub damage: Vec<String>,
}

impl SimDisk {
    pub(super) fn new(member: MemberFile, promised: Ballot) -> Self {
        let mut disk = SimDisk {
            member,
            segments: Vec::new(),
            synced: 0,
            syncing: None,
            snapshot: None,
            snapshot_pending: None,
            damage: Vec::new(),
        };
        disk.new_segment(promised);
        disk
    }

    /// As the real writer starts: a new segment that repeats the promise, synced.
    pub(super) fn new_segment(&mut self, promised: Ballot) {
        let mut bytes = crate::storage::files::segment_header(self.member.node);
        crate::storage::files::encode_record(&Record::Promise(promised), &mut bytes);
        self.synced = bytes.len();
        self.segments.push(bytes);
    }

    pub(super) fn appended(&self) -> usize {
        self.segments.last().map_or(0, Vec::len)
    }

    pub(super) fn append(&mut self, records: &[Record]) {
        let last = self.segments.last_mut().expect("a disk has a segment");
        for record in records {
            crate::storage::files::encode_record(record, last);
        }
    }

    pub(super) fn root(node: usize) -> PathBuf {
        PathBuf::from(format!("sim-{node}"))
    }

    /// The node crashed: unsynced writes are lost or torn, and maybe a
    /// synced record is damaged. Returns what happened.
    pub(super) fn crash(&mut self, rng: &mut SimRng, durability: &SimDurability) {
        self.syncing = None;
        self.snapshot_pending = None;
        let synced = self.synced;
        let last = self.segments.last_mut().expect("a disk has a segment");
        let unsynced = last.len() - synced;
        if unsynced > 0 {
            let keep = if rng.chance(durability.torn_percent) {
                rng.below(unsynced as u64 + 1) as usize
            } else {
                0
            };
            last.truncate(synced + keep);
            self.damage
                .push(format!("kept {keep} of {unsynced} unsynced bytes"));
        }
        if durability.corrupt_percent > 0 && rng.chance(durability.corrupt_percent) {
            // A record followed by another, so recovery can tell it from a
            // torn last write: one bit of its payload flipped, or of its
            // length field (which may then point past the end of the file,
            // where a torn write would end).
            let mut records = Vec::new();
            for (k, segment) in self.segments.iter().enumerate() {
                records.extend(
                    crate::storage::files::record_frames(segment)
                        .into_iter()
                        .map(|(at, header, len)| (k, at, header, len)),
                );
            }
            let newest = self.segments.len() - 1;
            let followed: Vec<_> = records
                .windows(2)
                .filter(|w| w[0].0 != newest || w[1].0 == newest)
                .map(|w| w[0])
                .filter(|(_, _, _, len)| *len > 0)
                .collect();
            if !followed.is_empty() {
                let (k, at, header, len) = followed[rng.below(followed.len() as u64) as usize];
                let (byte, what) = if rng.chance(50) {
                    (at + rng.below(4) as usize, "length field")
                } else {
                    (at + header + rng.below(len as u64) as usize, "payload")
                };
                self.segments[k][byte] ^= 1 << rng.below(8);
                self.damage.push(format!(
                    "flipped a bit of segment {k} at byte {byte} (a record's {what})"
                ));
            }
        }
    }

    /// Reads the disk back with the real recovery code; a torn tail is cut
    /// off here too, as the real recovery cuts it on disk.
    pub(super) fn recover(
        &mut self,
        node: usize,
        trust_damage: bool,
    ) -> Result<crate::storage::Recovered, StorageError> {
        let root = Self::root(node);
        let snapshot = match &self.snapshot {
            Some(bytes) => Some(crate::storage::files::decode_snapshot_file(
                &root.join("snap"),
                bytes,
                &self.member,
            )?),
            None => None,
        };
        if trust_damage {
            // The broken recovery: whatever fails its checksum ends the log.
            for k in 0..self.segments.len() {
                if let Some(bad) = first_bad_record(&self.segments[k]) {
                    self.segments[k].truncate(bad);
                    self.segments.truncate(k + 1);
                    break;
                }
            }
        }
        let paths: Vec<(u64, PathBuf)> = (0..self.segments.len())
            .map(|k| (k as u64, root.join(format!("wal/{k}.wal"))))
            .collect();
        let segments = &self.segments;
        let (recovered, cut) = crate::storage::files::recover_from(
            self.member.clone(),
            snapshot,
            paths.clone(),
            |path| {
                let k = paths
                    .iter()
                    .position(|(_, p)| p == path)
                    .expect("a path recover_from was given");
                Ok(segments[k].clone())
            },
        )?;
        if let Some((path, good)) = cut {
            let k = paths
                .iter()
                .position(|(_, p)| *p == path)
                .expect("a path recover_from was given");
            self.segments[k].truncate(good);
        }
        Ok(recovered)
    }
}

/// Where the first record that fails a checksum starts, if one does.
pub(super) fn first_bad_record(segment: &[u8]) -> Option<usize> {
    use crate::storage::files::RECORD_HEADER_BYTES as H;
    let mut at = crate::storage::files::SEGMENT_HEADER_BYTES;
    while at + H <= segment.len() {
        let word =
            |i: usize| u32::from_le_bytes(segment[at + i..at + i + 4].try_into().expect("4 bytes"));
        let len = word(0) as usize;
        if crc32fast::hash(&segment[at..at + 8]) != word(8)
            || at + H + len > segment.len()
            || crc32fast::hash(&segment[at + H..at + H + len]) != word(4)
        {
            return Some(at);
        }
        at += H + len;
    }
    None
}

pub(super) type HeldSends = (usize, Vec<(NodeId, PeerMsg)>, Vec<(Slot, Ballot)>);

/// A replica's snapshot as the file a durable node writes.
pub(super) fn snapshot_file(replica: &Replica, node: NodeId) -> Vec<u8> {
    crate::storage::files::snapshot_file_bytes(&crate::storage::encode_snapshot(
        replica.group(),
        node,
        &replica.snapshot(),
    ))
}

impl Sim {
    /// Carries out a leader's effects. A durable node records the decisions
    /// it hands its own replica, and its Prepares to other nodes wait until
    /// its own acceptor's promise is on disk (`LeaderActor::carry_out`).
    pub(super) fn leader_effects(&mut self, node: usize, mut fx: Effects) {
        if self.nodes[node].disk.is_none() {
            return self.apply_effects(node, fx);
        }
        let n = &mut self.nodes[node];
        let (me, ballot) = (n.id, n.leader.ballot());
        let chosen = crate::storage::chosen_to_record(me, ballot, &fx.sends);
        if !chosen.is_empty() {
            n.disk.as_mut().expect("durable").append(&chosen);
            self.schedule_sync(node);
        }
        let (prepares, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut fx.sends)
            .into_iter()
            .partition(|(to, msg)| *to != me && matches!(msg, PeerMsg::Prepare(_)));
        fx.sends = rest;
        // The Prepare to its own acceptor goes first: this event comes after it.
        self.apply_effects(node, fx);
        if !prepares.is_empty() {
            let incarnation = self.nodes[node].incarnation;
            self.schedule(
                0,
                Event::WhenDurable {
                    node,
                    incarnation,
                    sends: prepares,
                },
            );
        }
    }

    /// A peer message for a durable node, role by role as its actors take it.
    pub(super) fn deliver_durable(&mut self, to: usize, from_id: NodeId, msg: PeerMsg) {
        for role in msg.roles() {
            if !self.nodes[to].alive {
                return;
            }
            let m = msg.clone();
            let mut fx = Effects::default();
            match role {
                Role::Acceptor => {
                    let n = &mut self.nodes[to];
                    n.acceptor.handle(from_id, m, &mut fx);
                    let records = n.acceptor.take_journal();
                    if !records.is_empty() {
                        n.disk.as_mut().expect("durable").append(&records);
                        self.schedule_sync(to);
                    }
                    let n = &self.nodes[to];
                    // What its Accepted replies acknowledge, as of now.
                    let claims = fx
                        .sends
                        .iter()
                        .filter_map(|(_, msg)| match msg {
                            PeerMsg::Accepted(a)
                                if n.acceptor
                                    .accepted_ballot(a.slot)
                                    .is_some_and(|b| b >= a.ballot) =>
                            {
                                Some((a.slot, a.ballot))
                            }
                            _ => None,
                        })
                        .collect();
                    let sends = std::mem::take(&mut fx.sends);
                    self.send_when_durable_claiming(to, sends, claims);
                    self.apply_effects(to, fx);
                }
                Role::Leader => {
                    self.nodes[to].leader.handle(from_id, m, &mut fx);
                    self.leader_effects(to, fx);
                }
                Role::Replica => {
                    let records = self.decisions_to_record(to, from_id, &m);
                    if !records.is_empty() {
                        let n = &mut self.nodes[to];
                        n.disk.as_mut().expect("durable").append(&records);
                        self.schedule_sync(to);
                    }
                    self.nodes[to].replica.handle(from_id, m, &mut fx);
                    self.apply_effects(to, fx);
                    self.snapshot_to_disk(to);
                }
            }
        }
    }

    /// Decisions that reached a durable replica whole from another node: its
    /// log keeps them, as the real replica's does.
    pub(super) fn decisions_to_record(
        &self,
        node: usize,
        from: NodeId,
        msg: &PeerMsg,
    ) -> Vec<Record> {
        let n = &self.nodes[node];
        crate::storage::decisions_to_record(n.id, from, n.replica.executed(), msg)
    }

    /// A snapshot to the disk when one arrived from the group or enough
    /// slots ran since the last (`ReplicaActor::snapshot_to_disk`).
    pub(super) fn snapshot_to_disk(&mut self, node: usize) {
        let every = self
            .config
            .durable
            .as_ref()
            .map_or(Slot::MAX, |d| d.snapshot_every.max(1));
        let n = &mut self.nodes[node];
        let installed = n.replica.take_installed_snapshot();
        let executed = n.replica.executed();
        if !installed && executed < n.last_disk_snapshot.saturating_add(every) {
            return;
        }
        n.last_disk_snapshot = executed;
        let file = snapshot_file(&n.replica, n.id);
        let group = n.replica.group();
        let disk = n.disk.as_mut().expect("durable");
        // A joiner learns its group with its first snapshot.
        disk.member.group = group;
        disk.snapshot_pending = Some(file);
        self.schedule_sync(node);
    }

    /// Starts a sync of everything written so far, unless one runs.
    pub(super) fn schedule_sync(&mut self, node: usize) {
        let max = self.config.durable.as_ref().map_or(1, |d| d.sync_ms_max);
        let n = &mut self.nodes[node];
        let incarnation = n.incarnation;
        let Some(disk) = n.disk.as_mut() else {
            return;
        };
        let upto = disk.appended();
        if disk.syncing.is_some() || (upto <= disk.synced && disk.snapshot_pending.is_none()) {
            return;
        }
        disk.syncing = Some(upto);
        let delay = 1 + self.rng.below(max.max(1));
        self.schedule(
            delay,
            Event::DiskSynced {
                node,
                incarnation,
                upto,
            },
        );
    }

    pub(super) fn send_when_durable(&mut self, node: usize, sends: Vec<(NodeId, PeerMsg)>) {
        self.send_when_durable_claiming(node, sends, Vec::new());
    }

    /// Sends now, or once everything written so far is synced
    /// (`AcceptorActor::send_when_durable`). Decisions for the local replica
    /// and read-index answers acknowledge nothing and go at once.
    pub(super) fn send_when_durable_claiming(
        &mut self,
        node: usize,
        sends: Vec<(NodeId, PeerMsg)>,
        claims: Vec<(Slot, Ballot)>,
    ) {
        let broken = self
            .config
            .durable
            .as_ref()
            .is_some_and(|d| d.broken_ack_before_sync);
        let n = &self.nodes[node];
        let disk = n.disk.as_ref().expect("durable");
        let appended = disk.appended();
        if broken || (n.held.is_empty() && appended <= disk.synced) {
            return self.send_now(node, sends, claims);
        }
        let (now, later): (Vec<_>, Vec<_>) = sends
            .into_iter()
            .partition(|(_, msg)| matches!(msg, PeerMsg::Decision(_) | PeerMsg::ReadIndexAck(_)));
        self.send_now(node, now, Vec::new());
        if !later.is_empty() || !claims.is_empty() {
            self.nodes[node].held.push_back((appended, later, claims));
        }
    }

    /// Messages leave a durable node: what they acknowledge is noted, for
    /// the check that a restart remembers it.
    pub(super) fn send_now(
        &mut self,
        node: usize,
        sends: Vec<(NodeId, PeerMsg)>,
        claims: Vec<(Slot, Ballot)>,
    ) {
        let n = &mut self.nodes[node];
        for (to, msg) in &sends {
            if *to == n.id {
                continue;
            }
            match msg {
                PeerMsg::Promise(p) => n.acked_promise = n.acked_promise.max(p.ballot),
                PeerMsg::Accepted(a) => n.acked_promise = n.acked_promise.max(a.ballot),
                _ => {}
            }
        }
        for (slot, ballot) in claims {
            let known = n.acked_accepts.entry(slot).or_insert(ballot);
            *known = (*known).max(ballot);
        }
        self.apply_effects(
            node,
            Effects {
                sends,
                ..Effects::default()
            },
        );
    }

    /// Restarts a crashed durable node from its disk, through the real
    /// recovery code (`recover_from`, `roles_from`). Refused, and the node
    /// stays down, when recovery finds damage, as the real node refuses to
    /// start. A restart that forgot a promise or an accepted value the node
    /// had acknowledged is noted in [`Sim::durability_violations`].
    pub fn restart(&mut self, node: usize) -> Result<(), String> {
        let durability = self
            .config
            .durable
            .clone()
            .expect("only durable nodes restart with their state");
        assert!(!self.nodes[node].alive, "restart a crashed node");
        let object = concoord_objects::builtin(&self.config.object)
            .expect("the simulated object is a built-in");
        let options = crate::node::NodeOptions {
            leader: self.config.leader.clone(),
            seed: self.rng.next_u64(),
            limits: sim_limits(&self.config),
            ..crate::node::NodeOptions::default()
        };
        let n = &mut self.nodes[node];
        let disk = n.disk.as_mut().expect("a durable node");
        let recovered = disk
            .recover(node, durability.broken_trust_damage)
            .and_then(|recovered| {
                let promised = recovered.promised;
                let snapshot_slot = recovered.snapshot_slot();
                if promised < n.acked_promise {
                    self.durability_violations.push(format!(
                        "node {node} restarted promising {promised}, below the {} it acknowledged",
                        n.acked_promise
                    ));
                }
                for (slot, ballot) in &n.acked_accepts {
                    let kept = recovered.accepted.get(slot).map(|(b, _)| *b);
                    if *slot >= snapshot_slot && !kept.is_some_and(|b| b >= *ballot) {
                        self.durability_violations.push(format!(
                            "node {node} restarted with slot {slot} accepted at {kept:?}, though it acknowledged accepting it at {ballot}"
                        ));
                    }
                }
                crate::storage::open::roles_from(
                    recovered,
                    &SimDisk::root(node),
                    object,
                    &options,
                )
            });
        let roles = match recovered {
            Ok(roles) => roles,
            Err(e) => {
                n.refused = Some(e.to_string());
                return Err(e.to_string());
            }
        };
        disk.new_segment(roles.promised);
        n.id = roles.me.id;
        n.acceptor = roles.acceptor.journaled();
        n.leader = roles.leader;
        n.replica = roles.replica;
        n.joining = roles.needs_join;
        self.start_incarnation(node);
        Ok(())
    }
}
