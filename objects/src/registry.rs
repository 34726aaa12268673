use crate::{
    Bank, Barrier, BinaryTree, BoundedSemaphore, Condition, Counter, Election, Event, Hosted,
    JobManager, Lock, Log, Membership, MeshMembership, NameserverCoord, Queue, RLock, Semaphore,
    Stack, StateMachine, Value,
};

/// Short names of the built-in objects, as `concoord replica -o` accepts them.
pub fn builtin_names() -> &'static [&'static str] {
    &[
        "Counter",
        "Value",
        "Lock",
        "RLock",
        "Semaphore",
        "BoundedSemaphore",
        "Condition",
        "Barrier",
        "Event",
        "Queue",
        "Stack",
        "Log",
        "Bank",
        "Membership",
        "MeshMembership",
        "JobManager",
        "BinaryTree",
        "NameserverCoord",
        "Election",
    ]
}

/// A fresh built-in object by short name (`Counter`) or ConCoord's dotted
/// path (`concoord.object.counter.Counter`); `None` if there is no such object.
/// ConCoord's threading classes (`concoord.threadingobject.dlock.DLock`,
/// `DRLock`, `DSemaphore`, `DBoundedSemaphore`, `DCondition`) name the same objects.
pub fn builtin(name: &str) -> Option<Box<dyn StateMachine>> {
    let short = name.rsplit('.').next().unwrap_or(name);
    let object: Box<dyn StateMachine> = match short {
        "Counter" => Box::new(Hosted::<Counter>::default()),
        "Value" => Box::new(Hosted::<Value>::default()),
        "Lock" | "DLock" => Box::new(Hosted::<Lock>::default()),
        "RLock" | "DRLock" => Box::new(Hosted::<RLock>::default()),
        "Semaphore" | "DSemaphore" => Box::new(Hosted::<Semaphore>::default()),
        "BoundedSemaphore" | "DBoundedSemaphore" => Box::new(Hosted::<BoundedSemaphore>::default()),
        "Condition" | "DCondition" => Box::new(Hosted::<Condition>::default()),
        "Barrier" => Box::new(Hosted::<Barrier>::default()),
        "Event" => Box::new(Hosted::<Event>::default()),
        "Queue" => Box::new(Hosted::<Queue>::default()),
        "Stack" => Box::new(Hosted::<Stack>::default()),
        "Log" => Box::new(Hosted::<Log>::default()),
        "Bank" => Box::new(Hosted::<Bank>::default()),
        "Membership" => Box::new(Hosted::<Membership>::default()),
        "MeshMembership" => Box::new(Hosted::<MeshMembership>::default()),
        "JobManager" => Box::new(Hosted::<JobManager>::default()),
        "BinaryTree" => Box::new(Hosted::<BinaryTree>::default()),
        "NameserverCoord" => Box::new(Hosted::<NameserverCoord>::default()),
        "Election" => Box::new(Hosted::<Election>::default()),
        _ => return None,
    };
    Some(object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CallContext, CommandId, Outcome};

    #[test]
    fn every_name_builds_its_object() {
        for &name in builtin_names() {
            let object = builtin(name).unwrap_or_else(|| panic!("{name} is not built in"));
            assert_eq!(object.name(), name);
        }
        let dotted = [
            ("concoord.object.lock.Lock", "Lock"),
            ("concoord.threadingobject.dlock.DLock", "Lock"),
            ("concoord.threadingobject.drlock.DRLock", "RLock"),
            (
                "concoord.threadingobject.dsemaphore.DSemaphore",
                "Semaphore",
            ),
            (
                "concoord.threadingobject.dboundedsemaphore.DBoundedSemaphore",
                "BoundedSemaphore",
            ),
            (
                "concoord.threadingobject.dcondition.DCondition",
                "Condition",
            ),
            (
                "concoord.object.meshmembership.MeshMembership",
                "MeshMembership",
            ),
            (
                "concoord.object.nameservercoord.NameserverCoord",
                "NameserverCoord",
            ),
            ("concoord.object.binarytree.BinaryTree", "BinaryTree"),
        ];
        for (path, name) in dotted {
            assert_eq!(builtin(path).map(|o| o.name()), Some(name), "{path}");
        }
        assert!(builtin("Pinger").is_none());
        assert!(builtin("concoord.object.pinger.Pinger").is_none());
    }

    #[test]
    fn constructor_arguments_via_concoord_init() {
        let mut sem = builtin("Semaphore").unwrap();
        let mut wakes = Vec::new();
        let mut ctx = CallContext::new(CommandId::new(1, 1), 1, &mut wakes);
        let init = crate::encode_args(&[3]);
        assert_eq!(
            sem.apply("concoord_init", &init, &mut ctx),
            crate::reply(&())
        );
        for _ in 0..3 {
            assert_eq!(
                sem.apply("acquire", &crate::encode_args(&[false]), &mut ctx),
                crate::reply(&true)
            );
        }
        let Outcome::Reply(Ok(bytes)) =
            sem.apply("acquire", &crate::encode_args(&[false]), &mut ctx)
        else {
            panic!()
        };
        assert!(!rmp_serde::from_slice::<bool>(&bytes).unwrap());
        let mut barrier = builtin("Barrier").unwrap();
        let Outcome::Reply(Err(e)) =
            barrier.apply("concoord_init", &crate::encode_args(&[0]), &mut ctx)
        else {
            panic!()
        };
        assert_eq!(e.kind, "ValueError");
    }

    #[test]
    fn every_object_describes_itself() {
        let str_of = |object: &mut Box<dyn StateMachine>| {
            let mut wakes = Vec::new();
            let mut ctx = CallContext::new(CommandId::new(1, 1), 1, &mut wakes);
            match object.apply(
                crate::STR_METHOD,
                &crate::encode_args(&[] as &[i64]),
                &mut ctx,
            ) {
                Outcome::Reply(Ok(bytes)) => rmp_serde::from_slice::<String>(&bytes).unwrap(),
                other => panic!("{other:?}"),
            }
        };
        for &name in builtin_names() {
            let mut object = builtin(name).unwrap();
            assert!(object.is_read_only(crate::STR_METHOD), "{name}");
            let text = str_of(&mut object);
            assert!(text.contains(name), "{name}: {text}");
        }
        let mut sem = builtin("Semaphore").unwrap();
        let mut wakes = Vec::new();
        let mut ctx = CallContext::new(CommandId::new(1, 2), 2, &mut wakes);
        sem.apply("concoord_init", &crate::encode_args(&[3]), &mut ctx);
        sem.apply("acquire", &crate::encode_args(&[true]), &mut ctx);
        assert_eq!(str_of(&mut sem), "<Semaphore: value=2, waiting=0>");
        let mut lock = builtin("Lock").unwrap();
        assert_eq!(str_of(&mut lock), "<unlocked Lock, waiting=0>");
        let mut counter = builtin("Counter").unwrap();
        let mut ctx = CallContext::new(CommandId::new(1, 3), 3, &mut wakes);
        counter.apply("increment", &crate::encode_args(&[] as &[i64]), &mut ctx);
        assert_eq!(str_of(&mut counter), "Counter([1])");
        let mut ctx = CallContext::new(CommandId::new(1, 4), 4, &mut wakes);
        let Outcome::Reply(Err(e)) =
            lock.apply(crate::STR_METHOD, &crate::encode_args(&[1]), &mut ctx)
        else {
            panic!()
        };
        assert_eq!(e.kind, crate::ObjectError::BAD_ARGUMENTS);
    }
}
