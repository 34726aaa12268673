//! `concoord bench`'s own logic (issue 8): the report's JSON shape and
//! quantiles, that clients sharing connections with calls pipelined are
//! each counted once and run once, and that the leader's batching keeps one
//! client's pipelined calls in order.

use concoord::bench::{BenchConfig, BenchReport};
use concoord::{Client, ClientOptions, LocalReplica};
use futures::StreamExt;
use hdrhistogram::Histogram;
use std::time::Duration;

fn group(object: &str) -> Vec<LocalReplica> {
    let first = LocalReplica::start(concoord::builtin(object).unwrap(), Vec::new(), "").unwrap();
    let bootstrap = vec![first.addr().to_string()];
    let mut all = vec![first];
    for _ in 0..2 {
        all.push(
            LocalReplica::start(concoord::builtin(object).unwrap(), bootstrap.clone(), "").unwrap(),
        );
    }
    all
}

fn addrs(group: &[LocalReplica]) -> String {
    group
        .iter()
        .map(|r| r.addr().to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn options() -> ClientOptions {
    ClientOptions {
        deadline: Duration::from_secs(20),
        // Without the session's opening call, the first calls go out one by
        // one while the group settles; with it they leave in one burst, and
        // a burst that reaches a node just as it becomes leader can have its
        // tail accepted before the head is redirected and resent. Pipelined
        // calls are concurrent, so that order is allowed; this test checks
        // the order batching keeps once a leader is settled.
        session_ttl: None,
        ..ClientOptions::default()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn report_json_has_the_documented_keys_and_quantiles() {
    let mut latency_us = Histogram::new_with_bounds(1, 60_000_000, 3).unwrap();
    for v in 1..=1000 {
        latency_us.record(v).unwrap();
    }
    let report = BenchReport {
        ops: 1000,
        errors: 3,
        elapsed: Duration::from_secs(2),
        latency_us,
        read_latency_us: Histogram::new_with_bounds(1, 60_000_000, 3).unwrap(),
        first_error: Some("unavailable: x".into()),
    };
    let json = report.to_json();
    assert_eq!(json["ops_per_sec"].as_f64(), Some(500.0));
    assert_eq!(json["errors"].as_u64(), Some(3));
    let l = &json["latency_us"];
    assert_eq!(l["p50"].as_u64(), Some(500));
    assert_eq!(l["p90"].as_u64(), Some(900));
    assert_eq!(l["p99"].as_u64(), Some(990));
    assert_eq!(l["p999"].as_u64(), Some(999));
    assert_eq!(l["max"].as_u64(), Some(1000));
    let text = report.to_text();
    assert!(text.contains("500 ops/s") && text.contains("first error: unavailable: x"));
    assert!(json.get("reads").is_none(), "no reads, no read figures");

    // With reads mixed in: the reads (the odd values) and the writes apart.
    let mut report = report;
    for v in (1..=1000).filter(|v| v % 2 == 1) {
        report.read_latency_us.record(v).unwrap();
    }
    let json = report.to_json();
    assert_eq!(json["reads"]["ops"].as_u64(), Some(500));
    assert_eq!(json["writes"]["ops"].as_u64(), Some(500));
    assert_eq!(json["reads"]["p50"].as_u64(), Some(499));
    assert_eq!(json["writes"]["p50"].as_u64(), Some(500));
    assert!(report.to_text().contains("reads 500: p50 499"));
}

#[test]
fn shared_connections_and_pipelining_count_and_run_every_call_once() {
    let group = group("Counter");
    let replicas = addrs(&group);
    let rt = runtime();
    let config = BenchConfig {
        replicas: replicas.clone(),
        token: String::new(),
        clients: 6,
        conns: Some(2),
        pipeline: 8,
        ops: Some(1200),
        duration: None,
        method: "increment".into(),
        args: concoord::objects::encode_args::<i64>(&[]),
        progress: false,
        spin: Duration::ZERO,
        objects: 0,
        object_type: String::new(),
        session_ttl: None,
    };
    let report = rt.block_on(concoord::bench::run(config.clone())).unwrap();
    assert_eq!(report.errors, 0, "{:?}", report.first_error);
    assert_eq!(report.ops, 1200);
    assert_eq!(report.latency_us.len(), 1200);
    let value: i64 = rt.block_on(async {
        let client = Client::new(&replicas, options()).unwrap();
        client.call("getvalue", ()).await.unwrap()
    });
    assert_eq!(value, 1200, "each counted call ran exactly once");
    // Spread over named Counters: every one created, the calls counted once.
    let spread = BenchConfig {
        objects: 40,
        object_type: "Counter".into(),
        ..config
    };
    let report = rt.block_on(concoord::bench::run(spread)).unwrap();
    assert_eq!(report.errors, 0, "{:?}", report.first_error);
    let total: i64 = rt.block_on(async {
        let client = Client::new(&replicas, options()).unwrap();
        let mut total = 0;
        for i in 0..40 {
            let target = concoord::objects::Target::named(format!("bench/{i}"), "");
            total += client
                .call_on::<_, i64>(&target, "getvalue", ())
                .await
                .unwrap();
        }
        total
    });
    assert_eq!(total, 1200, "spread over 40 names, each call counted once");
}

#[test]
fn batching_keeps_each_clients_pipelined_calls_in_order_and_once() {
    const CLIENTS: usize = 4;
    const CALLS: usize = 150;
    let group = group("Log");
    let replicas = addrs(&group);
    let rt = runtime();
    let log: String = rt.block_on(async {
        let runs = (0..CLIENTS).map(|c| {
            let client = Client::new(&replicas, options()).unwrap();
            async move {
                // Up to 32 calls outstanding, issued in order.
                let results: Vec<_> = futures::stream::iter(0..CALLS)
                    .map(|i| {
                        let client = client.clone();
                        async move { client.call::<_, ()>("append", (format!("c{c}-{i}"),)).await }
                    })
                    .buffered(32)
                    .collect()
                    .await;
                assert!(results.iter().all(Result::is_ok), "{results:?}");
            }
        });
        futures::future::join_all(runs).await;
        let reader = Client::new(&replicas, options()).unwrap();
        reader.call("read", ()).await.unwrap()
    });
    let mut seen = vec![Vec::new(); CLIENTS];
    for entry in log.split(' ') {
        let (c, i) = entry
            .strip_prefix('c')
            .and_then(|e| e.split_once('-'))
            .unwrap_or_else(|| panic!("unexpected entry {entry:?}"));
        seen[c.parse::<usize>().unwrap()].push(i.parse::<usize>().unwrap());
    }
    for (c, calls) in seen.iter().enumerate() {
        assert_eq!(
            calls,
            &(0..CALLS).collect::<Vec<_>>(),
            "client {c}'s calls out of order or not exactly once"
        );
    }
}

#[test]
fn the_command_prints_one_json_object_and_refuses_bad_flags() {
    let group = group("Counter");
    let replicas = addrs(&group);
    let bin = env!("CARGO_BIN_EXE_concoord");
    let out = std::process::Command::new(bin)
        .args(["bench", "-r", &replicas, "--clients", "3", "--conns", "2"])
        .args(["--pipeline", "4", "--ops", "300", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["ops"].as_u64(), Some(300));
    assert_eq!(json["errors"].as_u64(), Some(0));
    assert!(json["ops_per_sec"].as_f64().unwrap() > 0.0);
    for q in ["p50", "p90", "p99", "p999", "max"] {
        assert!(json["latency_us"][q].as_u64().unwrap() >= 1, "{q} missing");
    }
    for bad in [
        vec!["--clients", "0"],
        vec!["--conns", "0"],
        vec!["--pipeline", "0"],
        vec!["--duration", "-1"],
    ] {
        let out = std::process::Command::new(bin)
            .args(["bench", "-r", &replicas])
            .args(&bad)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("concoord:"),
            "{bad:?}: no message"
        );
    }
}
