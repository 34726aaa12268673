"""Distributed versions of Python's ``threading`` objects, with its method
names and semantics across machines (so ``with lock:`` works).

A blocking call parks in the object's wait queue under its command id (FIFO);
a timed call that runs out of time becomes a replicated cancel, so a timeout
never leaks a permit: the call returns what the group ordered first.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Tuple, TypeVar

from .errors import BrokenBarrierError, ObjectRuntimeError
from .proxy import Proxy, _timeout_arg

__all__ = [
    "Lock",
    "RLock",
    "Semaphore",
    "BoundedSemaphore",
    "Condition",
    "Barrier",
    "Event",
    "Election",
]

T = TypeVar("T")


class _Acquirable(Proxy):
    """``acquire``/``release`` and the context manager, shared by Lock,
    RLock, Semaphore, BoundedSemaphore and Condition."""

    def _acquire(self, method: str, blocking: bool, timeout: Optional[float], missed: Any) -> Any:
        if not blocking:
            # Python refuses a timeout on a non-blocking call: let the object say so.
            args: List[Any] = [False] if timeout in (None, -1) else [False, timeout]
            return self.call(method, *args)
        t = _timeout_arg(timeout)
        if t is None:
            done, value = self._parking(method, [True], None)
        else:
            done, value = self._parking(method, [True, t], t)
        return value if done else missed

    def acquire(self, blocking: bool = True, timeout: Optional[float] = -1) -> bool:
        """Blocks until acquired (at most ``timeout`` seconds); whether it was."""
        return bool(self._acquire("acquire", blocking, timeout, False))

    def release(self) -> None:
        self.call("release")

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


class _Fenced(_Acquirable):
    def acquire_fenced(self, blocking: bool = True, timeout: Optional[float] = -1) -> Optional[int]:
        """Like :meth:`acquire`, but returns the grant's fencing token (larger
        than any this object gave before), or ``None`` when not granted."""
        token = self._acquire("acquire_fenced", blocking, timeout, None)
        return None if token is None else int(token)


class Lock(_Fenced):
    """A distributed ``threading.Lock``: any client may release it."""

    TYPE = "Lock"

    def locked(self) -> bool:
        return bool(self.call("locked"))

    def fence(self) -> Optional[int]:
        """The holder's fencing token, ``None`` when free."""
        token = self.call("fence")
        return None if token is None else int(token)


class RLock(_Fenced):
    """A distributed ``threading.RLock``: owned by the client (the
    :class:`~concoord.Client`, not the thread) that acquired it, re-entrant."""

    TYPE = "RLock"

    def locked(self) -> bool:
        return bool(self.call("locked"))

    def fence(self) -> Optional[int]:
        token = self.call("fence")
        return None if token is None else int(token)


class Semaphore(_Fenced):
    """A distributed ``threading.Semaphore``; its initial value is set with
    ``concoord_init(value)`` (or ``concoord replica -o Semaphore --init N``)."""

    TYPE = "Semaphore"

    def acquire(self, blocking: bool = True, timeout: Optional[float] = None) -> bool:
        return bool(self._acquire("acquire", blocking, timeout, False))

    def release(self, n: int = 1) -> None:
        self.call("release", n)


class BoundedSemaphore(Semaphore):
    """A distributed ``threading.BoundedSemaphore``: releasing above the
    initial value raises ``ValueError``."""

    TYPE = "BoundedSemaphore"


class Condition(_Acquirable):
    """A distributed ``threading.Condition`` with its own re-entrant lock."""

    TYPE = "Condition"

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Releases the lock, waits for a notification, re-acquires the lock;
        False if not notified within ``timeout`` (the lock is held again
        either way)."""
        t = _timeout_arg(timeout)
        done, value = self._parking("wait", [t], t)
        return bool(value) if done else False

    def wait_for(self, predicate: Callable[[], T], timeout: Optional[float] = None) -> T:
        """Waits until ``predicate()`` is true, as ``threading.Condition.wait_for``."""
        import time

        end = None if timeout is None else time.monotonic() + timeout
        result = predicate()
        while not result:
            if end is not None:
                left = end - time.monotonic()
                if left <= 0:
                    break
                self.wait(left)
            else:
                self.wait()
            result = predicate()
        return result

    def notify(self, n: int = 1) -> None:
        self.call("notify", n)

    def notify_all(self) -> None:
        self.call("notify_all")

    notifyAll = notify_all


class Barrier(Proxy):
    """A distributed ``threading.Barrier``; its parties are set with
    ``concoord_init(parties)``."""

    TYPE = "Barrier"

    def wait(self, timeout: Optional[float] = None) -> int:
        """Waits for all parties; this caller's index. A timeout breaks the
        barrier and raises :class:`~concoord.errors.BrokenBarrierError`."""
        t = _timeout_arg(timeout)
        done, value = self._parking("wait", [t], t)
        if not done:
            raise BrokenBarrierError("timed out before the wait was ordered")
        return int(value)

    def reset(self) -> None:
        self.call("reset")

    def abort(self) -> None:
        self.call("abort")

    @property
    def parties(self) -> int:
        return int(self.call("parties"))

    @property
    def n_waiting(self) -> int:
        return int(self.call("n_waiting"))

    @property
    def broken(self) -> bool:
        return bool(self.call("broken"))


class Event(Proxy):
    """A distributed ``threading.Event``."""

    TYPE = "Event"

    def set(self) -> None:
        self.call("set")

    def clear(self) -> None:
        self.call("clear")

    def is_set(self) -> bool:
        return bool(self.call("is_set"))

    isSet = is_set

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Waits until set; False if not set within ``timeout``."""
        t = _timeout_arg(timeout)
        done, value = self._parking("wait", [t], t)
        return bool(value) if done else False


class Election(Proxy):
    """Leader election: one leader at a time, in FIFO order of campaigns; a
    leader whose session ends is replaced by the next campaigner."""

    TYPE = "Election"

    def campaign(self, value: Any = None) -> int:
        """Blocks until this client leads; its fencing token."""
        done, token = self._parking("campaign", [value], None)
        if not done or token is None:
            raise ObjectRuntimeError("the campaign ended without leading")
        return int(token)

    def leader(self) -> Optional[Tuple[Any, int]]:
        """``(value, token)`` of the leader, ``None`` when nobody leads."""
        led = self.call("leader")
        return None if led is None else (led[0], int(led[1]))

    def resign(self) -> None:
        self.call("resign")

    def observe(self, token: Optional[int] = None, timeout: Optional[float] = None) -> Optional[Tuple[Any, int]]:
        """Waits until the leadership differs from ``token``; the leadership
        then (or what it is when ``timeout`` runs out)."""
        t = _timeout_arg(timeout)
        done, led = self._parking("observe", [token, t], t)
        if not done:
            led = self.call("leader")
        return None if led is None else (led[0], int(led[1]))
