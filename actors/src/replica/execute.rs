//! Executing decided commands on the objects: calls, parking and waking,
//! cancels, and the client table that makes each command id take effect once.

use super::*;

impl Replica {
    pub(super) fn execute(&mut self, slot: Slot, command: &Command, fx: &mut Effects) {
        match command {
            Command::Call {
                id,
                target,
                method,
                args,
                ack_below,
            } => self.execute_call(slot, *id, target, method, args, *ack_below, fx),
            Command::Cancel { id } => self.execute_cancel(slot, *id, fx),
            Command::AddMember(member) => {
                if self.configs.latest().contains(member) {
                    return; // a resent join
                }
                if self.removed.contains(&member.id) {
                    // Sent before it learned of its removal: adding it back
                    // would count a member that no longer serves.
                    log::warn!(
                        "slot {slot}: ignoring a join of member {:x} at {}: it was removed",
                        member.id,
                        member.addr
                    );
                    return;
                }
                let mut members: Vec<Member> = self
                    .configs
                    .latest()
                    .iter()
                    .filter(|m| m.addr != member.addr && m.id != member.id)
                    .cloned()
                    .collect();
                members.push(member.clone());
                log::info!(
                    "slot {slot}: member {:x} at {} joins",
                    member.id,
                    member.addr
                );
                self.configs.change(slot, members);
            }
            Command::RemoveMember(id) => {
                let members = self
                    .configs
                    .latest()
                    .iter()
                    .filter(|m| m.id != *id)
                    .cloned()
                    .collect();
                log::info!("slot {slot}: member {id:x} leaves");
                self.removed.insert(*id);
                self.configs.change(slot, members);
            }
            Command::Noop => {}
            Command::ExpireSession { client } => self.expire_session(slot, *client, fx),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn execute_call(
        &mut self,
        slot: Slot,
        id: CommandId,
        target: &Target,
        method: &str,
        args: &[u8],
        ack_below: u64,
        fx: &mut Effects,
    ) {
        if self.expired.contains_key(&id.client) {
            let e = ObjectError::new(
                SESSION_EXPIRED_KIND,
                "this client's session expired; what it held was released (start a new client)",
            );
            fx.replies.push((id, Err(e)));
            return;
        }
        let record = self.clients.entry(id.client).or_default();
        if ack_below > record.ack_below {
            record.ack_below = ack_below;
            // The client holds these replies; a parked one stays until answered.
            record
                .results
                .retain(|seq, state| *seq >= ack_below || *state == CommandState::Parked);
        }
        if id.seq < record.ack_below && !record.results.contains_key(&id.seq) {
            return; // an old duplicate whose reply the client already has
        }
        match record.results.get(&id.seq) {
            Some(CommandState::Done(reply)) => {
                fx.replies.push((id, reply.clone()));
                return;
            }
            Some(CommandState::Parked) => {
                fx.parked.push(id);
                return;
            }
            None => {}
        }
        if method == OPEN_SESSION_METHOD && target.is_default() {
            let outcome = Outcome::Reply(self.open_session(id.client, args));
            self.settle(id, outcome, None, fx);
            return;
        }
        let (outcome, follow) = self.run(id, slot, target, method, args, RunMode::First);
        if let Some(trace) = &mut self.trace {
            trace.applied.push(id);
        }
        self.settle(id, outcome, Some((&target.name, method, args)), fx);
        self.follow_up(slot, id, follow, fx);
    }

    /// Runs one call on the object. Primitives see which commands still wait
    /// through the client table.
    pub(super) fn run(
        &mut self,
        id: CommandId,
        slot: Slot,
        target: &Target,
        method: &str,
        args: &[u8],
        mode: RunMode,
    ) -> (Outcome, FollowUp) {
        let mut wakes = Vec::new();
        let clients = &self.clients;
        let waiting = |w: CommandId| {
            clients
                .get(&w.client)
                .is_some_and(|r| r.results.get(&w.seq) == Some(&CommandState::Parked))
        };
        let mut ctx = CallContext::new(id, slot, &mut wakes)
            .with_mode(mode)
            .with_waiting(&waiting);
        let (outcome, change) = self.objects.apply(target, method, args, &mut ctx);
        let reruns = ctx.take_reruns();
        let reinitialised = ctx.reinitialised();
        drop(ctx);
        let follow = FollowUp {
            // Only a re-init, a delete or a re-run needs the name later.
            object: if reinitialised || change == StoreChange::Deleted || !reruns.is_empty() {
                target.name.clone()
            } else {
                String::new()
            },
            wakes,
            reruns,
            reinitialised,
            deleted: change == StoreChange::Deleted,
        };
        (outcome, follow)
    }

    /// Records a run's outcome in the client table and answers the caller.
    /// `first_run` carries the call when this was its first run, so the
    /// caller hears that it waits and an object that re-runs calls has it.
    pub(super) fn settle(
        &mut self,
        id: CommandId,
        outcome: Outcome,
        first_run: Option<(&str, &str, &[u8])>,
        fx: &mut Effects,
    ) {
        let record = self.clients.entry(id.client).or_default();
        match outcome {
            Outcome::Reply(reply) => {
                fx.replies.push((id, reply.clone()));
                record.results.insert(id.seq, CommandState::Done(reply));
                // Only a call that waited before has a parked call to forget.
                if first_run.is_none() && record.parked_calls.remove(&id.seq).is_some() {
                    self.parked_total -= 1;
                }
            }
            Outcome::Park => {
                record.results.insert(id.seq, CommandState::Parked);
                if let Some((object, method, args)) = first_run {
                    fx.parked.push(id);
                    // The method and arguments only matter to an object that runs calls again.
                    let (method, args) = if self.objects.reruns_parked(object) {
                        (method.to_string(), args.to_vec())
                    } else {
                        (String::new(), Vec::new())
                    };
                    let call = ParkedCall {
                        object: object.to_string(),
                        method,
                        args,
                    };
                    if record.parked_calls.insert(id.seq, call).is_none() {
                        self.parked_total += 1;
                    }
                }
            }
        }
    }

    /// Delivers wake-ups, answers what a re-init left parked, and runs woken
    /// calls again, in the order asked, until nothing more is woken.
    pub(super) fn follow_up(
        &mut self,
        slot: Slot,
        cause: CommandId,
        first: FollowUp,
        fx: &mut Effects,
    ) {
        // Most calls wake nobody: no queues to allocate then.
        if first.reruns.is_empty() && !first.reinitialised && !first.deleted {
            if !first.wakes.is_empty() {
                self.deliver_wakes(first.wakes, fx);
            }
            return;
        }
        let mut pending = VecDeque::from([first]);
        let mut runs = 0usize;
        let mut woken: VecDeque<CommandId> = VecDeque::new();
        loop {
            while let Some(follow) = pending.pop_front() {
                self.deliver_wakes(follow.wakes, fx);
                if follow.reinitialised {
                    self.answer_parked_in(
                        &follow.object,
                        ObjectError::runtime("object was re-initialised while this call waited"),
                        fx,
                    );
                }
                if follow.deleted {
                    let gone =
                        ObjectError::new(DELETED, format!("{:?} was deleted", follow.object));
                    self.answer_parked_in(&follow.object, gone, fx);
                }
                woken.extend(follow.reruns);
            }
            let Some(id) = woken.pop_front() else { break };
            let Some(call) = self.parked_call(id) else {
                continue; // answered meanwhile
            };
            runs += 1;
            if runs > RERUNS_PER_COMMAND_MAX {
                log::error!(
                    "slot {slot}: calls woken by {cause} keep waking each other; \
                     {} stay parked",
                    woken.len() + 1
                );
                break;
            }
            let target = Target::named(call.object.clone(), "");
            let (outcome, follow) =
                self.run(id, slot, &target, &call.method, &call.args, RunMode::Woken);
            self.settle(id, outcome, None, fx);
            pending.push_back(follow);
        }
    }

    /// The call of `id` if it is parked and kept for a re-run.
    pub(super) fn parked_call(&self, id: CommandId) -> Option<ParkedCall> {
        let record = self.clients.get(&id.client)?;
        if record.results.get(&id.seq) != Some(&CommandState::Parked) {
            return None;
        }
        record
            .parked_calls
            .get(&id.seq)
            .filter(|call| !call.method.is_empty())
            .cloned()
    }

    /// After `concoord_init` or `concoord_delete`: nothing waits on the old
    /// object any more; whatever still does is answered `error`.
    pub(super) fn answer_parked_in(&mut self, object: &str, error: ObjectError, fx: &mut Effects) {
        let reply: Reply = Err(error);
        let parked_total = &mut self.parked_total;
        for (client, record) in &mut self.clients {
            let ClientRecord {
                results,
                parked_calls,
                ..
            } = record;
            parked_calls.retain(|seq, call| {
                if call.object != object {
                    return true;
                }
                if let Some(state) = results.get_mut(seq) {
                    if *state == CommandState::Parked {
                        *state = CommandState::Done(reply.clone());
                        fx.replies
                            .push((CommandId::new(*client, *seq), reply.clone()));
                    }
                }
                *parked_total -= 1;
                false
            });
        }
    }

    pub(super) fn execute_cancel(&mut self, slot: Slot, id: CommandId, fx: &mut Effects) {
        let record = self.clients.entry(id.client).or_default();
        if id.seq < record.ack_below && !record.results.contains_key(&id.seq) {
            return;
        }
        match record.results.get(&id.seq) {
            Some(CommandState::Done(reply)) => fx.replies.push((id, reply.clone())),
            Some(CommandState::Parked) => {
                let call = record.parked_calls.get(&id.seq).cloned();
                let object = call.as_ref().map(|c| c.object.clone()).unwrap_or_default();
                if let Some(call) = call.filter(|c| !c.method.is_empty()) {
                    // Its primitives answer as timed out, or it stays parked
                    // (a Condition wait re-acquiring its lock).
                    let target = Target::named(call.object.clone(), "");
                    let (outcome, follow) = self.run(
                        id,
                        slot,
                        &target,
                        &call.method,
                        &call.args,
                        RunMode::DeadlinePassed,
                    );
                    self.settle(id, outcome, None, fx);
                    self.follow_up(slot, id, follow, fx);
                    return;
                }
                let mut wakes = Vec::new();
                let reply = {
                    let mut ctx = CallContext::new(id, slot, &mut wakes);
                    self.objects.cancel(&object, id, &mut ctx)
                };
                if let Some(reply) = reply {
                    wakes.insert(0, (id, reply));
                }
                self.deliver_wakes(wakes, fx);
            }
            None => {
                // Ordered before the call itself: the call, if it ever comes, is void.
                let reply: Reply = Err(ObjectError::new(
                    CANCELLED_KIND,
                    "the call was cancelled before it was ordered",
                ));
                record
                    .results
                    .insert(id.seq, CommandState::Done(reply.clone()));
                fx.replies.push((id, reply));
            }
        }
    }

    pub(super) fn deliver_wakes(&mut self, wakes: Vec<(CommandId, Reply)>, fx: &mut Effects) {
        for (id, reply) in wakes {
            let record = self.clients.entry(id.client).or_default();
            if record.results.get(&id.seq) == Some(&CommandState::Parked) {
                record
                    .results
                    .insert(id.seq, CommandState::Done(reply.clone()));
                if record.parked_calls.remove(&id.seq).is_some() {
                    self.parked_total -= 1;
                }
                fx.replies.push((id, reply));
            } else {
                log::warn!("object woke {id}, which was not parked; ignored");
            }
        }
    }
}
