//! Each client connection as a [`ClientConnection`] actor: frames in,
//! replies and redirects out through a writer task.

use super::handshake::wire_error_kind;
use crate::message::Command;
use crate::node::{ConnectionEvent, ConnectionEvents, ConnectionKey, NodeHandle};
use crate::wire::{Frame, FrameCodec, WireError};
use actix::prelude::*;
use concoord_client::tls::{LinkRead, LinkWrite};
use futures::SinkExt;
use std::net::SocketAddr;
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, FramedWrite};

/// Frames queued for one client connection before it is considered stuck.
pub const CONNECTION_QUEUE_MAX: usize = 65_536;
/// A call's encoded arguments may be this large at most: larger ones are
/// refused (kind LimitExceeded) before they reach the log.
pub const CALL_ARGS_MAX: usize = 1 << 20;
/// An object name and type longer than this together never reach the log
/// (the group's own name limit, 256 bytes by default, applies in order).
pub const CALL_TARGET_MAX: usize = 4096;
/// Named objects listed in one `Objects` frame at most (names are at most
/// 256 bytes, so a page stays far below the frame limit).
pub const OBJECTS_PAGE_MAX: usize = 10_000;

/// Serves a client the handshake has welcomed: a writer task sends the
/// queued frames, a [`ClientConnection`] handles what the client sends
/// until it goes or the replica shuts down.
pub(super) fn serve_client(
    client: concoord_objects::ClientId,
    node: NodeHandle,
    peer: SocketAddr,
    reader: FramedRead<LinkRead, FrameCodec>,
    writer: FramedWrite<LinkWrite, FrameCodec>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let (tx, rx) = mpsc::channel(CONNECTION_QUEUE_MAX);
    actix::spawn(write_frames(writer, rx));
    let connection = ClientConnection {
        client,
        node,
        out: tx,
        peer,
        arrived: crate::id_hash::IdMap::default(),
        batch_arrived: None,
        key: None,
        to_submit: Vec::new(),
    };
    ClientConnection::create(move |ctx| {
        // Every frame one read brought, at once: their commands reach the
        // leader as one message (a pipelining client sends many per read).
        ctx.add_stream(futures::StreamExt::ready_chunks(
            reader,
            FRAMES_PER_WAKEUP_MAX,
        ));
        let mut shutdown = shutdown;
        ctx.add_stream(futures::stream::once(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
            ShutdownSignal
        }));
        connection
    });
}

/// Writes queued frames, many per syscall when they queue up.
async fn write_frames(
    mut writer: FramedWrite<LinkWrite, FrameCodec>,
    mut rx: mpsc::Receiver<Frame>,
) {
    while let Some(frame) = rx.recv().await {
        if writer.feed(frame).await.is_err() {
            return;
        }
        while let Ok(frame) = rx.try_recv() {
            if writer.feed(frame).await.is_err() {
                return;
            }
        }
        if writer.flush().await.is_err() {
            return;
        }
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct ShutdownSignal;

/// One client connection: frames in, replies and redirects out.
pub struct ClientConnection {
    /// The client id it said hello with: whose session keep-alives renew.
    client: concoord_objects::ClientId,
    node: NodeHandle,
    out: mpsc::Sender<Frame>,
    peer: SocketAddr,
    /// When each call in progress arrived, for the commit latency metric.
    arrived: crate::id_hash::IdMap<concoord_objects::CommandId, std::time::Instant>,
    /// The time the frames being handled arrived: one clock read per wake-up.
    batch_arrived: Option<std::time::Instant>,
    /// This connection's registration with the node, from `started` on.
    key: Option<ConnectionKey>,
    /// Commands of the frames being handled, for the leader in one message.
    to_submit: Vec<Command>,
}

/// Frames handled per wake-up at most; more wait for the next.
const FRAMES_PER_WAKEUP_MAX: usize = 256;

/// Calls in progress a connection remembers arrival times for; beyond it the
/// latency of further calls is not measured.
const CONNECTION_TIMED_CALLS_MAX: usize = 4096;

impl Actor for ClientConnection {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.node.metrics().connected_clients.inc();
        self.key = Some(self.node.open_connection(ctx.address().recipient()));
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.node.metrics().connected_clients.dec();
        if let Some(key) = self.key.take() {
            self.node.close_connection(key);
        }
    }
}

impl ClientConnection {
    fn send(&self, ctx: &mut Context<Self>, frame: Frame) {
        if self.out.try_send(frame).is_err() {
            log::warn!("client {} is not reading its replies; closing", self.peer);
            ctx.stop();
        }
    }

    fn submit(&mut self, command: Command) {
        let id = command.id().expect("client commands have ids");
        if self.arrived.len() < CONNECTION_TIMED_CALLS_MAX {
            let now = *self
                .batch_arrived
                .get_or_insert_with(std::time::Instant::now);
            self.arrived.entry(id).or_insert(now);
        }
        self.to_submit.push(command);
    }

    /// Hands the commands collected from this wake-up's frames to the leader.
    fn flush_submits(&mut self) {
        // No reply future per call: the leader answers through this connection's mailbox.
        match self.to_submit.len() {
            0 => {}
            1 => self.node.leader.do_send(crate::node::Submit {
                command: self.to_submit.pop().expect("one command"),
                connection: self.key,
                via_log: false,
            }),
            _ => self.node.leader.do_send(crate::node::SubmitMany {
                commands: std::mem::take(&mut self.to_submit),
                connection: self.key,
            }),
        }
    }
}

/// Frames whose commands go to the leader through [`ClientConnection::submit`]:
/// they may wait there for the frames after them. Any other frame first
/// sends what waits, so the leader sees everything in the order it came.
fn goes_to_the_leader(frame: &Result<Frame, WireError>) -> bool {
    matches!(
        frame,
        Ok(Frame::Call { .. } | Frame::Cancel { .. } | Frame::Read { stale: false, .. })
    )
}

impl StreamHandler<Vec<Result<Frame, WireError>>> for ClientConnection {
    fn handle(&mut self, frames: Vec<Result<Frame, WireError>>, ctx: &mut Context<Self>) {
        self.batch_arrived = None;
        for frame in frames {
            if ctx.state() != ActorState::Running {
                break; // a frame before it closed the connection
            }
            if !goes_to_the_leader(&frame) {
                self.flush_submits();
            }
            self.handle_frame(frame, ctx);
        }
        self.flush_submits();
    }
}

impl ClientConnection {
    fn handle_frame(&mut self, frame: Result<Frame, WireError>, ctx: &mut Context<Self>) {
        // A keep-alive needs no answer soon: spinning for what follows it
        // would cost an idle group CPU per session.
        if !matches!(frame, Ok(Frame::KeepAlive)) {
            crate::spin::note_activity();
        }
        match frame {
            Ok(Frame::Call {
                id, args, target, ..
            }) if args.len() > CALL_ARGS_MAX
                || target.name.len() + target.type_name.len() > CALL_TARGET_MAX =>
            {
                let what = if args.len() > CALL_ARGS_MAX {
                    format!(
                        "a call's arguments are at most {CALL_ARGS_MAX} bytes; these are {}",
                        args.len()
                    )
                } else {
                    format!("an object's name and type are at most {CALL_TARGET_MAX} bytes")
                };
                let e = concoord_objects::ObjectError::new(concoord_objects::LIMIT_EXCEEDED, what);
                self.send(ctx, Frame::Reply { id, reply: Err(e) });
            }
            Ok(Frame::Call {
                id,
                target,
                method,
                args,
                ack_below,
            }) => self.submit(Command::Call {
                id,
                target,
                method,
                args,
                ack_below,
            }),
            Ok(Frame::Read {
                id, args, target, ..
            }) if args.len() > CALL_ARGS_MAX
                || target.name.len() + target.type_name.len() > CALL_TARGET_MAX =>
            {
                let e = concoord_objects::ObjectError::new(
                    concoord_objects::LIMIT_EXCEEDED,
                    format!("a read's arguments are at most {CALL_ARGS_MAX} bytes and its object's name and type {CALL_TARGET_MAX}"),
                );
                self.send(ctx, Frame::Reply { id, reply: Err(e) });
            }
            Ok(Frame::Read {
                id,
                target,
                method,
                args,
                stale,
            }) => {
                let command = Command::Call {
                    id,
                    target,
                    method,
                    args,
                    ack_below: 0,
                };
                if stale {
                    self.node.replica.do_send(crate::node::StaleRead {
                        command,
                        connection: self.key,
                    });
                } else {
                    self.submit(command);
                }
            }
            Ok(Frame::ObjectsRequest { after, limit }) => {
                let node = self.node.clone();
                let out = self.out.clone();
                // A page stays well inside one frame.
                let limit = (limit as usize).clamp(1, OBJECTS_PAGE_MAX);
                ctx.spawn(
                    async move {
                        if let Some((objects, more)) = node.objects(after, limit).await {
                            let _ = out.try_send(Frame::Objects { objects, more });
                        }
                    }
                    .into_actor(self),
                );
            }
            Ok(Frame::Cancel { id }) => self.submit(Command::Cancel { id }),
            Ok(Frame::KeepAlive) => {
                // Only the active leader tracks sessions: anyone else sends
                // the client on to it.
                let touch = self.node.leader.send(crate::node::Touch {
                    client: self.client,
                });
                let out = self.out.clone();
                let client = self.client;
                let node = self.node.clone();
                ctx.spawn(
                    async move {
                        match touch.await {
                            Ok(Some((leader, members))) => {
                                let _ = out.try_send(Frame::Redirect {
                                    id: concoord_objects::CommandId::new(client, 0),
                                    leader,
                                    members,
                                });
                            }
                            // The leader heard it. The answer tells the client
                            // its connection works (a partition shows as
                            // silence) or that its session is already over.
                            Ok(None) => {
                                let _ = out.try_send(if node.session_expired(client).await {
                                    Frame::SessionExpired
                                } else {
                                    Frame::KeepAlive
                                });
                            }
                            Err(_) => {}
                        }
                    }
                    .into_actor(self),
                );
            }
            Ok(Frame::StatusRequest) => {
                let node = self.node.clone();
                let out = self.out.clone();
                ctx.spawn(
                    async move {
                        if let Some(status) = node.status().await {
                            let _ = out.try_send(Frame::Status(Box::new(status)));
                        }
                    }
                    .into_actor(self),
                );
            }
            Ok(Frame::Join(member)) => {
                let node = self.node.clone();
                let out = self.out.clone();
                ctx.spawn(
                    async move {
                        let taken = node.submit(Command::AddMember(member), None).await;
                        let status = node.status().await.unwrap_or_default();
                        let frame = match taken {
                            Ok(()) => Frame::Joined {
                                members: status.members,
                            },
                            Err(_) => Frame::Redirect {
                                id: concoord_objects::CommandId::new(0, 0),
                                leader: status.leader,
                                members: status.members,
                            },
                        };
                        let _ = out.try_send(frame);
                    }
                    .into_actor(self),
                );
            }
            Ok(Frame::TakeSnapshot) => {
                let node = self.node.clone();
                let out = self.out.clone();
                ctx.spawn(
                    async move {
                        let result = node.take_snapshot().await.map_err(|why| {
                            if why == "NotDurable" {
                                concoord_objects::ObjectError::new(
                                    "NotDurable",
                                    "this replica keeps its state in memory (started without -w): \
                                     it has no data dir to write a snapshot to",
                                )
                            } else {
                                concoord_objects::ObjectError::new("Unavailable", why)
                            }
                        });
                        let _ = out.try_send(Frame::SnapshotTaken { result });
                    }
                    .into_actor(self),
                );
            }
            Ok(Frame::RemoveMember(member)) => {
                let node = self.node.clone();
                let out = self.out.clone();
                ctx.spawn(
                    async move {
                        let _ = out.try_send(remove_member(&node, member).await);
                    }
                    .into_actor(self),
                );
            }
            Ok(other) => {
                self.send(
                    ctx,
                    Frame::Refused {
                        kind: "ProtocolError".into(),
                        message: format!("a client may not send {}", frame_name(&other)),
                    },
                );
                ctx.stop();
            }
            Err(WireError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                // A TLS client that exits without close_notify: a close like any other.
                log::debug!("client {}: {e}; closing", self.peer);
                ctx.stop();
            }
            Err(e) => {
                log::warn!("client {}: {e}; closing", self.peer);
                self.send(
                    ctx,
                    Frame::Refused {
                        kind: wire_error_kind(&e).into(),
                        message: e.to_string(),
                    },
                );
                ctx.stop();
            }
        }
    }
}

fn frame_name(frame: &Frame) -> &'static str {
    match frame {
        Frame::Hello { .. } => "Hello",
        Frame::Welcome { .. } => "Welcome",
        Frame::Refused { .. } => "Refused",
        Frame::Peer { .. } => "Peer",
        Frame::Call { .. } => "Call",
        Frame::Cancel { .. } => "Cancel",
        Frame::KeepAlive => "KeepAlive",
        Frame::SessionExpired => "SessionExpired",
        Frame::Reply { .. } => "Reply",
        Frame::Parked { .. } => "Parked",
        Frame::Redirect { .. } => "Redirect",
        Frame::StatusRequest => "StatusRequest",
        Frame::Status(_) => "Status",
        Frame::ObjectsRequest { .. } => "ObjectsRequest",
        Frame::Objects { .. } => "Objects",
        Frame::Join(_) => "Join",
        Frame::Joined { .. } => "Joined",
        Frame::RemoveMember(_) => "RemoveMember",
        Frame::TakeSnapshot => "TakeSnapshot",
        Frame::SnapshotTaken { .. } => "SnapshotTaken",
        Frame::Read { .. } => "Read",
        Frame::MemberRemoved { .. } => "MemberRemoved",
    }
}

/// How long a removal may take to be decided before the operator hears
/// `Unavailable` (it may still be decided later).
const REMOVAL_DECIDED_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Proposes the removal and answers once this node's replica has decided it,
/// or redirects to the leader, or says why not.
async fn remove_member(node: &NodeHandle, member: crate::config::MemberRef) -> Frame {
    use crate::leader::RemovalRefused;
    use concoord_objects::ObjectError;
    use concoord_proto::message::{LAST_MEMBER_KIND, NO_SUCH_MEMBER_KIND};
    let refused = |kind: &str, message: String| Frame::MemberRemoved {
        result: Err(ObjectError::new(kind, message)),
    };
    let removed = match node.request_removal(member).await {
        Ok(removed) => removed,
        Err(RemovalRefused::NotLeader(_)) => {
            let status = node.status().await.unwrap_or_default();
            return Frame::Redirect {
                id: concoord_objects::CommandId::new(0, 0),
                leader: status.leader,
                members: status.members,
            };
        }
        Err(RemovalRefused::Busy) => {
            return refused("Busy", "the leader's queue is full; retry later".into())
        }
        Err(RemovalRefused::NoSuchMember(why)) => return refused(NO_SUCH_MEMBER_KIND, why),
        Err(RemovalRefused::LastMember(why)) => return refused(LAST_MEMBER_KIND, why),
    };
    let deadline = tokio::time::Instant::now() + REMOVAL_DECIDED_TIMEOUT;
    loop {
        let members = node.status().await.map(|s| s.members).unwrap_or_default();
        if !members.contains(&removed.addr) {
            return Frame::MemberRemoved {
                result: Ok((removed, members)),
            };
        }
        if tokio::time::Instant::now() >= deadline {
            return refused(
                "Unavailable",
                format!(
                    "the removal of {} was not decided within {REMOVAL_DECIDED_TIMEOUT:?} \
                     (no majority?); it may still be",
                    removed.addr
                ),
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

impl StreamHandler<ShutdownSignal> for ClientConnection {
    fn handle(&mut self, _: ShutdownSignal, ctx: &mut Context<Self>) {
        ctx.stop();
    }

    fn finished(&mut self, _: &mut Context<Self>) {}
}

impl Handler<ConnectionEvents> for ClientConnection {
    type Result = ();
    fn handle(&mut self, m: ConnectionEvents, ctx: &mut Context<Self>) {
        let mut now = None;
        for m in m.0 {
            let frame = match m.event {
                ConnectionEvent::Reply(reply) => {
                    if let Some(t) = self.arrived.remove(&m.id) {
                        let now = *now.get_or_insert_with(std::time::Instant::now);
                        self.node
                            .metrics()
                            .commit_latency_seconds
                            .observe(now.saturating_duration_since(t).as_secs_f64());
                    }
                    Frame::Reply { id: m.id, reply }
                }
                ConnectionEvent::Parked => Frame::Parked { id: m.id },
                ConnectionEvent::NotLeader { leader, members } => {
                    self.arrived.remove(&m.id);
                    Frame::Redirect {
                        id: m.id,
                        leader,
                        members,
                    }
                }
                ConnectionEvent::Busy => {
                    self.arrived.remove(&m.id);
                    Frame::Refused {
                        kind: "Busy".into(),
                        message: "the leader's queue is full; retry later".into(),
                    }
                }
            };
            self.send(ctx, frame);
        }
    }
}
