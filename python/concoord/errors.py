"""The errors a caller can tell apart (client/src/error.rs, and the kinds
objects and the group raise).

Every error is a :class:`ConcoordError` with ``kind`` and ``message`` as
``concoord call`` prints them. Errors an object raises are
:class:`ObjectError`; those named like a Python exception also derive from
it, so ``except KeyError`` and ``except threading.BrokenBarrierError`` work.
"""

from __future__ import annotations

import queue
import threading
from typing import Dict, Type


class ConcoordError(Exception):
    """Base of every concoord error."""

    kind: str = "Error"

    def __init__(self, message: str, kind: str | None = None) -> None:
        super().__init__(message)
        if kind is not None:
            self.kind = kind
        self.message = message

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


# --- raised by the client runtime or the connection -----------------------


class Refused(ConcoordError):
    """The group refused us (wrong token, wrong protocol version)."""

    kind = "Refused"


class Unavailable(ConcoordError, TimeoutError):
    """No quorum answered before the deadline."""

    kind = "Unavailable"


class Invalid(ConcoordError, ValueError):
    """A bad address, or a reply that could not be decoded."""

    kind = "Invalid"


class UnknownMethod(ConcoordError, AttributeError):
    """The object has no such method."""

    kind = "UnknownMethod"


class BadArguments(ConcoordError, TypeError):
    """The arguments did not fit the method."""

    kind = "BadArguments"


# --- raised by an object, or by the group in the replicated order ---------


class ObjectError(ConcoordError):
    """The object raised an error (``RuntimeError: release unlocked lock``)."""


class SessionExpired(ObjectError):
    """This client's session ended: what it held was released."""

    kind = "SessionExpired"


class StaleToken(ObjectError):
    """A fenced write carried a token older than one already accepted."""

    kind = "StaleToken"


class WrongType(ObjectError, TypeError):
    """The name holds an object of another type."""

    kind = "WrongType"


class NoSuchObject(ObjectError, LookupError):
    """No object has this name, and the call gave no type to create one."""

    kind = "NoSuchObject"


class Deleted(ObjectError):
    """The object the call waited on was deleted (``concoord_delete``)."""

    kind = "Deleted"


class LimitExceeded(ObjectError):
    """A name, the arguments or the number of objects is over a limit."""

    kind = "LimitExceeded"


class Cancelled(ObjectError):
    """The call's cancel was ordered before it (a timed call that timed out)."""

    kind = "Cancelled"


class ObjectRuntimeError(ObjectError, RuntimeError):
    kind = "RuntimeError"


class ObjectValueError(ObjectError, ValueError):
    kind = "ValueError"


class ObjectKeyError(ObjectError, KeyError):
    kind = "KeyError"

    def __str__(self) -> str:  # KeyError would repr the message
        return ObjectError.__str__(self)


class ObjectIndexError(ObjectError, IndexError):
    kind = "IndexError"


class ObjectTypeError(ObjectError, TypeError):
    kind = "TypeError"


class ObjectOverflowError(ObjectError, OverflowError):
    kind = "OverflowError"


class Empty(ObjectError, queue.Empty):
    """``Queue.get`` on an empty queue (``queue.Empty``)."""

    kind = "Empty"


class Full(ObjectError, queue.Full):
    kind = "Full"


class BrokenBarrierError(ObjectError, threading.BrokenBarrierError):
    kind = "BrokenBarrierError"


_BY_KIND: Dict[str, Type[ConcoordError]] = {
    cls.kind: cls
    for cls in (
        Refused,
        Unavailable,
        Invalid,
        UnknownMethod,
        BadArguments,
        SessionExpired,
        StaleToken,
        WrongType,
        NoSuchObject,
        Deleted,
        LimitExceeded,
        Cancelled,
        ObjectRuntimeError,
        ObjectValueError,
        ObjectKeyError,
        ObjectIndexError,
        ObjectTypeError,
        ObjectOverflowError,
        Empty,
        Full,
        BrokenBarrierError,
    )
}


def from_kind(kind: str, message: str) -> ConcoordError:
    """The typed error for an error reply; an unknown kind is an
    :class:`ObjectError` that keeps it."""
    cls = _BY_KIND.get(kind)
    if cls is None:
        return ObjectError(message, kind)
    return cls(message)
