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
        # Parks until the group expires the dead session and hands the lock on.
        assert lock.acquire(timeout=15)
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


PAUSED = """
import sys
sys.path.insert(0, {path!r})
from concoord import Client, Lock
client = Client({addrs!r}, session_ttl={ttl})
assert Lock(client, {name!r}).acquire()
print("held", flush=True)
# Paused past its TTL, it is told on its next keep-alive, without a call.
print("expired" if client.wait_session_expired(30) else "still " + client.session_state, flush=True)
"""


def test_a_paused_client_learns_its_session_expired_without_a_call(group: Group, unique) -> None:
    name, ttl = unique("lock"), 1.0
    script = PAUSED.format(path=str(Path(__file__).resolve().parents[1]), addrs=group.addrs, ttl=ttl, name=name)
    holder = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    client = Client(group.addrs)
    try:
        assert holder.stdout is not None
        ready, _, _ = select.select([holder.stdout], [], [], 20)
        assert ready and holder.stdout.readline().strip() == b"held"
        os.kill(holder.pid, signal.SIGSTOP)
        # The group ends the paused session and hands the lock on.
        lock = Lock(client, name)
        assert lock.acquire(timeout=15)
        os.kill(holder.pid, signal.SIGCONT)
        ready, _, _ = select.select([holder.stdout], [], [], 30)
        assert ready, "the resumed client never reported"
        assert holder.stdout.readline().strip() == b"expired"
        lock.release()
    finally:
        if holder.poll() is None:
            os.kill(holder.pid, signal.SIGCONT)
            holder.kill()
            holder.wait()
        client.close()
