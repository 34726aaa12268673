//! A removed member's last duty: it may hold the only copy of the decisions
//! that put its removal in force (a removed leader decides them and may
//! stop before the others hear). Were it to stop then, the others would
//! still count the old membership for those slots, in which they may be
//! too few to elect anyone, for good (found by the nemesis: a member
//! removed while another was down). So it asks each member of the
//! membership that replaced it how far it has executed, catches up those
//! behind, and stops once a majority have every slot up to its removal.

use super::*;
use crate::message::CatchUpRequest;

/// How long a removed member waits at most for the others to confirm.
/// Beyond it, it stops anyway and says who did not answer.
pub const LEAVING_CONFIRM_MAX_MS: u64 = 30_000;

#[derive(Clone, Debug)]
pub(super) struct Leaving {
    /// The members must have executed every slot below this.
    upto: Slot,
    /// How far each member of the new membership has said it executed.
    learned: BTreeMap<NodeId, Slot>,
}

/// Where a removed member's leaving stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeavingStatus {
    /// This replica is a member of a membership in force now or later (or
    /// never had the group's state).
    NotRemoved,
    /// Waiting for these members to confirm.
    Waiting(Vec<NodeId>),
    /// A majority of the new membership have every slot up to the removal.
    Done,
}

impl LeavingStatus {
    /// Whether a node removed `waited_ms` ago may stop: a majority of the
    /// new membership confirmed (or it waited [`LEAVING_CONFIRM_MAX_MS`]),
    /// and its [`crate::node::REMOVED_GRACE_MS`] is over.
    pub fn may_stop(&self, waited_ms: u64) -> bool {
        waited_ms >= crate::node::REMOVED_GRACE_MS
            && (*self == LeavingStatus::Done || waited_ms >= LEAVING_CONFIRM_MAX_MS)
    }
}

impl Replica {
    /// Asks the members that have not confirmed yet; call it periodically
    /// once the node is removed. Says whether it may stop.
    pub fn leaving_tick(&mut self, fx: &mut Effects) -> LeavingStatus {
        if !self.has_state || self.configs.members_from(self.executed).contains(&self.me) {
            return LeavingStatus::NotRemoved;
        }
        let upto = self.executed;
        let leaving = self.leaving.get_or_insert_with(|| Leaving {
            upto,
            learned: BTreeMap::new(),
        });
        let members = self.configs.latest();
        let confirmed = members
            .iter()
            .filter(|m| {
                leaving
                    .learned
                    .get(&m.id)
                    .is_some_and(|&e| e >= leaving.upto)
            })
            .count();
        if confirmed > members.len() / 2 {
            return LeavingStatus::Done;
        }
        let mut waiting = Vec::new();
        for m in members {
            if !matches!(leaving.learned.get(&m.id), Some(&e) if e >= leaving.upto) {
                waiting.push(m.id);
                fx.send(m.id, PeerMsg::Leaving { upto: leaving.upto });
            }
        }
        LeavingStatus::Waiting(waiting)
    }

    pub(super) fn on_leaving(&mut self, from: NodeId, _upto: Slot, fx: &mut Effects) {
        fx.send(
            from,
            PeerMsg::Learned {
                executed: self.executed,
                needs_snapshot: !self.has_state,
            },
        );
    }

    pub(super) fn on_learned(
        &mut self,
        from: NodeId,
        executed: Slot,
        needs_snapshot: bool,
        fx: &mut Effects,
    ) {
        let Some(leaving) = &mut self.leaving else {
            return;
        };
        let upto = leaving.upto;
        let known = leaving.learned.entry(from).or_insert(executed);
        *known = (*known).max(executed);
        if executed < upto || needs_snapshot {
            let request = CatchUpRequest {
                from_slot: executed,
                needs_snapshot,
            };
            self.on_catch_up_request(from, request, fx);
        }
    }
}
