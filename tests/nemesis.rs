//! The multi-process nemesis (issues 7 and 17, SPEC section 7): real
//! `concoord` replica processes on loopback, under concurrent client load,
//! while a seeded schedule injects faults, and every recorded history is
//! checked: the Counter group's for linearizability, the Lock group's for
//! mutual exclusion (and linearizability with the Lock model).
//!
//! # Faults
//!
//! Each group (a Counter and a Lock, 3 replicas each by default) has its
//! own nemesis thread; one fault (or one overlapping pair) at a time, each
//! healed, then the group must be healthy again (every replica up, one
//! agreed leader, exactly the expected members) before the next one.
//! The kinds ([`faults::Fault`]):
//!
//! - `kill -9` of a replica, restarted with `-b` after 0.2–1.5 s;
//! - SIGSTOP for 0.5–2 s, then SIGCONT;
//! - a two-way partition of a minority from the rest for 1–3 s;
//! - one-way partitions of the leader: its peers' packets to it dropped
//!   (it can send, not receive), or its packets to them dropped (it can
//!   receive, not send). Over TCP the missing ACKs stall the connection
//!   both ways after retransmits, but until then data flows one way;
//! - packet loss: each packet between two replicas of the group dropped
//!   with probability 5–30% (`-m statistic --mode random`) for 2–5 s;
//! - overlapping faults: a SIGSTOP of some replica during a partition; a
//!   `kill -9` of some replica during a partition (restarted inside it
//!   through a member on its side, or after healing); and `concoord admin
//!   remove` of a follower with a `kill -9` of another replica (the leader
//!   half the time) while the removal is in flight, the removal retried if
//!   it gave up, the removed replica's exit awaited and its address
//!   re-joined with `-b`: the group must end with exactly its members
//!   again. A spare replica joins first and leaves last: the replicas keep
//!   their state in memory, so a group shrunk to two members cannot
//!   survive a crash of either (the crashed one's replacement needs both;
//!   without the spare it would decide nothing more, for good);
//! - the client nemesis: `concoord call` subprocesses (`increment` on the
//!   Counter, `acquire` on the Lock, session TTL 2 s) `kill -9`ed 5–200 ms
//!   after they start, mid-call or not; a killed call is recorded as
//!   pending (it may or may not take effect), and a killed Lock client's
//!   death as a session end: the lock it may hold comes back when its
//!   session expires (the mutex checker counts a session end as a release
//!   of unknown outcome; for the Lock model's linearizability check it
//!   becomes exactly that, a `release` of unknown outcome invoked then);
//! - client connections cut: every TCP segment between the clients'
//!   address and one replica answered with a RST (`REJECT --reject-with
//!   tcp-reset`, both ways) for 0.5–2 s, so the calls in flight on those
//!   connections lose them; peers still reach the replica.
//!
//! Message delay and reordering cannot be injected here (`tc netem` is not
//! available on the machines this runs on); the in-memory simulator
//! (`tests/sim_paxos.rs`) covers them. Every kind is in every run: the
//! first round of the two groups covers all of them between them (the
//! client nemesis in both), and a run lasts until that round is done,
//! even past its load time.
//!
//! # Network faults
//!
//! Each replica listens on its own address 127.0.0.N and runs as its own
//! user (uid 62000 + N). On Linux, a connection to any 127.0.0.N leaves from
//! 127.0.0.1 unless the socket is bound, so the addresses alone cannot tell
//! one replica's outgoing connections from another's or from a client's. A
//! nat rule per replica, `-o lo -m owner --uid-owner UID -j SNAT --to-source
//! 127.0.0.N`, makes every connection a replica opens leave from its own
//! address, while the clients (this process and its `concoord call`
//! subprocesses, our own user) keep 127.0.0.1. A network fault is then
//! plain address rules in a dedicated filter chain ([`net`]): `-s A -d B -j
//! DROP` for every pair cut (both ways for a partition, one way for the
//! one-way shapes, with a `statistic` match for loss), and REJECT rules
//! between 127.0.0.1 and a replica for a connection cut: peers are cut,
//! clients still reach every replica, or the other way round.
//! `partition_isolates_leader` checks that this really partitions.
//! All rules live in chains of our own (jumped to from INPUT and
//! POSTROUTING), removed by a guard on drop and also at start, in case an
//! earlier run died. Without root or iptables (after trying `apt-get install
//! -y iptables`), the network faults are skipped with a printed reason.
//!
//! # Knobs
//!
//! `CONCOORD_NEMESIS_SECS` (total load time, default 18), `_RUN_SECS`
//! (longest single run; longer totals are split into runs, each on fresh
//! groups and checked on its own; default 60), `_REPLICAS` (3), `_CLIENTS`
//! (Counter clients, 10; the Lock gets half as many, at least 2), `_SEED`;
//! `CONCOORD_TEST_REPLICA_ARGS` gives every replica more flags (`--thrifty`).

#[path = "nemesis/faults.rs"]
mod faults;
#[path = "nemesis/load.rs"]
mod load;
#[path = "nemesis/membership.rs"]
mod membership;
#[path = "nemesis/net.rs"]
mod net;
#[path = "nemesis/report.rs"]
mod report;
mod support;

use concoord::check::linearizability::{check_object, CheckResult, Options};
use concoord::check::mutex::{self, MutexKind};
use concoord::history::History;
use concoord::BlockingClient;
use faults::{Fault, NemesisLog, Target, FAULTS};
use load::options;
use net::Net;
use report::{dump, table, Counts, RunReport};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::Cluster;

/// How long a healed group may take to converge at the end of a run.
const FINAL_CONVERGE: Duration = Duration::from_secs(30);
/// Our chains (filter and nat); the verification test uses its own.
const CHAIN: &str = "CONCOORD_NEMESIS";
const VERIFY_CHAIN: &str = "CONCOORD_NEMESIS_V";
const CUT_CHAIN: &str = "CONCOORD_NEMESIS_C";

// ---------------------------------------------------------------------------
// A small seeded PRNG (splitmix64): the schedule depends on the seed only.

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    /// A duration uniformly in `[lo, hi]` milliseconds.
    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

// ---------------------------------------------------------------------------
// One run

pub struct Config {
    secs: u64,
    replicas: usize,
    clients: usize,
    seed: u64,
}

fn run(config: &Config, run_index: usize, net_reason: &mut Option<String>) -> RunReport {
    let n = config.replicas;
    let seed = config.seed;
    let mut report = RunReport {
        seed,
        ..RunReport::default()
    };
    // Counter replicas on 127.0.0.2.., Lock replicas after them.
    let host = |k: usize| format!("127.0.0.{}", 2 + k);
    let uid = |k: usize| 62_000 + 2 + k as u32;
    let counter_hosts: Vec<String> = (0..n).map(host).collect();
    let lock_hosts: Vec<String> = (n..2 * n).map(host).collect();
    // One spare each (a fourth member during a membership change).
    let counter_spare = (host(2 * n), uid(2 * n));
    let lock_spare = (host(2 * n + 1), uid(2 * n + 1));
    let all: Vec<(String, u32)> = (0..2 * n + 2).map(|k| (host(k), uid(k))).collect();
    let net = match Net::setup(CHAIN, &all) {
        Ok(net) => Some(Arc::new(net)),
        Err(e) => {
            if net_reason.is_none() {
                eprintln!("nemesis: network faults skipped: {e}");
            }
            *net_reason = Some(e);
            None
        }
    };
    let uids = |range: std::ops::Range<usize>| -> Vec<u32> {
        if net.is_some() {
            range.map(uid).collect()
        } else {
            Vec::new()
        }
    };
    let counter = Cluster::start_custom(n, "Counter", "", counter_hosts.clone(), uids(0..n));
    let lock = Cluster::start_custom(n, "Lock", "", lock_hosts.clone(), uids(n..2 * n));
    let started = Instant::now();
    let until = started + Duration::from_secs(config.secs);

    let counter_history = History::new();
    let lock_history = History::new();
    let stop = Arc::new(AtomicBool::new(false));
    let mut rng = Rng(seed);
    let mut clients = Vec::new();
    for id in 0..config.clients {
        clients.push(load::counter_client(
            id,
            counter.addrs(),
            counter_history.clone(),
            stop.clone(),
            rng.next(),
            load::COUNTER_LOAD,
        ));
    }
    // The list rotated by one: the reader starts at replica 1, not 0.
    let mut rotated: Vec<String> = counter.addrs().split(',').map(str::to_string).collect();
    rotated.rotate_left(1);
    clients.push(load::counter_client(
        config.clients,
        rotated.join(","),
        counter_history.clone(),
        stop.clone(),
        rng.next(),
        load::FOLLOWER_READER_LOAD,
    ));
    let last_acquired = Arc::new(AtomicU64::new(0));
    for id in 0..(config.clients / 2).max(2) {
        clients.push(load::lock_client(
            id,
            lock.addrs(),
            lock_history.clone(),
            stop.clone(),
            last_acquired.clone(),
            started,
            rng.next(),
        ));
    }

    // One nemesis thread per group; each owns its cluster while it runs.
    let (first_counter, first_lock) = faults::first_rounds(&mut rng);
    let spawn_nemesis = |name: &'static str,
                         mut cluster: Cluster,
                         hosts: Vec<String>,
                         history: History,
                         first: Vec<Fault>,
                         spare: (String, u32),
                         s: u64| {
        let net = net.clone();
        std::thread::spawn(move || {
            let mut log = NemesisLog::default();
            let mut rng = Rng(s);
            let mut target = Target {
                name,
                cluster: &mut cluster,
                hosts: &hosts,
                net: net.as_deref(),
                history: &history,
                lock: name == "lock",
                spare,
            };
            faults::nemesis(&mut target, first, &mut rng, until, &mut log);
            (cluster, log)
        })
    };
    let n1 = spawn_nemesis(
        "counter",
        counter,
        counter_hosts,
        counter_history.clone(),
        first_counter,
        counter_spare,
        rng.next(),
    );
    let n2 = spawn_nemesis(
        "lock",
        lock,
        lock_hosts,
        lock_history.clone(),
        first_lock,
        lock_spare,
        rng.next(),
    );
    let (mut counter, log1) = n1.join().expect("the counter nemesis");
    let (mut lock, log2) = n2.join().expect("the lock nemesis");
    // Faults over: heal everything, let the load run on a moment, stop it.
    if let Some(net) = &net {
        net.heal_all();
    }
    faults::heal_cluster(&mut counter);
    faults::heal_cluster(&mut lock);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().expect("a client thread");
    }

    for log in [&log1, &log2] {
        for (k, v) in &log.faults {
            *report.faults.entry(*k).or_default() += v;
        }
        report.at_leader += log.at_leader;
        report.skipped += log.skipped;
        for (k, v) in &log.client_calls {
            *report.client_calls.entry(*k).or_default() += v;
        }
        report.notes.extend(log.notes.iter().cloned());
        report.slow_recoveries += log.slow_recoveries.len();
        report.longest_recovery = report.longest_recovery.max(log.longest_recovery);
        for e in &log.events {
            eprintln!("nemesis[{run_index}]: {e}");
        }
        for e in &log.notes {
            eprintln!("nemesis[{run_index}]: note: {e}");
        }
    }

    // Convergence of every replica of both groups.
    for (name, cluster) in [("Counter", &counter), ("Lock", &lock)] {
        if faults::wait_healthy(cluster, true, FINAL_CONVERGE).is_none() {
            report.anomalies.push(format!(
                "{name} group did not converge within {FINAL_CONVERGE:?} after healing (seed {seed}):\n{}",
                cluster.diagnostics()
            ));
        }
    }

    // Final read, recorded.
    let reader = BlockingClient::new(&counter.addrs(), options(Duration::from_secs(20)))
        .expect("valid addresses");
    let op = counter_history.invoke("final", "getvalue", vec![]);
    let r = reader.call::<_, i64>("getvalue", ());
    report.final_value = r.as_ref().ok().copied();
    load::finish(op, &r);
    if let Err(e) = r {
        report
            .anomalies
            .push(format!("final read failed after healing: {e}"));
    }

    // Checks.
    report.counter_ops = Counts::of(&counter_history);
    report.lock_ops = Counts::of(&lock_history);
    let lin = Options {
        timeout: Some(Duration::from_secs(20)),
        ..Options::default()
    };
    let ops = counter_history.operations();
    match check_object("Counter", &ops, &lin) {
        CheckResult::Ok => {}
        CheckResult::Unknown(why) => report.unknown.push(format!("Counter: {why}")),
        CheckResult::Illegal(i) => report.anomalies.push(format!(
            "Counter history not linearizable (seed {seed}; history in {}):\n{i}",
            dump(&counter_history, "counter", seed)
        )),
    }
    let mutex_report = mutex::check(MutexKind::Lock, &lock_history);
    report.lock_acquired = mutex_report.acquired;
    if !mutex_report.is_ok() {
        report.anomalies.push(format!(
            "Lock mutual exclusion violated (seed {seed}; history in {}):\n{mutex_report}",
            dump(&lock_history, "lock", seed)
        ));
    }
    match check_object("Lock", &load::with_session_ends(&lock_history), &lin) {
        CheckResult::Ok => {}
        CheckResult::Unknown(why) => report.unknown.push(format!("Lock: {why}")),
        CheckResult::Illegal(i) => report.anomalies.push(format!(
            "Lock history not linearizable (seed {seed}; history in {}):\n{i}",
            dump(&lock_history, "lock", seed)
        )),
    }
    if !report.anomalies.is_empty() {
        for log in [&log1, &log2] {
            for e in &log.slow_recoveries {
                eprintln!("nemesis[{run_index}]: slow recovery: {e}");
            }
        }
    }
    drop(net);
    report
}

#[test]
fn nemesis_counter_and_lock() {
    let total_secs = env_u64("CONCOORD_NEMESIS_SECS", 18).max(1);
    let run_secs = env_u64("CONCOORD_NEMESIS_RUN_SECS", 60).max(1);
    let replicas = env_u64("CONCOORD_NEMESIS_REPLICAS", 3) as usize;
    let clients = env_u64("CONCOORD_NEMESIS_CLIENTS", 10) as usize;
    assert!(replicas >= 3 && replicas % 2 == 1, "3, 5, 7... replicas");
    assert!(2 * replicas + 4 <= 255);
    let seed = env_u64(
        "CONCOORD_NEMESIS_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
    );
    eprintln!(
        "nemesis: seed {seed} (replay with CONCOORD_NEMESIS_SEED={seed}; the schedule, not the timing, replays)"
    );
    let runs = total_secs.div_ceil(run_secs);
    let mut reports = Vec::new();
    let mut net_reason = None;
    let mut seeds = Rng(seed);
    for i in 0..runs {
        let secs = run_secs.min(total_secs - i * run_secs);
        let config = Config {
            secs,
            replicas,
            clients,
            seed: if i == 0 { seed } else { seeds.next() },
        };
        let report = run(&config, i as usize, &mut net_reason);
        for a in &report.anomalies {
            eprintln!("nemesis: ANOMALY in run {i} (seed {}): {a}", config.seed);
        }
        reports.push(report);
    }
    let config = Config {
        secs: total_secs,
        replicas,
        clients,
        seed,
    };
    println!("{}", table(&config, &reports, &net_reason));
    let anomalies: usize = reports.iter().map(|r| r.anomalies.len()).sum();
    assert_eq!(anomalies, 0, "anomalies found; see above (seed {seed})");
    // Every kind was injected (the network ones only with iptables).
    for k in FAULTS {
        let injected: u64 = reports.iter().filter_map(|r| r.faults.get(&k)).sum();
        assert!(
            injected > 0 || (k.needs_net() && net_reason.is_some()),
            "no {k:?} fault was injected (seed {seed})"
        );
    }
}

/// The partition scheme works: with the leader cut off from its peers (and
/// clients still reaching every replica), the majority elects another
/// leader and serves clients; after healing, the group converges.
#[test]
fn partition_isolates_leader() {
    let hosts: Vec<String> = (0..3).map(|k| format!("127.0.0.{}", 120 + k)).collect();
    let uids: Vec<u32> = (0..3).map(|k| 62_120 + k).collect();
    let all: Vec<(String, u32)> = hosts.iter().cloned().zip(uids.iter().copied()).collect();
    let net = match Net::setup(VERIFY_CHAIN, &all) {
        Ok(net) => net,
        Err(e) => {
            eprintln!("partition_isolates_leader: skipped: {e}");
            return;
        }
    };
    let cluster = Cluster::start_custom(3, "Counter", "", hosts.clone(), uids);
    let old = cluster.leader();
    let client = BlockingClient::new(&cluster.addrs(), options(Duration::from_secs(20)))
        .expect("valid addresses");
    client.call::<_, ()>("increment", ()).expect("increment");
    let rest: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    let cut = Instant::now();
    net.add(net::partition(
        &[hosts[old].clone()],
        &rest.iter().map(|&i| hosts[i].clone()).collect::<Vec<_>>(),
    ))
    .expect("partition");
    // The majority elects one of its own.
    let deadline = cut + Duration::from_secs(20);
    let new = loop {
        let statuses: Vec<_> = rest.iter().map(|&i| (i, cluster.status(i))).collect();
        let leader = statuses
            .iter()
            .find_map(|(i, s)| s.as_ref().ok().filter(|s| s.role == "leader").map(|_| *i));
        if let Some(l) = leader {
            let addr = cluster.addr(l);
            if statuses
                .iter()
                .all(|(_, s)| s.as_ref().is_ok_and(|s| s.leader.as_deref() == Some(addr)))
            {
                break l;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the majority elected no leader within 20 s of cutting off {old}:\n{}",
            cluster.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let elected = cut.elapsed();
    // Clients are still served (through the majority), and the old leader,
    // still reachable for status, learnt nothing of it.
    client
        .call::<_, ()>("increment", ())
        .expect("increment during the partition");
    let during: u64 = rest
        .iter()
        .map(|&i| cluster.status(i).expect("status").executed_slot)
        .max()
        .unwrap();
    let isolated = cluster
        .status(old)
        .expect("the isolated replica answers status");
    eprintln!(
        "partition_isolates_leader: cut off {old}; {new} elected after {elected:.1?}; \
         majority executed slot {during}, isolated replica: role={} leader={:?} executed={}",
        isolated.role, isolated.leader, isolated.executed_slot
    );
    assert!(
        isolated.executed_slot < during,
        "the isolated replica executed the majority's commands through the partition"
    );
    net.heal_all();
    let statuses = cluster.wait_converged();
    assert_eq!(client.call::<_, i64>("getvalue", ()).expect("getvalue"), 2);
    eprintln!(
        "partition_isolates_leader: healed; converged at executed slot {}",
        statuses[0].1.executed_slot
    );
}

/// A connection cut resets the clients' connections to one replica and
/// nothing else: it answers no client while the rules hold, its peers
/// still reach it (it stays their leader), and it serves again after.
#[test]
fn connection_cut_resets_only_client_connections() {
    let hosts: Vec<String> = (0..3).map(|k| format!("127.0.0.{}", 130 + k)).collect();
    let uids: Vec<u32> = (0..3).map(|k| 62_130 + k).collect();
    let all: Vec<(String, u32)> = hosts.iter().cloned().zip(uids.iter().copied()).collect();
    let net = match Net::setup(CUT_CHAIN, &all) {
        Ok(net) => net,
        Err(e) => {
            eprintln!("connection_cut_resets_only_client_connections: skipped: {e}");
            return;
        }
    };
    let cluster = Cluster::start_custom(3, "Counter", "", hosts.clone(), uids);
    let leader = cluster.leader();
    let client = BlockingClient::new(&cluster.addrs(), options(Duration::from_secs(20)))
        .expect("valid addresses");
    client.call::<_, ()>("increment", ()).expect("increment");
    let rules = net
        .add(net::cut_clients(&hosts[leader]))
        .expect("cut rules");
    let refused = cluster
        .status(leader)
        .expect_err("a cut replica answers no client");
    assert!(
        refused.contains("refused") || refused.contains("reset"),
        "a cut answers with a reset, not silence: {refused}"
    );
    // Its peers still hear it: the followers still name it leader, having
    // executed past the increment (their status comes through).
    let addr = cluster.addr(leader).to_string();
    for i in (0..3).filter(|&i| i != leader) {
        let s = cluster.status(i).expect("a follower answers");
        assert_eq!(s.leader.as_deref(), Some(addr.as_str()), "follower {i}");
    }
    net.remove(&rules);
    let back = cluster.status(leader).expect("answers again after the cut");
    assert_eq!(back.role, "leader");
    client
        .call::<_, ()>("increment", ())
        .expect("increment after the cut");
    assert_eq!(client.call::<_, i64>("getvalue", ()).expect("getvalue"), 2);
    eprintln!("connection_cut_resets_only_client_connections: during the cut: {refused}");
}
