//! The leader's logic: phase 1 once per ballot, then phase 2 for a window of
//! slots, each carrying a batch of commands. Inputs in, effects out.
//!
//! The scout and commanders of "Paxos Made Moderately Complex" live here as
//! state (`promised_by`, `inflight`) rather than as one actor per slot.

use crate::config::{is_majority, ConfigHistory, Member, MemberRef, WINDOW_SLOTS};
use crate::message::{
    Accept, Accepted, Batch, CatchUp, Command, Commit, Decision, Effects, Heartbeat, HeartbeatAck,
    PeerMsg, PreVote, PreVoteReply, Prepare, Progress, Promise, ReadAt, ReadIndex, ReadIndexAck,
};
use crate::{Ballot, NodeId, Slot};
use concoord_objects::ClientId;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

/// Timing and size limits of a leader. Times are in milliseconds of whatever
/// clock drives `tick` (real or simulated).
#[derive(Clone, Debug)]
pub struct LeaderConfig {
    pub heartbeat_interval_ms: u64,
    /// A follower that hears no heartbeat for between this and twice this
    /// starts an election; the jitter keeps candidates from duelling.
    pub election_timeout_ms: u64,
    /// Unanswered Prepare and Accept messages are resent after this.
    pub retry_ms: u64,
    /// Slots carrying new commands that may be in phase 2 at once; commands
    /// arriving meanwhile queue up and go out together as the next batch.
    pub max_inflight_slots: usize,
    pub max_batch_commands: usize,
    pub max_batch_bytes: usize,
    /// Commands waiting for a slot; beyond this a request is refused as busy.
    pub max_pending_commands: usize,
    /// Step down when no majority answered within an election timeout
    /// (Raft's CheckQuorum). Off only in tests that need a deposed leader
    /// that goes on believing it leads.
    pub check_quorum: bool,
    /// A follower serves linearizable reads of the clients connected to it,
    /// with a read index it asks the leader for, instead of sending them on.
    pub follower_reads: bool,
    /// Accepts go to a bare majority: this node and the followers that
    /// answered first lately. The other members learn each decided batch
    /// later, several at once (at the next tick), so a call wakes one
    /// process fewer. An Accept unanswered for `retry_ms` goes to every
    /// member again, and the next decided slot picks the quorum afresh.
    /// Off by default: each slot then waits for one particular follower,
    /// not the first of them to answer, which costs throughput where
    /// followers share CPUs with busy processes (see `--thrifty`).
    pub thrifty: bool,
}

impl Default for LeaderConfig {
    fn default() -> Self {
        LeaderConfig {
            heartbeat_interval_ms: 50,
            election_timeout_ms: 300,
            retry_ms: 100,
            max_inflight_slots: 4,
            max_batch_commands: 1024,
            max_batch_bytes: 1 << 20,
            max_pending_commands: 100_000,
            check_quorum: true,
            follower_reads: true,
            thrifty: false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaderState {
    Follower,
    /// Hears no leader and asks the members whether it could win, before it
    /// raises its ballot (pre-vote).
    PreCandidate,
    Candidate,
    Active,
}

/// Why a request was not taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotAccepted {
    /// This node is not the active leader; the hint names who may be.
    NotLeader(Option<NodeId>),
    /// The queue of commands waiting for a slot is full.
    Busy,
}

/// Why a removal was not proposed; the message says it for a user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RemovalRefused {
    /// This node is not the active leader; the hint names who may be.
    NotLeader(Option<NodeId>),
    Busy,
    /// No member has that address or id.
    NoSuchMember(String),
    /// It is the group's only member.
    LastMember(String),
}

/// What a leader has done since it started (for metrics).
#[derive(Clone, Debug, Default)]
pub struct LeaderStats {
    pub slots_decided: u64,
    pub commands_decided: u64,
    pub last_batch_commands: u64,
    /// Times it stopped leading because no majority answered (check-quorum).
    pub step_downs: u64,
    /// Reads it took as a follower, to serve with a read index it asked
    /// the leader for.
    pub follower_reads: u64,
    /// Slots it proposed to a bare majority only (`thrifty`).
    pub thrifty_slots: u64,
}

#[derive(Clone, Debug)]
struct Inflight {
    batch: Batch,
    acks: BTreeSet<NodeId>,
    sent_ms: u64,
    /// Members not sent the Accept (`thrifty`): they learn the decision later.
    lazy: Vec<NodeId>,
}

/// A leader: candidate, active, or following whoever sends heartbeats.
/// Clone and Debug let the model checker (`model/`) copy and fingerprint it.
#[derive(Clone, Debug)]
pub struct Leader {
    me: NodeId,
    /// Set while a batch of requests is taken: they are proposed together
    /// afterwards rather than the first few in slots of their own.
    holding_proposals: bool,
    config: LeaderConfig,
    state: LeaderState,
    ballot: Ballot,
    max_seen: Ballot,
    promised_by: BTreeSet<NodeId>,
    prepare_sent_ms: u64,
    /// Values found in phase 1 (and gaps, as no-ops) still to be proposed.
    to_repropose: BTreeMap<Slot, (Ballot, Batch)>,
    max_trimmed: Slot,
    /// The acceptor that reported `max_trimmed`: its replica has the slots
    /// below it, so this leader's replica catches up from there.
    max_trimmed_by: NodeId,
    inflight: BTreeMap<Slot, Inflight>,
    /// Decided slots some acceptor has not acknowledged yet: a late Accepted
    /// turns into a Commit; after `retry_ms` the laggard gets the Decision.
    decided_unacked: BTreeMap<Slot, Inflight>,
    /// Per follower, decided slots it accepted and has not been told of yet.
    /// They ride on the next message to it (or the next tick).
    commit_queue: BTreeMap<NodeId, Vec<Slot>>,
    /// `thrifty`: the followers that, with this node, make the majority
    /// each Accept goes to (empty: every member gets it).
    accept_quorum: Vec<NodeId>,
    /// Per member left out of phase 2, decided batches it has not been sent
    /// yet; they go together at the next tick, or once there are
    /// [`LAZY_FLUSH_SLOTS`].
    lazy_decisions: BTreeMap<NodeId, Vec<(Slot, Batch)>>,
    next_slot: Slot,
    pending: VecDeque<Command>,
    executed: Slot,
    configs: ConfigHistory,
    leader_hint: Option<NodeId>,
    election_deadline_ms: u64,
    /// When the deadline was first seen passed; an election starts only if no
    /// heartbeat arrives for a while after that (a process resumed from a pause
    /// has queued heartbeats to read before it may doubt the leader).
    suspect_since_ms: Option<u64>,
    last_heartbeat_ms: u64,
    /// When this node last heard an active leader (its heartbeat): until an
    /// election timeout after that, it refuses pre-votes.
    leader_heard_ms: Option<u64>,
    /// Pre-candidate: the ballot it asked about, and who would vote for it.
    pre_vote_ballot: Ballot,
    pre_votes: BTreeSet<NodeId>,
    rng: u64,
    now_ms: u64,
    leader_changes: u64,
    stats: LeaderStats,
    /// Client sessions as this node's replica reports them, with when this
    /// leader last heard from each (a new leader starts every one afresh).
    sessions: BTreeMap<ClientId, TrackedSession>,
    last_session_check_ms: u64,
    /// The read index (etcd's ReadIndex): reads that arrived while
    /// `MAX_READ_ROUNDS` rounds were in flight wait here, each with the
    /// commit point it saw.
    reads_next: Vec<(Slot, WaitingRead)>,
    /// The end of what phase 1 found (`next_slot` on becoming active): any
    /// slot below it may have been decided, and a client answered, under
    /// an earlier leader, so no read may be served below it.
    phase1_end: Slot,
    /// Rounds in flight, oldest first, with their reads. Round numbers only
    /// grow, across leaderships too, so an answer to an old round never
    /// confirms a newer one.
    read_rounds: VecDeque<(u64, Vec<(Slot, WaitingRead)>)>,
    read_round: u64,
    /// The newest round each member answered at this leadership: an answer
    /// to round r confirms every round up to r (it was given after they began).
    read_acked: BTreeMap<NodeId, u64>,
    read_round_sent_ms: u64,
    /// Reads this node took while another node led, not asked about yet.
    follower_reads_next: Vec<Command>,
    /// Clients of this follower heard since the last tick, for the leader,
    /// which alone tracks sessions.
    sessions_heard: BTreeSet<ClientId>,
    /// Read-index asks sent to the leader, oldest first, with their reads.
    asks: VecDeque<ReadAsk>,
    /// The newest ask's number: a new start of this node takes a new range
    /// ([`Leader::start_asks_at`]), so an answer meant for an earlier
    /// process never serves this one's reads.
    last_ask: u64,
    /// Active: when each member last answered at this ballot (a heartbeat
    /// ack, a promise, an accepted, a read-index ack).
    heard_at_ballot: BTreeMap<NodeId, u64>,
    /// Active and no majority heard within an election timeout since then:
    /// it steps down unless fresh heartbeats bring answers first.
    quorum_doubt_since_ms: Option<u64>,
}

/// What a leader knows of one client session.
#[derive(Clone, Copy, Debug)]
struct TrackedSession {
    ttl_ms: u64,
    last_heard_ms: u64,
    /// Its expiry is proposed; not again until the replica reports it gone
    /// or leadership changes.
    expiring: bool,
}

/// The highest value a majority of `members` (not empty) have all reached:
/// the middle one of their values sorted from the highest.
fn majority_value<T: Ord + Copy>(members: &[Member], value: impl Fn(NodeId) -> T) -> T {
    let mut values: Vec<T> = members.iter().map(|m| value(m.id)).collect();
    values.sort_unstable_by(|a, b| b.cmp(a));
    values[members.len() / 2]
}

/// How often an active leader looks for sessions past their TTL.
const SESSION_CHECK_MS: u64 = 100;

/// A member left out of phase 2 is sent its decided batches at the latest
/// once this many wait (a tick's worth at most, otherwise).
const LAZY_FLUSH_SLOTS: usize = 64;

impl Leader {
    pub fn new(me: NodeId, configs: ConfigHistory, config: LeaderConfig, seed: u64) -> Self {
        let mut leader = Leader {
            holding_proposals: false,
            me,
            config,
            state: LeaderState::Follower,
            ballot: Ballot::ZERO,
            max_seen: Ballot::ZERO,
            promised_by: BTreeSet::new(),
            prepare_sent_ms: 0,
            to_repropose: BTreeMap::new(),
            max_trimmed: 0,
            max_trimmed_by: me,
            inflight: BTreeMap::new(),
            decided_unacked: BTreeMap::new(),
            commit_queue: BTreeMap::new(),
            accept_quorum: Vec::new(),
            lazy_decisions: BTreeMap::new(),
            next_slot: 0,
            pending: VecDeque::new(),
            executed: 0,
            configs,
            leader_hint: None,
            election_deadline_ms: 0,
            suspect_since_ms: None,
            last_heartbeat_ms: 0,
            leader_heard_ms: None,
            pre_vote_ballot: Ballot::ZERO,
            pre_votes: BTreeSet::new(),
            rng: seed ^ me.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            now_ms: 0,
            leader_changes: 0,
            stats: LeaderStats::default(),
            sessions: BTreeMap::new(),
            last_session_check_ms: 0,
            reads_next: Vec::new(),
            phase1_end: 0,
            read_rounds: VecDeque::new(),
            read_round: 0,
            read_acked: BTreeMap::new(),
            read_round_sent_ms: 0,
            follower_reads_next: Vec::new(),
            sessions_heard: BTreeSet::new(),
            asks: VecDeque::new(),
            last_ask: 0,
            heard_at_ballot: BTreeMap::new(),
            quorum_doubt_since_ms: None,
        };
        leader.reset_election_deadline();
        leader.last_ask = leader.random_below(1 << 62);
        leader
    }

    pub fn state(&self) -> LeaderState {
        self.state
    }

    pub fn is_active(&self) -> bool {
        self.state == LeaderState::Active
    }

    pub fn ballot(&self) -> Ballot {
        self.ballot.max(self.max_seen)
    }

    /// A ballot this node's acceptor promised before a restart: the next
    /// election goes above it, so no ballot is ever used twice.
    pub fn observe_ballot(&mut self, ballot: Ballot) {
        self.max_seen = self.max_seen.max(ballot);
    }

    /// Who this node believes leads: itself when active, else the latest heartbeat's sender.
    pub fn leader_hint(&self) -> Option<NodeId> {
        if self.is_active() {
            Some(self.me)
        } else {
            self.leader_hint
        }
    }

    /// How long ago this node, as a follower, last heard an active
    /// leader's heartbeat (`None`: never); for the `/health` endpoint.
    pub fn leader_heard_ago_ms(&self) -> Option<u64> {
        self.leader_heard_ms
            .map(|heard| self.now_ms.saturating_sub(heard))
    }

    /// How long ago this node, as the active leader, last heard a majority
    /// of the group (itself included) answer at its ballot; `None` when it
    /// does not lead. `u64::MAX`: some majority never answered.
    pub fn quorum_heard_ago_ms(&self) -> Option<u64> {
        if !self.is_active() {
            return None;
        }
        let heard_at = |id: NodeId| {
            if id == self.me {
                Some(self.now_ms)
            } else {
                self.heard_at_ballot.get(&id).copied()
            }
        };
        self.configs
            .configs_from(self.executed)
            .iter()
            .filter(|members| !members.is_empty())
            .map(|members| match majority_value(members, heard_at) {
                Some(at) => self.now_ms.saturating_sub(at),
                None => u64::MAX,
            })
            .max()
    }

    /// The election timeout this node runs with.
    pub fn election_timeout_ms(&self) -> u64 {
        self.config.election_timeout_ms
    }

    pub fn configs(&self) -> &ConfigHistory {
        &self.configs
    }

    pub fn next_slot(&self) -> Slot {
        self.next_slot
    }

    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Slots in phase 2 and how many acceptors accepted each (for status and tests).
    pub fn inflight_acks(&self) -> Vec<(Slot, usize)> {
        self.inflight
            .iter()
            .map(|(s, f)| (*s, f.acks.len()))
            .collect()
    }

    /// With `thrifty`, the followers each Accept goes to beside this node
    /// (empty: every member is asked).
    pub fn accept_quorum(&self) -> &[NodeId] {
        &self.accept_quorum
    }

    /// Counters since start, for metrics.
    pub fn stats(&self) -> &LeaderStats {
        &self.stats
    }

    pub fn leader_changes(&self) -> u64 {
        self.leader_changes
    }

    fn random_below(&mut self, bound: u64) -> u64 {
        // xorshift64*: deterministic per seed, which the simulator relies on.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) % bound.max(1)
    }

    fn is_member(&self) -> bool {
        self.configs.members_from(self.executed).contains(&self.me)
    }

    /// Takes a client command if this node is the active leader.
    /// A client was heard from (a call or a keep-alive reached this node).
    pub fn touch(&mut self, client: ClientId) {
        if let Some(s) = self.sessions.get_mut(&client) {
            s.last_heard_ms = self.now_ms;
        }
    }

    /// Live sessions this leader tracks.
    pub fn tracked_sessions(&self) -> usize {
        self.sessions.len()
    }

    pub fn on_request(&mut self, command: Command, fx: &mut Effects) -> Result<(), NotAccepted> {
        if !self.is_active() {
            return Err(NotAccepted::NotLeader(self.leader_hint));
        }
        if let Some(id) = command.id() {
            self.touch(id.client);
        }
        if self.pending.len() >= self.config.max_pending_commands {
            return Err(NotAccepted::Busy);
        }
        self.pending.push_back(command);
        if !self.holding_proposals {
            self.try_propose(fx);
        }
        Ok(())
    }

    /// Requests taken from now until [`Leader::propose_held`] wait to be
    /// proposed together.
    pub fn hold_proposals(&mut self) {
        self.holding_proposals = true;
    }

    /// Proposes the requests taken since [`Leader::hold_proposals`].
    pub fn propose_held(&mut self, fx: &mut Effects) {
        self.holding_proposals = false;
        self.try_propose(fx);
    }

    /// Proposes removing the member `member` names from the newest
    /// membership; returns that member. Checked here so an operator gets a
    /// clear error; two removals that race are checked again in order
    /// ([`ConfigHistory::change`] never empties the group).
    pub fn request_removal(
        &mut self,
        member: &MemberRef,
        fx: &mut Effects,
    ) -> Result<Member, RemovalRefused> {
        if !self.is_active() {
            return Err(RemovalRefused::NotLeader(self.leader_hint));
        }
        let latest = self.configs.latest();
        let Some(found) = member.find(latest).cloned() else {
            let known: Vec<String> = latest
                .iter()
                .map(|m| format!("{} (id {:x})", m.addr, m.id))
                .collect();
            return Err(RemovalRefused::NoSuchMember(format!(
                "no member of the group is {member}; the members are {}",
                known.join(", ")
            )));
        };
        if latest.len() == 1 {
            return Err(RemovalRefused::LastMember(format!(
                "{} is the group's only member and cannot be removed; stop it instead",
                found.addr
            )));
        }
        match self.on_request(Command::RemoveMember(found.id), fx) {
            Ok(()) => Ok(found),
            Err(NotAccepted::Busy) => Err(RemovalRefused::Busy),
            Err(NotAccepted::NotLeader(hint)) => Err(RemovalRefused::NotLeader(hint)),
        }
    }

    pub fn handle(&mut self, from: NodeId, msg: PeerMsg, fx: &mut Effects) {
        match &msg {
            PeerMsg::Promise(Promise { ballot, .. })
            | PeerMsg::Accepted(Accepted { ballot, .. })
            | PeerMsg::HeartbeatAck(HeartbeatAck { ballot })
            | PeerMsg::ReadIndexAck(ReadIndexAck {
                promised: ballot, ..
            }) => self.heard_answer(from, *ballot),
            _ => {}
        }
        match msg {
            PeerMsg::Promise(p) => self.on_promise(from, p, fx),
            PeerMsg::Accepted(a) => self.on_accepted(from, a, fx),
            PeerMsg::Heartbeat(h) => self.on_heartbeat(from, h, fx),
            PeerMsg::PreVote(v) => self.on_pre_vote(from, v, fx),
            PeerMsg::PreVoteReply(r) => self.on_pre_vote_reply(from, r, fx),
            PeerMsg::Progress(p) => self.on_progress(p, fx),
            PeerMsg::ReadIndexAck(a) => self.on_read_index_ack(from, a, fx),
            PeerMsg::SessionsHeard { clients } if self.is_active() => {
                for client in clients {
                    self.touch(client);
                }
            }
            PeerMsg::ReadIndexAsk { ask } => self.on_read_index_ask(from, ask, fx),
            PeerMsg::ReadIndexAnswer { ask, index } => {
                self.on_read_index_answer(from, ask, index, fx)
            }
            _ => {}
        }
    }

    /// Advances the clock: heartbeats, retries and elections happen here.
    pub fn tick(&mut self, now_ms: u64, fx: &mut Effects) {
        self.now_ms = self.now_ms.max(now_ms);
        self.tick_follower_reads(fx);
        match self.state {
            LeaderState::Active => {
                if self.check_quorum(fx) {
                    return;
                }
                if self.now_ms >= self.last_session_check_ms + SESSION_CHECK_MS {
                    self.last_session_check_ms = self.now_ms;
                    self.expire_silent_sessions(fx);
                }
                if self.now_ms >= self.last_heartbeat_ms + self.config.heartbeat_interval_ms {
                    self.send_heartbeats(fx);
                }
                self.flush_decided(fx);
                self.resend_unacked_decisions(fx);
                self.retry_accepts(fx);
                if !self.read_rounds.is_empty()
                    && self.now_ms >= self.read_round_sent_ms + self.config.retry_ms
                {
                    self.read_round_sent_ms = self.now_ms;
                    self.send_read_index(fx);
                }
                if self.now_ms >= self.prepare_sent_ms + self.config.retry_ms {
                    self.send_prepares(fx);
                }
            }
            LeaderState::Candidate => {
                if self.now_ms >= self.election_deadline_ms {
                    // As etcd's raft: a failed election asks again before
                    // it raises the ballot once more.
                    self.start_pre_vote(fx);
                } else if self.now_ms >= self.prepare_sent_ms + self.config.retry_ms {
                    self.send_prepares(fx);
                }
            }
            LeaderState::PreCandidate => {
                if self.now_ms >= self.election_deadline_ms {
                    self.start_pre_vote(fx);
                }
            }
            LeaderState::Follower => {
                if self.now_ms >= self.election_deadline_ms && self.is_member() {
                    match self.suspect_since_ms {
                        None => self.suspect_since_ms = Some(self.now_ms),
                        Some(since)
                            if self.now_ms >= since + self.config.heartbeat_interval_ms / 2 =>
                        {
                            self.start_pre_vote(fx)
                        }
                        Some(_) => {}
                    }
                }
            }
        }
    }

    /// Proposes the end of every session not heard from within its TTL.
    fn expire_silent_sessions(&mut self, fx: &mut Effects) {
        let now = self.now_ms;
        let silent: Vec<ClientId> = self
            .sessions
            .iter_mut()
            .filter(|(_, s)| !s.expiring && now > s.last_heard_ms + s.ttl_ms)
            .map(|(client, s)| {
                s.expiring = true;
                *client
            })
            .collect();
        for client in silent {
            log::info!(
                "node {:x}: session {client:x} silent past its TTL; expiring it",
                self.me
            );
            self.pending.push_back(Command::ExpireSession { client });
        }
        self.try_propose(fx);
    }
}

mod election;
mod phase2;
mod reads;
use reads::{ReadAsk, WaitingRead};
#[cfg(test)]
mod follower_read_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod thrifty_tests;
