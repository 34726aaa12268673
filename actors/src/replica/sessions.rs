//! Client sessions as replicated state: opened by a call, ended by an
//! expiry the leader proposes, releasing what the session held.

use super::*;

impl Replica {
    /// `concoord_open_session(ttl_ms)`: opens the caller's session, or sets
    /// its TTL anew; the TTL must be within the group's bounds.
    pub(super) fn open_session(&mut self, client: ClientId, args: &[u8]) -> Reply {
        let args = concoord_objects::Args::decode(args)?;
        args.at_most(1)?;
        let ttl_ms: u64 = args.get(0, "ttl_ms")?;
        let limits = self.objects.limits();
        if ttl_ms < limits.session_ttl_min_ms || ttl_ms > limits.session_ttl_max_ms {
            return Err(ObjectError::value(format!(
                "a session TTL must be between {} and {} ms; {ttl_ms} ms asked",
                limits.session_ttl_min_ms, limits.session_ttl_max_ms
            )));
        }
        if self.sessions.insert(client, ttl_ms) != Some(ttl_ms) {
            self.sessions_opened.push((client, ttl_ms));
        }
        Ok(concoord_objects::encode_value(&()))
    }

    /// The leader decided the session of `client` is gone: every replica
    /// releases what it held, answers its parked calls with SessionExpired
    /// and forgets its cached replies, at this slot.
    pub(super) fn expire_session(&mut self, slot: Slot, client: ClientId, fx: &mut Effects) {
        if self.sessions.remove(&client).is_none() {
            return; // expired already, or never opened
        }
        log::info!("slot {slot}: session {client:x} expired");
        self.sessions_ended.push(client);
        self.expired.insert(client, slot);
        while self.expired.len() > EXPIRED_SESSIONS_KEEP {
            let oldest = self
                .expired
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(c, _)| *c)
                .expect("not empty");
            self.expired.remove(&oldest);
        }
        let expired: Reply = Err(ObjectError::new(
            SESSION_EXPIRED_KIND,
            "the session expired while this call waited",
        ));
        // Its parked calls leave their queues first, so nothing is handed to them.
        if let Some(record) = self.clients.get(&client) {
            let parked: Vec<(u64, String)> = record
                .parked_calls
                .iter()
                .map(|(seq, call)| (*seq, call.object.clone()))
                .collect();
            for (seq, object) in parked {
                let id = CommandId::new(client, seq);
                let mut wakes = Vec::new();
                {
                    let mut ctx = CallContext::new(id, slot, &mut wakes);
                    let _ = self.objects.cancel(&object, id, &mut ctx);
                }
                self.deliver_wakes(wakes, fx);
                self.deliver_wakes(vec![(id, expired.clone())], fx);
            }
        }
        let mut wakes = Vec::new();
        let reruns = {
            let mut ctx = CallContext::new(CommandId::new(client, 0), slot, &mut wakes);
            self.objects.session_ended(client, &mut ctx);
            ctx.take_reruns()
        };
        let follow = FollowUp {
            object: String::new(),
            wakes,
            reruns,
            reinitialised: false,
            deleted: false,
        };
        self.follow_up(slot, CommandId::new(client, 0), follow, fx);
        if let Some(record) = self.clients.remove(&client) {
            self.parked_total -= record.parked_calls.len();
        }
    }
}
