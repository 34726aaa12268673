"""The threading proxies on a live group, Python `threading` semantics."""

from __future__ import annotations

import threading
from typing import Any, Callable, List

import pytest

from concoord import Barrier, BoundedSemaphore, Client, Condition, Election, Event, Lock, RLock, Semaphore
from concoord.errors import BrokenBarrierError, ObjectRuntimeError, ObjectValueError

from conftest import Group, wait_until


class Runner:
    """Runs a blocking call on a thread and keeps its outcome."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = threading.Event()

        def run() -> None:
            try:
                self.result = fn()
            except BaseException as e:  # handed to the test
                self.error = e
            finally:
                self.done.set()

        threading.Thread(target=run, daemon=True).start()

    def get(self, timeout: float = 10.0) -> Any:
        assert self.done.wait(timeout), "the blocking call did not return"
        if self.error is not None:
            raise self.error
        return self.result


@pytest.fixture
def clients(group: Group) -> Any:
    made: List[Client] = []

    def make() -> Client:
        c = Client(group.addrs)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def test_lock_with_statement_and_locked(group: Group, clients: Any, unique: Any) -> None:
    lock = Lock(clients(), unique("lock"))
    assert not lock.locked()
    with lock:
        assert lock.locked()
        assert not Lock(clients(), unique("lock")).acquire(blocking=False)
    assert not lock.locked()
    with pytest.raises(ObjectRuntimeError, match="release unlocked lock") as e:
        lock.release()
    assert isinstance(e.value, RuntimeError)


def test_parked_acquire_is_woken_by_another_clients_release(group: Group, clients: Any, unique: Any) -> None:
    name = unique("lock")
    holder, waiter = Lock(clients(), name), Lock(clients(), name)
    assert holder.acquire()
    blocked = Runner(waiter.acquire)
    group.wait_parked(name, 1)
    assert not blocked.done.is_set(), "acquire returned while the lock was held"
    holder.release()
    assert blocked.get() is True
    assert waiter.locked()
    waiter.release()


def test_timed_acquire_times_out_and_leaks_nothing(group: Group, clients: Any, unique: Any) -> None:
    name = unique("lock")
    holder, other = Lock(clients(), name), Lock(clients(), name)
    assert holder.acquire()
    assert other.acquire(timeout=0.3) is False
    assert other.acquire_fenced(timeout=0.2) is None
    # The cancels were ordered: nothing waits, and the holder still holds it.
    assert group.parked(name) == 0
    assert holder.locked()
    holder.release()
    # Had a timed-out acquire been granted later, this would fail.
    assert other.acquire(blocking=False)
    other.release()


def test_fencing_tokens_grow(clients: Any, unique: Any) -> None:
    lock = Lock(clients(), unique("lock"))
    first = lock.acquire_fenced()
    assert lock.fence() == first
    lock.release()
    assert lock.fence() is None
    second = lock.acquire_fenced(blocking=False)
    assert second is not None and second > first
    lock.release()


def test_rlock_is_reentrant_and_owned(clients: Any, unique: Any) -> None:
    mine, theirs = RLock(clients(), unique("rlock")), RLock(clients(), unique("rlock"))
    with mine:
        with mine:
            assert not theirs.acquire(blocking=False)
        with pytest.raises(RuntimeError):
            theirs.release()
        assert mine.locked()
    assert not mine.locked()
    assert theirs.acquire(blocking=False)
    theirs.release()


def test_semaphore_and_bounded_semaphore(clients: Any, unique: Any) -> None:
    sem = Semaphore(clients(), unique("sem"))
    sem.concoord_init(2)
    assert sem.acquire() and sem.acquire()
    assert not sem.acquire(blocking=False)
    assert not sem.acquire(timeout=0.2)
    sem.release(2)
    with sem:
        assert sem.acquire(blocking=False)
    bounded = BoundedSemaphore(clients(), unique("bounded"))
    bounded.concoord_init(1)
    with bounded:
        pass
    with pytest.raises(ObjectValueError, match="released too many times") as e:
        bounded.release()
    assert isinstance(e.value, ValueError)


def test_condition_wait_notify(group: Group, clients: Any, unique: Any) -> None:
    name = unique("cond")
    waiter, notifier = Condition(clients(), name), Condition(clients(), name)

    def wait() -> bool:
        with waiter:
            woken = waiter.wait()
            # A woken waiter holds the lock again before wait returns.
            assert not notifier.acquire(blocking=False)
            return woken

    blocked = Runner(wait)
    group.wait_parked(name, 1)
    with notifier:
        notifier.notify()
    assert blocked.get() is True
    with pytest.raises(RuntimeError, match="cannot wait on un-acquired lock"):
        waiter.wait(0.1)
    with notifier:
        assert notifier.wait(timeout=0.2) is False


def test_barrier(clients: Any, unique: Any) -> None:
    name = unique("barrier")
    Barrier(clients(), name).concoord_init(3)
    parties = [Barrier(clients(), name) for _ in range(3)]
    assert parties[0].parties == 3
    waits = [Runner(p.wait) for p in parties]
    assert sorted(w.get() for w in waits) == [0, 1, 2]
    assert not parties[0].broken
    with pytest.raises(BrokenBarrierError) as e:
        parties[0].wait(timeout=0.2)
    assert isinstance(e.value, threading.BrokenBarrierError)
    assert parties[1].broken
    parties[1].reset()
    assert not parties[1].broken


def test_event(group: Group, clients: Any, unique: Any) -> None:
    name = unique("event")
    a, b = Event(clients(), name), Event(clients(), name)
    assert not a.is_set()
    blocked = Runner(b.wait)
    group.wait_parked(name, 1)
    a.set()
    assert blocked.get() is True
    assert b.is_set() and b.wait(0.1)
    a.clear()
    assert b.wait(timeout=0.2) is False


def test_election(group: Group, clients: Any, unique: Any) -> None:
    name = unique("election")
    first, second = Election(clients(), name), Election(clients(), name)
    token = first.campaign("a")
    assert first.leader() == ("a", token)
    campaigning = Runner(lambda: second.campaign("b"))
    group.wait_parked(name, 1)
    first.resign()
    later = campaigning.get()
    assert later > token
    assert first.leader() == ("b", later)
    assert first.observe(later, timeout=0.2) == ("b", later)


def test_many_threads_share_one_client(clients: Any, unique: Any) -> None:
    """Mutual exclusion between threads of one process through one client:
    the lock is not re-entrant, so each thread's critical section is alone."""
    client = clients()
    lock = Lock(client, unique("lock"))
    inside = []
    overlaps = []

    def work() -> None:
        for _ in range(5):
            with lock:
                inside.append(1)
                if len(inside) > 1:
                    overlaps.append(1)
                inside.pop()

    runs = [Runner(work) for _ in range(4)]
    for r in runs:
        r.get(30)
    assert overlaps == []
    wait_until("the lock to be free", lambda: not lock.locked())
