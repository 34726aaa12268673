//! The acceptor role's actor: promises and accepts, on disk first when durable.

use super::*;

/// The acceptor role.
pub struct AcceptorActor {
    pub(super) logic: Acceptor,
    pub(super) node: NodeHandle,
    pub(super) wal: Option<Arc<Wal>>,
    /// Messages waiting for the log to reach the sequence number they follow.
    pub(super) held: VecDeque<(u64, Vec<(NodeId, PeerMsg)>)>,
}

impl AcceptorActor {
    /// Sends now, or, in durable mode, once everything appended so far is
    /// on disk. Decisions for the local replica acknowledge nothing and go at once.
    fn send_when_durable(&mut self, sends: Vec<(NodeId, PeerMsg)>) {
        let Some(wal) = &self.wal else {
            return self.node.send_all(sends);
        };
        let appended = wal.appended();
        if self.held.is_empty() && appended <= wal.synced() {
            return self.node.send_all(sends);
        }
        let (now, later): (Vec<_>, Vec<_>) = sends.into_iter().partition(|(_, msg)| {
            // A read-index answer reports the promise in memory, which
            // is never below the one on disk: it need not wait.
            matches!(msg, PeerMsg::Decision(_) | PeerMsg::ReadIndexAck(_))
        });
        self.node.send_all(now);
        if !later.is_empty() {
            self.held.push_back((appended, later));
        }
    }
}

impl Actor for AcceptorActor {
    type Context = Context<Self>;
}

impl Handler<Deliver> for AcceptorActor {
    type Result = ();
    fn handle(&mut self, m: Deliver, _: &mut Context<Self>) {
        let mut fx = Effects::default();
        self.logic.handle(m.from, m.msg, &mut fx);
        if let Some(wal) = &self.wal {
            let records = self.logic.take_journal();
            if !records.is_empty() {
                wal.append(records);
            }
        }
        self.send_when_durable(fx.sends);
    }
}

impl Handler<SendWhenDurable> for AcceptorActor {
    type Result = ();
    fn handle(&mut self, m: SendWhenDurable, _: &mut Context<Self>) {
        self.send_when_durable(m.0);
    }
}

impl Handler<Synced> for AcceptorActor {
    type Result = ();
    fn handle(&mut self, m: Synced, _: &mut Context<Self>) {
        while self.held.front().is_some_and(|(seq, _)| *seq <= m.0) {
            let (_, sends) = self.held.pop_front().expect("front checked");
            self.node.send_all(sends);
        }
    }
}

impl Handler<Stop> for AcceptorActor {
    type Result = ();
    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
