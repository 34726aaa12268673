"""Sessions: a killed client's lock passes on after its TTL; an idle live
client keeps its lock through keep-alives."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from concoord import Client, Lock

from conftest import Group

HOLDER = """
import sys
sys.path.insert(0, {path!r})
from concoord import Client, Lock
lock = Lock(Client({addrs!r}, session_ttl={ttl}), {name!r})
assert lock.acquire()
print("held", flush=True)
sys.stdin.read()  # until killed
"""


def test_killed_clients_lock_is_released_after_its_ttl(group: Group, unique) -> None:
    name, ttl = unique("lock"), 1.0
    script = HOLDER.format(path=str(Path(__file__).resolve().parents[1]), addrs=group.addrs, ttl=ttl, name=name)
    holder = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    client = Client(group.addrs)
    try:
        assert holder.stdout is not None
        ready, _, _ = select.select([holder.stdout], [], [], 20)
        assert ready, "the holder did not report its lock within 20 s"
        assert holder.stdout.readline().strip() == b"held"
        lock = Lock(client, name)
        assert lock.locked()
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
        killed = time.monotonic()
        # Parks until the group expires the dead session and hands the lock on.
        assert lock.acquire(timeout=15)
        waited = time.monotonic() - killed
        assert waited < 10, f"the lock took {waited:.1f}s to pass on"
        lock.release()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        client.close()


def test_idle_client_keeps_its_lock_through_keep_alives(group: Group, unique) -> None:
    # Short enough to expire within the test if keep-alives stopped, long
    # enough that a loaded machine's scheduling delays do not.
    name, ttl = unique("lock"), 1.0
    idle = Client(group.addrs, session_ttl=ttl)
    other = Client(group.addrs)
    try:
        assert Lock(idle, name).acquire()
        # Several TTLs without a call: only keep-alives keep the session.
        deadline = time.monotonic() + 3 * ttl
        while time.monotonic() < deadline:
            assert not Lock(other, name).acquire(blocking=False)
            time.sleep(ttl / 2)
        Lock(idle, name).release()
    finally:
        idle.close()
        other.close()
