//! Reads without a log write (etcd's ReadIndex): rounds of heartbeats that
//! confirm this node still leads, batched for every read waiting.

use super::*;

/// Read-index rounds in flight at once: a read waits about one round trip,
/// not one and a half as behind a single round, while a burst of reads
/// still shares a round.
pub(super) const MAX_READ_ROUNDS: usize = 4;

impl Leader {
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
    pub(super) fn commit_point(&self) -> Slot {
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

    pub(super) fn start_read_round(&mut self, fx: &mut Effects) {
        self.read_round += 1;
        let reads = std::mem::take(&mut self.reads_next);
        self.read_rounds.push_back((self.read_round, reads));
        self.read_round_sent_ms = self.now_ms;
        self.send_read_index(fx);
    }

    /// The newest round to every member that has not answered it, this
    /// node's own acceptor too (it may have promised a newer ballot).
    pub(super) fn send_read_index(&mut self, fx: &mut Effects) {
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

    pub(super) fn on_read_index_ack(&mut self, from: NodeId, ack: ReadIndexAck, fx: &mut Effects) {
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
    pub(super) fn forget_reads(&mut self) {
        self.reads_next.clear();
        self.read_rounds.clear();
        self.read_acked.clear();
    }
}
