//! The client runtime: finds the leader, follows leader changes, resends the
//! same command id after a timeout or a disconnect, and gives up only at the
//! caller's deadline. One connection task per [`Client`]; [`Client`] is cheap
//! to clone and may have many calls outstanding (replies are matched by id).
//! [`BlockingClient`] is the same runtime for plain threads.

use concoord_objects::{ClientId, CommandId, ObjectError, Reply};
use concoord_proto::fresh_id;
use concoord_proto::wire::{Frame, FrameCodec, HelloRole, StatusInfo, PROTOCOL_VERSION};
use futures::{FutureExt, SinkExt, StreamExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{FramedRead, FramedWrite};

/// Errors a caller can tell apart.
#[derive(Clone, Debug, PartialEq)]
pub enum ClientError {
    /// The object raised an error (`RuntimeError: release unlocked lock`).
    Object(ObjectError),
    /// The object has no such method.
    UnknownMethod(String),
    /// The arguments did not fit the method.
    BadArguments(String),
    /// The group refused us (wrong token, wrong protocol version).
    Refused(String),
    /// No quorum answered before the deadline.
    Unavailable(String),
    /// A bad address or a reply that could not be decoded.
    Invalid(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Object(e) => write!(f, "{e}"),
            ClientError::UnknownMethod(m) => write!(f, "unknown method: {m}"),
            ClientError::BadArguments(m) => write!(f, "bad arguments: {m}"),
            ClientError::Refused(m) => write!(f, "refused: {m}"),
            ClientError::Unavailable(m) => write!(f, "unavailable: {m}"),
            ClientError::Invalid(m) => write!(f, "invalid: {m}"),
        }
    }
}

impl std::error::Error for ClientError {}

impl ClientError {
    /// The kind as `concoord call` prints it.
    pub fn kind(&self) -> &str {
        match self {
            ClientError::Object(e) => &e.kind,
            ClientError::UnknownMethod(_) => ObjectError::UNKNOWN_METHOD,
            ClientError::BadArguments(_) => ObjectError::BAD_ARGUMENTS,
            ClientError::Refused(_) => "Refused",
            ClientError::Unavailable(_) => "Unavailable",
            ClientError::Invalid(_) => "Invalid",
        }
    }

    /// The message without the kind.
    pub fn message(&self) -> String {
        match self {
            ClientError::Object(e) => e.message.clone(),
            ClientError::UnknownMethod(m)
            | ClientError::BadArguments(m)
            | ClientError::Refused(m)
            | ClientError::Unavailable(m)
            | ClientError::Invalid(m) => m.clone(),
        }
    }

    fn from_reply_error(e: ObjectError) -> Self {
        match e.kind.as_str() {
            ObjectError::UNKNOWN_METHOD => ClientError::UnknownMethod(e.message),
            ObjectError::BAD_ARGUMENTS => ClientError::BadArguments(e.message),
            _ => ClientError::Object(e),
        }
    }
}

/// How a client behaves.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    pub token: String,
    /// A call that is not answered by then fails with `Unavailable`.
    pub deadline: Duration,
    /// Without an answer for this long, try another replica with the same id.
    pub resend_after: Duration,
    pub connect_timeout: Duration,
    /// After a deadline, how long a call that is cancelled may take to report
    /// the cancel's outcome before it fails with `Unavailable`.
    pub cancel_grace: Duration,
    /// While calls are outstanding, poll the connection for this long after
    /// the last frame before sleeping: a reply that comes within it skips the
    /// thread's wake-up (tens of µs on a VM). Zero (the default) never spins:
    /// a client that shares its cores with the replicas slows them down.
    pub spin: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            token: String::new(),
            deadline: Duration::from_secs(30),
            resend_after: Duration::from_millis(1_000),
            connect_timeout: Duration::from_millis(1_000),
            cancel_grace: Duration::from_secs(2),
            spin: Duration::ZERO,
        }
    }
}

enum Op {
    Call {
        method: String,
        args: Vec<u8>,
        deadline: Instant,
        /// When the deadline passes, cancel the parked call and return its outcome.
        cancel_at_deadline: bool,
        done: oneshot::Sender<Result<Vec<u8>, ClientError>>,
    },
    Status {
        done: oneshot::Sender<Result<StatusInfo, ClientError>>,
    },
}

/// A connection to a replica group. Clone it freely; clones share the connection.
#[derive(Clone)]
pub struct Client {
    ops: mpsc::UnboundedSender<Op>,
    id: ClientId,
    options: ClientOptions,
}

/// Splits `"HOST:PORT,HOST:PORT"` into addresses.
pub fn parse_addresses(bootstrap: &str) -> Result<Vec<String>, ClientError> {
    let addrs: Vec<String> = bootstrap
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if addrs.is_empty() {
        return Err(ClientError::Invalid(
            "no replica address given; expected HOST:PORT[,HOST:PORT...]".into(),
        ));
    }
    for a in &addrs {
        let ok = a
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !ok {
            return Err(ClientError::Invalid(format!(
                "{a:?} is not HOST:PORT (e.g. 127.0.0.1:14000)"
            )));
        }
    }
    Ok(addrs)
}

impl Client {
    /// Starts a client for the group that `bootstrap` ("HOST:PORT,...") belongs to.
    /// It connects lazily; one live member is enough, it learns the rest.
    pub fn new(bootstrap: &str, options: ClientOptions) -> Result<Client, ClientError> {
        let addrs = parse_addresses(bootstrap)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let id = fresh_id();
        let core = Core {
            id,
            options: options.clone(),
            addrs,
            next_addr: 0,
            preferred: None,
            next_seq: 1,
            pending: BTreeMap::new(),
            unsent: Vec::new(),
            status_waiters: Vec::new(),
            status_requested: false,
        };
        tokio::spawn(core.run(rx));
        Ok(Client {
            ops: tx,
            id,
            options,
        })
    }

    pub fn id(&self) -> ClientId {
        self.id
    }

    /// Calls `method` with MessagePack-encoded positional arguments.
    pub async fn call_raw(&self, method: &str, args: Vec<u8>) -> Result<Vec<u8>, ClientError> {
        self.call_raw_with(method, args, self.options.deadline, false)
            .await
    }

    /// Like [`Client::call_raw`] with a deadline; with `cancel_at_deadline` a call
    /// still parked then is cancelled by a replicated command and its outcome
    /// returned (an error of kind `Cancelled` if the cancel was ordered first).
    pub async fn call_raw_with(
        &self,
        method: &str,
        args: Vec<u8>,
        deadline: Duration,
        cancel_at_deadline: bool,
    ) -> Result<Vec<u8>, ClientError> {
        let (done, rx) = oneshot::channel();
        self.ops
            .send(Op::Call {
                method: method.to_string(),
                args,
                deadline: Instant::now() + deadline,
                cancel_at_deadline,
                done,
            })
            .map_err(|_| ClientError::Unavailable("client runtime stopped".into()))?;
        rx.await
            .map_err(|_| ClientError::Unavailable("client runtime stopped".into()))?
    }

    /// Calls `method` with positional arguments `args` (a tuple or slice) and
    /// decodes the result.
    pub async fn call<A: Serialize, R: DeserializeOwned>(
        &self,
        method: &str,
        args: A,
    ) -> Result<R, ClientError> {
        let bytes = self.call_raw(method, encode_positional(&args)?).await?;
        decode_result(&bytes)
    }

    /// The status of the replica this client is connected to.
    pub async fn status(&self) -> Result<StatusInfo, ClientError> {
        let (done, rx) = oneshot::channel();
        self.ops
            .send(Op::Status { done })
            .map_err(|_| ClientError::Unavailable("client runtime stopped".into()))?;
        rx.await
            .map_err(|_| ClientError::Unavailable("client runtime stopped".into()))?
    }
}

/// Encodes positional arguments: a tuple, array or `()` becomes a MessagePack array.
pub fn encode_positional<A: Serialize>(args: &A) -> Result<Vec<u8>, ClientError> {
    let value = rmpv::ext::to_value(args)
        .map_err(|e| ClientError::Invalid(format!("arguments do not serialize: {e}")))?;
    let array = match value {
        rmpv::Value::Array(a) => a,
        rmpv::Value::Nil => Vec::new(),
        other => vec![other],
    };
    Ok(concoord_objects::encode_value(&rmpv::Value::Array(array)))
}

/// Decodes a MessagePack result.
pub fn decode_result<R: DeserializeOwned>(bytes: &[u8]) -> Result<R, ClientError> {
    rmp_serde::from_slice(bytes)
        .map_err(|e| ClientError::Invalid(format!("unexpected result type: {e}")))
}

struct Pending {
    method: String,
    args: Vec<u8>,
    deadline: Instant,
    cancel_at_deadline: bool,
    cancel_sent: bool,
    /// The replica told us the call waits in a queue: no point resending it
    /// while this connection lives.
    parked: bool,
    last_sent: Option<Instant>,
    done: oneshot::Sender<Result<Vec<u8>, ClientError>>,
}

type Reader = FramedRead<tokio::net::tcp::OwnedReadHalf, FrameCodec>;
type Writer = FramedWrite<tokio::net::tcp::OwnedWriteHalf, FrameCodec>;

struct Core {
    id: ClientId,
    options: ClientOptions,
    addrs: Vec<String>,
    next_addr: usize,
    /// The replica to try next (a redirect's leader).
    preferred: Option<String>,
    next_seq: u64,
    pending: BTreeMap<u64, Pending>,
    /// Calls (and cancels) not written on the current connection yet, in order.
    unsent: Vec<u64>,
    status_waiters: Vec<oneshot::Sender<Result<StatusInfo, ClientError>>>,
    status_requested: bool,
}

const TICK: Duration = Duration::from_millis(50);

impl Core {
    async fn run(mut self, mut ops: mpsc::UnboundedReceiver<Op>) {
        let mut conn: Option<(Reader, Writer, String)> = None;
        let mut ticker = tokio::time::interval(TICK);
        let mut last_progress = Instant::now();
        // The last frame in or out: spinning goes on for `options.spin` after it.
        let mut last_traffic = Instant::now();
        loop {
            let has_work = !self.pending.is_empty() || !self.status_waiters.is_empty();
            if conn.is_none() && has_work {
                match self.connect().await {
                    Ok(c) => {
                        conn = Some(c);
                        last_progress = Instant::now();
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
                match self.flush_sends(writer).await {
                    Ok(true) => last_traffic = Instant::now(),
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
        match op {
            Op::Call {
                method,
                args,
                deadline,
                cancel_at_deadline,
                done,
            } => {
                let seq = self.next_seq;
                self.next_seq += 1;
                self.unsent.push(seq);
                self.pending.insert(
                    seq,
                    Pending {
                        method,
                        args,
                        deadline,
                        cancel_at_deadline,
                        cancel_sent: false,
                        parked: false,
                        last_sent: None,
                        done,
                    },
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
        for seq in std::mem::take(&mut self.unsent) {
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
            } else {
                Frame::Call {
                    id,
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
                    if let Some(p) = self.pending.remove(&id.seq) {
                        let _ = p.done.send(to_result(reply));
                    }
                }
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

    fn learn(&mut self, members: &[String]) {
        for m in members {
            if !self.addrs.contains(m) {
                self.addrs.push(m.clone());
            }
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

    /// Connects to the preferred replica or the next one; a refusal is fatal.
    async fn connect(&mut self) -> Result<(Reader, Writer, String), ClientError> {
        let mut attempts = 0;
        loop {
            let addr = match self.preferred.take() {
                Some(a) => a,
                None => {
                    let a = self.addrs[self.next_addr % self.addrs.len()].clone();
                    self.next_addr += 1;
                    a
                }
            };
            match self.try_connect(&addr).await {
                Ok((reader, writer, members)) => {
                    self.learn(&members);
                    return Ok((reader, writer, addr));
                }
                Err(ConnectError::Refused(why)) => return Err(ClientError::Refused(why)),
                Err(ConnectError::Failed(why)) => {
                    log::debug!("client: cannot reach {addr}: {why}");
                    attempts += 1;
                    self.expire();
                    if self.pending.is_empty() && self.status_waiters.is_empty() {
                        return Err(ClientError::Unavailable("nothing to do".into()));
                    }
                    if attempts % self.addrs.len() == 0 {
                        if !self.status_waiters.is_empty() {
                            let e = ClientError::Unavailable(format!("cannot reach {addr}: {why}"));
                            for w in self.status_waiters.drain(..) {
                                let _ = w.send(Err(e.clone()));
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }
    }

    async fn try_connect(&self, addr: &str) -> Result<(Reader, Writer, Vec<String>), ConnectError> {
        let stream = tokio::time::timeout(self.options.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ConnectError::Failed("connect timed out".into()))?
            .map_err(|e| ConnectError::Failed(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        let mut reader = FramedRead::new(read, FrameCodec::default());
        let mut writer = FramedWrite::new(write, FrameCodec::default());
        writer
            .send(Frame::Hello {
                version: PROTOCOL_VERSION,
                role: HelloRole::Client(self.id),
                token: self.options.token.clone(),
            })
            .await
            .map_err(|e| ConnectError::Failed(e.to_string()))?;
        match tokio::time::timeout(self.options.connect_timeout, reader.next()).await {
            Ok(Some(Ok(Frame::Welcome { members, .. }))) => Ok((reader, writer, members)),
            Ok(Some(Ok(Frame::Refused { kind, message }))) => {
                Err(ConnectError::Refused(format!("{kind}: {message}")))
            }
            Ok(Some(Ok(other))) => Err(ConnectError::Failed(format!("unexpected {other:?}"))),
            Ok(Some(Err(e))) => Err(ConnectError::Failed(e.to_string())),
            Ok(None) => Err(ConnectError::Failed("closed during hello".into())),
            Err(_) => Err(ConnectError::Failed("no welcome".into())),
        }
    }
}

/// Asks one replica for its status over a connection of its own (no redirects).
pub async fn fetch_status(
    addr: &str,
    token: &str,
    timeout: Duration,
) -> Result<StatusInfo, ClientError> {
    let exchange = async {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| ClientError::Unavailable(format!("cannot reach {addr}: {e}")))?;
        let (read, write) = stream.into_split();
        let mut reader = FramedRead::new(read, FrameCodec::default());
        let mut writer = FramedWrite::new(write, FrameCodec::default());
        let hello = Frame::Hello {
            version: PROTOCOL_VERSION,
            role: HelloRole::Client(fresh_id()),
            token: token.to_string(),
        };
        let io =
            |e: concoord_proto::wire::WireError| ClientError::Unavailable(format!("{addr}: {e}"));
        writer.send(hello).await.map_err(io)?;
        writer.send(Frame::StatusRequest).await.map_err(io)?;
        while let Some(frame) = reader.next().await {
            match frame.map_err(io)? {
                Frame::Status(status) => return Ok(*status),
                Frame::Refused { kind, message } => {
                    return Err(ClientError::Refused(format!("{kind}: {message}")))
                }
                _ => continue,
            }
        }
        Err(ClientError::Unavailable(format!(
            "{addr} closed the connection"
        )))
    };
    tokio::time::timeout(timeout, exchange).await.map_err(|_| {
        ClientError::Unavailable(format!("{addr} did not answer within {timeout:?}"))
    })?
}

enum ConnectError {
    Refused(String),
    Failed(String),
}

fn to_result(reply: Reply) -> Result<Vec<u8>, ClientError> {
    reply.map_err(ClientError::from_reply_error)
}

/// The same client for plain threads: each call blocks until it is answered.
pub struct BlockingClient {
    runtime: tokio::runtime::Runtime,
    client: Client,
}

impl BlockingClient {
    pub fn new(bootstrap: &str, options: ClientOptions) -> Result<BlockingClient, ClientError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| ClientError::Invalid(format!("cannot start a runtime: {e}")))?;
        let client = {
            let _guard = runtime.enter();
            Client::new(bootstrap, options)?
        };
        Ok(BlockingClient { runtime, client })
    }

    /// The async client underneath, sharing this one's connection.
    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn call<A: Serialize, R: DeserializeOwned>(
        &self,
        method: &str,
        args: A,
    ) -> Result<R, ClientError> {
        self.runtime.block_on(self.client.call(method, args))
    }

    pub fn call_raw(&self, method: &str, args: Vec<u8>) -> Result<Vec<u8>, ClientError> {
        self.runtime.block_on(self.client.call_raw(method, args))
    }

    pub fn call_raw_with(
        &self,
        method: &str,
        args: Vec<u8>,
        deadline: Duration,
        cancel_at_deadline: bool,
    ) -> Result<Vec<u8>, ClientError> {
        self.runtime.block_on(
            self.client
                .call_raw_with(method, args, deadline, cancel_at_deadline),
        )
    }

    pub fn status(&self) -> Result<StatusInfo, ClientError> {
        self.runtime.block_on(self.client.status())
    }
}
