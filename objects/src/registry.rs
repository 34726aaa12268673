use crate::{
    Bank, Barrier, BinaryTree, BoundedSemaphore, Condition, Counter, Event, Hosted, JobManager,
    Lock, Log, Membership, MeshMembership, NameserverCoord, Queue, RLock, Semaphore, Stack,
    StateMachine, Value,
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
}
