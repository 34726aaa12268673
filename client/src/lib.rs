//! The client runtime: finds the leader, follows leader changes, resends the
//! same command id after a timeout or a disconnect, and gives up only at the
//! caller's deadline. One connection task per [`Client`]; [`Client`] is cheap
//! to clone and may have many calls outstanding (replies are matched by id).
//! [`BlockingClient`] is the same runtime for plain threads.

mod admin;
mod blocking;
mod connection;
mod error;
mod options;
pub mod tls;

pub use admin::{fetch_objects, fetch_status, remove_member, take_snapshot, Access};
pub use blocking::BlockingClient;
pub use concoord_objects::Target;
pub use error::ClientError;
pub use options::{ClientOptions, SessionState, DEFAULT_SESSION_TTL};
pub use tls::{ClientTls, TlsError};

use concoord_objects::ClientId;
use concoord_proto::fresh_id;
use concoord_proto::wire::StatusInfo;
use connection::{Core, Op};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// A connection to a replica group. Clone it freely; clones share the connection.
#[derive(Clone)]
pub struct Client {
    ops: mpsc::UnboundedSender<Op>,
    id: ClientId,
    options: ClientOptions,
    session: tokio::sync::watch::Receiver<SessionState>,
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

/// Expands host names in a member list into the addresses they resolve
/// to, in the resolver's order (a Kubernetes headless service names every
/// pod); IP addresses stay as they are, and a name that does not resolve
/// now stays as the name (a later connect says why). No duplicates.
pub async fn resolve_members(entries: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |a: String| {
        if !out.contains(&a) {
            out.push(a);
        }
    };
    for entry in entries {
        if entry.parse::<std::net::SocketAddr>().is_ok() {
            add(entry.clone());
            continue;
        }
        match tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host(entry.as_str())).await {
            Ok(Ok(found)) => {
                let found: Vec<String> = found.map(|a| a.to_string()).collect();
                log::debug!("{entry} resolves to {found:?}");
                if found.is_empty() {
                    add(entry.clone());
                }
                found.into_iter().for_each(&mut add);
            }
            Ok(Err(e)) => {
                log::debug!("cannot resolve {entry}: {e}");
                add(entry.clone());
            }
            Err(_) => {
                log::debug!("resolving {entry} took over {RESOLVE_TIMEOUT:?}");
                add(entry.clone());
            }
        }
    }
    out
}

/// How long one name lookup of [`resolve_members`] may take.
const RESOLVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl Client {
    /// Starts a client for the group that `bootstrap` ("HOST:PORT,...") belongs to.
    /// It connects lazily; one live member is enough, it learns the rest.
    pub fn new(bootstrap: &str, options: ClientOptions) -> Result<Client, ClientError> {
        let addrs = parse_addresses(bootstrap)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let id = fresh_id();
        let (session_tx, session) = tokio::sync::watch::channel(SessionState::None);
        let core = Core {
            id,
            options: options.clone(),
            seeds: addrs.clone(),
            seeds_resolved: false,
            addrs,
            next_addr: 0,
            preferred: None,
            next_seq: 1,
            pending: BTreeMap::new(),
            unsent: Vec::new(),
            status_waiters: Vec::new(),
            status_requested: false,
            session_requested: false,
            last_write: Instant::now(),
            session_seq: None,
            session: session_tx,
        };
        tokio::spawn(core.run(rx));
        Ok(Client {
            ops: tx,
            id,
            options,
            session,
        })
    }

    pub fn id(&self) -> ClientId {
        self.id
    }

    /// Watches this client's session: an application that holds locks
    /// waits here for [`SessionState::Expired`] (the group released what it
    /// held) instead of learning it from its next call.
    ///
    /// ```no_run
    /// # async fn f(client: concoord_client::Client) {
    /// let mut session = client.session();
    /// while session.changed().await.is_ok() {
    ///     if *session.borrow() == concoord_client::SessionState::Expired {
    ///         eprintln!("session expired: stop acting as the lock holder");
    ///     }
    /// }
    /// # }
    /// ```
    pub fn session(&self) -> tokio::sync::watch::Receiver<SessionState> {
        self.session.clone()
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
        self.call_raw_on(
            &Target::default(),
            method,
            args,
            deadline,
            cancel_at_deadline,
        )
        .await
    }

    /// [`Client::call_raw_with`] on the object `target` names (one command-id
    /// space and one connection for every object of the group).
    pub async fn call_raw_on(
        &self,
        target: &Target,
        method: &str,
        args: Vec<u8>,
        deadline: Duration,
        cancel_at_deadline: bool,
    ) -> Result<Vec<u8>, ClientError> {
        let stale = self.options.stale_reads;
        self.send_call(target, method, args, deadline, cancel_at_deadline, stale)
            .await
    }

    /// Calls `method` on `target` allowing a stale read: if the method is
    /// read-only, whichever replica this client talks to answers from its
    /// own state at once, which may be behind the group's (no read-index
    /// round). Any other method goes through the log as [`Client::call_raw_on`].
    pub async fn call_raw_stale(
        &self,
        target: &Target,
        method: &str,
        args: Vec<u8>,
    ) -> Result<Vec<u8>, ClientError> {
        let deadline = self.options.deadline;
        self.send_call(target, method, args, deadline, false, true)
            .await
    }

    async fn send_call(
        &self,
        target: &Target,
        method: &str,
        args: Vec<u8>,
        deadline: Duration,
        cancel_at_deadline: bool,
        stale: bool,
    ) -> Result<Vec<u8>, ClientError> {
        let (done, rx) = oneshot::channel();
        self.ops
            .send(Op::Call {
                target: target.clone(),
                method: method.to_string(),
                args,
                deadline: Instant::now() + deadline,
                cancel_at_deadline,
                stale,
                done,
            })
            .map_err(|_| ClientError::Unavailable("client runtime stopped".into()))?;
        rx.await
            .map_err(|_| ClientError::Unavailable("client runtime stopped".into()))?
    }

    /// [`Client::call`] on the object `target` names.
    pub async fn call_on<A: Serialize, R: DeserializeOwned>(
        &self,
        target: &Target,
        method: &str,
        args: A,
    ) -> Result<R, ClientError> {
        let bytes = self
            .call_raw_on(
                target,
                method,
                encode_positional(&args)?,
                self.options.deadline,
                false,
            )
            .await?;
        decode_result(&bytes)
    }

    pub fn options(&self) -> &ClientOptions {
        &self.options
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
