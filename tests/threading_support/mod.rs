//! Helpers for the threading tests (issue 6): a live 3-replica group on
//! loopback, status polling, and a TCP proxy a test can mute and sever.

#![allow(dead_code)]

use concoord::actors::client::fetch_status;
use concoord::actors::wire::StatusInfo;
use concoord::{ClientError, ClientOptions, LocalReplica};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How long any "until" wait may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(10);

/// Polls `probe` until it returns `Some`, failing the test after [`PATIENCE`].
pub async fn until<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "gave up after {PATIENCE:?} waiting until {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

pub async fn status(addr: &str) -> Result<StatusInfo, ClientError> {
    fetch_status(addr, "", Duration::from_secs(2)).await
}

/// A group of three replicas of one built-in object, on loopback.
pub struct Group {
    pub replicas: Vec<LocalReplica>,
}

impl Group {
    /// Starts the first replica alone, two more joining it, and waits until
    /// every one has the three members and its state, and one leads.
    pub async fn start(object: &str) -> Group {
        let object = object.to_string();
        let replicas = tokio::task::spawn_blocking(move || {
            let make = || concoord::builtin(&object).expect("a built-in object");
            let first = LocalReplica::start(make(), Vec::new(), "").expect("first replica");
            let boot = vec![first.addr().to_string()];
            let second = LocalReplica::start(make(), boot.clone(), "").expect("second replica");
            let third = LocalReplica::start(make(), boot, "").expect("third replica");
            vec![first, second, third]
        })
        .await
        .expect("starting replicas");
        let group = Group { replicas };
        let addrs = group.addrs();
        until("the group has formed", || {
            let addrs = addrs.clone();
            async move {
                let mut leaders = 0;
                for a in &addrs {
                    let s = status(a).await.ok()?;
                    if s.members.len() != 3 || s.role == "joining" {
                        return None;
                    }
                    leaders += usize::from(s.role == "leader");
                }
                (leaders == 1).then_some(())
            }
        })
        .await;
        group
    }

    pub fn addrs(&self) -> Vec<String> {
        self.replicas.iter().map(|r| r.addr().to_string()).collect()
    }

    /// "HOST:PORT,HOST:PORT,HOST:PORT"
    pub fn bootstrap(&self) -> String {
        self.addrs().join(",")
    }

    /// The active leader's address and the followers'.
    pub async fn leader(&self) -> (String, Vec<String>) {
        let addrs = self.addrs();
        until("a leader is known", || {
            let addrs = addrs.clone();
            async move {
                let mut leader = None;
                let mut followers = Vec::new();
                for a in addrs {
                    let s = status(&a).await.ok()?;
                    if s.role == "leader" {
                        leader = Some(a);
                    } else {
                        followers.push(a);
                    }
                }
                leader.map(|l| (l, followers))
            }
        })
        .await
    }

    /// Waits until every replica has `n` calls parked (the n-th parked call
    /// has been ordered and executed everywhere).
    pub async fn wait_parked(&self, n: usize) {
        let addrs = self.addrs();
        until(&format!("{n} call(s) are parked"), || {
            let addrs = addrs.clone();
            async move {
                for a in &addrs {
                    if status(a).await.ok()?.parked != n {
                        return None;
                    }
                }
                Some(())
            }
        })
        .await;
    }

    /// Stops the replicas (off the async workers: it joins their threads).
    pub async fn stop(self) {
        let replicas = self.replicas;
        tokio::task::spawn_blocking(move || drop(replicas))
            .await
            .expect("stopping replicas");
    }
}

/// Client options for tests: a deadline well inside the test's patience.
pub fn options() -> ClientOptions {
    ClientOptions {
        deadline: Duration::from_secs(15),
        ..ClientOptions::default()
    }
}

/// A TCP forwarder in front of one replica. `mute_replies` makes it swallow
/// everything the replica sends from then on (the client's connection stays
/// up but its answers are lost); `sever` closes every connection on both
/// sides and stops accepting.
pub struct Proxy {
    pub addr: String,
    muted: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    acceptor: Mutex<Option<JoinHandle<()>>>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    pub async fn start(target: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address").to_string();
        let muted = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let acceptor = {
            let (target, muted, accepted, connections) = (
                target.to_string(),
                muted.clone(),
                accepted.clone(),
                connections.clone(),
            );
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    let Ok(server) = TcpStream::connect(&target).await else {
                        continue;
                    };
                    let task = tokio::spawn(forward(client, server, muted.clone()));
                    connections.lock().expect("proxy lock").push(task);
                }
            })
        };
        Proxy {
            addr,
            muted,
            accepted,
            acceptor: Mutex::new(Some(acceptor)),
            connections,
        }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    pub fn mute_replies(&self) {
        self.muted.store(true, Ordering::SeqCst);
    }

    /// Closes every connection (both sides) and the listener.
    pub async fn sever(&self) {
        let acceptor = self.acceptor.lock().expect("proxy lock").take();
        if let Some(acceptor) = acceptor {
            acceptor.abort();
            let _ = acceptor.await; // the listener is closed once this returns
        }
        let connections = std::mem::take(&mut *self.connections.lock().expect("proxy lock"));
        for c in connections {
            c.abort();
            let _ = c.await; // both sockets are dropped, hence closed
        }
    }
}

async fn forward(client: TcpStream, server: TcpStream, muted: Arc<AtomicBool>) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let up = async {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
    };
    let down = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match server_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if !muted.load(Ordering::SeqCst) && client_write.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
}
