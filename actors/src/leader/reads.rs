//! Reads without a log write (etcd's ReadIndex): rounds of heartbeats that
//! confirm this node still leads, batched for every read waiting.

use super::*;

/// Read-index rounds in flight at once: a read waits about one round trip,
/// not one and a half as behind a single round, while a burst of reads
/// still shares a round.
pub(super) const MAX_READ_ROUNDS: usize = 4;

/// A read waiting for a round of the leader's read index.
#[derive(Clone, Debug)]
pub(super) enum WaitingRead {
    /// A client's read that this node's replica serves.
    Here(Command),
    /// A follower's ask: the follower serves the reads behind it.
    Asked { by: NodeId, ask: u64 },
}

/// A follower's ask for a read index, with the reads that wait for it.
#[derive(Clone, Debug)]
pub(super) struct ReadAsk {
    ask: u64,
    to: NodeId,
    sent_ms: u64,
    reads: Vec<Command>,
}

impl Leader {
    /// Takes a read (a call of a read-only method). It runs on this node's
    /// replica without entering the log, once a read-index round begun
    /// after it arrived is answered by a majority of every membership in
    /// force and the replica has executed every slot below the commit
    /// point seen then. Rounds are batched: one serves every read that
    /// arrived before it began. A leader deposed without knowing it never
    /// completes a round (a majority promised the newer ballot), so it never
    /// answers from stale state.
    ///
    /// A follower that knows the leader takes reads too (etcd's follower
    /// reads): it asks the leader for a read index, one ask for every read
    /// that came since the last, and its own replica serves them once it
    /// has executed that far. The leader's CPU per read is then a share of
    /// one small message, not a client's frames.
    pub fn on_read(&mut self, command: Command, fx: &mut Effects) -> Result<(), NotAccepted> {
        if !self.is_active() {
            return self.read_as_follower(command, fx);
        }
        if let Some(id) = command.id() {
            self.touch(id.client);
        }
        if self.reads_pending() >= self.config.max_pending_commands {
            return Err(NotAccepted::Busy);
        }
        self.await_round(std::iter::once(WaitingRead::Here(command)), fx);
        Ok(())
    }

    /// The leader this follower serves its clients' reads and keep-alives
    /// for: one it heard within an election timeout (a follower cut off
    /// from it sends its clients elsewhere soon).
    fn serving_for(&self) -> Option<NodeId> {
        let leader = self.leader_hint?;
        let heard = self.leader_heard_ago_ms()?;
        (self.config.follower_reads
            && leader != self.me
            && self.state == LeaderState::Follower
            && heard <= self.config.election_timeout_ms
            && self.is_member())
        .then_some(leader)
    }

    /// A client's keep-alive reached this node: true if it answers for the
    /// group (it leads, or it follows a leader it tells of the client at
    /// its next tick); false sends the client to the leader.
    pub fn heard_client(&mut self, client: ClientId) -> bool {
        if self.is_active() {
            self.touch(client);
            return true;
        }
        if self.serving_for().is_none() {
            return false;
        }
        self.sessions_heard.insert(client);
        true
    }

    fn read_as_follower(&mut self, command: Command, fx: &mut Effects) -> Result<(), NotAccepted> {
        let Some(leader) = self.serving_for() else {
            return Err(NotAccepted::NotLeader(self.leader_hint));
        };
        if self.reads_pending() >= self.config.max_pending_commands {
            return Err(NotAccepted::Busy);
        }
        if let Some(id) = command.id() {
            // A client that only reads sends no keep-alives, and it reads here.
            self.sessions_heard.insert(id.client);
        }
        self.stats.follower_reads += 1;
        self.follower_reads_next.push(command);
        if self.asks.len() < MAX_READ_ROUNDS {
            self.send_ask(leader, fx);
        }
        Ok(())
    }

    fn send_ask(&mut self, leader: NodeId, fx: &mut Effects) {
        self.last_ask += 1;
        let ask = self.last_ask;
        self.asks.push_back(ReadAsk {
            ask,
            to: leader,
            sent_ms: self.now_ms,
            reads: std::mem::take(&mut self.follower_reads_next),
        });
        fx.send(leader, PeerMsg::ReadIndexAsk { ask });
    }

    /// Makes this node's asks unlike those of any earlier start of it: the
    /// leader may still answer an ask the earlier process sent (its peer
    /// link reconnects to the same address), and that answer must not serve
    /// reads that arrived after it was given.
    pub fn start_asks_at(&mut self, first: u64) {
        self.last_ask = first;
    }

    /// The leader's side of a follower's ask: it waits in the read rounds
    /// as a read would, with the commit point seen now.
    pub(super) fn on_read_index_ask(&mut self, from: NodeId, ask: u64, fx: &mut Effects) {
        // Not leading (or too busy): the follower asks again, whoever leads.
        if !self.is_active() || self.reads_pending() >= self.config.max_pending_commands {
            return;
        }
        self.await_round(std::iter::once(WaitingRead::Asked { by: from, ask }), fx);
    }

    /// The follower's side: the reads behind `ask` run once this node's
    /// replica has executed every slot below `index`. Only the node asked
    /// answers, and only after a round begun once the ask had reached it.
    pub(super) fn on_read_index_answer(
        &mut self,
        from: NodeId,
        ask: u64,
        index: Slot,
        fx: &mut Effects,
    ) {
        let Some(at) = self.asks.iter().position(|a| a.ask == ask && a.to == from) else {
            return; // answered already, or asked again elsewhere
        };
        let answered = self.asks.remove(at).expect("found above");
        let reads = answered.reads.into_iter().map(|c| (index, c)).collect();
        fx.send(self.me, PeerMsg::ReadAt(ReadAt { reads }));
        if !self.follower_reads_next.is_empty() && self.asks.len() < MAX_READ_ROUNDS {
            self.send_ask(from, fx);
        }
    }

    /// Asks not answered within a retry interval go again, to whoever leads
    /// now; if this node leads now, their reads join its own rounds. The
    /// clients heard since the last tick go to the leader.
    pub(super) fn tick_follower_reads(&mut self, fx: &mut Effects) {
        if !self.sessions_heard.is_empty() {
            let clients = std::mem::take(&mut self.sessions_heard);
            match self.leader_hint {
                _ if self.is_active() => clients.into_iter().for_each(|c| self.touch(c)),
                Some(leader) if leader != self.me => {
                    let clients = clients.into_iter().collect();
                    fx.send(leader, PeerMsg::SessionsHeard { clients });
                }
                _ => {}
            }
        }
        if self.asks.is_empty() && self.follower_reads_next.is_empty() {
            return;
        }
        if self.is_active() {
            let reads: Vec<Command> = self
                .asks
                .drain(..)
                .flat_map(|a| a.reads)
                .chain(self.follower_reads_next.drain(..))
                .collect();
            self.await_round(reads.into_iter().map(WaitingRead::Here), fx);
            return;
        }
        let Some(leader) = self.leader_hint.filter(|l| *l != self.me) else {
            return; // nobody to ask yet; the clients resend if it lasts
        };
        let now = self.now_ms;
        for a in self.asks.iter_mut() {
            if now >= a.sent_ms + self.config.retry_ms || a.to != leader {
                a.to = leader;
                a.sent_ms = now;
                fx.send(leader, PeerMsg::ReadIndexAsk { ask: a.ask });
            }
        }
        if !self.follower_reads_next.is_empty() && self.asks.len() < MAX_READ_ROUNDS {
            self.send_ask(leader, fx);
        }
    }

    /// Reads that wait, with the commit point seen now, for a round begun
    /// after they arrived: one begins at once if fewer than
    /// [`MAX_READ_ROUNDS`] are in flight, else when one is confirmed.
    fn await_round(&mut self, reads: impl Iterator<Item = WaitingRead>, fx: &mut Effects) {
        let index = self.commit_point();
        self.reads_next.extend(reads.map(|read| (index, read)));
        if self.read_rounds.len() < MAX_READ_ROUNDS {
            self.start_read_round(fx);
        }
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
        self.follower_reads_next.len()
            + self.asks.iter().map(|a| a.reads.len()).sum::<usize>()
            + self.reads_next.len()
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
        let mut here = Vec::new();
        for (index, read) in reads {
            match read {
                WaitingRead::Here(command) => here.push((index, command)),
                WaitingRead::Asked { by, ask } => {
                    // The decisions below the index first: the follower
                    // would otherwise wait a tick for them.
                    self.flush_decided_to(by, fx);
                    fx.send(by, PeerMsg::ReadIndexAnswer { ask, index })
                }
            }
        }
        if !here.is_empty() {
            fx.send(self.me, PeerMsg::ReadAt(ReadAt { reads: here }));
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
