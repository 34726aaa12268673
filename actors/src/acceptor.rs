//! The acceptor's logic: the memory of Paxos. Inputs in, effects out.

use crate::message::{
    Accept, Accepted, Batch, Commit, Decision, Effects, PeerMsg, Prepare, Promise, ReadIndexAck,
};
use crate::storage::Record;
use crate::{Ballot, NodeId, Slot};
use std::collections::BTreeMap;

/// How many executed slots an acceptor keeps after its node executed them,
/// so a leader that is slightly behind still finds recent values.
pub const ACCEPTOR_KEEP_SLOTS: Slot = 1024;

/// Promised ballot and accepted values per slot.
#[derive(Clone, Debug, Default)]
pub struct Acceptor {
    me: NodeId,
    promised: Ballot,
    accepted: BTreeMap<Slot, (Ballot, Batch)>,
    trimmed_below: Slot,
    /// In durable mode, what must reach the disk before this handler's
    /// messages leave the node.
    journal: Option<Vec<Record>>,
}

impl Acceptor {
    /// The acceptor of node `me`.
    pub fn new(me: NodeId) -> Self {
        Acceptor {
            me,
            ..Self::default()
        }
    }

    /// An acceptor read back from disk: it keeps its promise and what it accepted.
    pub fn restored(
        me: NodeId,
        promised: Ballot,
        accepted: BTreeMap<Slot, (Ballot, Batch)>,
        trimmed_below: Slot,
    ) -> Self {
        Acceptor {
            me,
            promised,
            accepted,
            trimmed_below,
            journal: None,
        }
    }

    /// Durable mode: every change is also recorded for [`Self::take_journal`].
    pub fn journaled(mut self) -> Self {
        self.journal = Some(Vec::new());
        self
    }

    /// The records of the changes since the last call.
    pub fn take_journal(&mut self) -> Vec<Record> {
        self.journal
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    fn record(&mut self, record: impl FnOnce() -> Record) {
        if let Some(journal) = &mut self.journal {
            journal.push(record());
        }
    }

    pub fn promised(&self) -> Ballot {
        self.promised
    }

    pub fn accepted_len(&self) -> usize {
        self.accepted.len()
    }

    /// The ballot of the value accepted for `slot`, if one is kept.
    pub fn accepted_ballot(&self, slot: Slot) -> Option<Ballot> {
        self.accepted(slot).map(|(ballot, _)| *ballot)
    }

    /// The ballot and batch accepted in `slot`, if any (for checks).
    pub fn accepted(&self, slot: Slot) -> Option<&(Ballot, Batch)> {
        self.accepted.get(&slot)
    }

    pub fn on_prepare(&mut self, from: NodeId, prepare: Prepare, fx: &mut Effects) {
        if prepare.ballot > self.promised {
            self.promised = prepare.ballot;
            self.record(|| Record::Promise(prepare.ballot));
        }
        let accepted = if self.promised == prepare.ballot {
            self.accepted
                .range(prepare.from_slot..)
                .map(|(slot, (ballot, batch))| (*slot, *ballot, batch.clone()))
                .collect()
        } else {
            Vec::new()
        };
        fx.send(
            from,
            PeerMsg::Promise(Promise {
                ballot: self.promised,
                accepted,
                trimmed_below: self.trimmed_below,
            }),
        );
    }

    pub fn on_accept(&mut self, from: NodeId, accept: Accept, fx: &mut Effects) {
        if accept.ballot >= self.promised && accept.slot >= self.trimmed_below {
            self.promised = accept.ballot;
            self.record(|| Record::Accept {
                slot: accept.slot,
                ballot: accept.ballot,
                batch: accept.batch.clone(),
            });
            self.accepted
                .insert(accept.slot, (accept.ballot, accept.batch));
        }
        fx.send(
            from,
            PeerMsg::Accepted(Accepted {
                ballot: self.promised,
                slot: accept.slot,
            }),
        );
    }

    /// Values this acceptor accepted were chosen: pass them to the local replica.
    /// Any value accepted at the chosen ballot or above is the chosen one
    /// (Paxos), so the copy here is right; if it is gone, the replica catches up.
    pub fn on_commit(&mut self, commit: Commit, fx: &mut Effects) {
        for slot in commit.slots {
            if let Some((ballot, batch)) = self.accepted.get(&slot) {
                if *ballot >= commit.ballot {
                    if let Some(journal) = &mut self.journal {
                        journal.push(Record::Chosen {
                            slot,
                            ballot: *ballot,
                        });
                    }
                    fx.send(
                        self.me,
                        PeerMsg::Decision(Decision {
                            slot,
                            batch: batch.clone(),
                        }),
                    );
                }
            }
        }
    }

    /// The local replica has executed every slot below `executed`: values far
    /// enough below it can be forgotten (the replica's log or snapshot has them).
    pub fn on_progress(&mut self, executed: Slot) {
        let below = executed.saturating_sub(ACCEPTOR_KEEP_SLOTS);
        if below > self.trimmed_below {
            self.trimmed_below = below;
            self.accepted = self.accepted.split_off(&below);
        }
    }

    pub fn handle(&mut self, from: NodeId, msg: PeerMsg, fx: &mut Effects) {
        match msg {
            PeerMsg::Prepare(p) => self.on_prepare(from, p, fx),
            PeerMsg::Accept(a) => self.on_accept(from, a, fx),
            PeerMsg::Progress(p) => self.on_progress(p.executed),
            PeerMsg::Commit(c) => self.on_commit(c, fx),
            // A leader's read index asks whether a newer ballot was promised.
            PeerMsg::ReadIndex(r) => fx.send(
                from,
                PeerMsg::ReadIndexAck(ReadIndexAck {
                    promised: self.promised,
                    round: r.round,
                }),
            ),
            _ => {}
        }
    }
}
