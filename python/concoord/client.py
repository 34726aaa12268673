"""The client runtime, the same behaviour as the Rust one
(client/src/connection.rs): it finds the leader through redirects, follows
leader changes, resends the same command id after a silence or a reconnect
(so each call takes effect once), stops resending a call the replica says is
parked until its reply comes, cancels a parked call at its deadline with a
replicated ``Cancel``, and keeps a session alive.

One I/O thread per :class:`Client` owns the connection; any number of caller
threads share it, each blocked on its own call.
"""

from __future__ import annotations

import logging
import queue
import random
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from . import _wire as wire
from .errors import (
    Cancelled,
    ConcoordError,
    Invalid,
    Refused,
    Unavailable,
    from_kind,
)

log = logging.getLogger("concoord.client")

#: How long a parking call without a timeout may wait: as good as forever.
FOREVER = 365 * 24 * 3600.0
#: The default session TTL (``DEFAULT_SESSION_TTL`` in client/src/options.rs).
DEFAULT_SESSION_TTL = 10.0
#: The runtime's clock tick: deadlines and silences are checked this often.
TICK = 0.05

Target = Tuple[str, str]
#: The group's default object (``concoord replica -o``).
DEFAULT_TARGET: Target = ("", "")


@dataclass
class ClientOptions:
    """How a client behaves (client/src/options.rs); times in seconds."""

    token: str = ""
    #: A call not answered by then fails with :class:`Unavailable`.
    deadline: float = 30.0
    #: Without an answer for this long, try another replica with the same id.
    resend_after: float = 1.0
    connect_timeout: float = 1.0
    #: After a deadline, how long a cancelled call may take to report the
    #: cancel's outcome before it fails with :class:`Unavailable`.
    cancel_grace: float = 2.0
    #: What this client holds is released when the group has not heard from
    #: it for this long; ``None`` opens no session.
    session_ttl: Optional[float] = DEFAULT_SESSION_TTL


def parse_addresses(bootstrap: str) -> List[str]:
    """Splits ``"HOST:PORT,HOST:PORT"``; :class:`Invalid` if malformed."""
    addrs = [a.strip() for a in bootstrap.split(",") if a.strip()]
    if not addrs:
        raise Invalid("no replica address given; expected HOST:PORT[,HOST:PORT...]")
    for a in addrs:
        host, _, port = a.rpartition(":")
        if not host or not port.isdigit() or int(port) > 65535:
            raise Invalid(f"{a!r} is not HOST:PORT (e.g. 127.0.0.1:14000)")
    return addrs


def _split(addr: str) -> Tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host.strip("[]"), int(port)


class _Future:
    __slots__ = ("_event", "_value", "_error")

    def __init__(self) -> None:
        self._event = threading.Event()
        self._value: Any = None
        self._error: Optional[BaseException] = None

    def set(self, value: Any = None, error: Optional[BaseException] = None) -> None:
        if not self._event.is_set():
            self._value, self._error = value, error
            self._event.set()

    def wait(self) -> Any:
        self._event.wait()
        if self._error is not None:
            raise self._error
        return self._value


@dataclass
class _Pending:
    target: Target
    method: str
    args: bytes
    deadline: float
    cancel_at_deadline: bool
    done: _Future
    cancel_sent: bool = False
    #: The replica said the call waits in a queue: no resend on this connection.
    parked: bool = False
    last_sent: Optional[float] = None


@dataclass
class _CallOp:
    target: Target
    method: str
    args: bytes
    deadline: float
    cancel_at_deadline: bool
    done: _Future = field(default_factory=_Future)


@dataclass
class _StatusOp:
    done: _Future = field(default_factory=_Future)


class _ConnectFailed(Exception):
    pass


class _Conn:
    def __init__(self, sock: socket.socket, reader: wire.FrameReader, addr: str) -> None:
        self.sock, self.reader, self.addr = sock, reader, addr


class Client:
    """A connection to a replica group, shared by every proxy made from it
    (one connection, one command-id space for all objects).

    ``bootstrap`` is ``"HOST:PORT,HOST:PORT"``: one live member is enough,
    the client learns the rest. It connects on its first call.
    """

    def __init__(
        self, bootstrap: str, options: Optional[ClientOptions] = None, **overrides: Any
    ) -> None:
        opts = options or ClientOptions()
        if overrides:
            opts = ClientOptions(**{**opts.__dict__, **overrides})
        self.options = opts
        self.id: int = random.getrandbits(64) | 1
        self._addrs = parse_addresses(bootstrap)
        self._next_addr = 0
        self._preferred: Optional[str] = None
        self._next_seq = 1
        self._pending: Dict[int, _Pending] = {}
        self._unsent: List[int] = []
        self._status_waiters: List[_Future] = []
        self._status_requested = False
        self._session_requested = False
        self._session_seq: Optional[int] = None
        #: Where the session stands: "none", "opening", "open", "refused"
        #: (the TTL is outside the group's bounds) or "expired" (the group
        #: released what it held; further calls raise SessionExpired).
        self.session_state = "none"
        self._session_ended = threading.Event()
        self._last_write = time.monotonic()
        self._inbox: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._closed = False
        self._thread = threading.Thread(
            target=self._run, name=f"concoord-client-{self.id:x}", daemon=True
        )
        self._thread.start()

    # --- the caller's side -------------------------------------------------

    def call(self, method: str, *args: Any, target: Target = DEFAULT_TARGET) -> Any:
        """Calls ``method(*args)`` on ``target`` and returns its result."""
        return wire.unpack(
            self.call_raw(target, method, wire.encode_args(args), self.options.deadline, False)
        )

    def call_parking(
        self,
        method: str,
        args: Sequence[Any],
        timeout: Optional[float],
        target: Target = DEFAULT_TARGET,
    ) -> Tuple[bool, Any]:
        """A call that may park: waits ``timeout`` seconds (``None``:
        forever), then cancels it. ``(True, result)``, or ``(False, None)``
        if the cancel was ordered before the call could proceed."""
        if timeout is None:
            deadline = FOREVER
        elif timeout > 0:
            deadline = min(timeout, FOREVER)
        else:
            # A zero or negative timeout does not park: the object answers
            # (or raises) at once, so this is an ordinary call.
            return True, self.call(method, *args, target=target)
        try:
            raw = self.call_raw(target, method, wire.encode_args(args), deadline, True)
        except Cancelled:
            return False, None
        return True, wire.unpack(raw)

    def call_raw(
        self,
        target: Target,
        method: str,
        args: bytes,
        deadline: float,
        cancel_at_deadline: bool,
    ) -> bytes:
        """Sends a call with MessagePack-encoded positional ``args``; the
        result's MessagePack bytes. With ``cancel_at_deadline`` a call still
        parked after ``deadline`` seconds is cancelled and its outcome
        returned (:class:`Cancelled` if the cancel was ordered first)."""
        op = _CallOp(target, method, args, time.monotonic() + deadline, cancel_at_deadline)
        self._submit(op)
        return op.done.wait()  # type: ignore[no-any-return]

    def status(self) -> wire.Status:
        """The status of the replica this client is connected to."""
        op = _StatusOp()
        self._submit(op)
        return op.done.wait()  # type: ignore[no-any-return]

    def wait_session_expired(self, timeout: Optional[float] = None) -> bool:
        """Blocks until the group has ended this client's session (True) or
        ``timeout`` seconds pass (False). The leader answers keep-alives, so
        an idle client learns of it without making a call."""
        return self._session_ended.wait(timeout) and self.session_state == "expired"

    def _set_session(self, state: str) -> None:
        if self.session_state == "expired":
            return
        self.session_state = state
        if state in ("expired", "refused"):
            self._session_ended.set()

    def close(self) -> None:
        """Stops the runtime; calls still outstanding fail with :class:`Unavailable`."""
        if not self._closed:
            self._closed = True
            self._wake()
            if threading.current_thread() is not self._thread:
                self._thread.join(timeout=5)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _submit(self, op: Any) -> None:
        if self._closed:
            raise Unavailable("client runtime stopped")
        self._inbox.put(op)
        self._wake()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass

    # --- the I/O thread ----------------------------------------------------

    def _run(self) -> None:
        conn: Optional[_Conn] = None
        sel = selectors.DefaultSelector()
        sel.register(self._wake_r, selectors.EVENT_READ)
        last_progress = time.monotonic()
        next_tick = last_progress + TICK
        try:
            while not self._closed:
                self._take_inbox()
                has_work = bool(self._pending or self._status_waiters or self._keep_alive_due())
                if conn is None and has_work:
                    try:
                        conn = self._connect()
                    except ConcoordError as fatal:
                        self._fail_all(fatal)
                        continue
                    if conn is None:  # closed while connecting
                        break
                    sel.register(conn.sock, selectors.EVENT_READ)
                    last_progress = time.monotonic()
                    # A new connection may reach a new leader: say at once that
                    # the session lives (the redirect finds the leader if not).
                    if self.options.session_ttl is not None:
                        self._last_write = last_progress - self.options.session_ttl
                    for p in self._pending.values():
                        p.last_sent = None
                        p.parked = False
                    self._unsent = sorted(self._pending)
                    self._status_requested = False
                if conn is not None:
                    try:
                        if self._keep_alive_due() and not self._unsent:
                            conn.sock.sendall(wire.keep_alive())
                            self._last_write = time.monotonic()
                        if self._flush_sends(conn):
                            self._last_write = time.monotonic()
                    except OSError as e:
                        log.debug("concoord client: write to %s failed: %s", conn.addr, e)
                        conn = self._drop(sel, conn)
                        continue
                wait = max(0.0, next_tick - time.monotonic())
                for key, _ in sel.select(wait):
                    if key.fileobj is self._wake_r:
                        self._drain_wake()
                        continue
                    if conn is None or key.fileobj is not conn.sock:
                        continue
                    try:
                        data = conn.sock.recv(1 << 16)
                        if not data:
                            raise OSError("connection closed")
                        frames = conn.reader.feed(data)
                    except (OSError, wire.WireError) as e:
                        log.debug("concoord client: connection to %s: %s", conn.addr, e)
                        conn = self._drop(sel, conn)
                        continue
                    last_progress = time.monotonic()
                    for frame in frames:
                        reconnect = self._on_frame(frame)
                        if reconnect is not None:
                            self._preferred = reconnect[0]
                            conn = self._drop(sel, conn)
                            break
                now = time.monotonic()
                if now >= next_tick:
                    next_tick = now + TICK
                    self._expire()
                    stale = any(
                        not p.parked
                        and p.last_sent is not None
                        and now - p.last_sent >= self.options.resend_after
                        for p in self._pending.values()
                    )
                    if stale and conn is not None and now - last_progress >= self.options.resend_after:
                        # The replica we talk to is not getting our calls through.
                        log.debug("concoord client: no answer from %s; trying another", conn.addr)
                        conn = self._drop(sel, conn)
                        self._preferred = None
        finally:
            if conn is not None:
                self._drop(sel, conn)
            self._closed = True
            self._take_inbox()
            self._fail_all(Unavailable("client runtime stopped"))
            sel.close()
            self._wake_r.close()
            self._wake_w.close()

    def _drop(self, sel: selectors.BaseSelector, conn: _Conn) -> Optional[_Conn]:
        """Closes ``conn``; ``None``, the connection there is now."""
        try:
            sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()
        return None

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _take_inbox(self) -> None:
        while True:
            try:
                op = self._inbox.get_nowait()
            except queue.Empty:
                return
            if isinstance(op, _CallOp) and not self._session_requested:
                self._open_session()
            self._queue(op)

    def _keep_alive_due(self) -> bool:
        ttl = self.options.session_ttl
        if ttl is None or self.session_state not in ("opening", "open"):
            return False
        return time.monotonic() - self._last_write >= ttl / 3

    def _open_session(self) -> None:
        """Queues ``concoord_open_session(ttl_ms)`` ahead of the first call."""
        ttl = self.options.session_ttl
        if ttl is None:
            return
        self._session_requested = True
        self._session_seq = self._next_seq
        self._set_session("opening")
        # Nobody waits for its reply: _on_frame reads it into session_state.
        self._queue(
            _CallOp(
                DEFAULT_TARGET,
                wire.OPEN_SESSION_METHOD,
                wire.encode_args([int(ttl * 1000)]),
                time.monotonic() + self.options.deadline,
                False,
            )
        )

    def _queue(self, op: Any) -> None:
        if isinstance(op, _StatusOp):
            self._status_waiters.append(op.done)
            return
        seq = self._next_seq
        self._next_seq += 1
        self._unsent.append(seq)
        self._pending[seq] = _Pending(
            op.target, op.method, op.args, op.deadline, op.cancel_at_deadline, op.done
        )

    def _flush_sends(self, conn: _Conn) -> bool:
        """Writes what has not been sent on this connection, in one write."""
        ack_below = min(self._pending) if self._pending else self._next_seq
        now = time.monotonic()
        out: List[bytes] = []
        unsent, self._unsent = self._unsent, []
        for seq in unsent:
            p = self._pending.get(seq)
            if p is None or p.last_sent is not None:
                continue
            p.last_sent = now
            cid = (self.id, seq)
            if p.cancel_sent:
                out.append(wire.cancel(cid))
            else:
                out.append(wire.call(cid, p.target[0], p.target[1], p.method, p.args, ack_below))
        if self._status_waiters and not self._status_requested:
            self._status_requested = True
            out.append(wire.status_request())
        if out:
            conn.sock.sendall(b"".join(out))
        return bool(out)

    def _on_frame(self, frame: wire.Frame) -> Optional[Tuple[Optional[str]]]:
        """Handles one frame; ``(address_or_None,)`` when we should reconnect."""
        if isinstance(frame, wire.Reply):
            if frame.id[0] == self.id:
                if frame.err is not None and frame.err[0] == "SessionExpired":
                    self._set_session("expired")
                elif frame.id[1] == self._session_seq:
                    self._set_session("open" if frame.err is None else "refused")
                p = self._pending.pop(frame.id[1], None)
                if p is not None:
                    if frame.err is not None:
                        kind, message = frame.err
                        if p.method == wire.OPEN_SESSION_METHOD:
                            log.warning("concoord client: session refused: %s: %s", kind, message)
                        p.done.set(error=from_kind(kind, message))
                    else:
                        p.done.set(frame.ok)
        elif isinstance(frame, wire.Parked):
            p = self._pending.get(frame.id[1]) if frame.id[0] == self.id else None
            if p is not None:
                p.parked = True
        elif isinstance(frame, wire.Redirect):
            self._learn(frame.members)
            return (frame.leader,)
        elif isinstance(frame, wire.Status):
            for w in self._status_waiters:
                w.set(frame)
            self._status_waiters = []
            self._status_requested = False
        elif isinstance(frame, wire.Other) and frame.name == "SessionExpired":
            self._set_session("expired")
        elif isinstance(frame, wire.Refused):
            if frame.kind == "Busy":
                log.debug("concoord client: %s", frame.message)
                return None
            self._fail_all(Refused(f"{frame.kind}: {frame.message}"))
            return (None,)
        return None

    def _learn(self, members: Sequence[str]) -> None:
        for m in members:
            if m not in self._addrs:
                self._addrs.append(m)

    def _expire(self) -> None:
        now = time.monotonic()
        for seq in [s for s, p in self._pending.items() if now >= p.deadline]:
            p = self._pending[seq]
            if p.cancel_at_deadline and not p.cancel_sent:
                p.cancel_sent = True
                p.parked = False
                p.last_sent = None
                self._unsent.append(seq)
                p.deadline = now + self.options.cancel_grace
                continue
            del self._pending[seq]
            p.done.set(
                error=Unavailable(
                    "no answer from a quorum before the deadline (tried %s)" % ",".join(self._addrs)
                )
            )

    def _fail_all(self, error: ConcoordError) -> None:
        pending, self._pending = self._pending, {}
        for p in pending.values():
            p.done.set(error=error)
        waiters, self._status_waiters = self._status_waiters, []
        for w in waiters:
            w.set(error=error)

    def _connect(self) -> Optional[_Conn]:
        """Connects to the preferred replica or the next one; a refusal is fatal."""
        attempts = 0
        while not self._closed:
            addr = self._preferred
            self._preferred = None
            if addr is None:
                addr = self._addrs[self._next_addr % len(self._addrs)]
                self._next_addr += 1
            try:
                return self._try_connect(addr)
            except _ConnectFailed as why:
                log.debug("concoord client: cannot reach %s: %s", addr, why)
                attempts += 1
                self._take_inbox()
                self._expire()
                if not self._pending and not self._status_waiters:
                    raise Unavailable("nothing to do")
                if attempts % len(self._addrs) == 0:
                    waiters, self._status_waiters = self._status_waiters, []
                    for w in waiters:
                        w.set(error=Unavailable(f"cannot reach {addr}: {why}"))
                    time.sleep(0.1)
        return None

    def _try_connect(self, addr: str) -> _Conn:
        timeout = self.options.connect_timeout
        try:
            sock = socket.create_connection(_split(addr), timeout=timeout)
        except OSError as e:
            raise _ConnectFailed(str(e)) from e
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            reader = wire.FrameReader()
            sock.sendall(wire.hello(self.id, self.options.token))
            end = time.monotonic() + timeout
            while True:
                left = end - time.monotonic()
                if left <= 0:
                    raise _ConnectFailed("no welcome")
                sock.settimeout(left)
                data = sock.recv(1 << 16)
                if not data:
                    raise _ConnectFailed("closed during hello")
                frames = reader.feed(data)
                if frames:
                    break
            first = frames[0]
            if isinstance(first, wire.Refused):
                raise Refused(f"{first.kind}: {first.message}")
            if not isinstance(first, wire.Welcome):
                raise _ConnectFailed(f"unexpected {first!r}")
            self._learn(first.members)
            # Writes may block for a while on a stuck peer; reads only happen
            # once the selector says there is data.
            sock.settimeout(max(5.0, timeout))
            conn = _Conn(sock, reader, addr)
            for extra in frames[1:]:
                self._on_frame(extra)
            return conn
        except (OSError, wire.WireError) as e:
            sock.close()
            raise _ConnectFailed(str(e)) from e
        except BaseException:
            sock.close()
            raise


# --- one-off requests to one replica (client/src/admin.rs) -----------------


def _ask(addr: str, token: str, timeout: float, request: bytes, pick: Callable[[wire.Frame], Any]) -> Any:
    end = time.monotonic() + timeout
    try:
        with socket.create_connection(_split(addr), timeout=timeout) as sock:
            sock.sendall(wire.hello(random.getrandbits(64) | 1, token) + request)
            reader = wire.FrameReader()
            while True:
                left = end - time.monotonic()
                if left <= 0:
                    raise Unavailable(f"{addr} did not answer within {timeout}s")
                sock.settimeout(left)
                data = sock.recv(1 << 16)
                if not data:
                    raise Unavailable(f"{addr} closed the connection")
                for frame in reader.feed(data):
                    if isinstance(frame, wire.Refused):
                        raise Refused(f"{frame.kind}: {frame.message}")
                    answer = pick(frame)
                    if answer is not None:
                        return answer
    except (OSError, wire.WireError) as e:
        raise Unavailable(f"{addr}: {e}") from e


def fetch_status(addr: str, token: str = "", timeout: float = 1.0) -> wire.Status:
    """One replica's status over a connection of its own (no redirects)."""
    return _ask(  # type: ignore[no-any-return]
        addr, token, timeout, wire.status_request(), lambda f: f if isinstance(f, wire.Status) else None
    )


def fetch_objects(addr: str, token: str = "", timeout: float = 2.0) -> List[Dict[str, Any]]:
    """Every named object one replica holds, in name order: ``{name, type, parked}``."""
    out: List[Dict[str, Any]] = []
    while True:
        after = out[-1]["name"] if out else ""
        page: wire.Objects = _ask(
            addr,
            token,
            timeout,
            wire.objects_request(after, 10_000),
            lambda f: f if isinstance(f, wire.Objects) else None,
        )
        out.extend({"name": n, "type": t, "parked": p} for n, t, p in page.objects)
        if not page.more:
            return out
