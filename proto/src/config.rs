use crate::{NodeId, Slot};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// How many slots after the slot that decides a membership change the change
/// takes effect ("Paxos Made Moderately Complex"'s WINDOW). A leader never
/// proposes beyond `executed + WINDOW`, so it always knows the group of every
/// slot it proposes in.
pub const WINDOW_SLOTS: Slot = 32;

/// One member of the group: its identity and the address peers and clients reach it on.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Member {
    pub id: NodeId,
    pub addr: String,
}

/// The group's membership over the log: each entry holds from its slot on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigHistory {
    entries: Vec<(Slot, Vec<Member>)>,
}

impl ConfigHistory {
    pub fn genesis(members: Vec<Member>) -> Self {
        ConfigHistory {
            entries: vec![(0, normalized(members))],
        }
    }

    /// The members for `slot`.
    pub fn at(&self, slot: Slot) -> &[Member] {
        self.entries
            .iter()
            .rev()
            .find(|(from, _)| *from <= slot)
            .map(|(_, m)| m.as_slice())
            .unwrap_or(&[])
    }

    /// The newest membership, effective or pending.
    pub fn latest(&self) -> &[Member] {
        &self.entries.last().expect("history is never empty").1
    }

    /// Records a change decided in `decided_slot`.
    pub fn change(&mut self, decided_slot: Slot, members: Vec<Member>) {
        let from = decided_slot + WINDOW_SLOTS;
        assert!(
            self.entries.last().map(|(s, _)| *s <= from).unwrap_or(true),
            "membership changes are recorded in slot order"
        );
        self.entries.push((from, normalized(members)));
    }

    /// Every member of any membership in force at or after `slot`.
    pub fn members_from(&self, slot: Slot) -> BTreeSet<NodeId> {
        let mut ids: BTreeSet<NodeId> = self.at(slot).iter().map(|m| m.id).collect();
        for (from, members) in &self.entries {
            if *from > slot {
                ids.extend(members.iter().map(|m| m.id));
            }
        }
        ids
    }

    /// Memberships in force at or after `slot`.
    pub fn configs_from(&self, slot: Slot) -> Vec<&[Member]> {
        let mut out = vec![self.at(slot)];
        for (from, members) in &self.entries {
            if *from > slot {
                out.push(members.as_slice());
            }
        }
        out
    }

    /// The slot from which the newest membership holds, if it is later than `slot`.
    pub fn pending_from(&self, slot: Slot) -> Option<Slot> {
        self.entries
            .last()
            .map(|(from, _)| *from)
            .filter(|from| *from > slot)
    }

    /// Drops entries that no slot at or after `slot` can use.
    pub fn forget_before(&mut self, slot: Slot) {
        while self.entries.len() > 1 && self.entries[1].0 <= slot {
            self.entries.remove(0);
        }
    }

    /// Every member named anywhere in the history (newest address wins).
    pub fn all_members(&self) -> Vec<Member> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for (_, members) in self.entries.iter().rev() {
            for m in members {
                if seen.insert(m.id) {
                    out.push(m.clone());
                }
            }
        }
        out
    }

    pub fn addr_of(&self, id: NodeId) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .flat_map(|(_, m)| m.iter())
            .find(|m| m.id == id)
            .map(|m| m.addr.as_str())
    }
}

fn normalized(mut members: Vec<Member>) -> Vec<Member> {
    members.sort();
    members.dedup_by_key(|m| m.id);
    members
}

/// True when `ids` hold a majority of `members`.
pub fn is_majority(members: &[Member], ids: &BTreeSet<NodeId>) -> bool {
    let votes = members.iter().filter(|m| ids.contains(&m.id)).count();
    !members.is_empty() && votes > members.len() / 2
}
