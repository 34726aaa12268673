//! Phase 2: proposing batches in a window of slots, counting Accepted, and
//! telling acceptors and the replica what was decided.

use super::*;

impl Leader {
    pub(super) fn on_accepted(&mut self, from: NodeId, accepted: Accepted, fx: &mut Effects) {
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
        if self.config.thrifty && self.accept_quorum.is_empty() {
            // Those that answered first: they make the majority from now on.
            self.accept_quorum = flight
                .acks
                .iter()
                .copied()
                .filter(|id| *id != self.me)
                .collect();
        }
        let mut awaiting = false;
        for id in self.configs.members_from(slot.min(self.executed)) {
            let asked = self.configs.at(slot).iter().any(|m| m.id == id);
            if id != self.me && flight.acks.contains(&id) {
                self.commit_queue.entry(id).or_default().push(slot);
            } else if flight.lazy.contains(&id) {
                let waiting = self.lazy_decisions.entry(id).or_default();
                waiting.push((slot, flight.batch.clone()));
                if waiting.len() >= LAZY_FLUSH_SLOTS {
                    self.flush_decided_to(id, fx);
                }
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
    pub(super) fn on_late_accepted(&mut self, from: NodeId, slot: Slot) {
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

    /// Sends what member `id` has not been told is decided (before anything
    /// else to it): commits of what it accepted, and whole batches it was
    /// left out of.
    pub(super) fn flush_decided_to(&mut self, id: NodeId, fx: &mut Effects) {
        if let Some(slots) = self.commit_queue.remove(&id) {
            fx.send(id, self.commit(slots));
        }
        if let Some(decisions) = self.lazy_decisions.remove(&id) {
            fx.send(id, PeerMsg::CatchUp(CatchUp { decisions }));
        }
    }

    pub(super) fn flush_decided(&mut self, fx: &mut Effects) {
        let owed: BTreeSet<NodeId> = self
            .commit_queue
            .keys()
            .chain(self.lazy_decisions.keys())
            .copied()
            .collect();
        for id in owed {
            self.flush_decided_to(id, fx);
        }
    }

    pub(super) fn commit(&self, slots: Vec<Slot>) -> PeerMsg {
        PeerMsg::Commit(Commit {
            ballot: self.ballot,
            slots,
        })
    }

    /// Decided slots a member never acknowledged: send it the whole Decision.
    pub(super) fn resend_unacked_decisions(&mut self, fx: &mut Effects) {
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
    pub(super) fn forget_decided(&mut self) {
        self.decided_unacked.clear();
        self.commit_queue.clear();
        self.lazy_decisions.clear();
        self.accept_quorum.clear();
    }

    pub(super) fn on_progress(&mut self, progress: Progress, fx: &mut Effects) {
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

    pub(super) fn can_use_slot(&self, slot: Slot) -> bool {
        slot < self.executed + WINDOW_SLOTS && is_majority(self.configs.at(slot), &self.promised_by)
    }

    pub(super) fn try_propose(&mut self, fx: &mut Effects) {
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

    pub(super) fn propose(&mut self, slot: Slot, batch: Batch, fx: &mut Effects) {
        self.next_slot = self.next_slot.max(slot + 1);
        let lazy = self.left_out_of(slot);
        if !lazy.is_empty() {
            self.stats.thrifty_slots += 1;
        }
        for i in 0..self.configs.at(slot).len() {
            let id = self.configs.at(slot)[i].id;
            if lazy.contains(&id) {
                continue;
            }
            if id != self.me {
                self.flush_decided_to(id, fx);
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
                lazy,
            },
        );
    }

    /// The members of `slot`'s membership its Accept need not go to: with
    /// `thrifty`, all but this node and enough of the accept quorum to make
    /// a majority. None while there is no such quorum (this node is no
    /// member, or the quorum is not picked yet or left the membership).
    fn left_out_of(&self, slot: Slot) -> Vec<NodeId> {
        let members = self.configs.at(slot);
        if !self.config.thrifty
            || self.accept_quorum.is_empty()
            || !members.iter().any(|m| m.id == self.me)
        {
            return Vec::new();
        }
        let needed = members.len() / 2;
        let chosen: Vec<NodeId> = self
            .accept_quorum
            .iter()
            .copied()
            .filter(|id| members.iter().any(|m| m.id == *id) && self.promised_by.contains(id))
            .take(needed)
            .collect();
        if chosen.len() < needed {
            return Vec::new();
        }
        members
            .iter()
            .map(|m| m.id)
            .filter(|id| *id != self.me && !chosen.contains(id))
            .collect()
    }

    /// The transport saw `peer`'s link close (its process died or it
    /// restarts). If the accept quorum counted on it, the slots in flight
    /// go at once to the members they left out, rather than after
    /// `retry_ms`, and the next decided slot picks the quorum afresh.
    pub fn peer_lost(&mut self, peer: NodeId, fx: &mut Effects) {
        if !self.accept_quorum.contains(&peer) {
            return;
        }
        self.accept_quorum.clear();
        // What they are owed goes first, as before any Accept to them.
        self.flush_decided(fx);
        for (slot, flight) in self.inflight.iter_mut() {
            for member in flight.lazy.drain(..) {
                fx.send(
                    member,
                    PeerMsg::Accept(Accept {
                        ballot: self.ballot,
                        slot: *slot,
                        batch: flight.batch.clone(),
                    }),
                );
            }
        }
    }

    pub(super) fn retry_accepts(&mut self, fx: &mut Effects) {
        let now = self.now_ms;
        let retry = self.config.retry_ms;
        for (slot, flight) in self.inflight.iter_mut() {
            if now < flight.sent_ms + retry {
                continue;
            }
            flight.sent_ms = now;
            // Someone it counted on is slow or gone: every member is asked
            // now, and the next decided slot picks the quorum afresh.
            flight.lazy.clear();
            self.accept_quorum.clear();
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
}
