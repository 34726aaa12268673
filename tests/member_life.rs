//! The life of a member, on the real binary as child processes: removed by
//! `concoord admin remove`, leaving with `--leave` on SIGTERM, coming back
//! only through `-b`, and returning from a pause without deposing the leader
//! (pre-vote). Every wait is a bounded poll of the group's status.

mod support;

use concoord::{BlockingClient, ClientOptions};
use std::process::ExitStatus;
use std::time::{Duration, Instant};
use support::{run_cli, spawn_replica, Cluster, State, FORM_TIMEOUT};

/// How long a removed or leaving replica may take to exit.
const EXIT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a `concoord admin` or `status` command may take.
const CLI_TIMEOUT: Duration = Duration::from_secs(40);
/// The replicas' election timeout (`NodeOptions`' default): a follower that
/// hears no leader for 1–2× this would start an election.
const ELECTION_TIMEOUT: Duration = Duration::from_millis(500);

fn client(addrs: &str) -> BlockingClient {
    let options = ClientOptions {
        deadline: Duration::from_secs(20),
        ..ClientOptions::default()
    };
    BlockingClient::new(addrs, options).expect("valid addresses")
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

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn addrs_of(cluster: &Cluster, which: &[usize]) -> Vec<String> {
    sorted(which.iter().map(|&i| cluster.addr(i).to_string()).collect())
}

/// Whether process `pid` has exited (a zombie not yet reaped).
fn has_exited(pid: libc::pid_t) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    // "pid (comm) STATE ...": the comm may hold spaces and parentheses.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next())
        .is_some_and(|state| state == 'Z' || state == 'X')
}

/// Waits (bounded) until replica `i` exits on its own, reaps it and
/// returns its exit status.
fn wait_exit(cluster: &mut Cluster, i: usize, timeout: Duration) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    while !has_exited(cluster.procs[i].pid()) {
        assert!(
            Instant::now() < deadline,
            "replica {i} ({}) still runs {timeout:?} after its removal; stderr:\n{}",
            cluster.addr(i),
            cluster.procs[i].stderr_tail()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // It has exited: the SIGTERM that `terminate` sends finds a zombie, and
    // the status reaped is the one it exited with.
    cluster
        .terminate(i, Duration::from_secs(5))
        .expect("an exited process is reaped")
}

/// Waits (bounded) until replica `i`'s stderr holds `text`.
fn wait_logged(cluster: &Cluster, i: usize, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cluster.procs[i].stderr_tail().contains(text) {
        assert!(
            Instant::now() < deadline,
            "replica {i} never logged {text:?}; stderr:\n{}",
            cluster.procs[i].stderr_tail()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until every live replica lists exactly `members` and follows one
/// leader among them.
fn wait_members(cluster: &Cluster, members: &[String]) {
    cluster.poll("the new membership", FORM_TIMEOUT, |ok| {
        let leader = ok[0].1.leader.clone()?;
        ok.iter()
            .all(|(_, s)| {
                sorted(s.members.clone()) == members
                    && s.leader.as_ref() == Some(&leader)
                    && members.contains(&leader)
            })
            .then_some(())
    })
}

/// `concoord status` as a user runs it: every address answers with `members`.
fn assert_status_cli_members(addrs: &[String], members: &[String]) {
    let out = run_cli(
        &["status", "--json", "-r", &addrs.join(",")],
        None,
        CLI_TIMEOUT,
    );
    assert_eq!(out.code(), Some(0), "status failed: {}", out.stderr);
    let entries: serde_json::Value = serde_json::from_str(out.stdout.trim()).expect("JSON");
    for entry in entries.as_array().expect("an array") {
        let listed: Vec<String> = entry["members"]
            .as_array()
            .unwrap_or_else(|| panic!("no members in {entry}"))
            .iter()
            .map(|m| m.as_str().expect("an address").to_string())
            .collect();
        assert_eq!(sorted(listed), members, "status entry {entry}");
    }
}

/// `concoord admin remove -r ADDRS MEMBER`; returns its output.
fn admin_remove(replicas: &str, member: &str) -> support::Output {
    run_cli(
        &["admin", "remove", "-r", replicas, member],
        None,
        CLI_TIMEOUT,
    )
}

/// The `{"error": {...}}` object a failed command prints on stderr.
fn error_of(out: &support::Output) -> serde_json::Value {
    out.stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l.trim()).ok())
        .find_map(|v| v.get("error").cloned())
        .unwrap_or_else(|| panic!("no JSON error on stderr: {}", out.stderr))
}

#[test]
fn admin_remove_shrinks_the_group_the_removed_replica_exits_and_comes_back_only_with_b() {
    let started = Instant::now();
    let mut cluster = Cluster::start(3);
    let c = client(&cluster.addrs());
    increment(&c);
    let gone = cluster.follower();
    let stay: Vec<usize> = (0..3).filter(|&i| i != gone).collect();
    let staying = addrs_of(&cluster, &stay);

    let out = admin_remove(&cluster.addrs(), cluster.addr(gone));
    assert_eq!(out.code(), Some(0), "admin remove failed: {}", out.stderr);
    let answer: serde_json::Value = serde_json::from_str(out.stdout.trim()).expect("JSON");
    assert_eq!(answer["removed"]["address"], cluster.addr(gone), "{answer}");
    let listed: Vec<String> = serde_json::from_value(answer["members"].clone()).expect("members");
    assert_eq!(sorted(listed), staying, "{answer}");

    // The removed replica stops serving, says why, and exits 0.
    let status = wait_exit(&mut cluster, gone, EXIT_TIMEOUT);
    assert!(
        status.success(),
        "a removed replica exits 0, got {status:?}"
    );
    wait_logged(&cluster, gone, "removed from the group");

    // Two members now, both a majority of them needed, and they serve.
    wait_members(&cluster, &staying);
    assert_status_cli_members(&staying, &staying);
    increment(&c);
    assert_eq!(getvalue(&c), 2);

    // Its address comes back only as a new member joining with -b.
    cluster.restart(gone);
    cluster.wait_formed(FORM_TIMEOUT);
    increment(&c);
    assert_eq!(getvalue(&c), 3);
    eprintln!("admin_remove_shrinks...: {:?}", started.elapsed());
}

/// The leader is removed while another member is paused: the removed
/// leader decides the slots that put its removal in force, and may be the
/// only one that knows them. It must serve until the two running members
/// have them; had it exited at once, they would still count the old four
/// for those slots, two of four, and could elect nobody until the paused
/// one came back (the nemesis found a group stuck so for good, with a
/// member killed instead of paused).
#[test]
fn a_removed_leader_serves_until_the_others_have_learned_its_removal() {
    let started = Instant::now();
    let mut cluster = Cluster::start(4);
    let c = client(&cluster.addrs());
    increment(&c);
    let leader = cluster.leader();
    let paused = (leader + 1) % 4;
    let running: Vec<usize> = (0..4).filter(|&i| i != leader && i != paused).collect();
    cluster.stop(paused);

    let out = admin_remove(&cluster.addrs(), cluster.addr(leader));
    assert_eq!(out.code(), Some(0), "admin remove failed: {}", out.stderr);
    let status = wait_exit(&mut cluster, leader, Duration::from_secs(40));
    assert!(
        status.success(),
        "a removed replica exits 0, got {status:?}"
    );
    wait_logged(&cluster, leader, "removed from the group");

    // Two of the three members left run, a majority of them: they serve.
    let c = client(&addrs_of(&cluster, &running).join(","));
    increment(&c);
    assert_eq!(getvalue(&c), 2);

    cluster.cont(paused);
    let mut three = running.clone();
    three.push(paused);
    wait_members(&cluster, &addrs_of(&cluster, &three));
    eprintln!("a_removed_leader_serves...: {:?}", started.elapsed());
}

#[test]
fn leave_on_sigterm_shrinks_the_group_down_to_one_that_serves_alone() {
    let started = Instant::now();
    // The founder, and two members that leave when stopped.
    let mut cluster = Cluster::start(1);
    for _ in 0..2 {
        let args: Vec<String> = ["-o", "Counter", "-p", "0", "--leave", "-b"]
            .iter()
            .map(|s| s.to_string())
            .chain([cluster.addr(0).to_string()])
            .collect();
        let proc = spawn_replica(&args)
            .unwrap_or_else(|f| panic!("a --leave replica did not start: {f:?}"));
        cluster.procs.push(proc);
    }
    cluster.wait_formed(FORM_TIMEOUT);
    let c = client(&cluster.addrs());
    increment(&c);

    // The first to leave: the group goes on as two.
    let status = cluster
        .terminate(1, EXIT_TIMEOUT)
        .expect("exits after leaving");
    assert!(
        status.success(),
        "a replica that left exits 0, got {status:?}"
    );
    wait_logged(&cluster, 1, "removed from the group");
    let two = addrs_of(&cluster, &[0, 2]);
    wait_members(&cluster, &two);
    increment(&c);

    // The second: the founder is a group of one, and one is its majority
    // (under the first membership it would be one of three, no majority).
    let status = cluster
        .terminate(2, EXIT_TIMEOUT)
        .expect("exits after leaving");
    assert!(
        status.success(),
        "a replica that left exits 0, got {status:?}"
    );
    let one = addrs_of(&cluster, &[0]);
    wait_members(&cluster, &one);
    assert_status_cli_members(&one, &one);
    increment(&c);
    assert_eq!(getvalue(&c), 3);
    assert_eq!(cluster.live(), vec![0]);
    eprintln!("leave_on_sigterm...: {:?}", started.elapsed());
}

#[test]
fn a_follower_paused_for_several_election_timeouts_does_not_depose_the_leader() {
    let started = Instant::now();
    let mut cluster = Cluster::start(3);
    let c = client(&cluster.addrs());
    increment(&c);
    let leader = cluster.leader();
    let ballot = cluster.status(leader).expect("the leader answers").ballot;
    let paused = cluster.follower();

    cluster.stop(paused);
    // The fault itself lasts a while: five of the longest election timeouts,
    // with the group at work meanwhile.
    let resume_at = Instant::now() + 10 * ELECTION_TIMEOUT;
    let mut calls = 0;
    while Instant::now() < resume_at {
        increment(&c);
        calls += 1;
    }
    cluster.cont(paused);

    // Wait until the resumed member has caught up with the leader.
    let leader_addr = cluster.addr(leader).to_string();
    let target = cluster
        .status(leader)
        .expect("the leader answers")
        .executed_slot;
    cluster.poll("the resumed member to catch up", FORM_TIMEOUT, |ok| {
        ok.iter()
            .all(|(_, s)| s.executed_slot >= target && s.leader.as_ref() == Some(&leader_addr))
            .then_some(())
    });
    increment(&c);
    for (i, s) in cluster.live_statuses() {
        let s = s.unwrap_or_else(|e| panic!("replica {i} does not answer: {e}"));
        assert_eq!(
            s.ballot, ballot,
            "replica {i} ({}) is at another ballot than the leader had before the pause",
            s.address
        );
        assert_eq!(
            s.leader.as_deref(),
            Some(leader_addr.as_str()),
            "replica {i}"
        );
    }
    assert_eq!(getvalue(&c), calls + 2);
    eprintln!("paused follower: {:?}", started.elapsed());
}

#[test]
fn unknown_malformed_and_last_members_are_typed_errors() {
    let cluster = Cluster::start(1);
    let addrs = cluster.addrs();
    let id = format!("{:x}", cluster.status(0).expect("it answers").id);

    let out = admin_remove(&addrs, "127.0.0.1:1");
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert_eq!(error_of(&out)["kind"], "NoSuchMember", "{out:?}");
    let message = error_of(&out)["message"].to_string();
    assert!(
        message.contains(cluster.addr(0)),
        "names the members: {message}"
    );

    let out = admin_remove(&addrs, "123abc");
    assert_eq!(
        error_of(&out)["kind"],
        "NoSuchMember",
        "an unknown id: {out:?}"
    );

    for bad in ["not-a-member", "127.0.0.1:", "127.0.0.1:99999"] {
        let out = admin_remove(&addrs, bad);
        assert_eq!(out.code(), Some(2), "{bad}: {out:?}");
        assert_eq!(error_of(&out)["kind"], "Invalid", "{bad}: {out:?}");
    }
    let out = admin_remove("nonsense", cluster.addr(0));
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert_eq!(error_of(&out)["kind"], "Invalid", "{out:?}");

    // The group's only member, by address and by id.
    for member in [cluster.addr(0), id.as_str()] {
        let out = admin_remove(&addrs, member);
        assert_eq!(out.code(), Some(1), "{out:?}");
        assert_eq!(error_of(&out)["kind"], "LastMember", "{member}: {out:?}");
    }
    assert_eq!(cluster.state(0), State::Running);
    let only = std::slice::from_ref(&addrs);
    assert_status_cli_members(only, only);
}
