//! Multi-process tests of the real `concoord` binary: groups of replica
//! processes on loopback, crashed with SIGKILL, paused with SIGSTOP, stopped
//! with SIGTERM and restarted, while clients keep calling them; and the
//! command line's output contract. Every wait is bounded by a deadline.

mod support;

use concoord::{BlockingClient, ClientError};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use support::{run_cli, spawn_replica, unused_addr, Cluster, State};

/// How long one client call may take before the client gives up.
const CALL_DEADLINE: Duration = Duration::from_secs(15);

fn client_for(cluster: &Cluster, addrs: &str) -> BlockingClient {
    BlockingClient::new(addrs, cluster.client_options(CALL_DEADLINE)).expect("valid addresses")
}

fn increment(client: &BlockingClient) {
    client
        .call::<_, ()>("increment", ())
        .unwrap_or_else(|e| panic!("increment failed: {e:?}"));
}

fn getvalue(client: &BlockingClient) -> i64 {
    client
        .call::<_, i64>("getvalue", ())
        .unwrap_or_else(|e| panic!("getvalue failed: {e:?}"))
}

/// Client threads incrementing a counter, each a fixed number of times.
struct Load {
    acked: Arc<AtomicU64>,
    in_doubt: Arc<AtomicU64>,
    done: Arc<AtomicU64>,
    errors: Arc<Mutex<Vec<String>>>,
    handles: Vec<JoinHandle<()>>,
    total: u64,
}

struct LoadResult {
    acked: u64,
    in_doubt: u64,
    done: u64,
    errors: Vec<String>,
}

impl Load {
    /// `threads` threads, each with its own client bootstrapped with every
    /// address, each doing `quota` increments (or fewer if `budget` runs out).
    fn start(cluster: &Cluster, threads: usize, quota: u64, budget: Duration) -> Load {
        let acked = Arc::new(AtomicU64::new(0));
        let in_doubt = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let give_up = Instant::now() + budget;
        let handles = (0..threads)
            .map(|_| {
                let client = client_for(cluster, &cluster.addrs());
                let (acked, in_doubt, done, errors) = (
                    acked.clone(),
                    in_doubt.clone(),
                    done.clone(),
                    errors.clone(),
                );
                std::thread::spawn(move || {
                    for _ in 0..quota {
                        if Instant::now() >= give_up {
                            errors.lock().unwrap().push("load budget ran out".into());
                            return;
                        }
                        match client.call::<_, ()>("increment", ()) {
                            Ok(()) => acked.fetch_add(1, Ordering::SeqCst),
                            Err(e) => {
                                errors.lock().unwrap().push(format!("{e:?}"));
                                in_doubt.fetch_add(1, Ordering::SeqCst)
                            }
                        };
                        done.fetch_add(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        Load {
            acked,
            in_doubt,
            done,
            errors,
            handles,
            total: threads as u64 * quota,
        }
    }

    fn done(&self) -> u64 {
        self.done.load(Ordering::SeqCst)
    }

    fn acked(&self) -> u64 {
        self.acked.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` calls have finished (answered or failed).
    fn wait_done(&self, n: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.done() < n {
            assert!(
                Instant::now() < deadline,
                "load made no progress: {} of {n} calls done after {timeout:?}; errors {:?}",
                self.done(),
                self.errors.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for every thread to finish its quota.
    fn finish(self) -> LoadResult {
        for h in self.handles {
            h.join().expect("a load thread panicked");
        }
        LoadResult {
            acked: self.acked.load(Ordering::SeqCst),
            in_doubt: self.in_doubt.load(Ordering::SeqCst),
            done: self.done.load(Ordering::SeqCst),
            errors: self.errors.lock().unwrap().clone(),
        }
    }
}

#[test]
fn three_replicas_survive_leader_kill9_under_load() {
    const QUOTA: u64 = 150;
    let started = Instant::now();
    let mut cluster = Cluster::start(3);
    let load = Load::start(&cluster, 4, QUOTA, Duration::from_secs(45));
    load.wait_done(QUOTA, Duration::from_secs(20));
    let leader = cluster.leader();
    cluster.kill9(leader);
    let (done_at_kill, acked_at_kill) = (load.done(), load.acked());
    assert!(
        done_at_kill < load.total,
        "the kill came after the load finished; raise the quota"
    );
    let result = load.finish();
    eprintln!(
        "killed leader {leader} after {done_at_kill} calls; acked {} in doubt {} errors {:?}",
        result.acked, result.in_doubt, result.errors
    );
    assert_eq!(
        result.done,
        4 * QUOTA,
        "every thread did its quota: {:?}",
        result.errors
    );
    assert!(
        result.acked > acked_at_kill,
        "calls were acknowledged after the leader was killed"
    );

    let value = getvalue(&cluster.client()) as u64;
    assert!(
        result.acked <= value && value <= result.acked + result.in_doubt,
        "acked {} <= value {value} <= acked + in doubt {}",
        result.acked,
        result.acked + result.in_doubt
    );
    assert_eq!(
        result.in_doubt, 0,
        "a retrying client should not give up with two of three replicas up: {:?}",
        result.errors
    );

    let statuses = cluster.wait_converged();
    assert_eq!(statuses.len(), 2, "two live replicas");
    assert!(statuses.iter().all(|(i, _)| *i != leader));
    eprintln!(
        "three_replicas_survive_leader_kill9_under_load: {:?}",
        started.elapsed()
    );
}

#[test]
fn sigstop_follower_and_sigcont() {
    const QUOTA: u64 = 150;
    let started = Instant::now();
    let mut cluster = Cluster::start(3);
    let load = Load::start(&cluster, 2, QUOTA, Duration::from_secs(45));
    load.wait_done(QUOTA / 4, Duration::from_secs(20));
    let leader = cluster.leader();
    let follower = cluster.follower();
    let before = cluster.status(follower).expect("the follower answers");
    cluster.stop(follower);
    let done_at_stop = load.done();
    // The other two are a majority: the load goes on without the paused one.
    load.wait_done(done_at_stop + QUOTA, Duration::from_secs(20));
    assert!(
        cluster.status(follower).is_err(),
        "a SIGSTOPped replica does not answer"
    );
    let leader_while_stopped = cluster.status(leader).expect("the leader answers");
    assert!(
        leader_while_stopped.executed_slot > before.executed_slot,
        "the group made progress while the follower was paused: {} -> {}",
        before.executed_slot,
        leader_while_stopped.executed_slot
    );
    cluster.cont(follower);
    let result = load.finish();
    assert_eq!(
        result.done,
        2 * QUOTA,
        "every thread did its quota: {:?}",
        result.errors
    );
    assert_eq!(result.in_doubt, 0, "no call failed: {:?}", result.errors);

    let client = cluster.client();
    let value = getvalue(&client) as u64;
    assert_eq!(value, result.acked, "the count is exact");

    // The resumed follower catches up with the leader.
    let statuses = cluster.wait_converged();
    assert_eq!(statuses.len(), 3);
    let (_, resumed) = statuses
        .iter()
        .find(|(i, _)| *i == follower)
        .expect("the resumed replica answers");
    // It may come back as the leader: on SIGCONT its election timer has
    // long expired and it may preempt the healthy leader (no pre-vote).
    assert!(
        resumed.role == "follower" || resumed.role == "leader",
        "{resumed:?}"
    );
    assert!(
        resumed.executed_slot >= leader_while_stopped.executed_slot,
        "caught up past what it missed: {} < {}",
        resumed.executed_slot,
        leader_while_stopped.executed_slot
    );
    assert_eq!(cluster.state(follower), State::Running);
    eprintln!("sigstop_follower_and_sigcont: {:?}", started.elapsed());
}

#[test]
fn killed_replica_restarts_with_bootstrap_and_rejoins() {
    let started = Instant::now();
    let mut cluster = Cluster::start(3);
    let client = cluster.client();
    for _ in 0..10 {
        increment(&client);
    }
    let follower = cluster.follower();
    cluster.kill9(follower);
    for _ in 0..10 {
        increment(&client);
    }
    cluster.restart(follower);
    let statuses = cluster.wait_converged();
    let (_, rejoined) = statuses.iter().find(|(i, _)| *i == follower).unwrap();
    assert_eq!(rejoined.role, "follower");
    assert_eq!(rejoined.members.len(), 3, "{:?}", rejoined.members);

    // A client that knows only the restarted replica's address gets through.
    let only_it = client_for(&cluster, cluster.addr(follower));
    increment(&only_it);
    assert_eq!(getvalue(&only_it), 21);

    // It is a voting member again: with the leader killed too, it and the
    // third replica are the majority that serves.
    let leader = cluster.leader();
    cluster.kill9(leader);
    increment(&only_it);
    assert_eq!(getvalue(&only_it), 22);

    // And the old leader comes back the same way.
    cluster.restart(leader);
    let statuses = cluster.wait_converged();
    assert_eq!(statuses.len(), 3);
    let (_, back) = statuses.iter().find(|(i, _)| *i == leader).unwrap();
    assert_eq!(back.role, "follower");
    let only_old_leader = client_for(&cluster, cluster.addr(leader));
    assert_eq!(getvalue(&only_old_leader), 22);
    eprintln!(
        "killed_replica_restarts_with_bootstrap_and_rejoins: {:?}",
        started.elapsed()
    );
}

#[test]
fn groups_of_3_5_7_lose_a_minority_one_leader_at_a_time() {
    let started = Instant::now();
    for n in [3usize, 5, 7] {
        let t = Instant::now();
        let mut cluster = Cluster::start(n);
        let client = cluster.client();
        let mut acked = 0i64;
        for _ in 0..3 {
            increment(&client);
            acked += 1;
        }
        let f = (n - 1) / 2;
        for kill in 1..=f {
            let leader = cluster.leader();
            cluster.kill9(leader);
            for _ in 0..3 {
                increment(&client);
                acked += 1;
            }
            assert_eq!(
                getvalue(&client),
                acked,
                "n={n}: after killing leader #{kill} ({})",
                cluster.addr(leader)
            );
        }
        assert_eq!(cluster.live().len(), n - f);
        let statuses = cluster.wait_converged();
        assert_eq!(statuses.len(), n - f);
        eprintln!("n={n}: {f} leader kills in {:?}", t.elapsed());
    }
    eprintln!(
        "groups_of_3_5_7_lose_a_minority_one_leader_at_a_time: {:?}",
        started.elapsed()
    );
}

#[test]
fn client_that_knows_one_address() {
    let started = Instant::now();
    let mut cluster = Cluster::start(5);
    let leader = cluster.leader();
    let follower = cluster.follower();
    let client = client_for(&cluster, cluster.addr(follower));
    increment(&client);

    // It followed the redirect to the leader and learnt the group.
    let status = client.status().expect("status through the client");
    assert_eq!(
        status.address,
        cluster.addr(leader),
        "connected to the leader"
    );
    assert_eq!(status.role, "leader");
    assert_eq!(status.members.len(), 5, "{:?}", status.members);

    // With the one address it was given gone, and the leader too, it still
    // finds the group through the members it learnt.
    cluster.kill9(follower);
    cluster.kill9(leader);
    increment(&client);
    assert_eq!(getvalue(&client), 2);

    // The command line, given one live follower, works too.
    let other = cluster.follower();
    let out = run_cli(
        &[
            "call",
            "-r",
            cluster.addr(other),
            "--timeout",
            "15",
            "getvalue",
        ],
        None,
        Duration::from_secs(20),
    );
    assert_eq!(out.code(), Some(0), "stderr: {}", out.stderr);
    assert_eq!(out.stdout.trim(), "2");
    eprintln!("client_that_knows_one_address: {:?}", started.elapsed());
}

#[test]
fn wrong_token_is_refused() {
    let started = Instant::now();
    let cluster = Cluster::start_with(3, "Counter", "secret");
    let client = cluster.client();
    increment(&client);

    let addrs = cluster.addrs();
    for token_args in [&["-t", "wrong"][..], &[][..]] {
        let mut args = vec!["call", "-r", &addrs, "--timeout", "10"];
        args.extend_from_slice(token_args);
        args.push("increment");
        let out = run_cli(&args, None, Duration::from_secs(20));
        assert_ne!(out.code(), Some(0), "{args:?} must fail");
        assert_eq!(out.code(), Some(1), "{args:?}: stderr {}", out.stderr);
        assert!(
            out.stderr.to_lowercase().contains("token"),
            "{args:?}: the error mentions the token: {}",
            out.stderr
        );
        let error = error_json(&out.stderr);
        assert_eq!(error["kind"], "Refused", "{args:?}: {}", out.stderr);
        assert!(
            out.stdout.trim().is_empty(),
            "nothing on stdout: {}",
            out.stdout
        );
        assert!(
            out.elapsed < Duration::from_secs(8),
            "a refusal is immediate, not a timeout: {:?}",
            out.elapsed
        );
    }

    // A Rust client with the wrong token gets Refused as well.
    let wrong = BlockingClient::new(
        &addrs,
        concoord::ClientOptions {
            token: "wrong".into(),
            deadline: Duration::from_secs(10),
            ..Default::default()
        },
    )
    .unwrap();
    match wrong.call::<_, ()>("increment", ()) {
        Err(ClientError::Refused(m)) => assert!(m.contains("token"), "{m}"),
        other => panic!("expected Refused, got {other:?}"),
    }

    // Nothing the refused calls sent took effect.
    assert_eq!(getvalue(&client), 1);
    let out = run_cli(
        &["call", "-r", &addrs, "-t", "secret", "getvalue"],
        None,
        Duration::from_secs(20),
    );
    assert_eq!(out.code(), Some(0), "stderr: {}", out.stderr);
    assert_eq!(out.stdout.trim(), "1");
    eprintln!("wrong_token_is_refused: {:?}", started.elapsed());
}

#[test]
fn unknown_object_name_is_a_clear_error() {
    let out = run_cli(
        &["replica", "-o", "NoSuchThing", "-a", "127.0.0.1", "-p", "0"],
        None,
        Duration::from_secs(10),
    );
    assert_ne!(out.code(), Some(0));
    assert!(out.code().is_some(), "it exits, not killed by a signal");
    assert!(
        out.elapsed < Duration::from_secs(5),
        "quickly: {:?}",
        out.elapsed
    );
    assert!(
        out.stderr.contains("NoSuchThing"),
        "names the object: {}",
        out.stderr
    );
    for builtin in ["Counter", "Lock", "Semaphore"] {
        assert!(
            out.stderr.contains(builtin),
            "lists {builtin}: {}",
            out.stderr
        );
    }
    assert!(!out.stdout.contains("listening on"), "{}", out.stdout);

    // A second replica on a port in use says so, and the first keeps serving.
    let cluster = Cluster::start(1);
    let port = cluster.addr(0).rsplit_once(':').unwrap().1.to_string();
    let failure =
        spawn_replica(&["-o", "Counter", "-a", "127.0.0.1", "-p", &port].map(String::from))
            .err()
            .expect("a second replica on the same port must not start");
    let status = failure.status.expect("it exits by itself");
    assert!(!status.success(), "exits non-zero: {status:?}");
    assert!(
        failure.stderr.contains("in use"),
        "says the port is in use: {}",
        failure.stderr
    );
    assert!(
        failure.stderr.contains(&port),
        "names the port: {}",
        failure.stderr
    );
    let client = cluster.client();
    increment(&client);
    assert_eq!(getvalue(&client), 1);
}

#[test]
fn sigterm_exits_zero() {
    let started = Instant::now();
    let mut cluster = Cluster::start(3);
    let client = cluster.client();
    for _ in 0..5 {
        increment(&client);
    }
    // The leader, which the client is connected to.
    let leader = cluster.leader();
    let status = cluster.terminate(leader, Duration::from_secs(5));
    let status = status.expect("the replica exits within 5 s of SIGTERM");
    assert!(
        status.success(),
        "exit status 0 after SIGTERM, got {status:?}"
    );

    // The other two keep serving.
    increment(&client);
    assert_eq!(getvalue(&client), 6);
    let statuses = cluster.wait_converged();
    assert_eq!(statuses.len(), 2);

    // A follower exits 0 too (the survivor is then a minority, as expected).
    let follower = cluster.follower();
    let status = cluster.terminate(follower, Duration::from_secs(5));
    assert!(status.expect("exits within 5 s").success());
    eprintln!("sigterm_exits_zero: {:?}", started.elapsed());
}

/// The `{"error": {...}}` object a failed call prints on stderr.
fn error_json(stderr: &str) -> serde_json::Value {
    stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l.trim()).ok())
        .find_map(|v| v.get("error").cloned())
        .unwrap_or_else(|| panic!("no JSON error line on stderr: {stderr}"))
}

#[test]
fn cli_call_shell_status_contract() {
    let started = Instant::now();
    let cluster = Cluster::start(3);
    let addrs = cluster.addrs();
    let limit = Duration::from_secs(20);
    let call = |args: &[&str]| {
        let mut all = vec!["call", "-r", &addrs, "--timeout", "15"];
        all.extend_from_slice(args);
        run_cli(&all, None, limit)
    };

    let out = call(&["increment"]);
    assert_eq!(out.code(), Some(0), "stderr: {}", out.stderr);
    assert_eq!(out.stdout.trim(), "null");
    let out = call(&["getvalue"]);
    assert_eq!(out.code(), Some(0), "stderr: {}", out.stderr);
    assert_eq!(out.stdout.trim(), "1");

    let out = call(&["nosuch"]);
    assert_eq!(out.code(), Some(1), "stderr: {}", out.stderr);
    assert!(out.stdout.trim().is_empty(), "stdout: {}", out.stdout);
    let error = error_json(&out.stderr);
    assert_eq!(error["kind"], "UnknownMethod", "{}", out.stderr);
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("nosuch")),
        "{}",
        out.stderr
    );

    let out = call(&["increment", "5"]);
    assert_eq!(out.code(), Some(1), "stderr: {}", out.stderr);
    assert_eq!(
        error_json(&out.stderr)["kind"],
        "BadArguments",
        "{}",
        out.stderr
    );

    // Usage errors exit 2: no -r, and an argument that is not JSON.
    let out = run_cli(&["call", "getvalue"], None, limit);
    assert_eq!(out.code(), Some(2), "stderr: {}", out.stderr);
    let out = call(&["increment", "{"]);
    assert_eq!(out.code(), Some(2), "stderr: {}", out.stderr);

    // Neither failed call changed the state.
    assert_eq!(call(&["getvalue"]).stdout.trim(), "1");

    let out = run_cli(
        &["shell", "-r", &addrs, "--timeout", "15"],
        Some("increment\ngetvalue\nnosuch\ngetvalue\n"),
        limit,
    );
    assert_eq!(out.code(), Some(0), "stderr: {}", out.stderr);
    let lines: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?} is not JSON: {e}")))
        .collect();
    assert_eq!(
        lines.len(),
        4,
        "one JSON line per input line: {}",
        out.stdout
    );
    assert_eq!(lines[0], serde_json::Value::Null);
    assert_eq!(lines[1], serde_json::json!(2));
    assert_eq!(lines[2]["error"]["kind"], "UnknownMethod", "{}", out.stdout);
    assert!(lines[2]["error"]["message"].is_string());
    assert_eq!(lines[3], serde_json::json!(2));

    let dead = unused_addr();
    let out = run_cli(
        &["status", "--json", "-r", &format!("{addrs},{dead}")],
        None,
        limit,
    );
    assert_eq!(out.code(), Some(0), "stderr: {}", out.stderr);
    let entries: Vec<serde_json::Value> =
        serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", out.stdout));
    assert_eq!(entries.len(), 4, "one entry per address: {}", out.stdout);
    let mut leaders = 0;
    for (i, entry) in entries[..3].iter().enumerate() {
        assert_eq!(entry["address"], cluster.addr(i), "{entry}");
        assert!(entry.get("error").is_none(), "{entry}");
        let role = entry["role"].as_str().expect("a role");
        assert!(role == "leader" || role == "follower", "{entry}");
        leaders += (role == "leader") as usize;
        assert_eq!(
            entry["members"].as_array().map(Vec::len),
            Some(3),
            "{entry}"
        );
        assert!(entry["leader"].is_string(), "{entry}");
        for key in [
            "id",
            "ballot",
            "next_slot",
            "executed_slot",
            "snapshot_slot",
            "clients",
            "parked",
            "uptime_s",
        ] {
            assert!(entry.get(key).is_some(), "{key} missing in {entry}");
        }
        assert!(entry["executed_slot"].is_u64(), "{entry}");
    }
    assert_eq!(leaders, 1, "exactly one leader: {}", out.stdout);
    assert_eq!(entries[3]["address"], dead.as_str());
    assert!(entries[3]["error"].is_string(), "{}", entries[3]);
    assert_eq!(
        entries[3].as_object().map(|o| o.len()),
        Some(2),
        "{}",
        entries[3]
    );
    eprintln!("cli_call_shell_status_contract: {:?}", started.elapsed());
}
