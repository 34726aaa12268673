//! Sessions: expiry under faults, checked on the replicated order.

use crate::helpers::{
    check_minority_silent, check_recovery, config, elect, finish_and_check, for_seeds,
    DEFAULT_SESSION_SEEDS, RUN_DEADLINE_MS,
};
use concoord::check::mutex::MutexKind;
use concoord::check::order::{self, Step};
use concoord_actors::message::{Command, SESSION_EXPIRED_KIND};
use concoord_actors::sim::{
    Executed, SessionPhase, SessionWorkload, Sim, SimConfig, SESSION_LOCK, SESSION_SEMAPHORE,
};
use concoord_objects::{rmpv, CommandId};
use std::collections::{BTreeMap, BTreeSet};

const SESSION_TTL_MS: u64 = 800;
const SEMAPHORE_PERMITS: u64 = 2;
/// How long a node fault and a cut-off client last: well past a TTL, so the
/// cut-off client's session expires while it still believes it holds.
const SESSION_FAULT_MS: u64 = 2_500;

pub(crate) fn session_config(seed: u64, nodes: usize) -> SimConfig {
    SimConfig {
        clients: 2,
        sessions: Some(SessionWorkload {
            // More clients than permits and locks: there are always waiters.
            clients: nodes + 2,
            ttl_ms: SESSION_TTL_MS,
            rounds: 12,
            hold_ms_max: 150,
            permits: SEMAPHORE_PERMITS,
        }),
        ..config(seed, nodes)
    }
}

#[derive(Clone, Copy, Debug)]
enum NodeFault {
    LeaderCrash,
    LeaderIsolated,
    MinorityPartitioned,
    Lossy,
}

/// Session clients take turns on the Lock and the Semaphore while Counter
/// clients count. A Lock holder crashes, a client waiting to acquire
/// crashes, a Semaphore holder is cut off past its TTL, and at once the
/// group suffers `fault` for a while. Besides every check of the other
/// scenarios, the replicated order must show mutual exclusion, growing
/// tokens and conserved permits, and the holders' sessions must end there,
/// giving back what they held.
fn sessions_under(seed: u64, nodes: usize, fault: NodeFault) -> Result<(), String> {
    let mut cfg = session_config(seed, nodes);
    if let NodeFault::Lossy = fault {
        cfg.delay_max_ms = 25; // wide delays reorder messages
    }
    let mut sim = Sim::new(cfg);
    sim.run_until(400);
    elect(&mut sim)?;
    // Faults come at a different point of the workload for each seed.
    sim.run_until(sim.now_ms + seed * 97 % 800);
    let crashed = wait_for(
        &mut sim,
        "hold the Lock",
        &[],
        |phase| matches!(phase, SessionPhase::Holding { object, .. } if object == SESSION_LOCK),
    )?;
    sim.crash_client(crashed);
    let waiter = wait_for(&mut sim, "wait to acquire", &[crashed], |phase| {
        matches!(phase, SessionPhase::Acquiring(_))
    })?;
    sim.crash_client(waiter);
    let cut_off = wait_for(
        &mut sim,
        "hold a permit",
        &[crashed, waiter],
        |phase| matches!(phase, SessionPhase::Holding { object, .. } if object == SESSION_SEMAPHORE),
    )?;
    sim.isolate_client(cut_off);
    let leader = elect(&mut sim)?;
    let fault_at = sim.now_ms;
    let mut minority = Vec::new();
    match fault {
        NodeFault::LeaderCrash => sim.crash(leader),
        NodeFault::LeaderIsolated => {
            minority = vec![leader];
            sim.partition(&minority);
        }
        NodeFault::MinorityPartitioned => {
            minority = (0..nodes)
                .filter(|n| *n != leader)
                .take((nodes - 1) / 2)
                .collect();
            // A Counter client watches the minority side.
            sim.clients[0].pinned = Some(minority[0]);
            sim.partition(&minority);
        }
        NodeFault::Lossy => {
            sim.net.drop_percent = 20;
            sim.net.duplicate_percent = 10;
        }
    }
    sim.run_until(fault_at + SESSION_FAULT_MS);
    sim.heal();
    sim.net.drop_percent = 0;
    sim.net.duplicate_percent = 0;
    sim.clients[0].pinned = None;
    let healed_at = sim.now_ms;
    finish_and_check(&mut sim)?;
    check_session_order(&sim, &[crashed, cut_off])?;
    if let NodeFault::LeaderIsolated = fault {
        // The others could always reach the majority side's leader: like
        // the real client, they leave a connection silent for half a TTL,
        // so none of them loses its session to the cut-off leader.
        for (c, client) in sim.clients.iter().enumerate() {
            let healthy = ![crashed, waiter, cut_off].contains(&c);
            if healthy
                && client
                    .session
                    .as_ref()
                    .is_some_and(|s| s.phase == SessionPhase::Expired)
            {
                return Err(format!(
                    "client {c} kept reaching the majority side, yet its session expired"
                ));
            }
        }
    }
    if !minority.is_empty() {
        check_minority_silent(&sim, &minority, fault_at, healed_at)?;
    }
    check_recovery(&sim, fault_at)?;
    Ok(())
}

/// Runs until some session client other than `except` is in a phase
/// `wanted` accepts; returns it.
fn wait_for(
    sim: &mut Sim,
    what: &str,
    except: &[usize],
    wanted: impl Fn(&SessionPhase) -> bool,
) -> Result<usize, String> {
    let deadline = sim.now_ms + 10_000;
    while sim.now_ms < deadline {
        let found = (0..sim.clients.len()).find(|c| {
            !except.contains(c)
                && !sim.clients[*c].crashed
                && sim.clients[*c]
                    .session
                    .as_ref()
                    .is_some_and(|s| wanted(&s.phase))
        });
        if let Some(c) = found {
            return Ok(c);
        }
        let next = sim.now_ms + 5;
        sim.run_until(next);
    }
    Err(format!(
        "no session client came to {what} within 10 s: the fault would test nothing"
    ))
}

fn session_name(client: u64) -> String {
    format!("{client:x}")
}

/// The permits a Lock's or Semaphore's state counts free. The state is the
/// object's fields in declaration order (MessagePack arrays): Lock
/// `[locked, waiters, fence, token, holder]`, Semaphore
/// `[[value, initial, waiters, fence, held]]`.
fn free_permits(type_name: &str, state: &[u8]) -> Result<u64, String> {
    let v = rmpv::decode::read_value(&mut &state[..]).map_err(|e| e.to_string())?;
    let free = match type_name {
        "Lock" => v[0].as_bool().map(|locked| u64::from(!locked)),
        // The initial value read back confirms the layout.
        "Semaphore" if v[0][1].as_u64() == Some(SEMAPHORE_PERMITS) => v[0][0].as_u64(),
        _ => None,
    };
    free.ok_or_else(|| format!("cannot read free permits from a {type_name}'s state {v}"))
}

/// Turns the replicated order into the steps of the Lock and the Semaphore:
/// grants and releases from each call's first answer (a resend gets the
/// same answer, or SessionExpired once its session ended), session ends
/// where their expiry executed (before the grants it hands on), and the
/// objects' free permits after every command.
fn session_steps(order: &[Executed]) -> Result<BTreeMap<&'static str, Vec<Step>>, String> {
    let mut calls: BTreeMap<CommandId, (String, String)> = BTreeMap::new();
    let mut answered: BTreeMap<CommandId, &concoord_objects::Reply> = BTreeMap::new();
    let mut steps: BTreeMap<&'static str, Vec<Step>> =
        BTreeMap::from([(SESSION_LOCK, Vec::new()), (SESSION_SEMAPHORE, Vec::new())]);
    for e in order {
        match &e.command {
            Command::Call {
                id, target, method, ..
            } => {
                calls
                    .entry(*id)
                    .or_insert_with(|| (target.name.clone(), method.clone()));
            }
            Command::ExpireSession { client } => {
                for list in steps.values_mut() {
                    list.push(Step::SessionEnd {
                        session: session_name(*client),
                    });
                }
            }
            _ => {}
        }
        for (id, reply) in &e.replies {
            if let Some(first) = answered.get(id) {
                let expired = matches!(reply, Err(err) if err.kind == SESSION_EXPIRED_KIND);
                if *first != reply && !expired {
                    return Err(format!(
                        "slot {}: {id} answered {reply:?} after {first:?}",
                        e.slot
                    ));
                }
                continue;
            }
            answered.insert(*id, reply);
            let Some((object, method)) = calls.get(id) else {
                return Err(format!("slot {}: an answer to {id}, never called", e.slot));
            };
            let (Some(list), Ok(bytes)) = (steps.get_mut(object.as_str()), reply) else {
                continue;
            };
            let value = rmpv::decode::read_value(&mut &bytes[..]).map_err(|e| e.to_string())?;
            let session = session_name(id.client);
            match method.as_str() {
                "acquire_fenced" if value.as_u64().is_some() => list.push(Step::Grant {
                    session,
                    token: value.as_u64(),
                }),
                "acquire" if value.as_bool() == Some(true) => list.push(Step::Grant {
                    session,
                    token: None,
                }),
                "release" => list.push(Step::Release { session }),
                _ => {}
            }
        }
        for (name, type_name, state) in &e.named {
            if let Some(list) = steps.get_mut(name.as_str()) {
                list.push(Step::Free(free_permits(type_name, state)?));
            }
        }
    }
    Ok(steps)
}

/// Mutual exclusion, tokens and permits on the replicated order; what
/// clients were told agrees with it; and each of `faulty`'s sessions ended
/// there giving back what it held.
pub(crate) fn check_session_order(sim: &Sim, faulty: &[usize]) -> Result<(), String> {
    let order = sim.replicated_order()?;
    let steps = session_steps(&order)?;
    let mut ended_holding = BTreeSet::new();
    for (object, kind) in [
        (SESSION_LOCK, MutexKind::Lock),
        (SESSION_SEMAPHORE, MutexKind::Semaphore(SEMAPHORE_PERMITS)),
    ] {
        let list = &steps[object];
        let report = order::check(kind, list);
        if !report.is_ok() {
            let shown: Vec<&String> = report.violations.iter().take(5).collect();
            return Err(format!(
                "{object} ({} violations over {} steps): {shown:?}",
                report.violations.len(),
                list.len()
            ));
        }
        ended_holding.extend(report.ended_holding);
        for (c, client) in sim.clients.iter().enumerate() {
            let Some(session) = &client.session else {
                continue;
            };
            let name = session_name(client.id);
            for (_, token) in session.grants.iter().filter(|(o, _)| o == object) {
                let granted = Step::Grant {
                    session: name.clone(),
                    token: Some(*token),
                };
                if !list.contains(&granted) {
                    return Err(format!(
                        "client {c} was granted {object} with token {token}; the order never granted it"
                    ));
                }
            }
        }
    }
    for (c, client) in sim.clients.iter().enumerate() {
        if let Some(s) = client.session.as_ref().filter(|s| !s.unexpected.is_empty()) {
            return Err(format!("client {c} was answered: {:?}", s.unexpected));
        }
    }
    for &c in faulty {
        if !ended_holding.contains(&session_name(sim.clients[c].id)) {
            return Err(format!(
                "client {c} stopped while holding {:?}; its session never ended holding it",
                sim.clients[c].holding()
            ));
        }
    }
    Ok(())
}

#[test]
fn sessions_leader_crash_3() {
    for_seeds("sessions_leader_crash_3", DEFAULT_SESSION_SEEDS, |seed| {
        sessions_under(seed, 3, NodeFault::LeaderCrash)
    });
}

#[test]
fn sessions_leader_crash_5() {
    for_seeds("sessions_leader_crash_5", DEFAULT_SESSION_SEEDS, |seed| {
        sessions_under(seed, 5, NodeFault::LeaderCrash)
    });
}

#[test]
fn sessions_leader_isolated_3() {
    for_seeds(
        "sessions_leader_isolated_3",
        DEFAULT_SESSION_SEEDS,
        |seed| sessions_under(seed, 3, NodeFault::LeaderIsolated),
    );
}

#[test]
fn sessions_leader_isolated_5() {
    for_seeds(
        "sessions_leader_isolated_5",
        DEFAULT_SESSION_SEEDS,
        |seed| sessions_under(seed, 5, NodeFault::LeaderIsolated),
    );
}

#[test]
fn sessions_minority_partitioned_3() {
    for_seeds(
        "sessions_minority_partitioned_3",
        DEFAULT_SESSION_SEEDS,
        |seed| sessions_under(seed, 3, NodeFault::MinorityPartitioned),
    );
}

#[test]
fn sessions_minority_partitioned_5() {
    for_seeds(
        "sessions_minority_partitioned_5",
        DEFAULT_SESSION_SEEDS,
        |seed| sessions_under(seed, 5, NodeFault::MinorityPartitioned),
    );
}

#[test]
fn sessions_lossy_duplicating_reordering_network_3() {
    for_seeds(
        "sessions_lossy_duplicating_reordering_network_3",
        DEFAULT_SESSION_SEEDS,
        |seed| sessions_under(seed, 3, NodeFault::Lossy),
    );
}

#[test]
fn sessions_lossy_duplicating_reordering_network_5() {
    for_seeds(
        "sessions_lossy_duplicating_reordering_network_5",
        DEFAULT_SESSION_SEEDS,
        |seed| sessions_under(seed, 5, NodeFault::Lossy),
    );
}

/// A session run replays exactly too: same schedule, same order.
#[test]
fn same_seed_replays_the_same_session_run() {
    let run = |seed| {
        let mut sim = Sim::new(session_config(seed, 3));
        sim.net.drop_percent = 10;
        sim.run_until_done(RUN_DEADLINE_MS);
        let order = sim.replicated_order().expect("the order replays");
        let commands: Vec<_> = order.iter().map(|e| (e.slot, e.command.clone())).collect();
        (sim.events_processed, commands, sim.now_ms)
    };
    assert_eq!(run(7), run(7), "two session runs of seed 7 differ");
}
