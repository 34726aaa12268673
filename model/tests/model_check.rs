//! Model checking of the real protocol roles ([`concoord_model`]): the
//! bounded runs CI does, the protocol bugs it must catch, and a longer run
//! on demand (`--ignored`).

use concoord_model::{Action, Bounds, Bug, Op, PaxosModel, State};
use stateright::{Checker, HasDiscoveries, Model, Path};
use std::time::Instant;

/// Explores every state `bounds` allow (stopping at the first failure when
/// `stop_at_failure`), and prints what it took.
fn explore(name: &str, bounds: Bounds, stop_at_failure: bool) -> impl Checker<PaxosModel> {
    let started = Instant::now();
    let mut builder = PaxosModel::new(bounds).checker();
    if stop_at_failure {
        builder = builder.finish_when(HasDiscoveries::AnyFailures);
    }
    let checker = builder.spawn_bfs().join();
    eprintln!(
        "{name}: {} states ({} unique), depth {}, {:.1?}",
        checker.state_count(),
        checker.unique_state_count(),
        checker.max_depth(),
        started.elapsed()
    );
    checker
}

fn describe(path: &Path<State, Action>) -> String {
    let steps = path.clone().into_vec();
    let mut out = String::new();
    for (state, action) in steps {
        if let Some(action) = action {
            let what = match &action {
                Action::Deliver(i) | Action::Drop(i) | Action::Duplicate(i) => {
                    format!("{action:?} {:?}", state.net[*i])
                }
                _ => format!("{action:?}"),
            };
            out.push_str(&format!("  {what}\n"));
        }
    }
    out
}

#[test]
fn safe_under_loss_duplication_a_crash_and_a_leader_change() {
    let checker = explore("faults", Bounds::faults(), false);
    // Agreement, prefix consistency, exactly-once and linearizability hold
    // in every state; some run answers every call and some elects a second
    // leader (the bounds do not make the check vacuous).
    checker.assert_properties();
}

#[test]
fn every_call_is_answered_under_a_stable_leader() {
    let checker = explore("stable leader", Bounds::stable_leader(), false);
    checker.assert_properties();
}

fn assert_caught(bug: Bug, property: &'static str) {
    let bounds = Bounds {
        clients: vec![vec![Op::Increment], vec![Op::Increment]],
        timer_steps: 2,
        crashes: 0,
        drops: 0,
        duplicates: 0,
        sends_per_call: 1,
        bug: Some(bug),
        ..Bounds::faults()
    };
    let checker = explore(&format!("{bug:?}"), bounds, true);
    let path = checker.discovery(property).unwrap_or_else(|| {
        panic!("the checker did not catch {bug:?}: no counterexample to {property}")
    });
    eprintln!(
        "{bug:?} breaks {property} in {} steps:\n{}",
        path.clone().into_actions().len(),
        describe(&path)
    );
}

#[test]
fn a_leader_that_forgets_accepted_values_is_caught() {
    assert_caught(Bug::ForgetAcceptedValues, "agreement");
}

/// Bigger bounds: two calls per client, two drops and duplicates, a third
/// ballot: `cargo test -p concoord-model -- --ignored --nocapture long`.
#[test]
#[ignore = "minutes; run on demand"]
fn long() {
    let bounds = Bounds {
        clients: vec![vec![Op::Increment, Op::Read], vec![Op::Increment]],
        timer_steps: 4,
        drops: 2,
        duplicates: 2,
        max_round: 3,
        ..Bounds::faults()
    };
    explore("long", bounds, false).assert_properties();
}

#[test]
fn the_model_starts_from_an_elected_leader_and_nothing_in_flight() {
    let model = PaxosModel::new(Bounds::faults());
    let init = model.init_states().remove(0);
    assert!(init.nodes[0].leader.is_active());
    assert!(init.net.is_empty(), "in flight: {:?}", init.net);
    let mut actions = Vec::new();
    model.actions(&init, &mut actions);
    assert!(
        actions.contains(&Action::Send { client: 0, node: 0 }),
        "a client can call the leader: {actions:?}"
    );
}
