"""The data proxies and the default object on a live group."""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from concoord import (
    Bank,
    BinaryTree,
    Client,
    Counter,
    JobManager,
    Log,
    Membership,
    MeshMembership,
    NameserverCoord,
    Object,
    Queue,
    Stack,
    Value,
    fetch_objects,
)
from concoord.errors import Empty, ObjectIndexError, ObjectKeyError

from conftest import Group


@pytest.fixture
def client(group: Group) -> Iterator[Client]:
    c = Client(group.addrs)
    yield c
    c.close()


def test_counter_on_the_default_object(group: Group) -> None:
    # A bootstrap string of one member: the client learns the rest.
    counter = Counter(group.replicas[1].addr)
    try:
        before = counter.getvalue()
        counter.increment()
        counter.increment()
        counter.decrement()
        assert counter.getvalue() == before + 1
        assert counter.target == ("", "")
    finally:
        counter.client.close()


def test_named_counter_and_objects_listing(group: Group, client: Client, unique: Any) -> None:
    name = unique("counter")
    c = Counter(client, name)
    for _ in range(3):
        c.increment()
    assert c.getvalue() == 3
    assert "3" in c.concoord_str()
    listed = {o["name"]: o for o in fetch_objects(group.replicas[0].addr)}
    assert listed[name]["type"] == "Counter"
    c.concoord_init(10)
    assert c.getvalue() == 10


def test_value(client: Client, unique: Any) -> None:
    v = Value(client, unique("value"))
    assert v.getvalue() is None
    v.setvalue({"k": [1, 2.5, "x", b"\x00\xff"]})
    assert v.getvalue() == {"k": [1, 2.5, "x", b"\x00\xff"]}
    version = v.version()
    assert v.compare_and_set({"k": [1, 2.5, "x", b"\x00\xff"]}, "new")
    assert not v.compare_and_set("old", "newer")
    assert v.wait_change(version) == ("new", version + 1)
    assert v.wait_change(version + 1, timeout=0.2) is None


def test_queue(client: Client, unique: Any) -> None:
    q = Queue(client, unique("queue"))
    assert q.empty()
    q.put("a")
    q.put(2)
    assert (q.qsize(), q.full()) == (2, False)
    assert [q.get(), q.get()] == ["a", 2]
    with pytest.raises(Empty) as e:
        q.get()
    import queue

    assert isinstance(e.value, queue.Empty)


def test_stack_log_bank(client: Client, unique: Any) -> None:
    s = Stack(client, unique("stack"))
    s.append(1)
    s.append(2)
    assert (s.get_size(), s.get_stack(), s.pop()) == (2, [1, 2], 2)
    s.pop()
    with pytest.raises(ObjectIndexError):
        s.pop()
    log = Log(client, unique("log"))
    log.append("a")
    log.append("b")
    assert log.read() == "a b"
    log.write("c")
    assert log.read() == "c"
    bank = Bank(client, unique("bank"))
    assert bank.open("alice")
    assert bank.deposit("alice", 10) == 10
    assert bank.debit("alice", 3) == 7
    assert bank.debit("alice", 100) is False
    with pytest.raises(KeyError):
        bank.balance("bob")
    with pytest.raises(ObjectKeyError, match="bob"):
        bank.debit("bob", 1)


def test_membership_jobs_tree_nameserver_mesh(client: Client, unique: Any) -> None:
    m = Membership(client, unique("members"))
    m.add("n1")
    m.add("n2")
    m.remove("n1")
    assert m.get_members() == ["n2"]
    with pytest.raises(KeyError):
        m.remove("n1")
    jobs = JobManager(client, unique("jobs"))
    jobs.schedule("j1")
    assert "j1" in str(jobs.list_jobs())
    jobs.deschedule("j1")
    assert jobs.list_jobs() == []
    tree = BinaryTree(client, unique("tree"))
    for x in (5, 3, 8):
        tree.insert(x)
    assert (tree.find(3), tree.find(4), tree.get_min(), tree.get_max(), tree.get_size()) == (True, False, 3, 8, 3)
    ns = NameserverCoord(client, unique("ns"))
    ns.addnodetosubdomain("www", 1, "10.0.0.1")
    assert "10.0.0.1" in str(ns.getnodes("www"))
    mesh = MeshMembership(client, unique("mesh"))
    mesh.add_group("g", 1)
    assert mesh.get_group_members("g") == []


def test_generic_object_proxy(client: Client, unique: Any) -> None:
    counter = Object(client, unique("counter"), type_name="Counter")
    counter.increment()
    assert counter.getvalue() == 1
    assert counter.call("getvalue") == 1
