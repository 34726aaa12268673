"""Typed errors: each kind the client, the group and the objects raise."""

from __future__ import annotations

import threading
from typing import Any, Iterator

import pytest

from concoord import Client, ClientOptions, Counter, Lock, Object, Value
from concoord import errors

from conftest import Group


@pytest.fixture
def client(group: Group) -> Iterator[Client]:
    c = Client(group.addrs)
    yield c
    c.close()


def test_unknown_method_and_bad_arguments(client: Client, unique: Any) -> None:
    counter = Object(client, unique("c"), type_name="Counter")
    with pytest.raises(errors.UnknownMethod, match="nosuch") as e:
        counter.nosuch()
    assert e.value.kind == "UnknownMethod" and isinstance(e.value, AttributeError)
    with pytest.raises(errors.BadArguments) as b:
        counter.increment(1, 2, 3)
    assert isinstance(b.value, TypeError)


def test_wrong_type_no_such_object_deleted(group: Group, client: Client, unique: Any) -> None:
    name = unique("lock")
    lock = Lock(client, name)
    lock.acquire()
    with pytest.raises(errors.WrongType, match="Lock"):
        Counter(client, name).increment()
    with pytest.raises(errors.NoSuchObject):
        Object(client, unique("missing"), type_name="").getvalue()
    other = Client(group.addrs)
    try:
        waiting = Lock(other, name)
        outcome: list = []
        t = threading.Thread(target=lambda: _catch(outcome, waiting.acquire), daemon=True)
        t.start()
        group.wait_parked(name, 1)
        lock.concoord_delete()
        t.join(10)
        assert len(outcome) == 1 and isinstance(outcome[0], errors.Deleted), outcome
        # The next typed call creates the name afresh.
        assert not Lock(client, name).locked()
    finally:
        other.close()


def _catch(out: list, fn: Any) -> None:
    try:
        out.append(fn())
    except errors.ConcoordError as e:
        out.append(e)


def test_limit_exceeded_and_stale_token(client: Client, unique: Any) -> None:
    with pytest.raises(errors.LimitExceeded):
        Counter(client, "x" * 300).increment()
    lock, v = Lock(client, unique("lock")), Value(client, unique("value"))
    old = lock.acquire_fenced()
    lock.release()
    new = lock.acquire_fenced()
    v.set_fenced(new, "by new")
    with pytest.raises(errors.StaleToken):
        v.set_fenced(old, "by old")
    assert v.getvalue() == "by new"


def test_unavailable_and_invalid() -> None:
    with pytest.raises(errors.Invalid):
        Client("no-port-here")
    # Nobody listens on port 1: the call gives up at its deadline.
    c = Client("127.0.0.1:1", ClientOptions(deadline=0.5, session_ttl=None))
    try:
        with pytest.raises(errors.Unavailable) as e:
            c.call("getvalue")
        assert isinstance(e.value, TimeoutError)
    finally:
        c.close()


def test_refused_on_a_wrong_token() -> None:
    from conftest import Group as G

    g = G(1, "Counter", [], token="s3cret")
    try:
        wrong = Client(g.addrs, token="guess", deadline=5)
        with pytest.raises(errors.Refused, match="token"):
            wrong.call("getvalue")
        wrong.close()
        right = Client(g.addrs, token="s3cret")
        assert right.call("getvalue") == 0
        right.close()
    finally:
        g.close()
