//! The real actix actors of 3- and 5-node groups over the in-memory network:
//! leader crash, partitions, loss, duplication and reordering.
//! Timing here is real (unlike tests/sim_paxos.rs); the seed fixes the
//! network's choices.

use concoord::actors::config::Member;
use concoord::actors::leader::LeaderConfig;
use concoord::actors::memnet::{MemClient, MemNetwork};
use concoord::actors::node::{
    ConnectionEvent, ConnectionEvents, ConnectionReply, NodeHandle, NodeOptions,
};
use concoord::actors::Command;
use concoord::actors::NodeId;
use concoord::objects::encode_args;
use concoord::objects::CommandId;
use std::sync::Arc;
use std::time::Duration;

fn fast_options(seed: u64) -> NodeOptions {
    NodeOptions {
        leader: LeaderConfig {
            heartbeat_interval_ms: 10,
            election_timeout_ms: 60,
            retry_ms: 20,
            ..LeaderConfig::default()
        },
        tick_ms: 5,
        seed,
        ..NodeOptions::default()
    }
}

fn start_group(net: &Arc<MemNetwork>, n: usize, seed: u64) -> Vec<NodeHandle> {
    let members: Vec<Member> = (1..=n as u64)
        .map(|id| Member {
            id,
            addr: format!("mem-{id}"),
        })
        .collect();
    members
        .iter()
        .map(|m| {
            let node = NodeHandle::start(
                m.clone(),
                concoord::builtin("Counter").expect("built in"),
                Some(members.clone()),
                net.transport(),
                fast_options(seed ^ m.id),
            );
            net.register(node.clone());
            node
        })
        .collect()
}

async fn leader_of(nodes: &[NodeHandle], net: &MemNetwork) -> Option<NodeId> {
    for _ in 0..200 {
        for n in nodes {
            if net.is_crashed(n.id()) {
                continue;
            }
            if n.status().await.is_some_and(|s| s.role == "leader") {
                return Some(n.id());
            }
        }
        actix::clock::sleep(Duration::from_millis(10)).await;
    }
    None
}

struct Outcome {
    acked: i64,
    failed: i64,
}

/// Runs `clients` concurrent clients doing `ops` increments each, calling
/// `fault` once halfway; returns what they were told.
async fn load(
    net: &Arc<MemNetwork>,
    ids: Vec<NodeId>,
    clients: u64,
    ops: u64,
    fault: impl FnOnce() + 'static,
) -> Outcome {
    let (half_tx, half_rx) = tokio::sync::oneshot::channel::<()>();
    let mut half_tx = Some(half_tx);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let net = net.clone();
        let ids = ids.clone();
        let signal = if c == 0 { half_tx.take() } else { None };
        tasks.push(actix::spawn(async move {
            let mut client = MemClient::new(net, ids, 1000 + c);
            let (mut acked, mut failed) = (0, 0);
            let mut signal = signal;
            for op in 0..ops {
                if op == ops / 2 {
                    if let Some(s) = signal.take() {
                        let _ = s.send(());
                    }
                }
                match client
                    .call(
                        "increment",
                        encode_args::<i64>(&[]),
                        Duration::from_secs(20),
                    )
                    .await
                {
                    Some(Ok(_)) => acked += 1,
                    _ => failed += 1,
                }
            }
            (acked, failed)
        }));
    }
    let _ = half_rx.await;
    fault();
    let mut out = Outcome {
        acked: 0,
        failed: 0,
    };
    for t in tasks {
        let (a, f) = t.await.expect("client task");
        out.acked += a;
        out.failed += f;
    }
    out
}

async fn read_value(net: &Arc<MemNetwork>, ids: Vec<NodeId>) -> i64 {
    let mut client = MemClient::new(net.clone(), ids, 9_999);
    let reply = client
        .call("getvalue", encode_args::<i64>(&[]), Duration::from_secs(20))
        .await
        .expect("a reply")
        .expect("getvalue works");
    rmp_decode(&reply)
}

fn rmp_decode(bytes: &[u8]) -> i64 {
    concoord::actors::client::decode_result(bytes).expect("an integer")
}

/// All live replicas reach the same executed slot.
async fn converged(nodes: &[NodeHandle], net: &MemNetwork) -> bool {
    for _ in 0..300 {
        let mut slots = std::collections::BTreeSet::new();
        for n in nodes.iter().filter(|n| !net.is_crashed(n.id())) {
            slots.insert(n.status().await.map(|s| s.executed_slot));
        }
        if slots.len() == 1 {
            return true;
        }
        actix::clock::sleep(Duration::from_millis(10)).await;
    }
    false
}

async fn scenario(n: usize, seed: u64, kind: &str) {
    let net = MemNetwork::new(seed);
    let nodes = start_group(&net, n, seed);
    let ids: Vec<NodeId> = nodes.iter().map(|n| n.id()).collect();
    let leader = leader_of(&nodes, &net).await.expect("a leader is elected");
    let net2 = net.clone();
    let fault: Box<dyn FnOnce()> = match kind {
        "crash" => Box::new(move || net2.crash(leader)),
        "isolate" => Box::new(move || net2.partition(&[leader])),
        "lossy" => {
            net.set_faults(20, 10, 8);
            Box::new(|| {})
        }
        _ => unreachable!(),
    };
    let outcome = load(&net, ids.clone(), 3, 30, fault).await;
    net.heal();
    net.set_faults(0, 0, 0);
    assert!(
        converged(&nodes, &net).await,
        "{kind}/{n}/seed {seed}: replicas did not converge"
    );
    let value = read_value(&net, ids).await;
    assert_eq!(
        outcome.failed, 0,
        "{kind}/{n}/seed {seed}: some calls failed"
    );
    assert_eq!(
        value, outcome.acked,
        "{kind}/{n}/seed {seed}: counter {value} but {} increments acknowledged",
        outcome.acked
    );
    for node in &nodes {
        node.stop();
    }
}

#[actix::test]
async fn actors_survive_leader_crash() {
    for seed in 1..=3 {
        scenario(3, seed, "crash").await;
        scenario(5, seed, "crash").await;
    }
}

#[actix::test]
async fn actors_survive_leader_isolation_and_heal() {
    for seed in 1..=3 {
        scenario(3, seed, "isolate").await;
        scenario(5, seed, "isolate").await;
    }
}

#[actix::test]
async fn actors_survive_loss_duplication_and_reordering() {
    for seed in 1..=3 {
        scenario(3, seed, "lossy").await;
        scenario(5, seed, "lossy").await;
    }
}

/// Collects what a connection is told.
struct Inbox(tokio::sync::mpsc::UnboundedSender<ConnectionReply>);

impl actix::Actor for Inbox {
    type Context = actix::Context<Self>;
}

impl actix::Handler<ConnectionEvents> for Inbox {
    type Result = ();
    fn handle(&mut self, m: ConnectionEvents, _: &mut actix::Context<Self>) {
        for event in m.0 {
            let _ = self.0.send(event);
        }
    }
}

fn inbox() -> (
    actix::Addr<Inbox>,
    tokio::sync::mpsc::UnboundedReceiver<ConnectionReply>,
) {
    use actix::Actor;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    (Inbox(tx).start(), rx)
}

/// A client that reconnected resends the same id on a second connection while
/// the first is still open: both hear the one outcome; a closed connection hears nothing.
#[actix::test]
async fn every_connection_waiting_for_a_command_gets_its_one_outcome() {
    let net = MemNetwork::new(11);
    let nodes = start_group(&net, 3, 11);
    let leader = leader_of(&nodes, &net).await.expect("a leader");
    let node = nodes.iter().find(|n| n.id() == leader).unwrap();
    let (first, mut first_rx) = inbox();
    let (second, mut second_rx) = inbox();
    let (closed, mut closed_rx) = inbox();
    let first = node.open_connection(first.recipient());
    let second = node.open_connection(second.recipient());
    let closed_key = node.open_connection(closed.recipient());
    let call = |seq| Command::Call {
        id: CommandId::new(42, seq),
        target: Default::default(),
        method: "increment".into(),
        args: encode_args::<i64>(&[]),
        ack_below: 0,
    };
    node.submit(call(1), Some(first)).await.unwrap();
    node.submit(call(1), Some(second)).await.unwrap();
    node.close_connection(closed_key);
    node.submit(call(2), Some(closed_key)).await.unwrap();
    let timeout = Duration::from_secs(5);
    let a = tokio::time::timeout(timeout, first_rx.recv())
        .await
        .unwrap()
        .unwrap();
    let b = tokio::time::timeout(timeout, second_rx.recv())
        .await
        .unwrap()
        .unwrap();
    for got in [&a, &b] {
        assert_eq!(got.id, CommandId::new(42, 1));
        assert!(
            matches!(&got.event, ConnectionEvent::Reply(Ok(_))),
            "unexpected {got:?}"
        );
    }
    // Both submits of command 1 took effect once, and command 2 ran although
    // its connection had closed: the counter is 2. The closed connection hears nothing.
    let mut probe = MemClient::new(net.clone(), nodes.iter().map(|n| n.id()).collect(), 43);
    let value = probe
        .call("getvalue", encode_args::<i64>(&[]), timeout)
        .await
        .expect("an answer")
        .expect("no error");
    assert_eq!(rmp_serde::from_slice::<i64>(&value).unwrap(), 2);
    assert!(
        closed_rx.try_recv().is_err(),
        "a closed connection was told"
    );
}
