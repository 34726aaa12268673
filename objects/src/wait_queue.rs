use crate::CommandId;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// A FIFO of parked commands, each with the data its wake-up needs
/// (a saved recursion count, the result to answer, ...). Part of the
/// object's state, so snapshots carry it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WaitQueue<T = ()> {
    entries: VecDeque<(CommandId, T)>,
}

impl<T> Default for WaitQueue<T> {
    fn default() -> Self {
        WaitQueue {
            entries: VecDeque::new(),
        }
    }
}

impl<T> WaitQueue<T> {
    /// Parks `id` at the back. A command already parked keeps its place (a
    /// resent command must never be queued twice); returns whether it was added.
    pub fn push(&mut self, id: CommandId, data: T) -> bool {
        if self.contains(id) {
            return false;
        }
        self.entries.push_back((id, data));
        true
    }

    /// The longest-waiting command.
    pub fn pop(&mut self) -> Option<(CommandId, T)> {
        self.entries.pop_front()
    }

    /// Takes `id` out of the queue wherever it is.
    pub fn remove(&mut self, id: CommandId) -> Option<T> {
        let at = self.entries.iter().position(|(queued, _)| *queued == id)?;
        self.entries.remove(at).map(|(_, data)| data)
    }

    pub fn contains(&self, id: CommandId) -> bool {
        self.entries.iter().any(|(queued, _)| *queued == id)
    }

    /// Position of `id` (0 = next to be served).
    pub fn position(&self, id: CommandId) -> Option<usize> {
        self.entries.iter().position(|(queued, _)| *queued == id)
    }

    /// Takes out every command of `client` (its session ended).
    pub fn remove_client(&mut self, client: crate::ClientId) {
        self.entries.retain(|(id, _)| id.client != client);
    }

    /// Every parked command, in FIFO order.
    pub fn ids(&self) -> impl Iterator<Item = CommandId> + '_ {
        self.entries.iter().map(|(id, _)| *id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &(CommandId, T)> {
        self.entries.iter()
    }

    /// Empties the queue, returning its entries in FIFO order.
    pub fn drain(&mut self) -> Vec<(CommandId, T)> {
        std::mem::take(&mut self.entries).into()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_without_duplicates() {
        let mut q = WaitQueue::default();
        let (a, b, c) = (
            CommandId::new(1, 1),
            CommandId::new(2, 1),
            CommandId::new(3, 1),
        );
        assert!(q.push(a, 10));
        assert!(q.push(b, 20));
        assert!(!q.push(a, 30), "a resent command keeps its place");
        assert!(q.push(c, 40));
        assert_eq!(q.remove(b), Some(20));
        assert_eq!(q.remove(b), None);
        assert_eq!(q.ids().collect::<Vec<_>>(), vec![a, c]);
        assert_eq!(q.pop(), Some((a, 10)));
        assert_eq!(q.drain(), vec![(c, 40)]);
        assert!(q.is_empty());
    }
}
