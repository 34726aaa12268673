//! Reads without a log write on the real binary: a deposed leader (paused
//! with SIGSTOP while the others elect a new one and count on) that wakes up
//! still believing it leads answers no stale read; `--stale` on the command
//! line; `bench --read-ratio`; a follower serving linearizable reads itself,
//! with thrifty leaders too.

mod support;

use concoord::actors::wire::{decode_frame, encode_frame, Frame, HelloRole, PROTOCOL_VERSION};
use concoord::objects::{encode_args, rmpv, CommandId, Target};
use concoord::BlockingClient;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::{run_cli, Cluster};

const RAW_CLIENT: u64 = 0x5eed_0001;

fn send(stream: &mut TcpStream, frame: &Frame) {
    let payload = encode_frame(frame);
    let mut bytes = (payload.len() as u32).to_be_bytes().to_vec();
    bytes.extend(payload);
    stream
        .write_all(&bytes)
        .expect("the replica's socket takes bytes");
}

/// The next frame, or `None` when nothing comes within the stream's timeout.
fn receive(stream: &mut TcpStream) -> Option<Frame> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).ok()?;
    let mut payload = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut payload).ok()?;
    decode_frame(&payload).ok()
}

fn read_frame(seq: u64, stale: bool) -> Frame {
    Frame::Read {
        id: CommandId::new(RAW_CLIENT, seq),
        target: Target::default(),
        method: "getvalue".into(),
        args: encode_args::<i64>(&[]),
        stale,
    }
}

fn value_of(bytes: &[u8]) -> i64 {
    rmpv::decode::read_value(&mut &bytes[..])
        .expect("a MessagePack reply")
        .as_i64()
        .expect("getvalue answers an integer")
}

#[test]
fn a_paused_deposed_leader_answers_no_stale_read() {
    let mut cluster = Cluster::start(3);
    let client = cluster.client();
    client
        .call::<_, ()>("increment", ())
        .expect("a first increment");
    let old = cluster.leader();

    // A connection to the leader, opened while it leads; a read works on it.
    let mut raw = raw_client(&cluster, old);
    send(&mut raw, &read_frame(1, false));
    match receive(&mut raw) {
        Some(Frame::Reply { reply: Ok(v), .. }) => assert_eq!(value_of(&v), 1),
        other => panic!("a read at the leader answers 1; got {other:?}"),
    }

    // Paused, it cannot tell that the others elect a new leader and count on.
    cluster.stop(old);
    let others: Vec<String> = (0..cluster.len())
        .filter(|i| *i != old)
        .map(|i| cluster.addr(i).to_string())
        .collect();
    let majority = BlockingClient::new(
        &others.join(","),
        cluster.client_options(Duration::from_secs(20)),
    )
    .expect("valid addresses");
    for _ in 0..5 {
        majority
            .call::<_, ()>("increment", ())
            .expect("the majority elects a leader and counts");
    }
    let counted: i64 = majority
        .call("getvalue", ())
        .expect("a read at the new leader");
    assert_eq!(counted, 6);

    // Reads wait in the paused leader's socket; it wakes believing it leads.
    send(&mut raw, &read_frame(2, false));
    send(
        &mut raw,
        &Frame::Call {
            id: CommandId::new(RAW_CLIENT, 3),
            target: Target::default(),
            method: "getvalue".into(),
            args: encode_args::<i64>(&[]),
            ack_below: 2,
        },
    );
    cluster.cont(old);
    let until = Instant::now() + Duration::from_secs(3);
    raw.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut answers = Vec::new();
    while Instant::now() < until {
        if let Some(frame) = receive(&mut raw) {
            answers.push(frame);
        }
    }
    for frame in &answers {
        if let Frame::Reply { id, reply: Ok(v) } = frame {
            assert!(
                value_of(v) >= counted,
                "the deposed leader answered read {id} with {} after the group counted {counted}",
                value_of(v)
            );
        }
    }
    eprintln!("the deposed leader's answers: {answers:?}");

    // The group goes on, the old leader following.
    let after: i64 = client.call("getvalue", ()).expect("a read after the pause");
    assert_eq!(after, 6);
}

/// A raw client connection to node `i`, welcomed.
fn raw_client(cluster: &Cluster, i: usize) -> TcpStream {
    let mut raw = TcpStream::connect(cluster.addr(i)).expect("the replica listens");
    raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    send(
        &mut raw,
        &Frame::Hello {
            version: PROTOCOL_VERSION,
            role: HelloRole::Client(RAW_CLIENT),
            token: cluster.token.clone(),
        },
    );
    assert!(
        matches!(receive(&mut raw), Some(Frame::Welcome { .. })),
        "node {i} welcomes the raw client"
    );
    raw
}

#[test]
fn a_follower_serves_linearizable_reads_itself() {
    let mut cluster = Cluster::start(3);
    let client = cluster.client();
    let follower = cluster.follower();
    // The raw connection follows no redirect: only the follower can answer.
    let mut raw = raw_client(&cluster, follower);
    for seq in 1..=5u64 {
        client
            .call::<_, ()>("increment", ())
            .expect("an increment at the leader");
        // Acknowledged before the read began, so the read must see it.
        send(&mut raw, &read_frame(seq, false));
        match receive(&mut raw) {
            Some(Frame::Reply { id, reply: Ok(v) }) => {
                assert_eq!(id.seq, seq);
                assert_eq!(value_of(&v), seq as i64, "read {seq} at the follower");
            }
            other => panic!("the follower answers read {seq} itself; got {other:?}"),
        }
    }
    // With the leader paused, the follower answers once a leader is elected
    // again, and never below what was acknowledged.
    let leader = cluster.leader();
    cluster.stop(leader);
    send(&mut raw, &read_frame(6, false));
    match receive(&mut raw) {
        Some(Frame::Reply { reply: Ok(v), .. }) => assert_eq!(value_of(&v), 5),
        Some(Frame::Redirect { .. }) => {} // it heard no leader when the read came
        other => panic!("a reply or a redirect; got {other:?}"),
    }
    cluster.cont(leader);
}

#[test]
fn stale_reads_on_the_command_line_and_in_bench() {
    let cluster = Cluster::start(3);
    let client = cluster.client();
    client.call::<_, ()>("increment", ()).expect("an increment");
    cluster.wait_converged();
    let follower = cluster.follower();
    // A follower answers a stale read from its own state, without redirecting.
    let out = run_cli(
        &["call", "-r", cluster.addr(follower), "--stale", "getvalue"],
        None,
        Duration::from_secs(20),
    );
    assert_eq!(out.code(), Some(0), "stderr: {}", out.stderr);
    assert_eq!(out.stdout.trim(), "1");
    // A stale call of a method that changes state still goes through the log.
    let out = run_cli(
        &["call", "-r", &cluster.addrs(), "--stale", "increment"],
        None,
        Duration::from_secs(20),
    );
    assert_eq!(out.code(), Some(0), "stderr: {}", out.stderr);
    let linearizable: i64 = client.call("getvalue", ()).expect("a read");
    assert_eq!(linearizable, 2);

    let addrs = cluster.addrs();
    for stale in [false, true] {
        let mut args = vec![
            "bench",
            "-r",
            addrs.as_str(),
            "--clients",
            "4",
            "--ops",
            "400",
            "--read-ratio",
            "0.75",
            "--json",
        ];
        if stale {
            args.push("--stale");
        }
        let out = run_cli(&args, None, Duration::from_secs(60));
        assert_eq!(out.code(), Some(0), "stderr: {}", out.stderr);
        let json: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
        assert_eq!(json["ops"], 400, "{json}");
        assert_eq!(json["errors"], 0, "{json}");
        for key in ["elapsed_s", "ops_per_sec", "latency_us"] {
            assert!(json.get(key).is_some(), "bench JSON keeps {key}: {json}");
        }
    }
    // A quarter of 800 calls were increments.
    let total: i64 = client.call("getvalue", ()).expect("a read");
    assert_eq!(total, 2 + 200);
}

/// Thrifty leaders (`--thrifty`): one follower gets no Accepts, only the
/// decided batches a tick later. Both followers still serve linearizable
/// reads that see every acknowledged count, and losing a follower (perhaps
/// the one the leader counts on) fails no call.
#[test]
fn thrifty_leaders_keep_follower_reads_linearizable_and_survive_a_follower_loss() {
    let mut cluster = Cluster::start_flags(3, &["--thrifty"]);
    let client = cluster.client();
    let leader = cluster.leader();
    let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let mut raws: Vec<TcpStream> = followers.iter().map(|f| raw_client(&cluster, *f)).collect();
    for seq in 1..=20u64 {
        client
            .call::<_, ()>("increment", ())
            .expect("an increment at the leader");
        let raw = &mut raws[seq as usize % 2];
        send(raw, &read_frame(seq, false));
        match receive(raw) {
            Some(Frame::Reply { id, reply: Ok(v) }) => {
                assert_eq!(id.seq, seq);
                assert_eq!(value_of(&v), seq as i64, "read {seq} at a follower");
            }
            other => panic!("the follower answers read {seq} itself; got {other:?}"),
        }
    }
    cluster.kill9(followers[0]);
    for n in 21..=40i64 {
        client
            .call::<_, ()>("increment", ())
            .expect("an increment with a follower down");
        let value: i64 = client.call("getvalue", ()).expect("a read");
        assert_eq!(value, n);
    }
    cluster.wait_converged();
}
