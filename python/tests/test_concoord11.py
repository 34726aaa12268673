"""ConCoord 1.1's own Python 2 client, unchanged, against a concoord group
through `concoord replica --concoord-port`.

Needs Python 2.7 with ConCoord 1.1 importable: CONCOORD11_PYTHON (default
python2.7 on PATH, or pyenv's 2.7.18) and CONCOORD11_PYTHONPATH (default
target/py27-site, where `python2.7 -m pip install --no-deps --target
target/py27-site concoord==1.1.0 msgpack-python==0.5.6 dnspython==1.16.0`
puts it). Skipped with the reason when they are missing.
"""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import textwrap
import threading
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import pytest

from concoord import fetch_status

from conftest import ROOT, Group, wait_until


def _python2() -> Optional[List[str]]:
    candidates = [
        os.environ.get("CONCOORD11_PYTHON"),
        shutil.which("python2.7"),
        str(Path.home() / ".pyenv" / "versions" / "2.7.18" / "bin" / "python2.7"),
    ]
    for c in candidates:
        if c and (os.path.exists(c) or shutil.which(c)):
            ok = subprocess.run([c, "-c", "import concoord.proxy.counter"], env=_env(), capture_output=True)
            if ok.returncode == 0:
                return [c]
    return None


def _env() -> Dict[str, str]:
    env = dict(os.environ)
    env.pop("PYENV_VERSION", None)
    env["PYTHONPATH"] = os.environ.get("CONCOORD11_PYTHONPATH", str(ROOT / "target" / "py27-site"))
    return env


PY2 = _python2()
pytestmark = pytest.mark.skipif(PY2 is None, reason="no Python 2.7 with ConCoord 1.1 (see the module doc)")


class Py2:
    """A Python 2 program using ConCoord's proxies, talking line by line."""

    def __init__(self, source: str) -> None:
        assert PY2 is not None
        self.proc = subprocess.Popen(
            [*PY2, "-u", "-c", textwrap.dedent(source)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_env(),
            text=True,
        )
        self.lines: "queue.Queue[str]" = queue.Queue()

        def read() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                self.lines.put(line)
            self.lines.put("")

        threading.Thread(target=read, daemon=True).start()

    def line(self, timeout: float = 30.0) -> str:
        """The next line it prints; fails with its stderr if it ends or
        stays silent for ``timeout`` seconds."""
        try:
            got = self.lines.get(timeout=timeout).strip()
        except queue.Empty:
            got = ""
        if not got:
            self.close()
            assert self.proc.stderr is not None
            raise AssertionError(f"the Python 2 client said nothing; stderr:\n{self.proc.stderr.read()}")
        return got

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def clients() -> Iterator[List[Py2]]:
    made: List[Py2] = []
    yield made
    for c in made:
        c.close()


def test_counter_and_failover_every_increment_counted_once(clients: List[Py2]) -> None:
    group = Group(3, "Counter", [], concoord11=True)
    try:
        boot = ",".join(group.concoord11)
        client = Py2(
            f"""
            import sys
            from concoord.proxy.counter import Counter
            c = Counter({boot!r})
            for _ in range(3):
                c.increment()
            c.decrement()
            print(c.getvalue())
            for _ in range(20):
                c.increment()
            print("warm")
            sys.stdin.readline()
            for _ in range(30):
                c.increment()
            print(c.getvalue())
            """
        )
        clients.append(client)
        assert client.line() == "2"
        assert client.line() == "warm"
        group.leader().kill()
        client.send("go")
        # Every increment returned once; a resend by command number never counts twice.
        assert client.line() == str(2 + 20 + 30)
    finally:
        group.close()


def test_lock_blocks_until_another_client_releases_and_errors_keep_their_class(clients: List[Py2]) -> None:
    group = Group(3, "Lock", [], concoord11=True)
    try:
        boot = ",".join(group.concoord11)
        holder = Py2(
            f"""
            import sys
            from concoord.proxy.lock import Lock
            l = Lock({boot!r})
            l.acquire()
            print("held")
            sys.stdin.readline()
            l.release()
            print("released")
            sys.stdin.readline()
            try:
                l.release()
            except Exception as e:
                inner = e.args[0]
                print("%s.%s: %s" % (type(inner).__module__, type(inner).__name__, inner))
            """
        )
        clients.append(holder)
        assert holder.line() == "held"
        waiter = Py2(
            f"""
            from concoord.proxy.lock import Lock
            l = Lock({boot!r})
            l.acquire()
            print("acquired")
            l.release()
            print("done")
            """
        )
        clients.append(waiter)
        leader = group.leader()
        wait_until("the second acquire to park", lambda: fetch_status(leader.addr).parked == 1)
        assert waiter.proc.poll() is None
        holder.send("release")
        assert holder.line() == "released"
        assert waiter.line() == "acquired"
        assert waiter.line() == "done"
        holder.send("release again")
        # ConCoord's proxy raises Exception(<the object's exception>), unpickled.
        assert holder.line() == "exceptions.RuntimeError: release unlocked lock"
    finally:
        group.close()


def test_value_queue_and_semaphore(clients: List[Py2]) -> None:
    groups = {obj: Group(1, obj, [], concoord11=True) for obj in ("Queue", "Semaphore")}
    try:
        queue = Py2(
            f"""
            from concoord.proxy.queue import Queue
            q = Queue({groups["Queue"].concoord11[0]!r})
            q.append(5)
            q.append("five")
            print(q.get_size())
            print(q.remove())
            print(q.remove())
            try:
                q.remove()
            except Exception as e:
                inner = e.args[0]
                print("%s.%s" % (type(inner).__module__, type(inner).__name__))
            """
        )
        clients.append(queue)
        assert [queue.line() for _ in range(4)] == ["2", "5", "five", "Queue.Empty"]

        boot = groups["Semaphore"].concoord11[0]
        first = Py2(
            f"""
            import sys
            from concoord.proxy.semaphore import Semaphore
            s = Semaphore({boot!r})
            s.acquire()
            print("held")
            sys.stdin.readline()
            s.release()
            print("released")
            """
        )
        clients.append(first)
        assert first.line() == "held"
        second = Py2(
            f"""
            from concoord.proxy.semaphore import Semaphore
            s = Semaphore({boot!r})
            s.acquire()
            print("acquired")
            """
        )
        clients.append(second)
        addr = groups["Semaphore"].replicas[0].addr
        wait_until("the second acquire to park", lambda: fetch_status(addr).parked == 1)
        first.send("release")
        assert first.line() == "released"
        assert second.line() == "acquired"
    finally:
        for g in groups.values():
            g.close()


def test_bad_input_closes_the_connection_and_the_replica_serves_on() -> None:
    import socket
    import struct

    import msgpack

    group = Group(1, "Counter", [], concoord11=True)
    try:
        host, port = group.concoord11[0].rsplit(":", 1)
        frames = {
            "random bytes": bytes(range(256)) * 4,
            "oversized frame": struct.pack("<I", 1 << 30) + b"x" * 16,
            "unknown message type": _frame({1: 9, 0: 1}),
            "not a map": _frame([1, 2, 3]),
            "no proposal": _frame({1: 0, 0: 1}),
        }
        for what, data in frames.items():
            with socket.create_connection((host, int(port)), timeout=5) as s:
                s.sendall(data)
                assert s.recv(1024) == b"", f"{what}: the connection stays open"
        # A truncated frame: the endpoint waits for the rest; the client gives up.
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(struct.pack("<I", 100) + b"\x80")
        log = Path(group.replicas[0].stderr_path).read_text()
        assert "unknown message type" in log and "closing" in log
        # The replica still serves concoord clients and ConCoord ones.
        with socket.create_connection((host, int(port)), timeout=5) as s:
            peer = ["127.0.0.1", 1, 0]
            s.sendall(_frame({0: 1, 1: 0, 2: peer, 5: [peer, 7, ["increment"]], 13: None, 14: False, 16: 0}))
            header = _recv_exactly(s, 4)
            reply = msgpack.unpackb(_recv_exactly(s, struct.unpack("<I", header)[0]), strict_map_key=False)
            assert (reply[1], reply[8], reply[9]) == (1, 0, 7), reply
    finally:
        group.close()


def _frame(value: object) -> bytes:
    import struct

    import msgpack

    body = msgpack.packb(value)
    return struct.pack("<I", len(body)) + body


def _recv_exactly(sock: object, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))  # type: ignore[attr-defined]
        assert chunk, "closed early"
        out += chunk
    return out
