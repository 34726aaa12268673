//! The nemesis proper: a seeded schedule of faults against one group, one
//! fault (or one overlapping pair) at a time, each healed and the group
//! given time to recover before the next.

use super::load::{CliCall, CliOutcome};
use super::membership;
use super::net::{self, Net};
use super::support::{Cluster, State};
use super::Rng;
use concoord::history::History;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How long a group may take to become healthy again before the next fault.
pub const RECOVER_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// `kill -9`, restart with `-b` after a while.
    Kill,
    /// SIGSTOP, SIGCONT after a while.
    Pause,
    /// A minority cut off from the rest, both ways.
    Partition,
    /// The leader's peers' packets to it dropped: it can send, not receive.
    LeaderDeaf,
    /// The leader's packets to its peers dropped: it can receive, not send.
    LeaderMute,
    /// Random packet loss (5–30%) between every two replicas.
    Loss,
    /// A partition, and a SIGSTOP of some replica while it holds.
    PauseInPartition,
    /// A partition, and a `kill -9` (and restart) of some replica in it.
    KillInPartition,
    /// `admin remove` of a follower, a `kill -9` of another replica (the
    /// leader half the time) while that is in flight, then the removed one
    /// re-joined with `-b`: the group must end with every member again.
    KillDuringRemove,
    /// `concoord call` clients `kill -9`ed mid-call.
    ClientKill,
    /// Every client connection to one replica reset (TCP RST) for a while.
    ConnCut,
}

pub const FAULTS: [Fault; 11] = [
    Fault::Kill,
    Fault::Pause,
    Fault::Partition,
    Fault::LeaderDeaf,
    Fault::LeaderMute,
    Fault::Loss,
    Fault::PauseInPartition,
    Fault::KillInPartition,
    Fault::KillDuringRemove,
    Fault::ClientKill,
    Fault::ConnCut,
];

impl Fault {
    /// Whether it needs iptables.
    pub fn needs_net(self) -> bool {
        !matches!(
            self,
            Fault::Kill | Fault::Pause | Fault::KillDuringRemove | Fault::ClientKill
        )
    }

    pub fn label(self) -> &'static str {
        match self {
            Fault::Kill => "kill -9 + restart -b",
            Fault::Pause => "SIGSTOP/SIGCONT",
            Fault::Partition => "partition (two-way)",
            Fault::LeaderDeaf => "one-way: leader sends, cannot receive",
            Fault::LeaderMute => "one-way: leader receives, cannot send",
            Fault::Loss => "packet loss 5-30%",
            Fault::PauseInPartition => "SIGSTOP during a partition",
            Fault::KillInPartition => "kill -9 during a partition",
            Fault::KillDuringRemove => "kill -9 during admin remove, then re-join",
            Fault::ClientKill => "clients kill -9ed mid-call",
            Fault::ConnCut => "client connections reset",
        }
    }
}

/// The first round of each of the two groups: between them every kind
/// once (the client nemesis in both, as its Counter and Lock victims
/// differ), in a seeded order; later rounds draw from every kind.
pub fn first_rounds(rng: &mut Rng) -> (Vec<Fault>, Vec<Fault>) {
    let mut all = FAULTS.to_vec();
    shuffle(&mut all, rng);
    let (mut a, mut b): (Vec<Fault>, Vec<Fault>) = (Vec::new(), Vec::new());
    for (i, f) in all.into_iter().enumerate() {
        if i % 2 == 0 { &mut a } else { &mut b }.push(f);
    }
    for r in [&mut a, &mut b] {
        if !r.contains(&Fault::ClientKill) {
            r.push(Fault::ClientKill);
            shuffle(r, rng);
        }
    }
    (a, b)
}

fn shuffle(v: &mut [Fault], rng: &mut Rng) {
    for i in (1..v.len()).rev() {
        v.swap(i, rng.below(i as u64 + 1) as usize);
    }
}

#[derive(Default)]
pub struct NemesisLog {
    pub faults: BTreeMap<Fault, u64>,
    /// Faults aimed at the leader.
    pub at_leader: u64,
    /// Faults skipped (no iptables).
    pub skipped: u64,
    /// What became of the client nemesis's calls.
    pub client_calls: BTreeMap<CliOutcome, u64>,
    /// Times a group took longer than RECOVER_TIMEOUT to be healthy again.
    pub slow_recoveries: Vec<String>,
    /// Oddities that are not safety violations (a removal retried, ...).
    pub notes: Vec<String>,
    pub events: Vec<String>,
    pub longest_recovery: Duration,
}

/// One group under attack.
pub struct Target<'a> {
    pub name: &'static str,
    pub cluster: &'a mut Cluster,
    /// Replica `i` listens on `hosts[i]`.
    pub hosts: &'a [String],
    pub net: Option<&'a Net>,
    /// The group's history, for the client nemesis's calls.
    pub history: &'a History,
    /// Whether the group serves a Lock (else a Counter).
    pub lock: bool,
    /// A spare replica's address and user ([`Fault::KillDuringRemove`]).
    pub spare: (String, u32),
}

// ---------------------------------------------------------------------------
// Group health, without panicking.

pub fn leader_of(cluster: &Cluster) -> Option<usize> {
    cluster
        .live()
        .into_iter()
        .find(|&i| cluster.status(i).is_ok_and(|s| s.role == "leader"))
}

pub fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Every replica running and answering, none joining, all naming one leader
/// that says it leads, all with exactly the cluster's addresses as members;
/// with `same_slot`, all at the same executed slot.
pub fn healthy(cluster: &Cluster, same_slot: bool) -> bool {
    if cluster.live().len() != cluster.len() {
        return false;
    }
    let want = sorted(
        (0..cluster.len())
            .map(|i| cluster.addr(i).to_string())
            .collect(),
    );
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
                && sorted(s.members.clone()) == want
                && (!same_slot || s.executed_slot == statuses[0].1.executed_slot)
        })
}

pub fn wait_healthy(cluster: &Cluster, same_slot: bool, timeout: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if healthy(cluster, same_slot) {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// Puts every replica back: continues stopped ones, restarts dead ones.
pub fn heal_cluster(cluster: &mut Cluster) {
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
// The schedule

/// Faults against `t` until `until`, and at least until `first` is done.
pub fn nemesis(
    t: &mut Target<'_>,
    mut first: Vec<Fault>,
    rng: &mut Rng,
    until: Instant,
    log: &mut NemesisLog,
) {
    let start = Instant::now();
    let n = t.cluster.len();
    let mut round: Vec<Fault> = Vec::new();
    let mut victims = 0u64;
    std::thread::sleep(rng.millis(200, 1_000));
    while Instant::now() < until || !first.is_empty() {
        let fault = match first.pop() {
            Some(f) => f,
            None => {
                if round.is_empty() {
                    // Every kind once per round, in a seeded order.
                    round = FAULTS.to_vec();
                    shuffle(&mut round, rng);
                }
                round.pop().unwrap()
            }
        };
        let leader = leader_of(t.cluster);
        let target = match leader {
            // The one-way faults are about the leader.
            Some(l) if matches!(fault, Fault::LeaderDeaf | Fault::LeaderMute) => l,
            Some(l) if rng.chance(0.5) => l,
            _ => rng.below(n as u64) as usize,
        };
        let net = match (fault.needs_net(), t.net) {
            (true, None) => {
                log.skipped += 1;
                continue;
            }
            (_, net) => net,
        };
        // The client nemesis aims at no replica; the membership fault
        // counts its own victim.
        let aimed =
            Some(target) == leader && !matches!(fault, Fault::ClientKill | Fault::KillDuringRemove);
        if aimed {
            log.at_leader += 1;
        }
        let at = start.elapsed().as_secs_f64();
        let what = inject(t, fault, target, leader, net, rng, log, &mut victims);
        *log.faults.entry(fault).or_default() += 1;
        let is_leader = if aimed { " (leader)" } else { "" };
        let name = t.name;
        match wait_healthy(t.cluster, false, RECOVER_TIMEOUT) {
            Some(d) => {
                log.longest_recovery = log.longest_recovery.max(d);
                let now = leader_of(t.cluster);
                log.events.push(format!(
                    "{name} t={at:.1}s {what}{is_leader}; healthy after {d:.1?} \
                     (leader {leader:?} before, {now:?} after)"
                ));
            }
            None => {
                let msg = format!(
                    "{name} t={at:.1}s {what}{is_leader}: not healthy within {RECOVER_TIMEOUT:?}\n{}",
                    t.cluster.diagnostics()
                );
                eprintln!("nemesis: {msg}");
                log.slow_recoveries.push(msg);
                // Give it more time, without new faults.
                let more = wait_healthy(t.cluster, false, RECOVER_TIMEOUT);
                let total = RECOVER_TIMEOUT + more.unwrap_or(RECOVER_TIMEOUT);
                log.longest_recovery = log.longest_recovery.max(total);
            }
        }
        std::thread::sleep(rng.millis(300, 1_200));
    }
}

/// A minority around `target`: it, and for 5+ replicas maybe others.
fn minority(n: usize, target: usize, rng: &mut Rng) -> (Vec<usize>, Vec<usize>) {
    let mut minority = vec![target];
    let max_minority = (n - 1) / 2;
    while minority.len() < max_minority && rng.chance(0.5) {
        let other = rng.below(n as u64) as usize;
        if !minority.contains(&other) {
            minority.push(other);
        }
    }
    let rest = (0..n).filter(|i| !minority.contains(i)).collect();
    (minority, rest)
}

fn hosts_of(hosts: &[String], which: &[usize]) -> Vec<String> {
    which.iter().map(|&i| hosts[i].clone()).collect()
}

fn add(net: Option<&Net>, rules: Vec<Vec<String>>) -> Vec<Vec<String>> {
    net.expect("a network fault with iptables")
        .add(rules)
        .unwrap_or_else(|e| panic!("cannot add a fault rule: {e}"))
}

fn remove(net: Option<&Net>, rules: &[Vec<String>]) {
    net.expect("a network fault with iptables").remove(rules)
}

/// Injects one fault and heals it (the schedule's windows are sleeps);
/// returns what was done.
#[allow(clippy::too_many_arguments)]
fn inject(
    t: &mut Target<'_>,
    fault: Fault,
    target: usize,
    leader: Option<usize>,
    net: Option<&Net>,
    rng: &mut Rng,
    log: &mut NemesisLog,
    victims: &mut u64,
) -> String {
    let n = t.cluster.len();
    let sleep = std::thread::sleep;
    match fault {
        Fault::Kill => {
            t.cluster.kill9(target);
            let down = rng.millis(200, 1_500);
            sleep(down);
            t.cluster.restart(target);
            format!("kill -9 replica {target}, restarted after {down:?}")
        }
        Fault::Pause => {
            t.cluster.stop(target);
            let paused = rng.millis(500, 2_000);
            sleep(paused);
            t.cluster.cont(target);
            format!("SIGSTOP replica {target} for {paused:?}")
        }
        Fault::Partition => {
            let (a, b) = minority(n, target, rng);
            let rules = add(
                net,
                net::partition(&hosts_of(t.hosts, &a), &hosts_of(t.hosts, &b)),
            );
            let held = rng.millis(1_000, 3_000);
            sleep(held);
            remove(net, &rules);
            format!("partition {a:?} | {b:?} for {held:?}")
        }
        Fault::LeaderDeaf | Fault::LeaderMute => {
            let others: Vec<usize> = (0..n).filter(|&i| i != target).collect();
            let me = hosts_of(t.hosts, &[target]);
            let them = hosts_of(t.hosts, &others);
            let rules = if fault == Fault::LeaderDeaf {
                add(net, net::one_way(&them, &me))
            } else {
                add(net, net::one_way(&me, &them))
            };
            let held = rng.millis(1_000, 3_000);
            sleep(held);
            remove(net, &rules);
            let shape = if fault == Fault::LeaderDeaf {
                "to"
            } else {
                "from"
            };
            format!("one-way: packets {shape} replica {target} dropped for {held:?}")
        }
        Fault::Loss => {
            let p = (5 + rng.below(26)) as f64 / 100.0;
            let rules = add(net, net::loss(t.hosts, p));
            let held = rng.millis(2_000, 5_000);
            sleep(held);
            remove(net, &rules);
            format!(
                "{:.0}% packet loss between replicas for {held:?}",
                p * 100.0
            )
        }
        Fault::PauseInPartition => {
            let (a, b) = minority(n, target, rng);
            let rules = add(
                net,
                net::partition(&hosts_of(t.hosts, &a), &hosts_of(t.hosts, &b)),
            );
            sleep(rng.millis(200, 800));
            let victim = rng.below(n as u64) as usize;
            t.cluster.stop(victim);
            let paused = rng.millis(500, 2_000);
            sleep(paused);
            t.cluster.cont(victim);
            sleep(rng.millis(200, 800));
            remove(net, &rules);
            format!("partition {a:?} | {b:?}, replica {victim} SIGSTOPped in it for {paused:?}")
        }
        Fault::KillInPartition => {
            let (a, b) = minority(n, target, rng);
            let rules = add(
                net,
                net::partition(&hosts_of(t.hosts, &a), &hosts_of(t.hosts, &b)),
            );
            sleep(rng.millis(200, 800));
            let victim = rng.below(n as u64) as usize;
            t.cluster.kill9(victim);
            let down = rng.millis(200, 1_000);
            sleep(down);
            // Restarted inside the partition if a member on its side can
            // take it in; otherwise after healing.
            let side = if a.contains(&victim) { &a } else { &b };
            let via = side.iter().copied().find(|&j| j != victim);
            let when = if let Some(via) = via {
                t.cluster.restart_via(victim, via);
                sleep(rng.millis(200, 800));
                remove(net, &rules);
                format!("restarted in the partition via {via}")
            } else {
                remove(net, &rules);
                t.cluster.restart(victim);
                "restarted after healing".to_string()
            };
            format!("partition {a:?} | {b:?}, replica {victim} kill -9ed in it, {when}")
        }
        Fault::KillDuringRemove => membership::kill_during_remove(t, leader, rng, log),
        Fault::ClientKill => {
            let (method, calls) = if t.lock {
                ("acquire", 2)
            } else {
                ("increment", 3)
            };
            let addrs = t.cluster.addrs();
            let mut pending: Vec<(Instant, Option<CliCall>)> = (0..calls)
                .map(|_| {
                    *victims += 1;
                    let client = format!("{}-killed{}", t.name, victims);
                    let call = CliCall::spawn(&addrs, t.history, &client, method, t.lock);
                    (Instant::now() + rng.millis(5, 200), Some(call))
                })
                .collect();
            let mut outcomes = Vec::new();
            while pending.iter().any(|(_, c)| c.is_some()) {
                for (kill_at, slot) in &mut pending {
                    let Some(call) = slot.as_mut() else { continue };
                    if let Some(o) = call.poll() {
                        outcomes.push(o);
                        *slot = None;
                    } else if Instant::now() >= *kill_at {
                        outcomes.extend(slot.take().and_then(CliCall::kill));
                    }
                }
                sleep(Duration::from_millis(5));
            }
            for o in &outcomes {
                *log.client_calls.entry(*o).or_default() += 1;
            }
            format!("{calls} `concoord call {method}` clients kill -9ed: {outcomes:?}")
        }
        Fault::ConnCut => {
            let rules = add(net, net::cut_clients(&t.hosts[target]));
            let held = rng.millis(500, 2_000);
            sleep(held);
            remove(net, &rules);
            format!("client connections to replica {target} reset for {held:?}")
        }
    }
}
