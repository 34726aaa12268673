//! The multi-process nemesis (issue 7, SPEC section 7): real `concoord`
//! replica processes on loopback, under concurrent client load, while a
//! seeded schedule injects faults — `kill -9` and restart with `-b`,
//! SIGSTOP/SIGCONT, and network partitions — and every recorded history is
//! checked: the Counter group's for linearizability, the Lock group's for
//! mutual exclusion (and linearizability with the Lock model).
//!
//! # Partitions
//!
//! Each replica listens on its own address 127.0.0.N and runs as its own
//! user (uid 62000 + N). On Linux, a connection to any 127.0.0.N leaves from
//! 127.0.0.1 unless the socket is bound, so the addresses alone cannot tell
//! one replica's outgoing connections from another's or from a client's. A
//! nat rule per replica, `-o lo -m owner --uid-owner UID -j SNAT --to-source
//! 127.0.0.N`, makes every connection a replica opens leave from its own
//! address, while the clients (this process, our own user) keep 127.0.0.1.
//! A partition is then plain address rules in a dedicated filter chain,
//! `-s 127.0.0.A -d 127.0.0.B -j DROP` both ways for every A on one side and
//! B on the other: peers are cut, clients still reach every replica.
//! `partition_isolates_leader` checks that this really partitions.
//! All rules live in chains of our own (jumped to from INPUT and
//! POSTROUTING), removed by a guard on drop and also at start, in case an
//! earlier run died. Without root or iptables (after trying `apt-get install
//! -y iptables`), partition faults are skipped with a printed reason.
//!
//! # Knobs
//!
//! `CONCOORD_NEMESIS_SECS` (total load time, default 18), `_RUN_SECS`
//! (longest single run; longer totals are split into runs, each on fresh
//! groups and checked on its own; default 60), `_REPLICAS` (3), `_CLIENTS`
//! (Counter clients, 10; the Lock gets half as many, at least 2), `_SEED`.

mod support;

use concoord::check::linearizability::{check_object, CheckResult, Options};
use concoord::check::mutex::{self, MutexKind};
use concoord::history::{value, History, PendingOp};
use concoord::threading::blocking::Lock;
use concoord::{BlockingClient, ClientError, ClientOptions};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use support::{Cluster, State};

/// Client call deadline under load.
const CALL_DEADLINE: Duration = Duration::from_secs(3);
/// How long a group may take to become healthy again before the next fault.
const RECOVER_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a healed group may take to converge at the end of a run.
const FINAL_CONVERGE: Duration = Duration::from_secs(30);
/// Our chains (filter and nat); the verification test uses its own.
const CHAIN: &str = "CONCOORD_NEMESIS";
const VERIFY_CHAIN: &str = "CONCOORD_NEMESIS_V";

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
// iptables

fn iptables(args: &[&str]) -> Result<(), String> {
    let out = Command::new("iptables")
        .arg("-w")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("iptables: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "iptables {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Whether iptables can be used here; tries to install it once if missing.
fn iptables_available() -> Result<(), String> {
    static CHECK: Mutex<Option<Result<(), String>>> = Mutex::new(None);
    let mut check = CHECK.lock().unwrap();
    if let Some(r) = check.as_ref() {
        return r.clone();
    }
    let r = (|| {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("not root: cannot change iptables or run replicas as other users".into());
        }
        let present = || {
            Command::new("iptables")
                .arg("-V")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if !present() {
            eprintln!("nemesis: iptables missing; trying `apt-get install -y iptables`");
            let _ = Command::new("apt-get")
                .args(["install", "-y", "-q", "iptables"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            if !present() {
                return Err("iptables is not installed and could not be installed".into());
            }
        }
        // A harmless probe: can we make (and remove) a chain?
        let probe = "CONCOORD_NEMESIS_PROBE";
        let _ = iptables(&["-X", probe]);
        iptables(&["-N", probe]).map_err(|e| format!("iptables not permitted: {e}"))?;
        let _ = iptables(&["-X", probe]);
        let _ = iptables(&["-t", "nat", "-X", probe]);
        iptables(&["-t", "nat", "-N", probe])
            .map_err(|e| format!("iptables nat table not usable: {e}"))?;
        let _ = iptables(&["-t", "nat", "-X", probe]);
        Ok(())
    })();
    *check = Some(r.clone());
    r
}

/// Our chains: a filter chain jumped to from INPUT (partitions) and a nat
/// chain jumped to from POSTROUTING (each replica's source address). Removed
/// on drop.
struct Net {
    chain: String,
    /// The partition rules in force (filter, in our chain).
    rules: Mutex<Vec<(String, String)>>,
}

impl Net {
    fn remove_chains(chain: &str) {
        while iptables(&["-D", "INPUT", "-j", chain]).is_ok() {}
        let _ = iptables(&["-F", chain]);
        let _ = iptables(&["-X", chain]);
        while iptables(&["-t", "nat", "-D", "POSTROUTING", "-j", chain]).is_ok() {}
        let _ = iptables(&["-t", "nat", "-F", chain]);
        let _ = iptables(&["-t", "nat", "-X", chain]);
    }

    /// Sets up `chain` with one SNAT rule per `(host, uid)`.
    fn setup(chain: &str, replicas: &[(String, u32)]) -> Result<Net, String> {
        iptables_available()?;
        Self::remove_chains(chain);
        let net = Net {
            chain: chain.to_string(),
            rules: Mutex::new(Vec::new()),
        };
        iptables(&["-N", chain])?;
        iptables(&["-I", "INPUT", "1", "-j", chain])?;
        iptables(&["-t", "nat", "-N", chain])?;
        iptables(&["-t", "nat", "-I", "POSTROUTING", "1", "-j", chain])?;
        for (host, uid) in replicas {
            let uid = uid.to_string();
            iptables(&[
                "-t",
                "nat",
                "-A",
                chain,
                "-o",
                "lo",
                "-m",
                "owner",
                "--uid-owner",
                &uid,
                "-j",
                "SNAT",
                "--to-source",
                host,
            ])?;
        }
        Ok(net)
    }

    /// Cuts every host in `a` off from every host in `b`, both ways.
    fn partition(&self, a: &[String], b: &[String]) -> Result<(), String> {
        let mut rules = self.rules.lock().unwrap();
        for x in a {
            for y in b {
                for (s, d) in [(x, y), (y, x)] {
                    iptables(&["-A", &self.chain, "-s", s, "-d", d, "-j", "DROP"])?;
                    rules.push((s.clone(), d.clone()));
                }
            }
        }
        Ok(())
    }

    /// Removes the partition rules between `a` and `b`.
    fn heal(&self, a: &[String], b: &[String]) {
        let mut rules = self.rules.lock().unwrap();
        rules.retain(|(s, d)| {
            let ours = (a.contains(s) && b.contains(d)) || (b.contains(s) && a.contains(d));
            if ours {
                iptables(&["-D", &self.chain, "-s", s, "-d", d, "-j", "DROP"])
                    .unwrap_or_else(|e| panic!("cannot remove a partition rule: {e}"));
            }
            !ours
        });
    }

    fn heal_all(&self) {
        let _ = iptables(&["-F", &self.chain]);
        self.rules.lock().unwrap().clear();
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        Self::remove_chains(&self.chain);
    }
}

// ---------------------------------------------------------------------------
// Group health, without panicking.

fn leader_of(cluster: &Cluster) -> Option<usize> {
    cluster
        .live()
        .into_iter()
        .find(|&i| cluster.status(i).is_ok_and(|s| s.role == "leader"))
}

/// Every replica running and answering, none joining, all naming one leader
/// that says it leads, all with the full member list; with `same_slot`,
/// all at the same executed slot.
fn healthy(cluster: &Cluster, same_slot: bool) -> bool {
    if cluster.live().len() != cluster.len() {
        return false;
    }
    let mut statuses = Vec::new();
    for i in 0..cluster.len() {
        match cluster.status(i) {
            Ok(s) => statuses.push((i, s)),
            Err(_) => return false,
        }
    }
    let Some(leader) = statuses[0].1.leader.clone() else {
        return false;
    };
    let leader_leads = statuses
        .iter()
        .any(|(i, s)| cluster.addr(*i) == leader && s.role == "leader");
    leader_leads
        && statuses.iter().all(|(_, s)| {
            s.role != "joining"
                && s.leader.as_ref() == Some(&leader)
                && s.members.len() == cluster.len()
                && (!same_slot || s.executed_slot == statuses[0].1.executed_slot)
        })
}

fn wait_healthy(cluster: &Cluster, same_slot: bool, timeout: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if healthy(cluster, same_slot) {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

// ---------------------------------------------------------------------------
// Faults

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    Kill,
    Pause,
    Partition,
}

const FAULTS: [Fault; 3] = [Fault::Kill, Fault::Pause, Fault::Partition];

#[derive(Default)]
struct NemesisLog {
    faults: BTreeMap<Fault, u64>,
    /// Faults aimed at the leader.
    at_leader: u64,
    /// Partitions skipped (no iptables).
    skipped: u64,
    /// Times a group took longer than RECOVER_TIMEOUT to be healthy again.
    slow_recoveries: Vec<String>,
    events: Vec<String>,
    longest_recovery: Duration,
}

/// One group under attack: faults one at a time, each healed before the
/// next, the group given time to recover between them.
fn nemesis(
    name: &str,
    cluster: &mut Cluster,
    hosts: &[String],
    net: Option<&Net>,
    rng: &mut Rng,
    until: Instant,
    log: &mut NemesisLog,
) {
    let start = Instant::now();
    let n = cluster.len();
    let mut round: Vec<Fault> = Vec::new();
    std::thread::sleep(rng.millis(200, 1_000));
    while Instant::now() < until {
        if round.is_empty() {
            // Every kind once per round, in a seeded order.
            round = FAULTS.to_vec();
            for i in (1..round.len()).rev() {
                round.swap(i, rng.below(i as u64 + 1) as usize);
            }
        }
        let fault = round.pop().unwrap();
        let leader = leader_of(cluster);
        let target = match leader {
            Some(l) if rng.chance(0.5) => l,
            _ => rng.below(n as u64) as usize,
        };
        if Some(target) == leader {
            log.at_leader += 1;
        }
        let t = start.elapsed().as_secs_f64();
        let what = match fault {
            Fault::Kill => {
                cluster.kill9(target);
                let down = rng.millis(200, 1_500);
                std::thread::sleep(down);
                cluster.restart(target);
                format!("kill -9 replica {target}, restarted after {down:?}")
            }
            Fault::Pause => {
                cluster.stop(target);
                let paused = rng.millis(500, 2_000);
                std::thread::sleep(paused);
                cluster.cont(target);
                format!("SIGSTOP replica {target} for {paused:?}")
            }
            Fault::Partition => {
                let Some(net) = net else {
                    log.skipped += 1;
                    continue;
                };
                // A minority: the target, and for 5 replicas maybe another.
                let mut minority = vec![target];
                let max_minority = (n - 1) / 2;
                while minority.len() < max_minority && rng.chance(0.5) {
                    let other = rng.below(n as u64) as usize;
                    if !minority.contains(&other) {
                        minority.push(other);
                    }
                }
                let a: Vec<String> = minority.iter().map(|&i| hosts[i].clone()).collect();
                let b: Vec<String> = (0..n)
                    .filter(|i| !minority.contains(i))
                    .map(|i| hosts[i].clone())
                    .collect();
                net.partition(&a, &b)
                    .unwrap_or_else(|e| panic!("cannot partition: {e}"));
                let held = rng.millis(1_000, 3_000);
                std::thread::sleep(held);
                net.heal(&a, &b);
                format!("partition {minority:?} | rest for {held:?}")
            }
        };
        *log.faults.entry(fault).or_default() += 1;
        let is_leader = if Some(target) == leader {
            " (leader)"
        } else {
            ""
        };
        match wait_healthy(cluster, false, RECOVER_TIMEOUT) {
            Some(d) => {
                log.longest_recovery = log.longest_recovery.max(d);
                log.events.push(format!(
                    "{name} t={t:.1}s {what}{is_leader}; healthy after {d:.1?}"
                ));
            }
            None => {
                let msg = format!(
                    "{name} t={t:.1}s {what}{is_leader}: not healthy within {RECOVER_TIMEOUT:?}\n{}",
                    cluster.diagnostics()
                );
                eprintln!("nemesis: {msg}");
                log.slow_recoveries.push(msg);
                // Give it more time, without new faults.
                wait_healthy(cluster, false, RECOVER_TIMEOUT);
            }
        }
        std::thread::sleep(rng.millis(300, 1_200));
    }
}

/// Puts every replica back: continues stopped ones, restarts dead ones.
fn heal_cluster(cluster: &mut Cluster) {
    for i in 0..cluster.len() {
        if cluster.state(i) == State::Stopped {
            cluster.cont(i);
        }
    }
    for i in 0..cluster.len() {
        if cluster.state(i) == State::Dead {
            cluster.restart(i);
        }
    }
}

// ---------------------------------------------------------------------------
// Load

fn options(deadline: Duration) -> ClientOptions {
    ClientOptions {
        deadline,
        ..ClientOptions::default()
    }
}

/// Completes `op` from a call's result; whether the outcome is unknown.
fn finish<T: serde::Serialize>(op: PendingOp, r: &Result<T, ClientError>) -> bool {
    match r {
        Ok(v) => {
            op.ok(v);
            false
        }
        Err(e) => {
            let info = matches!(e.kind(), "Unavailable" | "Invalid");
            op.finish_error(e.kind(), &e.message());
            info
        }
    }
}

/// A client's name in the history: after an operation with an unknown
/// outcome (still pending, as far as the checkers know) it continues under
/// a new name, as Jepsen does.
struct Name {
    base: String,
    generation: u32,
}

impl Name {
    fn get(&self) -> String {
        format!("{}.{}", self.base, self.generation)
    }
}

fn counter_client(
    id: usize,
    addrs: String,
    history: History,
    stop: Arc<AtomicBool>,
    seed: u64,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let client = BlockingClient::new(&addrs, options(CALL_DEADLINE)).expect("valid addresses");
        let mut rng = Rng(seed);
        let mut name = Name {
            base: format!("c{id}"),
            generation: 0,
        };
        while !stop.load(Ordering::SeqCst) {
            let info = if rng.chance(0.7) {
                let op = history.invoke(name.get(), "increment", vec![]);
                finish(op, &client.call::<_, ()>("increment", ()))
            } else {
                let op = history.invoke(name.get(), "getvalue", vec![]);
                finish(op, &client.call::<_, i64>("getvalue", ()))
            };
            if info {
                name.generation += 1;
            }
            std::thread::sleep(Duration::from_millis(rng.below(20)));
        }
    })
}

fn lock_client(
    id: usize,
    addrs: String,
    history: History,
    stop: Arc<AtomicBool>,
    last_acquired: Arc<AtomicU64>,
    epoch: Instant,
    seed: u64,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let lock = Lock::new(&addrs, options(CALL_DEADLINE)).expect("valid addresses");
        let mut rng = Rng(seed);
        let mut name = Name {
            base: format!("l{id}"),
            generation: 0,
        };
        let now_ms = || epoch.elapsed().as_millis() as u64;
        let release = |name: &mut Name| {
            let op = history.invoke(name.get(), "release", vec![]);
            if finish(op, &lock.release()) {
                name.generation += 1;
            }
        };
        while !stop.load(Ordering::SeqCst) {
            let timeout = rng.millis(200, 1_000);
            let op = history.invoke(
                name.get(),
                "acquire",
                vec![value(true), value(timeout.as_secs_f64())],
            );
            let r = lock.acquire_timeout(timeout);
            let acquired = matches!(r, Ok(true));
            let info = finish(op, &r);
            if acquired {
                last_acquired.store(now_ms(), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(rng.below(30)));
                release(&mut name);
            } else if info {
                // We may hold it: release (anyone may release a Lock; the
                // checkers know that a release may end anyone's hold).
                name.generation += 1;
                release(&mut name);
            } else {
                // If nobody got the lock for a long time, it may be held by
                // an acquire whose outcome its client never learnt (granted
                // after it gave up): release it, recorded like any release.
                let last = last_acquired.load(Ordering::SeqCst);
                if now_ms().saturating_sub(last) > 5_000
                    && last_acquired
                        .compare_exchange(last, now_ms(), Ordering::SeqCst, Ordering::SeqCst)
                        .is_ok()
                {
                    release(&mut name);
                }
                std::thread::sleep(Duration::from_millis(rng.below(50)));
            }
        }
    })
}

// ---------------------------------------------------------------------------
// One run

struct Config {
    secs: u64,
    replicas: usize,
    clients: usize,
    seed: u64,
}

#[derive(Default)]
struct Counts {
    ok: usize,
    fail: usize,
    info: usize,
}

impl Counts {
    fn of(history: &History) -> Counts {
        let mut c = Counts::default();
        for op in history.operations() {
            if op.is_ok() {
                c.ok += 1;
            } else if op.is_fail() {
                c.fail += 1;
            } else {
                c.info += 1;
            }
        }
        c
    }
}

#[derive(Default)]
struct RunReport {
    seed: u64,
    counter_ops: Counts,
    lock_ops: Counts,
    faults: BTreeMap<Fault, u64>,
    at_leader: u64,
    skipped_partitions: u64,
    anomalies: Vec<String>,
    unknown: Vec<String>,
    slow_recoveries: usize,
    longest_recovery: Duration,
    final_value: Option<i64>,
    lock_acquired: usize,
}

fn dump(history: &History, what: &str, seed: u64) -> String {
    let dir = std::env::temp_dir();
    let path = dir.join(format!("concoord-nemesis-{what}-{seed}.json"));
    match std::fs::write(&path, history.to_json()) {
        Ok(()) => path.display().to_string(),
        Err(e) => format!("(could not write {}: {e})", path.display()),
    }
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
    let all: Vec<(String, u32)> = (0..2 * n).map(|k| (host(k), uid(k))).collect();
    let net = match Net::setup(CHAIN, &all) {
        Ok(net) => Some(Arc::new(net)),
        Err(e) => {
            if net_reason.is_none() {
                eprintln!("nemesis: partition faults skipped: {e}");
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
        clients.push(counter_client(
            id,
            counter.addrs(),
            counter_history.clone(),
            stop.clone(),
            rng.next(),
        ));
    }
    let last_acquired = Arc::new(AtomicU64::new(0));
    for id in 0..(config.clients / 2).max(2) {
        clients.push(lock_client(
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
    let spawn_nemesis = |name: &'static str, mut cluster: Cluster, hosts: Vec<String>, s: u64| {
        let net = net.clone();
        std::thread::spawn(move || {
            let mut log = NemesisLog::default();
            let mut rng = Rng(s);
            nemesis(
                name,
                &mut cluster,
                &hosts,
                net.as_deref(),
                &mut rng,
                until,
                &mut log,
            );
            (cluster, log)
        })
    };
    let n1 = spawn_nemesis("counter", counter, counter_hosts, rng.next());
    let n2 = spawn_nemesis("lock", lock, lock_hosts, rng.next());
    let (mut counter, log1) = n1.join().expect("the counter nemesis");
    let (mut lock, log2) = n2.join().expect("the lock nemesis");
    // Faults over: heal everything, let the load run on a moment, stop it.
    if let Some(net) = &net {
        net.heal_all();
    }
    heal_cluster(&mut counter);
    heal_cluster(&mut lock);
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
        report.skipped_partitions += log.skipped;
        report.slow_recoveries += log.slow_recoveries.len();
        report.longest_recovery = report.longest_recovery.max(log.longest_recovery);
        for e in &log.events {
            eprintln!("nemesis[{run_index}]: {e}");
        }
    }

    // Convergence of every replica of both groups.
    for (name, cluster) in [("Counter", &counter), ("Lock", &lock)] {
        if wait_healthy(cluster, true, FINAL_CONVERGE).is_none() {
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
    finish(op, &r);
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
    match check_object("Lock", &lock_history.operations(), &lin) {
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

fn table(config: &Config, reports: &[RunReport], net_reason: &Option<String>) -> String {
    let mut t = String::new();
    let total = |f: &dyn Fn(&RunReport) -> usize| reports.iter().map(f).sum::<usize>();
    let fault = |k: Fault| {
        reports
            .iter()
            .map(|r| r.faults.get(&k).copied().unwrap_or(0))
            .sum::<u64>()
    };
    let _ = writeln!(
        t,
        "\n== concoord nemesis: seed {}, {} replicas per group (Counter + Lock), {} Counter clients + {} Lock clients, {} s of load ==",
        config.seed,
        config.replicas,
        config.clients,
        (config.clients / 2).max(2),
        config.secs
    );
    let _ = writeln!(t, "| measure | count |\n|---|---|");
    let mut row = |k: &str, v: String| {
        let _ = writeln!(t, "| {k} | {v} |");
    };
    row("runs", reports.len().to_string());
    row(
        "Counter operations (ok / fail / info)",
        format!(
            "{} / {} / {}",
            total(&|r| r.counter_ops.ok),
            total(&|r| r.counter_ops.fail),
            total(&|r| r.counter_ops.info)
        ),
    );
    row(
        "Lock operations (ok / fail / info)",
        format!(
            "{} / {} / {}",
            total(&|r| r.lock_ops.ok),
            total(&|r| r.lock_ops.fail),
            total(&|r| r.lock_ops.info)
        ),
    );
    row(
        "Lock acquisitions granted",
        total(&|r| r.lock_acquired).to_string(),
    );
    row(
        "faults: kill -9 + restart -b",
        fault(Fault::Kill).to_string(),
    );
    row("faults: SIGSTOP/SIGCONT", fault(Fault::Pause).to_string());
    row(
        "faults: partitions",
        match net_reason {
            None => fault(Fault::Partition).to_string(),
            Some(why) => format!(
                "0 ({} skipped: {why})",
                reports.iter().map(|r| r.skipped_partitions).sum::<u64>()
            ),
        },
    );
    row(
        "faults aimed at the leader",
        reports.iter().map(|r| r.at_leader).sum::<u64>().to_string(),
    );
    row(
        "recoveries slower than 20 s",
        total(&|r| r.slow_recoveries).to_string(),
    );
    row(
        "longest recovery",
        format!(
            "{:.1?}",
            reports
                .iter()
                .map(|r| r.longest_recovery)
                .max()
                .unwrap_or_default()
        ),
    );
    row(
        "anomalies (expected 0)",
        total(&|r| r.anomalies.len()).to_string(),
    );
    row(
        "checker results Unknown",
        total(&|r| r.unknown.len()).to_string(),
    );
    for (i, r) in reports.iter().enumerate() {
        let _ = writeln!(
            t,
            "run {i}: seed {} final counter {:?}{}",
            r.seed,
            r.final_value,
            if r.unknown.is_empty() {
                String::new()
            } else {
                format!("; unknown: {:?}", r.unknown)
            }
        );
    }
    t
}

#[test]
fn nemesis_counter_and_lock() {
    let total_secs = env_u64("CONCOORD_NEMESIS_SECS", 18).max(1);
    let run_secs = env_u64("CONCOORD_NEMESIS_RUN_SECS", 60).max(1);
    let replicas = env_u64("CONCOORD_NEMESIS_REPLICAS", 3) as usize;
    let clients = env_u64("CONCOORD_NEMESIS_CLIENTS", 10) as usize;
    assert!(replicas >= 3 && replicas % 2 == 1, "3, 5, 7... replicas");
    assert!(2 * replicas + 2 <= 255);
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
    net.partition(
        &[hosts[old].clone()],
        &rest.iter().map(|&i| hosts[i].clone()).collect::<Vec<_>>(),
    )
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
