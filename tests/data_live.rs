//! The data objects' typed proxies against live replicas: results, and
//! ConCoord's errors as typed errors.

use concoord::data::blocking::{Counter, Queue, Stack};
use concoord::objects::rmpv::Value as Item;
use concoord::{ClientError, ClientOptions, LocalReplica};
use std::time::Duration;

fn options() -> ClientOptions {
    ClientOptions {
        deadline: Duration::from_secs(20),
        ..ClientOptions::default()
    }
}

fn replica(object: &str) -> LocalReplica {
    LocalReplica::start(concoord::builtin(object).expect("built in"), Vec::new(), "")
        .expect("a loopback replica starts")
}

fn kind(e: ClientError) -> String {
    match e {
        ClientError::Object(e) => e.kind,
        other => panic!("expected an object error, got {other:?}"),
    }
}

#[test]
fn queue_is_fifo_and_get_on_empty_raises_empty() {
    let r = replica("Queue");
    let q = Queue::new(r.addr(), options()).unwrap();
    assert!(q.empty().unwrap());
    q.put(Item::from("a")).unwrap();
    q.put(Item::from(2)).unwrap();
    assert_eq!(q.qsize().unwrap(), 2);
    assert_eq!(q.get().unwrap(), Item::from("a"));
    assert_eq!(q.get().unwrap(), Item::from(2));
    assert_eq!(kind(q.get().unwrap_err()), "Empty");
}

#[test]
fn stack_pops_last_in_and_raises_index_error_when_empty() {
    let r = replica("Stack");
    let s = Stack::new(r.addr(), options()).unwrap();
    s.append(Item::from(1)).unwrap();
    s.append(Item::from(2)).unwrap();
    assert_eq!(s.get_stack().unwrap(), vec![Item::from(1), Item::from(2)]);
    assert_eq!(s.pop().unwrap(), Item::from(2));
    assert_eq!(s.get_size().unwrap(), 1);
    s.pop().unwrap();
    assert_eq!(kind(s.pop().unwrap_err()), "IndexError");
}

#[test]
fn counter_init_sets_the_start_value_on_the_group() {
    let r = replica("Counter");
    let c = Counter::new(r.addr(), options()).unwrap();
    c.concoord_init((41,)).unwrap();
    c.increment().unwrap();
    assert_eq!(c.getvalue().unwrap(), 42);
    match c.concoord_init(("not a number",)) {
        Err(ClientError::BadArguments(_)) => {}
        other => panic!("expected BadArguments, got {other:?}"),
    }
    assert_eq!(c.getvalue().unwrap(), 42, "a failed init changes nothing");
}

/// A named MeshMembership's `wait` parks on that object, not the default
/// one: it is woken when that object's group goes away.
#[test]
fn a_named_mesh_membership_waits_on_its_own_object() {
    use concoord::data::MeshMembership;
    let r = replica("Counter");
    let client = concoord::BlockingClient::new(r.addr(), options()).unwrap();
    let rt = client.runtime().clone();
    let mesh = MeshMembership::named(client.client(), "mesh");
    rt.block_on(mesh.add_group("g", 1)).unwrap();
    let waiting = rt.spawn({
        let mesh = MeshMembership::named(client.client(), "mesh");
        async move { mesh.wait("g").await }
    });
    // The wait parks on "mesh" (on the default Counter it would fail at once).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while client.status().unwrap().parked == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the wait never parked"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    rt.block_on(mesh.remove_group("g")).unwrap();
    let woken = rt.block_on(waiting).unwrap();
    assert_eq!(kind(woken.unwrap_err()), "KeyError");
}
