//! The connection task behind a [`crate::Client`]: finds the leader,
//! follows leader changes, resends the same command id after a timeout or a
//! disconnect, cancels a parked call at its deadline, and gives up only at
//! the caller's deadline.

use crate::tls::{LinkRead, LinkWrite};
use crate::{ClientError, ClientOptions, SessionState};
use concoord_objects::{ClientId, CommandId, Reply, Target};
use concoord_proto::wire::{Frame, FrameCodec, StatusInfo};
use futures::{FutureExt, SinkExt, StreamExt};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{FramedRead, FramedWrite};

mod dial;
mod session;

pub(crate) enum Op {
    Call {
        target: Target,
        method: String,
        args: Vec<u8>,
        deadline: Instant,
        /// When the deadline passes, cancel the parked call and return its outcome.
        cancel_at_deadline: bool,
        /// A read that may be answered from one replica's possibly older state.
        stale: bool,
        done: oneshot::Sender<Result<Vec<u8>, ClientError>>,
    },
    Status {
        done: oneshot::Sender<Result<StatusInfo, ClientError>>,
    },
}

pub(crate) struct Pending {
    target: Target,
    method: String,
    args: Vec<u8>,
    deadline: Instant,
    cancel_at_deadline: bool,
    stale: bool,
    cancel_sent: bool,
    /// The replica told us the call waits in a queue: no point resending it
    /// while this connection lives.
    parked: bool,
    last_sent: Option<Instant>,
    done: oneshot::Sender<Result<Vec<u8>, ClientError>>,
}

type Reader = FramedRead<LinkRead, FrameCodec>;
type Writer = FramedWrite<LinkWrite, FrameCodec>;

pub(crate) struct Core {
    pub(crate) id: ClientId,
    pub(crate) options: ClientOptions,
    /// The member list as given (names, for DNS bootstrap): resolved
    /// before the first connect and again when every known member failed.
    pub(crate) seeds: Vec<String>,
    pub(crate) seeds_resolved: bool,
    pub(crate) addrs: Vec<String>,
    pub(crate) next_addr: usize,
    /// The replica to try next (a redirect's leader).
    pub(crate) preferred: Option<String>,
    pub(crate) next_seq: u64,
    /// Boxed: a B-tree shifts its values on insert and remove, and moving
    /// whole `Pending`s was ~5% of a pipelined client's CPU.
    pub(crate) pending: BTreeMap<u64, Box<Pending>>,
    /// Calls (and cancels) not written on the current connection yet, in order.
    pub(crate) unsent: Vec<u64>,
    pub(crate) status_waiters: Vec<oneshot::Sender<Result<StatusInfo, ClientError>>>,
    pub(crate) status_requested: bool,
    /// The session's open call has been queued (the first call does it).
    pub(crate) session_requested: bool,
    /// When the last frame went out: an idle session sends a keep-alive
    /// every third of its TTL.
    pub(crate) last_write: Instant,
    /// The command number of the session's opening call.
    pub(crate) session_seq: Option<u64>,
    pub(crate) session: tokio::sync::watch::Sender<SessionState>,
}

const TICK: Duration = Duration::from_millis(50);

impl Core {
    pub(crate) async fn run(mut self, mut ops: mpsc::UnboundedReceiver<Op>) {
        let mut conn: Option<(Reader, Writer, String)> = None;
        let mut ticker = tokio::time::interval(TICK);
        let mut last_progress = Instant::now();
        // The last frame in or out: spinning goes on for `options.spin` after it.
        let mut last_traffic = Instant::now();
        // The last frame received: with a session, the leader answers every
        // keep-alive, so a connection silent for half a TTL is dead even if
        // TCP has not noticed (a partition rather than a crash).
        let mut last_heard = Instant::now();
        loop {
            let has_work = !self.pending.is_empty()
                || !self.status_waiters.is_empty()
                || self.keep_alive_due();
            if conn.is_none() && has_work {
                match self.connect().await {
                    Ok(c) => {
                        conn = Some(c);
                        last_progress = Instant::now();
                        last_heard = last_progress;
                        // A new connection may reach a new leader: say at once
                        // that the session lives (it finds the leader if not).
                        if let Some(ttl) = self.options.session_ttl {
                            self.last_write =
                                last_progress.checked_sub(ttl).unwrap_or(self.last_write);
                        }
                        for p in self.pending.values_mut() {
                            p.last_sent = None;
                            p.parked = false;
                        }
                        self.unsent = self.pending.keys().copied().collect();
                        self.status_requested = false;
                    }
                    Err(fatal) => {
                        self.fail_all(fatal);
                        continue;
                    }
                }
            }
            if let Some((_, writer, _)) = &mut conn {
                if self.keep_alive_due() && self.unsent.is_empty() {
                    if writer.send(Frame::KeepAlive).await.is_err() {
                        conn = None;
                        continue;
                    }
                    self.last_write = Instant::now();
                }
                match self.flush_sends(writer).await {
                    Ok(true) => {
                        last_traffic = Instant::now();
                        self.last_write = last_traffic;
                    }
                    Ok(false) => {}
                    Err(()) => {
                        conn = None;
                        continue;
                    }
                }
            }
            let spinning = conn.is_some()
                && !self.pending.is_empty()
                && !self.options.spin.is_zero()
                && last_traffic.elapsed() < self.options.spin;
            let frame = async {
                match &mut conn {
                    Some((reader, _, _)) => reader.next().await,
                    None => std::future::pending().await,
                }
            };
            let spin = async {
                if spinning {
                    tokio::task::yield_now().await;
                } else {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                op = ops.recv() => match op {
                    None => return,
                    Some(op) => {
                        self.take(op);
                        // With other calls outstanding, callers woken by the replies
                        // just handed out are about to call again: let them, so their
                        // calls share one write. A lone caller goes out at once.
                        if self.pending.len() > 1 {
                            tokio::task::yield_now().await;
                        }
                        while let Ok(op) = ops.try_recv() {
                            self.take(op);
                        }
                    }
                },
                frame = frame => {
                    let mut next = Some(frame);
                    // Handle every frame already read before writing again.
                    while let Some(frame) = next.take() {
                        match frame {
                            Some(Ok(frame)) => {
                                last_progress = Instant::now();
                                last_traffic = last_progress;
                                last_heard = last_progress;
                                if let Some(redirect_to) = self.on_frame(frame) {
                                    self.preferred = redirect_to;
                                    conn = None;
                                }
                            }
                            Some(Err(e)) => {
                                log::debug!("client: connection error: {e}");
                                conn = None;
                            }
                            None => conn = None,
                        }
                        if let Some((reader, _, _)) = &mut conn {
                            next = reader.next().now_or_never();
                        }
                    }
                },
                _ = spin => {
                    // Let other runnable threads on this CPU go first.
                    std::thread::yield_now();
                },
                _ = ticker.tick() => {
                    self.expire();
                    if let (Some(ttl), Some((_, _, addr))) = (self.session_alive_ttl(), &conn) {
                        if last_heard.elapsed() >= ttl / 2 {
                            log::debug!("client: nothing from {addr} for half a session TTL; trying another replica");
                            conn = None;
                            self.preferred = None;
                            continue;
                        }
                    }
                    let stale = self.pending.values().any(|p| {
                        !p.parked
                            && p.last_sent.is_some_and(|t| t.elapsed() >= self.options.resend_after)
                    });
                    if stale && last_progress.elapsed() >= self.options.resend_after {
                        // The replica we talk to is not getting our calls through: try another.
                        if let Some((_, _, addr)) = &conn {
                            log::debug!("client: no answer from {addr}; trying another replica");
                        }
                        conn = None;
                        self.preferred = None;
                    }
                }
            }
        }
    }

    fn take(&mut self, op: Op) {
        let refused = match &*self.session.borrow() {
            SessionState::Refused(why) => Some(why.clone()),
            _ => None,
        };
        match (op, refused) {
            (Op::Call { done, .. }, Some(why)) => {
                let _ = done.send(Err(ClientError::Refused(format!(
                    "the group refused this client's session: {why}"
                ))));
            }
            (op, _) => {
                if !self.session_requested && matches!(op, Op::Call { .. }) {
                    self.open_session();
                }
                self.queue(op);
            }
        }
    }

    fn queue(&mut self, op: Op) {
        match op {
            Op::Call {
                target,
                method,
                args,
                deadline,
                cancel_at_deadline,
                stale,
                done,
            } => {
                let seq = self.next_seq;
                self.next_seq += 1;
                self.unsent.push(seq);
                self.pending.insert(
                    seq,
                    Box::new(Pending {
                        target,
                        method,
                        args,
                        deadline,
                        cancel_at_deadline,
                        stale,
                        cancel_sent: false,
                        parked: false,
                        last_sent: None,
                        done,
                    }),
                );
            }
            Op::Status { done } => self.status_waiters.push(done),
        }
    }

    fn ack_below(&self) -> u64 {
        self.pending.keys().next().copied().unwrap_or(self.next_seq)
    }

    /// Writes what has not been sent on this connection; true if it wrote.
    async fn flush_sends(&mut self, writer: &mut Writer) -> Result<bool, ()> {
        let ack_below = self.ack_below();
        let mut wrote = false;
        let now = Instant::now();
        // Until the group has answered the session's opening call, nothing
        // else goes: a call must not run under a session the group refuses.
        let opening = *self.session.borrow() == SessionState::Opening;
        let (held, unsent): (Vec<u64>, Vec<u64>) = std::mem::take(&mut self.unsent)
            .into_iter()
            .partition(|seq| opening && Some(*seq) != self.session_seq);
        self.unsent = held;
        for seq in unsent {
            let Some(p) = self.pending.get_mut(&seq) else {
                continue;
            };
            if p.last_sent.is_some() {
                continue;
            }
            p.last_sent = Some(now);
            let id = CommandId::new(self.id, seq);
            let frame = if p.cancel_sent {
                Frame::Cancel { id }
            } else if p.stale {
                Frame::Read {
                    id,
                    target: p.target.clone(),
                    method: p.method.clone(),
                    args: p.args.clone(),
                    stale: true,
                }
            } else {
                Frame::Call {
                    id,
                    target: p.target.clone(),
                    method: p.method.clone(),
                    args: p.args.clone(),
                    ack_below,
                }
            };
            writer.feed(frame).await.map_err(|_| ())?;
            wrote = true;
        }
        if !self.status_waiters.is_empty() && !self.status_requested {
            self.status_requested = true;
            writer.feed(Frame::StatusRequest).await.map_err(|_| ())?;
            wrote = true;
        }
        if wrote {
            writer.flush().await.map_err(|_| ())?;
        }
        Ok(wrote)
    }

    /// Handles one frame; returns `Some(target)` when we should reconnect.
    fn on_frame(&mut self, frame: Frame) -> Option<Option<String>> {
        match frame {
            Frame::Reply { id, reply } => {
                if id.client == self.id {
                    self.learn_session(id.seq, &reply);
                    if let Some(p) = self.pending.remove(&id.seq) {
                        let _ = p.done.send(to_result(reply));
                    }
                }
                None
            }
            Frame::SessionExpired => {
                self.set_session(SessionState::Expired);
                None
            }
            Frame::Parked { id } => {
                if let Some(p) = self
                    .pending
                    .get_mut(&id.seq)
                    .filter(|_| id.client == self.id)
                {
                    p.parked = true;
                }
                None
            }
            Frame::Redirect {
                leader, members, ..
            } => {
                self.learn(&members);
                Some(leader)
            }
            Frame::Status(status) => {
                for w in self.status_waiters.drain(..) {
                    let _ = w.send(Ok((*status).clone()));
                }
                self.status_requested = false;
                None
            }
            Frame::Refused { kind, message } if kind == "Busy" => {
                log::debug!("client: {message}");
                None
            }
            Frame::Refused { kind, message } => {
                self.fail_all(ClientError::Refused(format!("{kind}: {message}")));
                Some(None)
            }
            _ => None,
        }
    }

    fn expire(&mut self) {
        let now = Instant::now();
        let expired: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| now >= p.deadline)
            .map(|(s, _)| *s)
            .collect();
        for seq in expired {
            let p = self.pending.get_mut(&seq).expect("listed above");
            if p.cancel_at_deadline && !p.cancel_sent {
                p.cancel_sent = true;
                p.parked = false;
                p.last_sent = None;
                self.unsent.push(seq);
                p.deadline = now + self.options.cancel_grace;
                continue;
            }
            let p = self.pending.remove(&seq).expect("listed above");
            let _ = p.done.send(Err(ClientError::Unavailable(format!(
                "no answer from a quorum before the deadline (tried {})",
                self.addrs.join(",")
            ))));
        }
    }

    fn fail_all(&mut self, error: ClientError) {
        for (_, p) in std::mem::take(&mut self.pending) {
            let _ = p.done.send(Err(error.clone()));
        }
        for w in self.status_waiters.drain(..) {
            let _ = w.send(Err(error.clone()));
        }
    }
}

fn to_result(reply: Reply) -> Result<Vec<u8>, ClientError> {
    reply.map_err(ClientError::from_reply_error)
}
