use crate::mutex::MutexKind;
use crate::order::{check, Step};

fn grant(s: &str, token: u64) -> Step {
    Step::Grant {
        session: s.into(),
        token: Some(token),
    }
}

fn release(s: &str) -> Step {
    Step::Release { session: s.into() }
}

fn end(s: &str) -> Step {
    Step::SessionEnd { session: s.into() }
}

#[test]
fn a_correct_lock_order_passes() {
    use Step::Free;
    let steps = [
        grant("a", 1),
        Free(0),
        release("a"),
        Free(1),
        grant("b", 2),
        Free(0),
        // b's session ends holding the lock, which goes straight to c.
        end("b"),
        grant("c", 3),
        Free(0),
        release("c"),
        Free(1),
    ];
    let r = check(MutexKind::Lock, &steps);
    assert!(r.is_ok(), "{:?}", r.violations);
    assert_eq!((r.grants, r.releases), (3, 2));
    assert_eq!(r.ended_holding, vec!["b".to_string()]);
}

#[test]
fn two_holders_are_a_violation() {
    let r = check(MutexKind::Lock, &[grant("a", 1), grant("b", 2)]);
    assert!(
        r.violations.iter().any(|v| v.contains("hold all 1")),
        "{:?}",
        r.violations
    );
    // The real-time checker, given the same steps, agrees.
    assert!(
        r.violations.iter().any(|v| v.starts_with("mutex checker")),
        "{:?}",
        r.violations
    );
}

#[test]
fn the_end_of_another_session_releases_nothing() {
    let r = check(MutexKind::Lock, &[grant("a", 1), end("x"), grant("b", 2)]);
    assert!(!r.is_ok());
    assert!(r.ended_holding.is_empty());
}

#[test]
fn tokens_must_strictly_increase() {
    let steps = [grant("a", 5), release("a"), grant("b", 5)];
    let r = check(MutexKind::Lock, &steps);
    assert!(
        r.violations.iter().any(|v| v.contains("token 5")),
        "{:?}",
        r.violations
    );
    let steps = [grant("a", 5), release("a"), grant("b", 4)];
    assert!(!check(MutexKind::Lock, &steps).is_ok());
    // An unfenced grant is not compared.
    let unfenced = Step::Grant {
        session: "b".into(),
        token: None,
    };
    let steps = [
        grant("a", 5),
        release("a"),
        unfenced,
        release("b"),
        grant("c", 6),
    ];
    assert!(check(MutexKind::Lock, &steps).is_ok());
}

#[test]
fn semaphore_permits_are_conserved_through_session_ends() {
    use Step::Free;
    let steps = [
        grant("a", 1),
        grant("b", 2),
        Free(0),
        end("a"),
        Free(1),
        grant("c", 3),
        Free(0),
        end("b"),
        end("c"),
        Free(2),
    ];
    let r = check(MutexKind::Semaphore(2), &steps);
    assert!(r.is_ok(), "{:?}", r.violations);
    assert_eq!(r.ended_holding.len(), 3);
}

#[test]
fn a_lost_or_doubled_permit_is_a_violation() {
    use Step::Free;
    // a's session ended but the object still counts its permit taken.
    let lost = check(MutexKind::Semaphore(2), &[grant("a", 1), end("a"), Free(1)]);
    assert!(
        lost.violations.iter().any(|v| v.contains("lost")),
        "{:?}",
        lost.violations
    );
    // a's permit came back twice.
    let doubled = check(
        MutexKind::Semaphore(2),
        &[grant("a", 1), release("a"), Free(3)],
    );
    assert!(
        doubled.violations.iter().any(|v| v.contains("doubled")),
        "{:?}",
        doubled.violations
    );
}

#[test]
fn a_grant_after_the_session_ended_is_a_violation() {
    let r = check(MutexKind::Semaphore(3), &[end("a"), grant("a", 1)]);
    assert!(
        r.violations
            .iter()
            .any(|v| v.contains("whose session ended")),
        "{:?}",
        r.violations
    );
}

#[test]
fn a_release_of_nothing_is_a_violation() {
    let r = check(MutexKind::Semaphore(3), &[grant("a", 1), release("b")]);
    assert!(
        r.violations.iter().any(|v| v.contains("holding nothing")),
        "{:?}",
        r.violations
    );
}

#[test]
fn rlock_orders_are_refused_not_passed() {
    assert!(!check(MutexKind::RLock, &[]).is_ok());
}
