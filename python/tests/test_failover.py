"""Kill -9 of the leader: calls carry on through the new leader, each
acknowledged increment counted once, and a parked acquire keeps its place."""

from __future__ import annotations

import threading
from typing import List

from concoord import Client, Counter, Lock

from conftest import Group, wait_until


def test_leader_killed_every_increment_counted_once(own_group: Group) -> None:
    group = own_group
    clients: List[Client] = []
    try:
        holder = Client(group.addrs)
        waiter = Client(group.addrs)
        counting = Client(group.addrs)
        clients += [holder, waiter, counting]
        # A parked acquire that must survive the failover.
        assert Lock(holder, "lock").acquire()
        granted: List[bool] = []
        parked = threading.Thread(target=lambda: granted.append(Lock(waiter, "lock").acquire()), daemon=True)
        parked.start()
        group.wait_parked("lock", 1)

        counter = Counter(counting)
        acknowledged = 0
        warm = threading.Event()
        stop = threading.Event()
        errors: List[BaseException] = []

        def increment() -> None:
            nonlocal acknowledged
            try:
                while not stop.is_set():
                    counter.increment()
                    acknowledged += 1
                    if acknowledged == 20:
                        warm.set()
            except BaseException as e:
                errors.append(e)
                warm.set()

        worker = threading.Thread(target=increment, daemon=True)
        worker.start()
        assert warm.wait(20), "no increments before the kill"
        old = group.leader()
        old.kill()
        new = group.leader()
        assert new is not old
        # Keep calling until increments went through the new leader.
        after_kill = acknowledged
        wait_until("increments through the new leader", lambda: acknowledged >= after_kill + 20, 30)
        stop.set()
        worker.join(30)
        assert not errors, errors
        # Every call returned once; a resend by id never counts twice.
        assert counter.getvalue() == acknowledged

        assert not granted, "the waiter got the lock while it was held"
        Lock(holder, "lock").release()
        parked.join(10)
        assert granted == [True]
    finally:
        for c in clients:
            c.close()
