//! The TCP side: a replica's listener (peer and client connections), the
//! outbound peer links behind [`Transport`], and each client connection as a
//! [`ClientSession`] actor.

use crate::config::Member;
use crate::message::{Command, PeerMsg};
use crate::node::{NodeHandle, NodeOptions, SessionEvent, SessionEvents, SessionKey, Transport};
use crate::wire::{Frame, FrameCodec, HelloRole, WireError, PROTOCOL_VERSION};
use crate::NodeId;
use actix::prelude::*;
use concoord_objects::StateMachine;
use concoord_proto::fresh_id;
use futures::{SinkExt, StreamExt};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, FramedWrite};

/// Messages queued for one peer; beyond this they are dropped (Paxos resends).
pub const PEER_QUEUE_MAX: usize = 65_536;
/// Links a hello alone may create, beyond which only decided members get one.
pub const PEER_LINKS_FROM_HELLO_MAX: usize = 64;
/// Frames queued for one client connection before it is considered stuck.
pub const SESSION_QUEUE_MAX: usize = 65_536;
/// A call's encoded arguments may be this large at most: larger ones are
/// refused (kind LimitExceeded) before they reach the log.
pub const CALL_ARGS_MAX: usize = 1 << 20;
/// An object name and type longer than this together never reach the log
/// (the group's own name limit, 256 bytes by default, applies in order).
pub const CALL_TARGET_MAX: usize = 4096;
/// Named objects listed in one `Objects` frame at most (names are at most
/// 256 bytes, so a page stays far below the frame limit).
pub const OBJECTS_PAGE_MAX: usize = 10_000;
const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(20);
const RECONNECT_BACKOFF_MAX: Duration = Duration::from_millis(1_000);
/// A connection must say hello within this long.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a replica could not start.
#[derive(Debug)]
pub enum StartError {
    AddrInUse(String),
    Bind(String, std::io::Error),
    Join(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::AddrInUse(addr) => write!(
                f,
                "address {addr} is in use; pick another port with -p, or -p 0 to let the OS choose one"
            ),
            StartError::Bind(addr, e) => write!(f, "cannot listen on {addr}: {e}"),
            StartError::Join(why) => write!(f, "cannot join the group: {why}"),
        }
    }
}

impl std::error::Error for StartError {}

/// How a TCP replica starts.
pub struct ReplicaOptions {
    pub listen: SocketAddr,
    /// Members of the group to join; empty founds a group of one.
    pub bootstrap: Vec<String>,
    pub token: String,
    pub node: NodeOptions,
}

/// A replica serving on TCP.
pub struct RunningReplica {
    pub node: NodeHandle,
    pub local_addr: SocketAddr,
    shutdown: tokio::sync::watch::Sender<bool>,
}

impl RunningReplica {
    /// Stops accepting, closes client connections and stops the node's actors.
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
        self.node.stop();
    }
}

/// Binds, starts the node's actors on the current arbiter, joins the group
/// if `bootstrap` names one, and serves peers and clients.
pub async fn start_replica(
    object: Box<dyn StateMachine>,
    options: ReplicaOptions,
) -> Result<RunningReplica, StartError> {
    let listener = TcpListener::bind(options.listen).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            StartError::AddrInUse(options.listen.to_string())
        } else {
            StartError::Bind(options.listen.to_string(), e)
        }
    })?;
    let local_addr = listener
        .local_addr()
        .map_err(|e| StartError::Bind(options.listen.to_string(), e))?;
    let me = Member {
        id: fresh_id(),
        addr: local_addr.to_string(),
    };
    let object_name = object.name();
    let transport = Arc::new(TcpTransport::new(me.clone(), options.token.clone()));
    let founding = options.bootstrap.is_empty().then(|| vec![me.clone()]);
    let mut node_options = options.node.clone();
    node_options.seed ^= me.id;
    let node = NodeHandle::start(
        me.clone(),
        object,
        founding,
        transport.clone(),
        node_options,
    );
    let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
    if !options.node.spin.is_zero() {
        actix::spawn(crate::spin::spinner(options.node.spin));
    }
    actix::spawn(accept_loop(
        listener,
        node.clone(),
        transport.clone(),
        options.token.clone(),
        shutdown_rx.clone(),
    ));
    if !options.bootstrap.is_empty() {
        actix::spawn(join_group(
            me.clone(),
            options.bootstrap.clone(),
            options.token.clone(),
            node.clone(),
        ));
    }
    log::info!(
        "replica {:x} serving {} on {}",
        me.id,
        object_name,
        local_addr
    );
    Ok(RunningReplica {
        node,
        local_addr,
        shutdown,
    })
}

/// Asks members to add `me` until the group has sent this replica its state.
async fn join_group(me: Member, bootstrap: Vec<String>, token: String, node: NodeHandle) {
    let mut targets: Vec<String> = bootstrap.clone();
    let mut i = 0;
    loop {
        if node.status().await.is_some_and(|s| s.role != "joining") {
            log::info!("joined the group");
            return;
        }
        let target = targets[i % targets.len()].clone();
        i += 1;
        match ask_to_join(&target, &me, &token).await {
            Ok(JoinAnswer::Joined(members)) => {
                log::info!("join ordered by {target}; members {members:?}");
                // Give the group time to send its state before asking again.
                tokio::time::sleep(Duration::from_millis(1_000)).await;
            }
            Ok(JoinAnswer::Redirect(leader, members)) => {
                for m in members {
                    if !targets.contains(&m) && m != me.addr {
                        targets.push(m);
                    }
                }
                if let Some(leader) = leader.filter(|l| *l != me.addr) {
                    targets.insert(0, leader);
                    i = 0;
                    continue;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(why) => {
                log::warn!("join via {target} failed: {why}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

enum JoinAnswer {
    Joined(Vec<String>),
    Redirect(Option<String>, Vec<String>),
}

async fn ask_to_join(target: &str, me: &Member, token: &str) -> Result<JoinAnswer, String> {
    let stream = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(target))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let (read, write) = stream.into_split();
    let mut reader = FramedRead::new(read, FrameCodec::default());
    let mut writer = FramedWrite::new(write, FrameCodec::default());
    let exchange = async {
        writer
            .send(Frame::Hello {
                version: PROTOCOL_VERSION,
                role: HelloRole::Client(me.id),
                token: token.to_string(),
            })
            .await
            .map_err(|e| e.to_string())?;
        writer
            .send(Frame::Join(me.clone()))
            .await
            .map_err(|e| e.to_string())?;
        loop {
            match reader.next().await {
                Some(Ok(Frame::Welcome { .. })) => continue,
                Some(Ok(Frame::Joined { members })) => return Ok(JoinAnswer::Joined(members)),
                Some(Ok(Frame::Redirect {
                    leader, members, ..
                })) => return Ok(JoinAnswer::Redirect(leader, members)),
                Some(Ok(Frame::Refused { kind, message })) => {
                    return Err(format!("{kind}: {message}"))
                }
                Some(Ok(other)) => return Err(format!("unexpected answer {other:?}")),
                Some(Err(e)) => return Err(e.to_string()),
                None => return Err("connection closed".into()),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(3), exchange)
        .await
        .map_err(|_| "no answer".to_string())?
}

async fn accept_loop(
    listener: TcpListener,
    node: NodeHandle,
    transport: Arc<TcpTransport>,
    token: String,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                actix::spawn(serve_connection(
                    stream,
                    peer,
                    node.clone(),
                    transport.clone(),
                    token.clone(),
                    shutdown.clone(),
                ));
            }
            Err(e) => {
                log::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn refuse(
    writer: &mut FramedWrite<tokio::net::tcp::OwnedWriteHalf, FrameCodec>,
    kind: &str,
    message: String,
) {
    log::warn!("refusing a connection: {kind}: {message}");
    let _ = writer
        .send(Frame::Refused {
            kind: kind.into(),
            message,
        })
        .await;
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    node: NodeHandle,
    transport: Arc<TcpTransport>,
    token: String,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let (read, write) = stream.into_split();
    let mut reader = FramedRead::new(read, FrameCodec::default());
    let mut writer = FramedWrite::new(write, FrameCodec::default());
    let hello = match tokio::time::timeout(HELLO_TIMEOUT, reader.next()).await {
        Err(_) => return refuse(&mut writer, "ProtocolError", "no hello within 5 s".into()).await,
        Ok(None) => return,
        Ok(Some(Err(e))) => return refuse(&mut writer, wire_error_kind(&e), e.to_string()).await,
        Ok(Some(Ok(frame))) => frame,
    };
    let Frame::Hello {
        version,
        role,
        token: offered,
    } = hello
    else {
        return refuse(
            &mut writer,
            "ProtocolError",
            "the first frame must be Hello".into(),
        )
        .await;
    };
    if version != PROTOCOL_VERSION {
        return refuse(
            &mut writer,
            "VersionMismatch",
            format!("protocol version {version} is not supported; this replica speaks {PROTOCOL_VERSION}"),
        )
        .await;
    }
    if offered != token {
        return refuse(&mut writer, "Refused", "wrong security token".into()).await;
    }
    match role {
        HelloRole::Peer(member) => {
            transport.learn_from_hello(&member);
            serve_peer(reader, node, member).await
        }
        HelloRole::Client(_) => {
            let members = node.status().await.map(|s| s.members).unwrap_or_default();
            if writer
                .send(Frame::Welcome {
                    node: node.id(),
                    members,
                })
                .await
                .is_err()
            {
                return;
            }
            let (tx, rx) = mpsc::channel(SESSION_QUEUE_MAX);
            actix::spawn(write_frames(writer, rx));
            let session = ClientSession {
                node: node.clone(),
                out: tx,
                peer,
                arrived: BTreeMap::new(),
                key: None,
            };
            ClientSession::create(move |ctx| {
                ctx.add_stream(reader);
                let mut shutdown = shutdown;
                ctx.add_stream(futures::stream::once(async move {
                    let _ = shutdown.wait_for(|stop| *stop).await;
                    ShutdownSignal
                }));
                session
            });
        }
    }
}

fn wire_error_kind(e: &WireError) -> &'static str {
    match e {
        WireError::FrameTooLarge { .. } => "FrameTooLarge",
        WireError::Malformed(_) => "Malformed",
        WireError::Io(_) => "Io",
    }
}

async fn serve_peer(
    mut reader: FramedRead<tokio::net::tcp::OwnedReadHalf, FrameCodec>,
    node: NodeHandle,
    member: Member,
) {
    while let Some(frame) = reader.next().await {
        crate::spin::note_activity();
        match frame {
            Ok(Frame::Peer { from, to, msg }) => {
                if to == node.id() {
                    node.deliver(from, msg);
                }
            }
            Ok(other) => {
                log::warn!(
                    "peer {} sent a non-peer frame {other:?}; closing",
                    member.addr
                );
                return;
            }
            Err(e) => {
                log::warn!("peer {}: {e}; closing", member.addr);
                return;
            }
        }
    }
}

/// Writes queued frames, many per syscall when they queue up.
async fn write_frames(
    mut writer: FramedWrite<tokio::net::tcp::OwnedWriteHalf, FrameCodec>,
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
pub struct ClientSession {
    node: NodeHandle,
    out: mpsc::Sender<Frame>,
    peer: SocketAddr,
    /// When each call in progress arrived, for the commit latency metric.
    arrived: BTreeMap<concoord_objects::CommandId, std::time::Instant>,
    /// This session's registration with the node, from `started` on.
    key: Option<SessionKey>,
}

/// Calls in progress a session remembers arrival times for; beyond it the
/// latency of further calls is not measured.
const SESSION_TIMED_CALLS_MAX: usize = 4096;

impl Actor for ClientSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.node.metrics().connected_clients.inc();
        self.key = Some(self.node.open_session(ctx.address().recipient()));
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.node.metrics().connected_clients.dec();
        if let Some(key) = self.key.take() {
            self.node.close_session(key);
        }
    }
}

impl ClientSession {
    fn send(&self, ctx: &mut Context<Self>, frame: Frame) {
        if self.out.try_send(frame).is_err() {
            log::warn!("client {} is not reading its replies; closing", self.peer);
            ctx.stop();
        }
    }

    fn submit(&mut self, command: Command) {
        let id = command.id().expect("client commands have ids");
        if self.arrived.len() < SESSION_TIMED_CALLS_MAX {
            self.arrived
                .entry(id)
                .or_insert_with(std::time::Instant::now);
        }
        // No reply future per call: the leader answers through this session's mailbox.
        self.node.leader.do_send(crate::node::Submit {
            command,
            session: self.key,
        });
    }
}

impl StreamHandler<Result<Frame, WireError>> for ClientSession {
    fn handle(&mut self, frame: Result<Frame, WireError>, ctx: &mut Context<Self>) {
        crate::spin::note_activity();
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
        Frame::Reply { .. } => "Reply",
        Frame::Parked { .. } => "Parked",
        Frame::Redirect { .. } => "Redirect",
        Frame::StatusRequest => "StatusRequest",
        Frame::Status(_) => "Status",
        Frame::ObjectsRequest { .. } => "ObjectsRequest",
        Frame::Objects { .. } => "Objects",
        Frame::Join(_) => "Join",
        Frame::Joined { .. } => "Joined",
    }
}

impl StreamHandler<ShutdownSignal> for ClientSession {
    fn handle(&mut self, _: ShutdownSignal, ctx: &mut Context<Self>) {
        ctx.stop();
    }

    fn finished(&mut self, _: &mut Context<Self>) {}
}

impl Handler<SessionEvents> for ClientSession {
    type Result = ();
    fn handle(&mut self, m: SessionEvents, ctx: &mut Context<Self>) {
        for m in m.0 {
            let frame = match m.event {
                SessionEvent::Reply(reply) => {
                    if let Some(t) = self.arrived.remove(&m.id) {
                        self.node
                            .metrics()
                            .commit_latency_seconds
                            .observe(t.elapsed().as_secs_f64());
                    }
                    Frame::Reply { id: m.id, reply }
                }
                SessionEvent::Parked => Frame::Parked { id: m.id },
                SessionEvent::NotLeader { leader, members } => {
                    self.arrived.remove(&m.id);
                    Frame::Redirect {
                        id: m.id,
                        leader,
                        members,
                    }
                }
                SessionEvent::Busy => {
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

/// Outbound links to peers, one per member, each with its own queue.
pub struct TcpTransport {
    me: Member,
    token: String,
    links: Mutex<Links>,
}

#[derive(Default)]
struct Links {
    by_id: BTreeMap<NodeId, Link>,
    learned: u64,
}

struct Link {
    addr: String,
    tx: mpsc::Sender<Frame>,
    /// Order of learning: at one address, a later link is a later incarnation.
    learned: u64,
}

impl TcpTransport {
    pub fn new(me: Member, token: String) -> Self {
        TcpTransport {
            me,
            token,
            links: Mutex::new(Links::default()),
        }
    }

    /// A peer said hello: link back to it so replies reach it before the
    /// group's membership names it. Bounded: hellos from made-up peers (a
    /// token holder can send any) must not make this node dial without end;
    /// members the group decides on are always linked by `learn`.
    pub fn learn_from_hello(&self, member: &Member) {
        let known = {
            let links = self.links.lock().expect("links lock");
            links.by_id.contains_key(&member.id) || links.by_id.len() < PEER_LINKS_FROM_HELLO_MAX
        };
        if known {
            self.learn(std::slice::from_ref(member));
        } else {
            log::warn!(
                "not linking back to {} ({:x}): {PEER_LINKS_FROM_HELLO_MAX} peer links already",
                member.addr,
                member.id
            );
        }
    }

    /// The peers this node keeps links to (for tests and status).
    pub fn linked(&self) -> Vec<Member> {
        let links = self.links.lock().expect("links lock");
        links
            .by_id
            .iter()
            .map(|(id, link)| Member {
                id: *id,
                addr: link.addr.clone(),
            })
            .collect()
    }
}

impl Transport for TcpTransport {
    fn send(&self, from: NodeId, to: NodeId, msg: PeerMsg) {
        let links = self.links.lock().expect("links lock");
        if let Some(link) = links.by_id.get(&to) {
            // A full queue means the peer is down or slow: dropping is safe, Paxos resends.
            let _ = link.tx.try_send(Frame::Peer { from, to, msg });
        }
    }

    fn learn(&self, members: &[Member]) {
        let mut links = self.links.lock().expect("links lock");
        for member in members {
            if member.id == self.me.id {
                continue;
            }
            if links
                .by_id
                .get(&member.id)
                .is_some_and(|link| link.addr == member.addr)
            {
                continue;
            }
            let (tx, rx) = mpsc::channel(PEER_QUEUE_MAX);
            links.learned += 1;
            let learned = links.learned;
            links.by_id.insert(
                member.id,
                Link {
                    addr: member.addr.clone(),
                    tx,
                    learned,
                },
            );
            actix::spawn(peer_link(
                self.me.clone(),
                self.token.clone(),
                member.addr.clone(),
                rx,
            ));
        }
    }

    fn forget_superseded(&self, members: &[Member]) {
        let mut links = self.links.lock().expect("links lock");
        // Called after every execution: the usual case (every link a member) is cheap.
        if links
            .by_id
            .keys()
            .all(|id| members.iter().any(|m| m.id == *id))
        {
            return;
        }
        let newest_at: BTreeMap<String, u64> =
            links
                .by_id
                .values()
                .fold(BTreeMap::new(), |mut newest, link| {
                    let n = newest.entry(link.addr.clone()).or_insert(0);
                    *n = (*n).max(link.learned);
                    newest
                });
        // Dropping a link's sender ends its task and closes its connection.
        links.by_id.retain(|id, link| {
            members.iter().any(|m| m.id == *id) || newest_at[&link.addr] == link.learned
        });
    }
}

/// Keeps one connection to a peer, reconnecting with backoff; messages queued
/// while it is down are dropped (they would be stale).
async fn peer_link(me: Member, token: String, addr: String, mut rx: mpsc::Receiver<Frame>) {
    let mut backoff = RECONNECT_BACKOFF_MIN;
    loop {
        let stream = match TcpStream::connect(&addr).await {
            Ok(s) => s,
            Err(_) => {
                while rx.try_recv().is_ok() {}
                if rx.is_closed() {
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(RECONNECT_BACKOFF_MAX);
                continue;
            }
        };
        backoff = RECONNECT_BACKOFF_MIN;
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        let mut writer = FramedWrite::new(write, FrameCodec::default());
        let hello = Frame::Hello {
            version: PROTOCOL_VERSION,
            role: HelloRole::Peer(me.clone()),
            token: token.clone(),
        };
        if writer.send(hello).await.is_err() {
            continue;
        }
        // The peer only ever writes to us to refuse; watch for that and for close.
        let mut reader = FramedRead::new(read, FrameCodec::default());
        loop {
            tokio::select! {
                frame = rx.recv() => {
                    let Some(frame) = frame else { return };
                    if writer.feed(frame).await.is_err() { break; }
                    while let Ok(frame) = rx.try_recv() {
                        if writer.feed(frame).await.is_err() { break; }
                    }
                    if writer.flush().await.is_err() { break; }
                }
                answer = reader.next() => {
                    if let Some(Ok(Frame::Refused { kind, message })) = answer {
                        log::error!("peer {addr} refused us: {kind}: {message}");
                        tokio::time::sleep(RECONNECT_BACKOFF_MAX).await;
                    }
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: NodeId, addr: &str) -> Member {
        Member {
            id,
            addr: addr.into(),
        }
    }

    #[test]
    fn links_to_an_earlier_incarnation_go_once_it_has_left_the_group() {
        actix::System::new().block_on(async {
            let transport = TcpTransport::new(member(1, "127.0.0.1:1"), String::new());
            let old = member(2, "127.0.0.1:9");
            let restarted = member(3, "127.0.0.1:9");
            let other = member(4, "127.0.0.1:8");
            transport.learn(&[old.clone(), other.clone()]);
            // The restarted replica says hello before the group has replaced the old one.
            transport.learn(std::slice::from_ref(&restarted));
            transport.forget_superseded(&[old.clone(), other.clone()]);
            let ids = |t: &TcpTransport| t.linked().iter().map(|m| m.id).collect::<Vec<_>>();
            assert_eq!(
                ids(&transport),
                vec![2, 3, 4],
                "both incarnations while both may be members"
            );
            // The replacement is decided and the window has passed: only the new one is a member.
            transport.forget_superseded(&[restarted.clone(), other.clone()]);
            assert_eq!(ids(&transport), vec![3, 4]);
            // A member that is not superseded is never dropped, member or not.
            transport.forget_superseded(std::slice::from_ref(&restarted));
            assert_eq!(ids(&transport), vec![3, 4]);
        });
    }

    #[test]
    fn hellos_from_made_up_peers_create_a_bounded_number_of_links() {
        actix::System::new().block_on(async {
            let transport = TcpTransport::new(member(1, "127.0.0.1:1"), String::new());
            for id in 10..10 + 3 * PEER_LINKS_FROM_HELLO_MAX as u64 {
                transport.learn_from_hello(&member(id, &format!("127.0.0.2:{id}")));
            }
            assert_eq!(transport.linked().len(), PEER_LINKS_FROM_HELLO_MAX);
            // Members the group decides on are linked whatever the count.
            let decided = member(5, "127.0.0.1:5");
            transport.learn(std::slice::from_ref(&decided));
            assert!(transport.linked().contains(&decided));
            // A peer already linked may say hello again.
            transport.learn_from_hello(&decided);
            assert_eq!(transport.linked().len(), PEER_LINKS_FROM_HELLO_MAX + 1);
        });
    }
}
