"""The base of every proxy: a client, and which object it calls."""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence, Tuple, Union

from . import _wire as wire
from .client import FOREVER, Client, ClientOptions, Target


def _timeout_arg(timeout: Optional[float]) -> Optional[float]:
    """Python's ``-1`` and ``None`` both mean "no timeout"."""
    if timeout is None or timeout == -1:
        return None
    return float(timeout)


class Proxy:
    """Calls one object of a group: the default one (``concoord replica -o``)
    or the one called ``name``, created with this proxy's type by its first
    call.

    ``client`` is a :class:`Client` (its connection and command-id space are
    shared with every proxy made from it) or a bootstrap string
    ``"HOST:PORT,..."``, for which the proxy starts a client of its own.
    """

    #: The object type a named proxy creates (the built-in's short name).
    TYPE: str = ""
    #: The token a proxy presents when it starts its own client
    #: (``concoord object -t`` bakes one in).
    TOKEN: str = ""

    def __init__(
        self,
        client: Union[Client, str],
        name: Optional[str] = None,
        *,
        options: Optional[ClientOptions] = None,
        type_name: Optional[str] = None,
    ) -> None:
        if isinstance(client, str):
            client = Client(client, options or ClientOptions(token=self.TOKEN))
        self.client = client
        if name is None or name == "":
            self.target: Target = ("", "")
        else:
            self.target = (name, self.TYPE if type_name is None else type_name)

    def call(self, method: str, *args: Any) -> Any:
        """Calls any method of the object by name."""
        return self.client.call(method, *args, target=self.target)

    def _parking(self, method: str, args: Sequence[Any], timeout: Optional[float]) -> Tuple[bool, Any]:
        return self.client.call_parking(method, args, timeout, target=self.target)

    def _call_parking(self, method: str, args: Sequence[Any], timeout: Optional[float]) -> Any:
        """A generated proxy's parking method (``concoord::proxy::call_parking``):
        waits ``timeout`` seconds (``None``: forever), then cancels the call;
        the method's own answer to the cancel is the result, and
        :class:`~concoord.errors.Cancelled` says the cancel came first."""
        if timeout is None:
            deadline = FOREVER
        elif timeout > 0 and math.isfinite(timeout):
            deadline = min(timeout, FOREVER)
        else:
            deadline = self.client.options.deadline
        raw = self.client.call_raw(self.target, method, wire.encode_args(args), deadline, True)
        return wire.unpack(raw)

    def concoord_init(self, *args: Any) -> None:
        """Re-runs the object's constructor with ``args`` on the replicated
        state (e.g. ``Semaphore(...).concoord_init(3)``); creates a new name."""
        self.call(wire.INIT_METHOD, *args)

    def concoord_str(self) -> str:
        """The object's description as the replicas hold it."""
        return str(self.call(wire.STR_METHOD))

    def concoord_delete(self) -> None:
        """Deletes this named object; calls parked on it fail with :class:`~concoord.errors.Deleted`."""
        self.call(wire.DELETE_METHOD)

    def __repr__(self) -> str:
        name, type_name = self.target
        what = f"{name!r} ({type_name})" if name else "the default object"
        return f"<{type(self).__name__} {what}>"


class Object(Proxy):
    """A proxy for any object, user types included: ``obj.method(*args)``
    calls ``method`` (give ``type_name`` to create a named object)."""

    def __getattr__(self, method: str) -> Any:
        if method.startswith("_"):
            raise AttributeError(method)
        return lambda *args: self.call(method, *args)
