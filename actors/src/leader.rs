//! The leader's logic: phase 1 once per ballot, then phase 2 for a window of
//! slots, each carrying a batch of commands. Inputs in, effects out.
//!
//! The scout and commanders of "Paxos Made Moderately Complex" live here as
//! state (`promised_by`, `inflight`) rather than as one actor per slot.

use crate::config::{is_majority, ConfigHistory, Member, MemberRef, WINDOW_SLOTS};
use crate::message::{
    Accept, Accepted, Batch, Command, Commit, Decision, Effects, Heartbeat, HeartbeatAck, PeerMsg,
    PreVote, PreVoteReply, Prepare, Progress, Promise, ReadAt, ReadIndex, ReadIndexAck,
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
}

#[derive(Clone, Debug)]
struct Inflight {
    batch: Batch,
    acks: BTreeSet<NodeId>,
    sent_ms: u64,
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
    reads_next: Vec<(Slot, Command)>,
    /// The end of what phase 1 found (`next_slot` on becoming active): any
    /// slot below it may have been decided, and a client answered, under
    /// an earlier leader, so no read may be served below it.
    phase1_end: Slot,
    /// Rounds in flight, oldest first, with their reads. Round numbers only
    /// grow, across leaderships too, so an answer to an old round never
    /// confirms a newer one.
    read_rounds: VecDeque<(u64, Vec<(Slot, Command)>)>,
    read_round: u64,
    /// The newest round each member answered at this leadership: an answer
    /// to round r confirms every round up to r (it was given after they began).
    read_acked: BTreeMap<NodeId, u64>,
    read_round_sent_ms: u64,
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

/// Read-index rounds in flight at once: a read waits about one round trip,
/// not one and a half as behind a single round, while a burst of reads
/// still shares a round.
const MAX_READ_ROUNDS: usize = 4;

/// How often an active leader looks for sessions past their TTL.
const SESSION_CHECK_MS: u64 = 100;

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
            heard_at_ballot: BTreeMap::new(),
            quorum_doubt_since_ms: None,
        };
        leader.reset_election_deadline();
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

    fn reset_election_deadline(&mut self) {
        self.suspect_since_ms = None;
        let timeout = self.config.election_timeout_ms;
        self.election_deadline_ms = self.now_ms + timeout + self.random_below(timeout);
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

    /// Takes a read (a call of a read-only method) if this node is the
    /// active leader: it runs on this node's replica, without entering the
    /// log, once a read-index round begun after it arrived is answered by a
    /// majority of every membership in force and the replica has executed
    /// every slot below the commit point seen now. Rounds are batched: one
    /// serves every read that arrived before it began. A leader deposed
    /// without knowing it never completes a round (a majority promised the
    /// newer ballot), so it never answers from stale state.
    pub fn on_read(&mut self, command: Command, fx: &mut Effects) -> Result<(), NotAccepted> {
        if !self.is_active() {
            return Err(NotAccepted::NotLeader(self.leader_hint));
        }
        if let Some(id) = command.id() {
            self.touch(id.client);
        }
        if self.reads_pending() >= self.config.max_pending_commands {
            return Err(NotAccepted::Busy);
        }
        let index = self.commit_point();
        self.reads_next.push((index, command));
        if self.read_rounds.len() < MAX_READ_ROUNDS {
            self.start_read_round(fx);
        }
        Ok(())
    }

    /// Every write acknowledged so far is below this (a reply follows the
    /// execution of every slot up to its own). A slot this leader proposed
    /// afresh is acknowledged only after it learns the slot is decided, so
    /// the lowest such slot still in phase 2 bounds them; but a slot found
    /// in phase 1 (waiting to be re-proposed, or in phase 2 again) may have
    /// been decided, and acknowledged, under an earlier leader: the point
    /// is never below the end of what phase 1 found.
    fn commit_point(&self) -> Slot {
        let mut point = self.next_slot;
        if let Some(slot) = self.inflight.keys().next() {
            point = point.min(*slot);
        }
        if let Some(slot) = self.to_repropose.keys().next() {
            point = point.min(*slot);
        }
        point.max(self.phase1_end)
    }

    /// Reads in a round or waiting for one (for tests and status).
    pub fn reads_pending(&self) -> usize {
        self.reads_next.len()
            + self
                .read_rounds
                .iter()
                .map(|(_, reads)| reads.len())
                .sum::<usize>()
    }

    fn start_read_round(&mut self, fx: &mut Effects) {
        self.read_round += 1;
        let reads = std::mem::take(&mut self.reads_next);
        self.read_rounds.push_back((self.read_round, reads));
        self.read_round_sent_ms = self.now_ms;
        self.send_read_index(fx);
    }

    /// The newest round to every member that has not answered it, this
    /// node's own acceptor too (it may have promised a newer ballot).
    fn send_read_index(&mut self, fx: &mut Effects) {
        let round = self.read_round;
        for id in self.configs.members_from(self.executed) {
            if self.read_acked.get(&id).copied().unwrap_or(0) < round {
                fx.send(
                    id,
                    PeerMsg::ReadIndex(ReadIndex {
                        ballot: self.ballot,
                        round,
                    }),
                );
            }
        }
    }

    fn on_read_index_ack(&mut self, from: NodeId, ack: ReadIndexAck, fx: &mut Effects) {
        if ack.promised > self.ballot {
            self.preempted(ack.promised);
            return;
        }
        if !self.is_active() || ack.round > self.read_round {
            return;
        }
        let acked = self.read_acked.entry(from).or_insert(0);
        *acked = (*acked).max(ack.round);
        // The newest round a majority of every membership in force answered.
        let confirmed = self
            .configs
            .configs_from(self.executed)
            .iter()
            .filter(|members| !members.is_empty())
            .map(|members| {
                majority_value(members, |id| self.read_acked.get(&id).copied().unwrap_or(0))
            })
            .min()
            .unwrap_or(0);
        let mut reads = Vec::new();
        while let Some((round, _)) = self.read_rounds.front() {
            if *round > confirmed {
                break;
            }
            let (_, mut confirmed_reads) = self.read_rounds.pop_front().expect("a front");
            reads.append(&mut confirmed_reads);
        }
        if !reads.is_empty() {
            fx.send(self.me, PeerMsg::ReadAt(ReadAt { reads }));
        }
        if !self.reads_next.is_empty() && self.read_rounds.len() < MAX_READ_ROUNDS {
            self.start_read_round(fx);
        }
    }

    /// Leaving the active state: reads not answered yet are dropped (their
    /// clients resend them to whoever leads now, as they do commands).
    fn forget_reads(&mut self) {
        self.reads_next.clear();
        self.read_rounds.clear();
        self.read_acked.clear();
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
            _ => {}
        }
    }

    /// Advances the clock: heartbeats, retries and elections happen here.
    pub fn tick(&mut self, now_ms: u64, fx: &mut Effects) {
        self.now_ms = self.now_ms.max(now_ms);
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
                self.flush_commits(fx);
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

    fn heard_answer(&mut self, from: NodeId, ballot: Ballot) {
        if self.is_active() && ballot == self.ballot {
            self.heard_at_ballot.insert(from, self.now_ms);
        }
    }

    /// Raft's CheckQuorum: a leader that no majority has answered within an
    /// election timeout is cut off (or the others cannot hear it), so it
    /// stops leading: its clients go elsewhere, its `/health` says so, and
    /// followers that still hear its heartbeats in a one-way partition stop
    /// hearing them and may elect a leader that reaches a majority. Before
    /// it steps down it sends heartbeats and waits a heartbeat interval for
    /// their answers: a process resumed from a pause has stale answers only.
    /// True when it stepped down.
    fn check_quorum(&mut self, fx: &mut Effects) -> bool {
        if !self.config.check_quorum {
            return false;
        }
        let ago = self.quorum_heard_ago_ms().unwrap_or(0);
        if ago <= self.config.election_timeout_ms {
            self.quorum_doubt_since_ms = None;
            return false;
        }
        match self.quorum_doubt_since_ms {
            None => {
                self.quorum_doubt_since_ms = Some(self.now_ms);
                self.send_heartbeats(fx);
                false
            }
            Some(since) if self.now_ms >= since + self.config.heartbeat_interval_ms => {
                let ago = if ago == u64::MAX {
                    "since it was elected".to_string()
                } else {
                    format!("for {ago} ms")
                };
                log::warn!(
                    "node {:x}: no majority of the group answered {ago}; stepping down (ballot {})",
                    self.me,
                    self.ballot
                );
                self.stats.step_downs += 1;
                self.follow(None);
                true
            }
            Some(_) => false,
        }
    }

    /// Asks every member whether it would take part in an election, without
    /// raising a ballot anyone sees. A member cut off from the group never
    /// gets a majority, so its return leaves the ballots as they were.
    fn start_pre_vote(&mut self, fx: &mut Effects) {
        if !self.is_member() {
            self.state = LeaderState::Follower;
            self.reset_election_deadline();
            return;
        }
        self.state = LeaderState::PreCandidate;
        self.pre_vote_ballot = self.max_seen.max(self.ballot).next_for(self.me);
        self.pre_votes.clear();
        self.pre_votes.insert(self.me);
        self.reset_election_deadline();
        log::debug!(
            "node {:x}: pre-vote for ballot {}",
            self.me,
            self.pre_vote_ballot
        );
        for id in self.configs.members_from(self.executed) {
            if id != self.me {
                fx.send(
                    id,
                    PeerMsg::PreVote(PreVote {
                        ballot: self.pre_vote_ballot,
                    }),
                );
            }
        }
        self.maybe_won_pre_vote(fx);
    }

    /// Grants unless this node leads or heard its leader within an election
    /// timeout; either way nothing here changes (a pre-vote binds no one).
    fn on_pre_vote(&mut self, from: NodeId, vote: PreVote, fx: &mut Effects) {
        let hears_leader = self.is_active()
            || self
                .leader_heard_ms
                .is_some_and(|at| self.now_ms < at + self.config.election_timeout_ms);
        fx.send(
            from,
            PeerMsg::PreVoteReply(PreVoteReply {
                ballot: vote.ballot,
                granted: !hears_leader,
                executed: self.executed,
            }),
        );
    }

    fn on_pre_vote_reply(&mut self, from: NodeId, reply: PreVoteReply, fx: &mut Effects) {
        if self.state != LeaderState::PreCandidate || reply.ballot != self.pre_vote_ballot {
            return;
        }
        if reply.executed > self.executed {
            // Behind the group (it may even have been removed meanwhile):
            // the replica catches up from the one that answered.
            fx.send(
                self.me,
                PeerMsg::CommitPoint {
                    source: from,
                    executed: reply.executed,
                },
            );
        }
        if reply.granted {
            self.pre_votes.insert(from);
            self.maybe_won_pre_vote(fx);
        }
    }

    fn maybe_won_pre_vote(&mut self, fx: &mut Effects) {
        let won = self
            .configs
            .configs_from(self.executed)
            .iter()
            .all(|members| is_majority(members, &self.pre_votes));
        if won {
            self.start_election(fx);
        }
    }

    fn start_election(&mut self, fx: &mut Effects) {
        self.ballot = self.max_seen.max(self.ballot).next_for(self.me);
        self.max_seen = self.ballot;
        self.state = LeaderState::Candidate;
        self.promised_by.clear();
        self.to_repropose.clear();
        self.max_trimmed = 0;
        self.inflight.clear();
        self.forget_decided();
        self.forget_reads();
        self.reset_election_deadline();
        log::debug!("node {:x}: election with ballot {}", self.me, self.ballot);
        self.send_prepares(fx);
    }

    fn send_prepares(&mut self, fx: &mut Effects) {
        self.prepare_sent_ms = self.now_ms;
        for id in self.configs.members_from(self.executed) {
            if !self.promised_by.contains(&id) {
                fx.send(
                    id,
                    PeerMsg::Prepare(Prepare {
                        ballot: self.ballot,
                        from_slot: self.executed,
                    }),
                );
            }
        }
    }

    fn on_promise(&mut self, from: NodeId, promise: Promise, fx: &mut Effects) {
        if promise.ballot > self.ballot {
            self.preempted(promise.ballot);
            return;
        }
        let electing = matches!(self.state, LeaderState::Candidate | LeaderState::Active);
        if promise.ballot != self.ballot || !electing {
            return;
        }
        if !self.promised_by.insert(from) {
            return;
        }
        if promise.trimmed_below > self.max_trimmed {
            self.max_trimmed = promise.trimmed_below;
            self.max_trimmed_by = from;
        }
        let already_proposed_below = if self.is_active() { self.next_slot } else { 0 };
        for (slot, ballot, batch) in promise.accepted {
            if slot < already_proposed_below || slot < self.executed {
                continue;
            }
            match self.to_repropose.get(&slot) {
                Some((known, _)) if *known >= ballot => {}
                _ => {
                    self.to_repropose.insert(slot, (ballot, batch));
                }
            }
        }
        if self.state == LeaderState::Candidate {
            let prepared = self
                .configs
                .configs_from(self.executed)
                .iter()
                .all(|members| is_majority(members, &self.promised_by));
            if prepared {
                self.become_active(fx);
            }
        } else {
            self.fill_gaps();
            self.try_propose(fx);
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

    fn become_active(&mut self, fx: &mut Effects) {
        self.state = LeaderState::Active;
        // The promises of this ballot are the first answers check-quorum counts.
        let now = self.now_ms;
        self.heard_at_ballot = self.promised_by.iter().map(|id| (*id, now)).collect();
        self.quorum_doubt_since_ms = None;
        // Like ZooKeeper: a new leader gives every session a full TTL before
        // it may expire any, so a failover never expires a live client.
        for s in self.sessions.values_mut() {
            s.last_heard_ms = now;
            s.expiring = false;
        }
        self.leader_changes += 1;
        self.leader_hint = Some(self.me);
        log::info!("node {:x}: leading with ballot {}", self.me, self.ballot);
        let start = self.executed.max(self.max_trimmed);
        self.to_repropose = self.to_repropose.split_off(&start);
        self.next_slot = start;
        self.fill_gaps();
        self.phase1_end = self.next_slot;
        self.send_heartbeats(fx);
        self.try_propose(fx);
    }

    /// Slots nobody accepted may hide between found values: fill them with
    /// no-ops so the log has no holes and later slots can execute.
    fn fill_gaps(&mut self) {
        let Some(end) = self.to_repropose.keys().next_back().map(|s| s + 1) else {
            return;
        };
        let noop: Batch = Arc::new(vec![Command::Noop].into());
        for slot in self.next_slot..end {
            self.to_repropose
                .entry(slot)
                .or_insert((Ballot::ZERO, noop.clone()));
        }
        self.next_slot = self.next_slot.max(end);
    }

    fn preempted(&mut self, by: Ballot) {
        if by > self.max_seen {
            self.max_seen = by;
        }
        if self.state != LeaderState::Follower {
            log::info!(
                "node {:x}: preempted by ballot {} (had {})",
                self.me,
                by,
                self.ballot
            );
        }
        self.follow(Some(by.node).filter(|n| *n != self.me));
    }

    /// Stops leading or campaigning; `hint` is who leads now, if known.
    fn follow(&mut self, hint: Option<NodeId>) {
        self.state = LeaderState::Follower;
        self.leader_hint = hint;
        self.heard_at_ballot.clear();
        self.quorum_doubt_since_ms = None;
        self.inflight.clear();
        self.forget_decided();
        self.forget_reads();
        self.to_repropose.clear();
        // Waiting clients resend to whoever leads now; their ids keep it exactly-once.
        self.pending.clear();
        self.reset_election_deadline();
    }

    fn on_heartbeat(&mut self, from: NodeId, hb: Heartbeat, fx: &mut Effects) {
        if hb.ballot < self.max_seen {
            return;
        }
        self.max_seen = hb.ballot;
        if self.state == LeaderState::PreCandidate {
            // It asked about a ballot nobody saw: following is all there is to undo.
            self.state = LeaderState::Follower;
        } else if hb.ballot > self.ballot && self.state != LeaderState::Follower {
            self.preempted(hb.ballot);
        }
        if self.state == LeaderState::Follower {
            self.leader_hint = Some(from);
            self.leader_heard_ms = Some(self.now_ms);
            self.reset_election_deadline();
            fx.send(
                from,
                PeerMsg::HeartbeatAck(HeartbeatAck { ballot: hb.ballot }),
            );
        }
        fx.send(
            self.me,
            PeerMsg::CommitPoint {
                source: from,
                executed: hb.executed,
            },
        );
    }

    fn on_accepted(&mut self, from: NodeId, accepted: Accepted, fx: &mut Effects) {
        if accepted.ballot > self.ballot {
            self.preempted(accepted.ballot);
            return;
        }
        if accepted.ballot != self.ballot || !self.is_active() {
            return;
        }
        let Some(flight) = self.inflight.get_mut(&accepted.slot) else {
            self.on_late_accepted(from, accepted.slot);
            return;
        };
        flight.acks.insert(from);
        if !is_majority(self.configs.at(accepted.slot), &flight.acks) {
            return;
        }
        let mut flight = self
            .inflight
            .remove(&accepted.slot)
            .expect("present: looked up above");
        let slot = accepted.slot;
        self.stats.slots_decided += 1;
        self.stats.commands_decided += flight.batch.len() as u64;
        self.stats.last_batch_commands = flight.batch.len() as u64;
        let mut awaiting = false;
        for id in self.configs.members_from(slot.min(self.executed)) {
            let asked = self.configs.at(slot).iter().any(|m| m.id == id);
            if id != self.me && flight.acks.contains(&id) {
                self.commit_queue.entry(id).or_default().push(slot);
            } else if id != self.me && asked {
                // Its Accept is on the way or lost: wait for its Accepted.
                awaiting = true;
            } else {
                // The local replica, or a member that joined later and was
                // never asked to accept this slot.
                fx.send(
                    id,
                    PeerMsg::Decision(Decision {
                        slot,
                        batch: flight.batch.clone(),
                    }),
                );
            }
        }
        if awaiting {
            flight.sent_ms = self.now_ms;
            self.decided_unacked.insert(slot, flight);
        }
        self.try_propose(fx);
    }

    /// An Accepted for a slot decided without it.
    fn on_late_accepted(&mut self, from: NodeId, slot: Slot) {
        let Some(done) = self.decided_unacked.get_mut(&slot) else {
            return;
        };
        if from != self.me && done.acks.insert(from) {
            self.commit_queue.entry(from).or_default().push(slot);
        }
        let all_acked = self
            .configs
            .at(slot)
            .iter()
            .all(|m| done.acks.contains(&m.id));
        if all_acked {
            self.decided_unacked.remove(&slot);
        }
    }

    /// Sends the held-back commits of follower `id` (before anything else to it).
    fn flush_commits_to(&mut self, id: NodeId, fx: &mut Effects) {
        if let Some(slots) = self.commit_queue.remove(&id) {
            fx.send(id, self.commit(slots));
        }
    }

    fn flush_commits(&mut self, fx: &mut Effects) {
        for (id, slots) in std::mem::take(&mut self.commit_queue) {
            fx.send(id, self.commit(slots));
        }
    }

    fn commit(&self, slots: Vec<Slot>) -> PeerMsg {
        PeerMsg::Commit(Commit {
            ballot: self.ballot,
            slots,
        })
    }

    /// Decided slots a member never acknowledged: send it the whole Decision.
    fn resend_unacked_decisions(&mut self, fx: &mut Effects) {
        let now = self.now_ms;
        let retry = self.config.retry_ms;
        let stale: Vec<Slot> = self
            .decided_unacked
            .iter()
            .filter(|(_, d)| now >= d.sent_ms + retry)
            .map(|(slot, _)| *slot)
            .collect();
        for slot in stale {
            let done = self.decided_unacked.remove(&slot).expect("listed above");
            for member in self.configs.at(slot) {
                if !done.acks.contains(&member.id) {
                    fx.send(
                        member.id,
                        PeerMsg::Decision(Decision {
                            slot,
                            batch: done.batch.clone(),
                        }),
                    );
                }
            }
        }
    }

    /// Leaving the active state: what was held back for followers is dropped.
    /// Those slots were chosen, so the next leader finds and re-proposes them.
    fn forget_decided(&mut self) {
        self.decided_unacked.clear();
        self.commit_queue.clear();
    }

    fn on_progress(&mut self, progress: Progress, fx: &mut Effects) {
        self.executed = self.executed.max(progress.executed);
        self.configs = progress.configs;
        if progress.all_sessions {
            self.sessions.clear();
        }
        let now = self.now_ms;
        for (client, ttl_ms) in progress.sessions_opened {
            let s = self.sessions.entry(client).or_insert(TrackedSession {
                ttl_ms,
                last_heard_ms: now,
                expiring: false,
            });
            s.ttl_ms = ttl_ms;
        }
        for client in progress.sessions_ended {
            self.sessions.remove(&client);
        }
        if self.is_active() {
            // Members a new membership brings must promise before we use them.
            let missing = self
                .configs
                .members_from(self.executed)
                .iter()
                .any(|id| !self.promised_by.contains(id));
            if missing && self.now_ms >= self.prepare_sent_ms + self.config.retry_ms {
                self.send_prepares(fx);
            }
            self.try_propose(fx);
        }
    }

    fn can_use_slot(&self, slot: Slot) -> bool {
        slot < self.executed + WINDOW_SLOTS && is_majority(self.configs.at(slot), &self.promised_by)
    }

    fn try_propose(&mut self, fx: &mut Effects) {
        if !self.is_active() {
            return;
        }
        while let Some((&slot, _)) = self.to_repropose.first_key_value() {
            if !self.can_use_slot(slot) {
                return;
            }
            let (_, batch) = self.to_repropose.remove(&slot).expect("first key exists");
            self.propose(slot, batch, fx);
        }
        // A membership change holds only from a window after its slot: an idle
        // group fills the window with no-ops so the change takes effect now.
        if self.pending.is_empty() {
            if let Some(from) = self.configs.pending_from(self.executed) {
                while self.next_slot < from && self.can_use_slot(self.next_slot) {
                    let slot = self.next_slot;
                    self.propose(slot, Arc::new(vec![Command::Noop].into()), fx);
                }
            }
        }
        while !self.pending.is_empty()
            && self.inflight.len() < self.config.max_inflight_slots
            && self.can_use_slot(self.next_slot)
        {
            let mut bytes = 0;
            // Sized up front: growing it one push at a time reallocates.
            let mut batch = Vec::with_capacity(
                self.pending
                    .len()
                    .min(self.config.max_batch_commands.max(1)),
            );
            while let Some(command) = self.pending.front() {
                let size = command.size_hint();
                if !batch.is_empty()
                    && (batch.len() >= self.config.max_batch_commands
                        || bytes + size > self.config.max_batch_bytes)
                {
                    break;
                }
                bytes += size;
                batch.push(self.pending.pop_front().expect("front exists"));
            }
            let slot = self.next_slot;
            self.next_slot += 1;
            self.propose(slot, Arc::new(batch.into()), fx);
        }
    }

    fn propose(&mut self, slot: Slot, batch: Batch, fx: &mut Effects) {
        self.next_slot = self.next_slot.max(slot + 1);
        for i in 0..self.configs.at(slot).len() {
            let id = self.configs.at(slot)[i].id;
            if id != self.me {
                self.flush_commits_to(id, fx);
            }
            fx.send(
                id,
                PeerMsg::Accept(Accept {
                    ballot: self.ballot,
                    slot,
                    batch: batch.clone(),
                }),
            );
        }
        self.inflight.insert(
            slot,
            Inflight {
                batch,
                acks: BTreeSet::new(),
                sent_ms: self.now_ms,
            },
        );
    }

    fn retry_accepts(&mut self, fx: &mut Effects) {
        let now = self.now_ms;
        let retry = self.config.retry_ms;
        for (slot, flight) in self.inflight.iter_mut() {
            if now < flight.sent_ms + retry {
                continue;
            }
            flight.sent_ms = now;
            for member in self.configs.at(*slot) {
                if !flight.acks.contains(&member.id) {
                    fx.send(
                        member.id,
                        PeerMsg::Accept(Accept {
                            ballot: self.ballot,
                            slot: *slot,
                            batch: flight.batch.clone(),
                        }),
                    );
                }
            }
        }
    }

    fn send_heartbeats(&mut self, fx: &mut Effects) {
        self.last_heartbeat_ms = self.now_ms;
        if self.max_trimmed > self.executed {
            // Slots below what an acceptor trimmed (after its restart from a
            // snapshot) are nowhere in phase 1: this leader's replica catches
            // up from that node, asking again at every heartbeat until it has.
            fx.send(
                self.me,
                PeerMsg::CommitPoint {
                    source: self.max_trimmed_by,
                    executed: self.max_trimmed,
                },
            );
        }
        // Commits first: a follower that hears of progress it has not seen asks to catch up.
        self.flush_commits(fx);
        for id in self.configs.members_from(self.executed) {
            if id != self.me {
                fx.send(
                    id,
                    PeerMsg::Heartbeat(Heartbeat {
                        ballot: self.ballot,
                        executed: self.executed,
                    }),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests;
