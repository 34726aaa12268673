//! The decided log as seen on the network, replayed command by command
//! ([`Sim::replicated_order`]) for the checks on that order.

use super::*;

/// One command of the replicated order, as [`Sim::replicated_order`] executed it.
#[derive(Clone, Debug)]
pub struct Executed {
    pub slot: Slot,
    pub command: Command,
    /// Every answer executing it gave, in order: its own reply (unless it
    /// parked) and the wake-ups it caused (grants handed on, expired waits).
    pub replies: Vec<(CommandId, Reply)>,
    /// `(name, type, state)` of every named object right after it.
    pub named: Vec<(String, String, Vec<u8>)>,
}

impl Sim {
    /// Keeps every decided batch seen, so the order can be replayed later.
    pub(super) fn record_decisions(&mut self, msg: &PeerMsg) {
        let mut record = |slot: Slot, batch: &Batch| match self.decided.get(&slot) {
            Some(known) if known != batch => self.decided_conflicts.push(slot),
            Some(_) => {}
            None => {
                self.decided.insert(slot, batch.clone());
            }
        };
        match msg {
            PeerMsg::Decision(d) => record(d.slot, &d.batch),
            PeerMsg::CatchUp(c) => {
                for (slot, batch) in &c.decisions {
                    record(*slot, batch);
                }
            }
            _ => {}
        }
    }

    /// The decided log seen so far, replayed command by command on an
    /// observer replica up to the slot live replicas executed: each command
    /// with what it answered and the named objects' states after it. Noops
    /// are left out. Fails if a slot was seen decided twice differently or
    /// not at all, if a batch's commands answer differently alone than
    /// together, or if the observer ends in another state than a live
    /// replica that executed as far.
    pub fn replicated_order(&self) -> Result<Vec<Executed>, String> {
        if let Some(slot) = self.decided_conflicts.first() {
            return Err(format!(
                "slot {slot} was decided with two different batches"
            ));
        }
        let upto = (0..self.nodes.len())
            .filter(|i| self.nodes[*i].alive)
            .map(|i| self.nodes[i].replica.executed())
            .max()
            .unwrap_or(0);
        let mut base = fresh_replica(
            &self.config,
            OBSERVER,
            ConfigHistory::genesis(members(self.config.nodes)),
        );
        let mut order = Vec::new();
        for slot in 0..upto {
            let batch = self.decided.get(&slot).ok_or_else(|| {
                format!("slot {slot} was executed but its decision was never seen")
            })?;
            if batch.iter().all(|c| *c == Command::Noop) {
                base.on_decision(
                    Decision {
                        slot,
                        batch: batch.clone(),
                    },
                    &mut Effects::default(),
                );
                continue;
            }
            // Each command's own effects: run the batch's prefixes on copies,
            // the whole batch on the observer itself.
            let mut before: Vec<(CommandId, Reply)> = Vec::new();
            for k in 1..=batch.len() {
                let mut fx = Effects::default();
                let after = if k == batch.len() {
                    base.on_decision(
                        Decision {
                            slot,
                            batch: batch.clone(),
                        },
                        &mut fx,
                    );
                    base.snapshot()
                } else {
                    let mut copy = self.copy_replica(&base)?;
                    let prefix = Arc::new(batch[..k].to_vec().into());
                    copy.on_decision(
                        Decision {
                            slot,
                            batch: prefix,
                        },
                        &mut fx,
                    );
                    copy.snapshot()
                };
                if !fx.replies.starts_with(&before) {
                    return Err(format!(
                        "slot {slot}: its first {} command(s) answer differently alone than with the next",
                        k - 1
                    ));
                }
                let command = batch[k - 1].clone();
                if command != Command::Noop {
                    order.push(Executed {
                        slot,
                        command,
                        replies: fx.replies[before.len()..].to_vec(),
                        named: after
                            .store
                            .named
                            .into_iter()
                            .map(|(name, type_name, state)| (name, type_name, state.0))
                            .collect(),
                    });
                }
                before = fx.replies;
            }
        }
        if base.executed() != upto {
            return Err(format!(
                "the observer executed to slot {}, not {upto}",
                base.executed()
            ));
        }
        let mine = base.snapshot();
        for (i, node) in self.nodes.iter().enumerate() {
            if !node.alive || node.replica.executed() != upto {
                continue;
            }
            let theirs = node.replica.snapshot();
            let same = mine.object_state == theirs.object_state
                && mine.store == theirs.store
                && mine.clients == theirs.clients
                && mine.sessions == theirs.sessions
                && mine.expired == theirs.expired;
            if !same {
                return Err(format!(
                    "the order replayed to slot {upto} ends in another state than node {i}'s"
                ));
            }
        }
        Ok(order)
    }

    /// A copy of `of` made the way a lagging replica catches up: by snapshot.
    pub(super) fn copy_replica(&self, of: &Replica) -> Result<Replica, String> {
        let object = concoord_objects::builtin(&self.config.object)
            .expect("the simulated object is a built-in");
        let limits = of.snapshot().store.limits;
        let mut copy = Replica::joining(OBSERVER, object, Vec::new())
            .with_types(Arc::new(Types::builtins()), limits);
        let mut fx = Effects::default();
        copy.handle(
            OBSERVER,
            PeerMsg::Snapshot(Box::new(of.snapshot())),
            &mut fx,
        );
        if !copy.has_state() || copy.executed() != of.executed() {
            return Err(format!(
                "a snapshot at slot {} did not install on a fresh replica",
                of.executed()
            ));
        }
        Ok(copy)
    }
}
