"""Real `concoord replica` processes on loopback for the tests.

Every replica is killed and reaped when its group's fixture ends, also when
a test fails; each also gets PR_SET_PDEATHSIG, so it dies with the test run
even if pytest itself is killed.
"""

from __future__ import annotations

import ctypes
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, List, Optional, TypeVar

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from concoord import fetch_objects, fetch_status  # noqa: E402
from concoord.errors import ConcoordError  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
#: How long a replica may take to print `listening on`, and a group to form.
START_TIMEOUT = 10.0
FORM_TIMEOUT = 20.0
T = TypeVar("T")


def concoord_bin() -> str:
    path = os.environ.get("CONCOORD_BIN")
    if path:
        # Absolute: some tests run it from another directory.
        return os.path.abspath(path)
    for candidate in (ROOT / "target" / "debug" / "concoord", ROOT / "target" / "release" / "concoord"):
        if candidate.exists():
            return str(candidate)
    found = shutil.which("concoord")
    if found:
        return found
    pytest.exit("no concoord binary: set CONCOORD_BIN or run `cargo build --bin concoord`", 2)


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def wait_until(what: str, check: Callable[[], Optional[T]], timeout: float = 10.0, every: float = 0.02) -> T:
    """Polls ``check`` (a question to the group) until it answers; fails
    naming ``what`` after ``timeout``."""
    end = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = check()
            if value is not None and value is not False:
                return value
            last = value
        except ConcoordError as e:
            last = e
        if time.monotonic() >= end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
        time.sleep(every)


def free_port() -> int:
    """A port the OS just handed out (for flags that need a fixed one)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Replica:
    def __init__(self, args: List[str], logdir: str, index: int) -> None:
        self.stderr_path = os.path.join(logdir, f"replica-{index}.log")
        self.stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(
            [concoord_bin(), "replica", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            preexec_fn=_die_with_parent,
        )
        lines: "queue.Queue[bytes]" = queue.Queue()

        def drain() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                lines.put(line)
            lines.put(b"")

        threading.Thread(target=drain, daemon=True).start()
        try:
            first = lines.get(timeout=START_TIMEOUT).decode().strip()
        except queue.Empty:
            first = ""
        if not first.startswith("listening on "):
            self.kill()
            raise RuntimeError(f"replica did not start ({first!r}); stderr:\n{self.tail()}")
        self.addr = first[len("listening on ") :]
        self.alive = True

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self.alive = False
        self.stderr.close()

    def tail(self, lines: int = 30) -> str:
        try:
            with open(self.stderr_path, "rb") as f:
                return b"".join(f.readlines()[-lines:]).decode(errors="replace")
        except OSError:
            return ""


class Group:
    """A group of replicas: the first founds it, the others join with -b."""

    def __init__(self, n: int, obj: str, extra: List[str], token: str = "", concoord11: bool = False) -> None:
        self.token = token
        self.logdir = tempfile.mkdtemp(prefix="concoord-py-")
        self.replicas: List[Replica] = []
        #: The ConCoord 1.1 endpoints' addresses (``--concoord-port``), if asked for.
        self.concoord11: List[str] = []
        try:
            base = ["-o", obj, "-a", "127.0.0.1", *extra]
            if token:
                base += ["-t", token]
            for i in range(n):
                args = [*base, "-p", "0"]
                if concoord11:
                    # The endpoint forwards to a fixed -p.
                    port, c11 = free_port(), free_port()
                    args = [*base, "-p", str(port), "--concoord-port", str(c11)]
                    self.concoord11.append(f"127.0.0.1:{c11}")
                if i > 0:
                    args += ["-b", self.replicas[0].addr]
                self.replicas.append(self._start(args, i, retry_ports=concoord11))
            self.wait_formed()
        except BaseException:
            self.close()
            raise

    def _start(self, args: List[str], index: int, retry_ports: bool) -> Replica:
        """Starts one replica; with fixed ports, another process may take a
        free port before the replica binds it, so new ports are tried."""
        for attempt in range(3):
            try:
                return Replica(args, self.logdir, index)
            except RuntimeError:
                if not retry_ports or attempt == 2:
                    raise
                port, c11 = free_port(), free_port()
                args = [*args]
                args[args.index("-p") + 1] = str(port)
                args[args.index("--concoord-port") + 1] = str(c11)
                self.concoord11[index] = f"127.0.0.1:{c11}"
        raise AssertionError("unreachable")

    @property
    def addrs(self) -> str:
        return ",".join(r.addr for r in self.replicas)

    def live(self) -> List[Replica]:
        return [r for r in self.replicas if r.alive]

    def wait_formed(self) -> None:
        want = sorted(r.addr for r in self.replicas)

        def formed() -> bool:
            statuses = [fetch_status(r.addr, self.token) for r in self.replicas]
            leader = statuses[0].leader
            return leader is not None and all(
                sorted(s.members) == want and s.role != "joining" and s.leader == leader for s in statuses
            )

        wait_until("the group to form", formed, FORM_TIMEOUT)

    def leader(self) -> Replica:
        """The live replica every live replica names as the active leader."""

        def agreed() -> Optional[Replica]:
            live = self.live()
            statuses = [fetch_status(r.addr, self.token) for r in live]
            for r, s in zip(live, statuses):
                if s.role == "leader" and all(o.leader == r.addr for o in statuses):
                    return r
            return None

        return wait_until("an agreed leader", agreed, FORM_TIMEOUT)

    def parked(self, name: str) -> int:
        """Calls parked on the named object, as the leader reports them."""
        for o in fetch_objects(self.leader().addr, self.token):
            if o["name"] == name:
                return int(o["parked"])
        return 0

    def wait_parked(self, name: str, count: int) -> None:
        wait_until(f"{count} call(s) parked on {name!r}", lambda: self.parked(name) == count)

    def close(self) -> None:
        for r in self.replicas:
            r.kill()
        shutil.rmtree(self.logdir, ignore_errors=True)


@pytest.fixture(scope="session")
def group() -> Iterator[Group]:
    """One 3-replica group shared by the tests that keep it intact (each
    uses names of its own). Short session TTLs are allowed for the session
    test."""
    g = Group(3, "Counter", ["--session-ttl-min", "0.5"])
    try:
        yield g
    finally:
        g.close()


@pytest.fixture
def own_group() -> Iterator[Group]:
    """A 3-replica group of its own, for a test that kills members."""
    g = Group(3, "Counter", [])
    try:
        yield g
    finally:
        g.close()


@pytest.fixture
def unique(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Object names no other test uses."""
    return lambda suffix: f"{request.node.name}/{suffix}"
