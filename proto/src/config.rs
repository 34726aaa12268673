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

    /// Records a change decided in `decided_slot`; returns whether it did.
    /// A change to an empty membership is not recorded (a group never loses
    /// its last member: no majority of nobody could ever decide again), nor
    /// one that leaves the membership as it is (the removal of a non-member).
    pub fn change(&mut self, decided_slot: Slot, members: Vec<Member>) -> bool {
        let from = decided_slot + WINDOW_SLOTS;
        assert!(
            self.entries.last().map(|(s, _)| *s <= from).unwrap_or(true),
            "membership changes are recorded in slot order"
        );
        let members = normalized(members);
        if members.is_empty() || members == self.latest() {
            return false;
        }
        self.entries.push((from, members));
        true
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

/// How an operator names a member (`concoord admin remove`): by the address
/// `concoord status` lists it under, or by its id (hex, as status shows it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberRef {
    Addr(String),
    Id(NodeId),
}

impl MemberRef {
    /// `HOST:PORT` names an address; a hexadecimal number an id.
    pub fn parse(text: &str) -> Result<MemberRef, String> {
        let text = text.trim();
        if let Some((host, port)) = text.rsplit_once(':') {
            if !host.is_empty() && port.parse::<u16>().is_ok() {
                return Ok(MemberRef::Addr(text.to_string()));
            }
        } else {
            let digits = text.strip_prefix("0x").unwrap_or(text);
            if let Ok(id) = NodeId::from_str_radix(digits, 16) {
                return Ok(MemberRef::Id(id));
            }
        }
        Err(format!(
            "{text:?} names no member: give its address (HOST:PORT) or its id \
             (hexadecimal), as `concoord status` shows them"
        ))
    }

    /// The member of `members` this names.
    pub fn find<'a>(&self, members: &'a [Member]) -> Option<&'a Member> {
        members.iter().find(|m| match self {
            MemberRef::Addr(addr) => m.addr == *addr,
            MemberRef::Id(id) => m.id == *id,
        })
    }
}

impl std::fmt::Display for MemberRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MemberRef::Addr(addr) => f.write_str(addr),
            MemberRef::Id(id) => write!(f, "{id:x}"),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: NodeId) -> Member {
        Member {
            id,
            addr: format!("127.0.0.1:{}", 9000 + id),
        }
    }

    #[test]
    fn a_removal_holds_a_window_later_and_majorities_use_the_new_membership() {
        let mut configs = ConfigHistory::genesis(vec![member(1), member(2), member(3)]);
        assert!(configs.change(10, vec![member(1), member(2)]));
        assert!(configs.change(11, vec![member(1)]));
        let from = 11 + WINDOW_SLOTS;
        assert_eq!(configs.at(from - 1).len(), 2);
        assert_eq!(configs.at(from), &[member(1)]);
        let alone: BTreeSet<NodeId> = [1].into();
        assert!(!is_majority(configs.at(from - 1), &alone), "1 of 2");
        assert!(is_majority(configs.at(from), &alone), "1 of 1");
        assert_eq!(configs.members_from(from), alone);
    }

    #[test]
    fn the_last_member_and_non_members_are_never_removed() {
        let mut configs = ConfigHistory::genesis(vec![member(1)]);
        assert!(!configs.change(5, Vec::new()), "empty membership recorded");
        assert!(!configs.change(6, vec![member(1)]), "no-op change recorded");
        assert_eq!(configs.latest(), &[member(1)]);
        assert_eq!(configs.pending_from(0), None);
    }

    #[test]
    fn members_are_named_by_address_or_hex_id() {
        let members = [member(1), member(0xab)];
        let by_addr = MemberRef::parse("127.0.0.1:9001").unwrap();
        assert_eq!(by_addr.find(&members), Some(&members[0]));
        let by_id = MemberRef::parse("ab").unwrap();
        assert_eq!(by_id, MemberRef::Id(0xab));
        assert_eq!(by_id.find(&members), Some(&members[1]));
        assert_eq!(MemberRef::parse("0xAB"), Ok(MemberRef::Id(0xab)));
        assert_eq!(
            MemberRef::parse("127.0.0.1:1").unwrap().find(&members),
            None
        );
        for bad in [
            "",
            "zz",
            "host:",
            ":14000",
            "127.0.0.1:99999",
            "1ffffffffffffffff",
        ] {
            assert!(MemberRef::parse(bad).is_err(), "{bad:?} parsed");
        }
    }
}
