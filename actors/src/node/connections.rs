//! The client connections open on a node and the commands each waits for.

use super::*;
use std::collections::hash_map::{Entry, OccupiedEntry};

/// Where outcomes go: open connections, and which commands each waits for.
#[derive(Default)]
pub(super) struct Connections {
    pub(super) next_key: u64,
    pub(super) open: BTreeMap<ConnectionKey, Recipient<ConnectionEvents>>,
    /// The connection waiting for each command: a hash lookup per call (an
    /// ordered set of pairs cost the leader a tree walk under this lock).
    pub(super) waiting: crate::id_hash::IdMap<CommandId, ConnectionKey>,
    /// Further connections waiting for a command already in `waiting`: a
    /// client that reconnected and resent it. Rare.
    also_waiting: OtherWaiters,
}

type OtherWaiters = std::collections::BTreeSet<(CommandId, ConnectionKey)>;

fn others_of(
    also_waiting: &OtherWaiters,
    id: CommandId,
) -> std::collections::btree_set::Range<'_, (CommandId, ConnectionKey)> {
    also_waiting.range((id, ConnectionKey(0))..=(id, ConnectionKey(u64::MAX)))
}

impl Connections {
    pub(super) fn waiters(&self, id: CommandId) -> impl Iterator<Item = ConnectionKey> + '_ {
        let more = others_of(&self.also_waiting, id).map(|(_, key)| *key);
        self.waiting.get(&id).copied().into_iter().chain(more)
    }

    /// Whether any connection waits for `id` (the first is always in `waiting`).
    pub(super) fn is_waited_for(&self, id: CommandId) -> bool {
        self.waiting.contains_key(&id)
    }

    pub(super) fn add_waiter(&mut self, id: CommandId, key: ConnectionKey) {
        match self.waiting.entry(id) {
            Entry::Vacant(first) => {
                first.insert(key);
            }
            Entry::Occupied(first) if *first.get() == key => {}
            Entry::Occupied(_) => {
                self.also_waiting.insert((id, key));
            }
        }
    }

    pub(super) fn remove_waiter(&mut self, id: CommandId, key: ConnectionKey) {
        match self.waiting.entry(id) {
            Entry::Occupied(first) if *first.get() == key => {
                Self::promote_next(&mut self.also_waiting, first);
            }
            _ => {
                self.also_waiting.remove(&(id, key));
            }
        }
    }

    /// Removes and returns one connection waiting for `id`.
    pub(super) fn take_waiter(&mut self, id: CommandId) -> Option<ConnectionKey> {
        let Entry::Occupied(first) = self.waiting.entry(id) else {
            return None;
        };
        let key = *first.get();
        Self::promote_next(&mut self.also_waiting, first);
        Some(key)
    }

    /// The first waiter of a command goes: one of the others, if any, takes
    /// its place.
    fn promote_next(
        also_waiting: &mut OtherWaiters,
        first: OccupiedEntry<'_, CommandId, ConnectionKey>,
    ) {
        let id = *first.key();
        let next = others_of(also_waiting, id).next().copied();
        match next {
            Some(next) => {
                also_waiting.remove(&next);
                *first.into_mut() = next.1;
            }
            None => {
                first.remove();
            }
        }
    }

    pub(super) fn forget_connection(&mut self, key: ConnectionKey) {
        self.open.remove(&key);
        self.also_waiting.retain(|(_, k)| *k != key);
        let first_for: Vec<CommandId> = self
            .waiting
            .iter()
            .filter(|(_, k)| **k == key)
            .map(|(id, _)| *id)
            .collect();
        // A command whose first waiter went keeps its other ones.
        for id in first_for {
            self.remove_waiter(id, key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(seq: u64) -> CommandId {
        CommandId::new(7, seq)
    }

    #[test]
    fn each_waiter_of_a_command_is_taken_once_and_others_are_left_alone() {
        let mut c = Connections::default();
        let (a, b) = (ConnectionKey(1), ConnectionKey(2));
        c.add_waiter(id(1), a);
        c.add_waiter(id(1), a); // a resend on the same connection
        c.add_waiter(id(1), b); // and on a new one after a reconnect
        c.add_waiter(id(2), b);
        assert_eq!(c.waiters(id(1)).collect::<Vec<_>>(), vec![a, b]);
        assert_eq!(c.take_waiter(id(1)), Some(a));
        assert!(c.is_waited_for(id(1)), "b still waits");
        assert_eq!(c.take_waiter(id(1)), Some(b));
        assert!(!c.is_waited_for(id(1)));
        assert_eq!(c.take_waiter(id(1)), None);
        assert_eq!(c.waiters(id(2)).collect::<Vec<_>>(), vec![b]);
    }

    #[test]
    fn a_command_keeps_its_other_waiters_when_one_goes() {
        let mut c = Connections::default();
        let (a, b, d) = (ConnectionKey(1), ConnectionKey(2), ConnectionKey(3));
        c.add_waiter(id(1), a);
        c.add_waiter(id(1), b);
        c.add_waiter(id(1), d);
        c.remove_waiter(id(1), a);
        assert_eq!(c.waiters(id(1)).collect::<Vec<_>>(), vec![b, d]);
        c.forget_connection(b);
        assert_eq!(c.waiters(id(1)).collect::<Vec<_>>(), vec![d]);
        c.remove_waiter(id(1), d);
        assert_eq!(c.waiters(id(1)).count(), 0);
        assert!(c.waiting.is_empty() && c.also_waiting.is_empty());
    }
}
