//! The leader role's actor: ticks, client commands and reads, peer messages.

use super::*;

/// The leader role, ticking for heartbeats, retries and elections.
pub struct LeaderActor {
    pub(super) logic: Leader,
    /// Which calls go down the read path.
    pub(super) reads: crate::replica::ReadRouting,
    pub(super) node: NodeHandle,
    pub(super) tick_ms: u64,
    pub(super) wal: Option<Arc<Wal>>,
}

impl LeaderActor {
    /// In durable mode, decisions for the local replica are written down
    /// (so a restart replays them) and Prepares to other nodes wait until
    /// this node's acceptor has its promise of the ballot on disk.
    fn carry_out(&self, mut fx: Effects) {
        let Some(wal) = &self.wal else {
            return self.node.carry_out(fx);
        };
        let me = self.node.shared.me;
        let ballot = self.logic.ballot();
        let chosen = crate::storage::chosen_to_record(me, ballot, &fx.sends);
        if !chosen.is_empty() {
            wal.append(chosen);
        }
        let (prepares, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut fx.sends)
            .into_iter()
            .partition(|(to, msg)| *to != me && matches!(msg, PeerMsg::Prepare(_)));
        fx.sends = rest;
        // The Prepare to this node's acceptor goes first (same mailbox, in order).
        self.node.carry_out(fx);
        if !prepares.is_empty() {
            self.node.acceptor.do_send(SendWhenDurable(prepares));
        }
    }
}

impl Actor for LeaderActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let started = Instant::now();
        ctx.run_interval(Duration::from_millis(self.tick_ms), move |actor, _| {
            let mut fx = Effects::default();
            actor
                .logic
                .tick(started.elapsed().as_millis() as u64, &mut fx);
            actor.carry_out(fx);
            let metrics = &actor.node.shared.metrics;
            metrics.observe_leader(actor.logic.stats(), actor.logic.leader_changes());
            metrics.ballot_round.set(actor.logic.ballot().round as i64);
            metrics.is_leader.set(actor.logic.is_active() as i64);
        });
    }
}

impl Handler<Deliver> for LeaderActor {
    type Result = ();
    fn handle(&mut self, m: Deliver, _: &mut Context<Self>) {
        let decided_before = self.logic.stats().slots_decided;
        let mut fx = Effects::default();
        self.logic.handle(m.from, m.msg, &mut fx);
        self.carry_out(fx);
        if self.logic.stats().slots_decided != decided_before {
            let metrics = &self.node.shared.metrics;
            let batch = self.logic.stats().last_batch_commands;
            metrics.batch_commands.observe(batch as f64);
            metrics.observe_leader(self.logic.stats(), self.logic.leader_changes());
        }
    }
}

impl Handler<PeerLost> for LeaderActor {
    type Result = ();
    fn handle(&mut self, m: PeerLost, _: &mut Context<Self>) {
        let mut fx = Effects::default();
        self.logic.peer_lost(m.0, &mut fx);
        self.carry_out(fx);
    }
}

impl Handler<Touch> for LeaderActor {
    type Result = MessageResult<Touch>;
    fn handle(&mut self, m: Touch, _: &mut Context<Self>) -> Self::Result {
        if self.logic.heard_client(m.client) {
            return MessageResult(None);
        }
        let configs = self.logic.configs();
        let leader = self
            .logic
            .leader_hint()
            .and_then(|h| configs.addr_of(h))
            .map(str::to_string);
        let members = configs.latest().iter().map(|m| m.addr.clone()).collect();
        MessageResult(Some((leader, members)))
    }
}

impl Handler<Submit> for LeaderActor {
    type Result = Result<(), NotAccepted>;
    fn handle(&mut self, m: Submit, _: &mut Context<Self>) -> Self::Result {
        let mut fx = Effects::default();
        let taken = self.take(m, &mut fx);
        self.carry_out(fx);
        taken
    }
}

impl Handler<SubmitMany> for LeaderActor {
    type Result = ();
    fn handle(&mut self, m: SubmitMany, _: &mut Context<Self>) {
        let mut fx = Effects::default();
        self.logic.hold_proposals();
        for command in m.commands {
            let submit = Submit {
                command,
                connection: m.connection,
                via_log: false,
            };
            let _ = self.take(submit, &mut fx);
        }
        self.logic.propose_held(&mut fx);
        // One round of messages for them all.
        self.carry_out(fx);
    }
}

impl LeaderActor {
    /// Sends a client on to the leader `hint` names, if any.
    fn not_leader(&self, hint: Option<NodeId>) -> ConnectionEvent {
        let configs = self.logic.configs();
        ConnectionEvent::NotLeader {
            leader: hint.and_then(|h| configs.addr_of(h)).map(str::to_string),
            members: configs.latest().iter().map(|m| m.addr.clone()).collect(),
        }
    }

    /// Takes a client's command into the leader's queue or read rounds, or
    /// tells its connection why not. The messages it causes go to `fx`.
    fn take(&mut self, m: Submit, fx: &mut Effects) -> Result<(), NotAccepted> {
        let id = m.command.id();
        let read = !m.via_log
            && matches!(&m.command, Command::Call { target, method, .. }
                if self.reads.may_read(target, method));
        if !read && !self.logic.is_active() {
            let hint = self.logic.leader_hint();
            if let (Some(id), Some(connection)) = (id, m.connection) {
                self.node.notify(connection, id, self.not_leader(hint));
            }
            return Err(NotAccepted::NotLeader(hint));
        }
        // Register first: the reply may be produced while this call is still running.
        if let (Some(id), Some(connection)) = (id, m.connection) {
            self.node.register(id, connection);
        }
        let taken = if read {
            self.logic.on_read(m.command, fx)
        } else {
            self.logic.on_request(m.command, fx)
        };
        if let (Err(refused), Some(id), Some(connection)) = (&taken, id, m.connection) {
            self.node.unregister(id, connection);
            let event = match refused {
                NotAccepted::Busy => ConnectionEvent::Busy,
                // A follower that does not know the leader yet.
                NotAccepted::NotLeader(hint) => self.not_leader(*hint),
            };
            self.node.notify(connection, id, event);
        }
        taken
    }
}

impl Handler<RequestRemoval> for LeaderActor {
    type Result = Result<Member, RemovalRefused>;
    fn handle(&mut self, m: RequestRemoval, _: &mut Context<Self>) -> Self::Result {
        let mut fx = Effects::default();
        let answer = self.logic.request_removal(&m.0, &mut fx);
        self.node.carry_out(fx);
        answer
    }
}

impl Handler<GetLeaderView> for LeaderActor {
    type Result = MessageResult<GetLeaderView>;
    fn handle(&mut self, _: GetLeaderView, _: &mut Context<Self>) -> Self::Result {
        MessageResult(LeaderView {
            active: self.logic.is_active(),
            ballot: self.logic.ballot(),
            leader_hint: self.logic.leader_hint(),
            next_slot: self.logic.next_slot(),
            leader_heard_ago_ms: self.logic.leader_heard_ago_ms(),
            quorum_heard_ago_ms: self.logic.quorum_heard_ago_ms(),
            election_timeout_ms: self.logic.election_timeout_ms(),
        })
    }
}

impl Handler<Stop> for LeaderActor {
    type Result = ();
    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
