//! The membership fault (`Fault::KillDuringRemove`): `concoord admin
//! remove` of a follower with a `kill -9` of another replica while it is
//! in flight, the removed replica's exit, its re-join with `-b`, and a
//! spare fourth member that makes the crash survivable.

use super::faults::{sorted, NemesisLog, Target};
use super::support::{spawn_replica_as, Cluster, Proc, State, BIN};
use super::Rng;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a membership change (and a removed replica's exit) may take.
const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `concoord admin remove -r ADDRS MEMBER` in the background.
fn spawn_remove(addrs: &str, member: &str) -> Child {
    Command::new(BIN)
        .args(["admin", "remove", "-r", addrs, member, "--timeout", "20"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the concoord binary runs")
}

/// Waits (bounded) for `child`; whether it exited 0 (`None`: killed at the
/// deadline).
fn wait_child(child: &mut Child, timeout: Duration) -> Option<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status.success());
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether every running replica of `which` answers with exactly the
/// members `want`.
fn members_are(cluster: &Cluster, which: &[usize], want: &[String]) -> bool {
    which
        .iter()
        .filter(|&&i| cluster.state(i) == State::Running)
        .all(|&i| {
            cluster
                .status(i)
                .is_ok_and(|s| s.role != "joining" && sorted(s.members) == want)
        })
}

/// A replica outside the cluster's list, killed and reaped on drop.
struct Spare(Proc);

impl Drop for Spare {
    fn drop(&mut self) {
        self.0.kill_and_reap();
    }
}

/// Waits (bounded) until every running replica of `which` lists exactly
/// `want` as members.
fn wait_members(c: &Cluster, which: &[usize], want: &[String], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if members_are(c, which, want) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `admin remove` of `member`, retried (bounded) until `which` list exactly
/// `want` (a first attempt may give up while the group has no majority).
/// Returns the attempts made, or `None` if the member stayed.
fn remove_member(
    c: &Cluster,
    first: Option<Child>,
    addrs: &str,
    member: &str,
    which: &[usize],
    want: &[String],
) -> Option<u32> {
    let mut attempts = 1;
    let mut admin = first.unwrap_or_else(|| spawn_remove(addrs, member));
    let mut ok = wait_child(&mut admin, Duration::from_secs(25));
    let deadline = Instant::now() + MEMBERSHIP_TIMEOUT;
    loop {
        if wait_members(c, which, want, Duration::from_secs(5)) {
            return Some(attempts);
        }
        if Instant::now() >= deadline {
            return None;
        }
        if ok != Some(true) && attempts < 4 {
            attempts += 1;
            let mut again = spawn_remove(addrs, member);
            ok = wait_child(&mut again, Duration::from_secs(25));
        }
    }
}

/// `Fault::KillDuringRemove`. With in-memory replicas a crash loses a
/// member's state, so a group that shrank to two members cannot survive
/// one (the replacement needs both): a spare replica joins first (four
/// members), a follower is removed while another replica (the leader half
/// the time) is `kill -9`ed and restarted with `-b`, the removed one
/// re-joins with `-b`, and the spare is removed again: the group must end
/// with exactly its members.
pub fn kill_during_remove(
    t: &mut Target<'_>,
    leader: Option<usize>,
    rng: &mut Rng,
    log: &mut NemesisLog,
) -> String {
    let name = t.name;
    let c = &mut *t.cluster;
    let n = c.len();
    let originals: Vec<usize> = (0..n).collect();
    let sorted_addrs = |c: &Cluster, which: &[usize]| {
        sorted(which.iter().map(|&i| c.addr(i).to_string()).collect())
    };
    // 1. The spare joins.
    let via = leader.unwrap_or(0);
    let args: Vec<String> = [
        "-o",
        if t.lock { "Lock" } else { "Counter" },
        "-a",
        &t.spare.0,
        "-p",
        "0",
        "-b",
        c.addr(via),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut spare = match spawn_replica_as(&args, Some(t.spare.1).filter(|_| t.net.is_some())) {
        Ok(p) => Spare(p),
        Err(f) => panic!("the spare replica did not start: {f:?}"),
    };
    let spare_addr = spare.0.addr.clone();
    let mut with_spare = sorted_addrs(c, &originals);
    with_spare.push(spare_addr.clone());
    let with_spare = sorted(with_spare);
    if !wait_members(c, &originals, &with_spare, MEMBERSHIP_TIMEOUT) {
        let msg = format!(
            "{name}: the spare {spare_addr} did not join within {MEMBERSHIP_TIMEOUT:?}\n{}",
            c.diagnostics()
        );
        eprintln!("nemesis: {msg}");
        log.notes.push(msg);
        // It may still join later: take it out again, bounded.
        let all = c.addrs();
        let _ = remove_member(
            c,
            None,
            &all,
            &spare_addr,
            &originals,
            &sorted_addrs(c, &originals),
        );
        return format!("spare {spare_addr} did not join; fault abandoned");
    }
    // 2. A follower removed, another replica killed while that is in flight.
    let followers: Vec<usize> = (0..n).filter(|&i| Some(i) != leader).collect();
    let gone = followers[rng.below(followers.len() as u64) as usize];
    let stay: Vec<usize> = (0..n).filter(|&i| i != gone).collect();
    let victim = match leader {
        Some(l) if rng.chance(0.5) => l,
        _ => stay[rng.below(stay.len() as u64) as usize],
    };
    let is_leader = if Some(victim) == leader {
        log.at_leader += 1;
        " (the leader)"
    } else {
        ""
    };
    let member = c.addr(gone).to_string();
    let mut stay_addrs: Vec<String> = stay.iter().map(|&i| c.addr(i).to_string()).collect();
    stay_addrs.push(spare_addr.clone());
    let want = sorted(stay_addrs.clone());
    let admin = spawn_remove(&stay_addrs.join(","), &member);
    let delay = rng.millis(0, 300);
    std::thread::sleep(delay);
    c.kill9(victim);
    let down = rng.millis(200, 1_500);
    std::thread::sleep(down);
    let via = *stay
        .iter()
        .find(|&&j| j != victim)
        .expect("3+ replicas: a third one");
    c.restart_via(victim, via);
    let head = format!(
        "spare {spare_addr} joined; admin remove {gone}, kill -9 replica {victim}{is_leader} after {delay:?}, \
         restarted via {via} after {down:?}"
    );
    let Some(attempts) =
        remove_member(c, Some(admin), &stay_addrs.join(","), &member, &stay, &want)
    else {
        // The spare is not one of the cluster's replicas: its log too.
        let spare_state = match spare.0.try_exited() {
            Some(status) => format!("exited: {status:?}"),
            None => "running".to_string(),
        };
        let msg = format!(
            "{name}: {head}: replica {gone} still a member {MEMBERSHIP_TIMEOUT:?} later\n{}\n==== spare {spare_addr} ({spare_state}) stderr tail ====\n{}",
            c.diagnostics(),
            spare.0.stderr_tail()
        );
        eprintln!("nemesis: {msg}");
        log.notes.push(msg);
        return format!("{head}; NOT removed");
    };
    // 3. The removed replica stops serving and exits on its own; its
    // address re-joins with -b.
    let exit = wait_exit(c, gone, log, name, &head);
    c.restart(gone);
    // 4. The spare leaves again.
    let all = c.addrs();
    let originals_addrs = sorted_addrs(c, &originals);
    let spare_out = remove_member(c, None, &all, &spare_addr, &originals, &originals_addrs);
    let deadline = Instant::now() + MEMBERSHIP_TIMEOUT;
    let spare_exit = loop {
        if let Some(s) = spare.0.try_exited() {
            break Some(s);
        }
        if Instant::now() >= deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    if spare_out.is_none() || spare_exit.is_none() {
        let msg = format!(
            "{name}: {head}: the spare {spare_addr} not removed ({spare_out:?}) or still running ({spare_exit:?})\n{}",
            c.diagnostics()
        );
        eprintln!("nemesis: {msg}");
        log.notes.push(msg);
    }
    drop(spare);
    format!(
        "{head}; removed after {attempts} attempt(s), exited {exit:?}, re-joined with -b; spare removed"
    )
}

/// Waits (bounded) for removed replica `gone` to exit on its own; kills it
/// (and notes it) otherwise.
fn wait_exit(
    c: &mut Cluster,
    gone: usize,
    log: &mut NemesisLog,
    name: &str,
    head: &str,
) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + MEMBERSHIP_TIMEOUT;
    let exit = loop {
        if c.state(gone) == State::Dead {
            break None;
        }
        if let Some(status) = c.reap_if_exited(gone) {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let msg = format!(
                "{name}: {head}: removed replica {gone} still running {MEMBERSHIP_TIMEOUT:?} later\n{}",
                c.diagnostics()
            );
            eprintln!("nemesis: {msg}");
            log.notes.push(msg);
            c.kill9(gone);
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    if exit.is_some_and(|s| !s.success()) {
        log.notes.push(format!(
            "{name}: {head}: removed replica {gone} exited with {exit:?}"
        ));
    }
    exit
}
