//! The TCP side of a replica, by concept:
//!
//! - this module: starting a replica ([`start_replica`]), its listener, and
//!   joining a group;
//! - `handshake`: what every accepted connection goes through (the Hello,
//!   version and token checks, refusals, the Welcome);
//! - `connection`: each client connection as a [`ClientConnection`] actor;
//! - `tls`: TLS settings ([`ReplicaTls`]) and what a failed handshake means;
//! - `peer`: the outbound peer links behind
//!   [`Transport`](crate::node::Transport) ([`TcpTransport`]) and inbound
//!   peer frames.

mod connection;
mod handshake;
mod peer;
mod tls;

pub use connection::{
    ClientConnection, CALL_ARGS_MAX, CALL_TARGET_MAX, CONNECTION_QUEUE_MAX, OBJECTS_PAGE_MAX,
};
pub use peer::{TcpTransport, PEER_LINKS_FROM_HELLO_MAX, PEER_QUEUE_MAX};
pub use tls::ReplicaTls;

pub use crate::storage::DurableOptions;

use crate::config::Member;
use crate::node::{NodeHandle, NodeOptions};
use crate::wire::{Frame, FrameCodec, HelloRole, WireError, PROTOCOL_VERSION};
use concoord_client::ClientTls;
use concoord_objects::StateMachine;
use concoord_proto::fresh_id;
use futures::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::codec::{FramedRead, FramedWrite};

/// Why a replica could not start.
#[derive(Debug)]
pub enum StartError {
    AddrInUse(String),
    Bind(String, std::io::Error),
    Join(String),
    /// The data dir cannot be used (durable mode).
    Storage(crate::storage::StorageError),
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
            StartError::Storage(e) => write!(f, "data dir: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// How a TCP replica starts.
pub struct ReplicaOptions {
    pub listen: SocketAddr,
    /// The address the group and clients know this member by (HOST:PORT,
    /// a name that may resolve to another address after a restart, as a
    /// Kubernetes pod's stable DNS name); `None`: the address it listens on.
    pub advertise: Option<String>,
    /// Members of the group to join; empty founds a group of one.
    pub bootstrap: Vec<String>,
    pub token: String,
    pub node: NodeOptions,
    /// Durable mode; `None` keeps state in memory only.
    pub durable: Option<DurableOptions>,
}

/// A replica serving on TCP.
pub struct RunningReplica {
    pub node: NodeHandle,
    pub local_addr: SocketAddr,
    shutdown: Arc<tokio::sync::watch::Sender<bool>>,
}

impl RunningReplica {
    /// Stops accepting, closes client connections and stops the node's actors.
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
        self.node.stop();
    }

    /// Resolves once the replica stopped serving on its own: removed from
    /// the group, once the members that replaced it have learned so
    /// ([`NodeHandle::serve_until_left`]).
    pub fn stopped(&self) -> impl std::future::Future<Output = ()> {
        let mut stopped = self.shutdown.subscribe();
        async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }
    }
}

/// Binds, starts the node's actors on the current arbiter, joins the group
/// if `bootstrap` names one, and serves peers and clients over plain TCP.
pub async fn start_replica(
    object: Box<dyn StateMachine>,
    options: ReplicaOptions,
) -> Result<RunningReplica, StartError> {
    start(object, options, None).await
}

/// [`start_replica`] with TLS on every link: clients' and peers' (it
/// joins the group over TLS too).
pub async fn start_tls_replica(
    object: Box<dyn StateMachine>,
    options: ReplicaOptions,
    tls: ReplicaTls,
) -> Result<RunningReplica, StartError> {
    start(object, options, Some(tls)).await
}

async fn start(
    object: Box<dyn StateMachine>,
    options: ReplicaOptions,
    tls: Option<ReplicaTls>,
) -> Result<RunningReplica, StartError> {
    let new_transport = |me: &Member| {
        let transport = TcpTransport::new(me.clone(), options.token.clone());
        Arc::new(match &tls {
            Some(tls) => transport.with_tls(tls.peer_client().clone()),
            None => transport,
        })
    };
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
    let my_addr = match &options.advertise {
        Some(addr) => addr.clone(),
        None => local_addr.to_string(),
    };
    let object_name = object.name();
    let mut node_options = options.node.clone();
    let mut bootstrap = options.bootstrap.clone();
    let (me, node, transport) = match &options.durable {
        None => {
            let me = Member {
                id: fresh_id(),
                addr: my_addr.clone(),
            };
            let transport = new_transport(&me);
            let founding = bootstrap.is_empty().then(|| vec![me.clone()]);
            node_options.seed ^= me.id;
            let node = NodeHandle::start(
                me.clone(),
                object,
                founding,
                transport.clone(),
                node_options,
            );
            (me, node, transport)
        }
        Some(durable) => {
            let opened = crate::storage::open_node(
                durable,
                &my_addr,
                object,
                bootstrap.is_empty(),
                &node_options,
            )
            .map_err(StartError::Storage)?;
            if opened.restarted && !opened.needs_join {
                if !bootstrap.is_empty() {
                    log::info!("restarting from the data dir: -b is not needed and is ignored");
                }
                bootstrap.clear();
            } else if opened.needs_join && bootstrap.is_empty() {
                return Err(StartError::Join(format!(
                    "the data dir {} holds a member that never received the group's state; \
                     start it with -b naming a live member",
                    durable.data_dir.display()
                )));
            }
            let me = opened.me;
            let transport = new_transport(&me);
            node_options.seed ^= me.id;
            let node = NodeHandle::start_parts(
                me.clone(),
                opened.replica,
                opened.acceptor,
                opened.leader,
                transport.clone(),
                node_options,
                Some(opened.durable),
            );
            (me, node, transport)
        }
    };
    let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
    let shutdown = Arc::new(shutdown);
    // A removed member stops serving on its own (the node logs why).
    actix::spawn({
        let (node, shutdown) = (node.clone(), shutdown.clone());
        async move {
            if node.removed().wait_for(|removed| *removed).await.is_ok() {
                // Serve until the others have learned the decisions that removed it.
                node.serve_until_left().await;
                let _ = shutdown.send(true);
                node.stop();
            }
        }
    });
    if !options.node.spin.is_zero() {
        actix::spawn(crate::spin::spinner(options.node.spin));
    }
    actix::spawn(accept_loop(
        listener,
        node.clone(),
        transport.clone(),
        options.token.clone(),
        tls.clone(),
        shutdown_rx.clone(),
    ));
    if !bootstrap.is_empty() {
        actix::spawn(join_group(
            me.clone(),
            bootstrap,
            options.token.clone(),
            tls.as_ref().map(|tls| tls.peer_client().clone()),
            node.clone(),
        ));
    }
    log::info!(
        "replica {:x} serving {} on {}{}{}",
        me.id,
        object_name,
        local_addr,
        if me.addr == local_addr.to_string() {
            String::new()
        } else {
            format!(" as {}", me.addr)
        },
        if tls.is_some() { " (TLS)" } else { "" }
    );
    Ok(RunningReplica {
        node,
        local_addr,
        shutdown,
    })
}

/// Asks members to add `me` until the group has sent this replica its state.
/// A name in `bootstrap` (a headless service) stands for every address it
/// resolves to, and is resolved again each time every target has failed.
async fn join_group(
    me: Member,
    bootstrap: Vec<String>,
    token: String,
    tls: Option<ClientTls>,
    node: NodeHandle,
) {
    let resolve = |targets: &mut Vec<String>, resolved: Vec<String>| {
        for a in resolved {
            if !targets.contains(&a) && a != me.addr {
                targets.push(a);
            }
        }
        if targets.is_empty() {
            // Only this replica's own address: ask it anyway (it says why not).
            targets.extend(bootstrap.iter().cloned());
        }
    };
    let mut targets: Vec<String> = Vec::new();
    resolve(
        &mut targets,
        concoord_client::resolve_members(&bootstrap).await,
    );
    let mut i = 0;
    let mut failures_in_a_row = 0;
    let mut last_failure: Option<String> = None;
    loop {
        // Removed before it ever reported itself joined (its actors then
        // stop, and answer no status): asking again would add it back, a
        // member that no longer serves (found by the nemesis).
        if *node.removed().borrow() {
            log::info!("removed from the group while joining; not asking again");
            return;
        }
        if node.status().await.is_some_and(|s| s.role != "joining") {
            log::info!("joined the group");
            return;
        }
        if failures_in_a_row >= targets.len() {
            failures_in_a_row = 0;
            resolve(
                &mut targets,
                concoord_client::resolve_members(&bootstrap).await,
            );
        }
        let target = targets[i % targets.len()].clone();
        i += 1;
        match ask_to_join(&target, &me, &token, tls.as_ref()).await {
            Ok(JoinAnswer::Joined(members)) => {
                failures_in_a_row = 0;
                log::info!("join ordered by {target}; members {members:?}");
                // Give the group time to send its state before asking again.
                tokio::time::sleep(Duration::from_millis(1_000)).await;
            }
            Ok(JoinAnswer::Redirect(leader, members)) => {
                failures_in_a_row = 0;
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
                failures_in_a_row += 1;
                // Said once at warn level: a misconfigured join (a wrong CA,
                // TLS against plain TCP) would otherwise repeat it 5 times a second.
                if last_failure.as_ref() != Some(&why) {
                    log::warn!("join via {target} failed: {why}");
                } else {
                    log::debug!("join via {target} failed: {why}");
                }
                last_failure = Some(why);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

enum JoinAnswer {
    Joined(Vec<String>),
    Redirect(Option<String>, Vec<String>),
}

async fn ask_to_join(
    target: &str,
    me: &Member,
    token: &str,
    tls: Option<&ClientTls>,
) -> Result<JoinAnswer, String> {
    let (read, write) = concoord_client::tls::connect(target, tls, Duration::from_secs(2))
        .await
        .map_err(|e| e.to_string())?;
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
                Some(Err(WireError::Io(e))) => {
                    return Err(concoord_client::tls::tls_failure(target, &e)
                        .unwrap_or_else(|| e.to_string()))
                }
                Some(Err(e)) => return Err(e.to_string()),
                None => return Err("connection closed".into()),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(3), exchange)
        .await
        .map_err(|_| "no answer".to_string())?
}

/// Accepts connections until shutdown; each goes through the handshake.
async fn accept_loop(
    listener: TcpListener,
    node: NodeHandle,
    transport: Arc<TcpTransport>,
    token: String,
    tls: Option<ReplicaTls>,
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
                actix::spawn(handshake::serve_connection(
                    stream,
                    peer,
                    node.clone(),
                    transport.clone(),
                    token.clone(),
                    tls.clone(),
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
