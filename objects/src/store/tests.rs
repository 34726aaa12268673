use super::*;
use crate::{encode_args, Counter, Outcome};

fn store(limits: Limits) -> ObjectStore {
    ObjectStore::new(
        Box::new(Hosted::<Counter>::default()),
        Arc::new(Types::builtins()),
        limits,
    )
}

fn call(
    s: &mut ObjectStore,
    target: &Target,
    method: &str,
    args: &[i64],
) -> (Outcome, Vec<(CommandId, Reply)>) {
    let mut wakes = Vec::new();
    let out = {
        let mut ctx = CallContext::new(CommandId::new(1, 1), 0, &mut wakes);
        s.apply(target, method, &encode_args(args), &mut ctx).0
    };
    (out, wakes)
}

fn err_kind(out: Outcome) -> String {
    match out {
        Outcome::Reply(Err(e)) => e.kind,
        other => panic!("expected an error, got {other:?}"),
    }
}

fn int(out: Outcome) -> i64 {
    match out {
        Outcome::Reply(Ok(b)) => rmp_serde::from_slice(&b).unwrap(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn names_are_created_by_type_and_keep_it() {
    let mut s = store(Limits::default());
    let a = Target::named("jobs/a", "Counter");
    call(&mut s, &a, "increment", &[]);
    call(&mut s, &a, "increment", &[]);
    assert_eq!(
        int(call(&mut s, &Target::named("jobs/a", "",), "getvalue", &[]).0),
        2
    );
    assert_eq!(
        int(call(&mut s, &Target::default(), "getvalue", &[]).0),
        0,
        "the default is apart"
    );
    let before = s.snapshot();
    assert_eq!(
        err_kind(call(&mut s, &Target::named("jobs/a", "Lock"), "acquire", &[]).0),
        WRONG_TYPE
    );
    assert_eq!(s.snapshot(), before, "a wrong type changes nothing");
    // Dotted names and ConCoord's aliases name the same type.
    assert_eq!(
        int(call(
            &mut s,
            &Target::named("jobs/a", "concoord.object.counter.Counter"),
            "getvalue",
            &[]
        )
        .0),
        2
    );
    assert_eq!(
        err_kind(call(&mut s, &Target::named("nope", ""), "getvalue", &[]).0),
        NO_SUCH_OBJECT
    );
    assert_eq!(
        err_kind(call(&mut s, &Target::named("nope", "Pinger"), "getvalue", &[]).0),
        NO_SUCH_OBJECT
    );
    // A call that fails on a new name leaves no object behind.
    assert_eq!(
        err_kind(
            call(
                &mut s,
                &Target::named("sem", "Semaphore"),
                "concoord_init",
                &[-1]
            )
            .0
        ),
        "ValueError"
    );
    assert!(s.get("sem").is_none());
    assert_eq!(s.list("", 10), vec![("jobs/a".to_string(), "Counter")]);
}

#[test]
fn delete_answers_parked_callers_and_frees_the_name() {
    let mut s = store(Limits::default());
    let lock = Target::named("orders-db", "Lock");
    call(&mut s, &lock, "acquire", &[]);
    let mut wakes = Vec::new();
    {
        let mut ctx = CallContext::new(CommandId::new(2, 1), 1, &mut wakes);
        assert_eq!(
            s.apply(&lock, "acquire", &encode_args(&[] as &[i64]), &mut ctx)
                .0,
            Outcome::Park
        );
    }
    let (out, wakes) = call(&mut s, &Target::named("orders-db", ""), DELETE_METHOD, &[]);
    assert!(matches!(out, Outcome::Reply(Ok(_))));
    assert_eq!(wakes.len(), 1);
    assert_eq!(wakes[0].0, CommandId::new(2, 1));
    assert_eq!(wakes[0].1.as_ref().unwrap_err().kind, DELETED);
    assert!(s.get("orders-db").is_none());
    assert_eq!(
        err_kind(call(&mut s, &lock, DELETE_METHOD, &[]).0),
        NO_SUCH_OBJECT
    );
    assert_eq!(
        err_kind(call(&mut s, &Target::default(), DELETE_METHOD, &[]).0),
        WRONG_TYPE
    );
}

#[test]
fn limits_are_typed_errors() {
    let mut s = store(Limits {
        max_objects: 2,
        max_name_len: 8,
        ..Limits::default()
    });
    assert_eq!(
        err_kind(
            call(
                &mut s,
                &Target::named("123456789", "Counter"),
                "increment",
                &[]
            )
            .0
        ),
        LIMIT_EXCEEDED
    );
    call(&mut s, &Target::named("a", "Counter"), "increment", &[]);
    call(&mut s, &Target::named("b", "Counter"), "increment", &[]);
    assert_eq!(
        err_kind(call(&mut s, &Target::named("c", "Counter"), "increment", &[]).0),
        LIMIT_EXCEEDED
    );
    assert_eq!(s.len(), 2);
    // Existing names still work at the limit.
    assert!(matches!(
        call(&mut s, &Target::named("a", "Counter"), "increment", &[]).0,
        Outcome::Reply(Ok(_))
    ));
}

#[test]
fn snapshot_round_trip_keeps_every_object_and_the_limits() {
    let mut s = store(Limits {
        max_objects: 7,
        max_name_len: 64,
        ..Limits::default()
    });
    for i in 0..5 {
        let t = Target::named(format!("c{i}"), "Counter");
        for _ in 0..i {
            call(&mut s, &t, "increment", &[]);
        }
    }
    let snap = s.snapshot();
    let bytes = rmp_serde::to_vec(&snap).unwrap();
    let back: StoreSnapshot = rmp_serde::from_slice(&bytes).unwrap();
    let mut other = store(Limits::default());
    other.restore(&back).unwrap();
    assert_eq!(other.limits().max_objects, 7);
    assert_eq!(
        int(call(&mut other, &Target::named("c4", ""), "getvalue", &[]).0),
        4
    );
    assert_eq!(other.snapshot(), snap);
    // A type this replica cannot host is refused, and nothing changes.
    let mut bad = snap.clone();
    bad.named[0].1 = "Mystery".into();
    let e = other.restore(&bad).unwrap_err();
    assert!(e.message.contains("Mystery"), "{e:?}");
    assert_eq!(other.snapshot(), snap);
}
