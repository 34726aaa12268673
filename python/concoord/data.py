"""Proxies for ConCoord's data objects, plus Counter and Value. Items are any
MessagePack value: None, bool, int, float, str, bytes, lists and dicts."""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

from .client import FOREVER
from .proxy import Proxy, _timeout_arg

__all__ = [
    "Counter",
    "Value",
    "Queue",
    "Stack",
    "Log",
    "Bank",
    "Membership",
    "MeshMembership",
    "JobManager",
    "BinaryTree",
    "NameserverCoord",
]


class Counter(Proxy):
    """ConCoord's Counter."""

    TYPE = "Counter"

    def increment(self) -> None:
        self.call("increment")

    def decrement(self) -> None:
        self.call("decrement")

    def getvalue(self) -> int:
        return int(self.call("getvalue"))


class Value(Proxy):
    """A register; with versions, compare-and-set and watches it is a small
    configuration store."""

    TYPE = "Value"

    def getvalue(self) -> Any:
        return self.call("getvalue")

    def setvalue(self, value: Any) -> None:
        self.call("setvalue", value)

    def set_fenced(self, token: int, value: Any) -> None:
        """Writes unless ``token`` is older than one a fenced write here
        carried (:class:`~concoord.errors.StaleToken`)."""
        self.call("set_fenced", token, value)

    def version(self) -> int:
        """Grows by one on every successful write."""
        return int(self.call("version"))

    def compare_and_set(self, expected: Any, new: Any) -> bool:
        """Writes ``new`` if the value is ``expected``; whether it did."""
        return bool(self.call("compare_and_set", expected, new))

    def wait_change(self, version: int, timeout: Optional[float] = None) -> Optional[Tuple[Any, int]]:
        """A watch: waits until the version passes ``version``; ``(value,
        version)`` then, ``None`` if ``timeout`` runs out first."""
        t = _timeout_arg(timeout)
        done, seen = self._parking("wait_change", [version, t], t)
        if not done or seen is None:
            return None
        return seen[0], int(seen[1])


class Queue(Proxy):
    """ConCoord's Queue (FIFO); ``get`` on empty raises :class:`~concoord.errors.Empty`."""

    TYPE = "Queue"

    def put(self, item: Any) -> None:
        self.call("put", item)

    put_nowait = put

    def get(self) -> Any:
        return self.call("get")

    get_nowait = get

    def qsize(self) -> int:
        return int(self.call("qsize"))

    def empty(self) -> bool:
        return bool(self.call("empty"))

    def full(self) -> bool:
        return bool(self.call("full"))


class Stack(Proxy):
    """ConCoord's Stack; ``pop`` on empty raises ``IndexError``."""

    TYPE = "Stack"

    def append(self, item: Any) -> None:
        self.call("append", item)

    def pop(self) -> Any:
        return self.call("pop")

    def get_size(self) -> int:
        return int(self.call("get_size"))

    def get_stack(self) -> List[Any]:
        return list(self.call("get_stack"))


class Log(Proxy):
    """ConCoord's Log."""

    TYPE = "Log"

    def write(self, entry: Any) -> None:
        """Replaces the log with one entry."""
        self.call("write", entry)

    def append(self, entry: Any) -> None:
        self.call("append", entry)

    def read(self) -> str:
        """The entries joined by spaces, as ConCoord returns them."""
        return str(self.call("read"))


class Bank(Proxy):
    """ConCoord's Bank; an unknown account raises ``KeyError``."""

    TYPE = "Bank"

    def open(self, account: str) -> bool:
        return bool(self.call("open", account))

    def close(self, account: str) -> bool:
        return bool(self.call("close", account))

    def debit(self, account: str, amount: float) -> Any:
        """The new balance, or False on an overdraft (as ConCoord)."""
        return self.call("debit", account, amount)

    def deposit(self, account: str, amount: float) -> Any:
        return self.call("deposit", account, amount)

    def balance(self, account: str) -> Any:
        return self.call("balance", account)


class Membership(Proxy):
    """ConCoord's Membership; removing a non-member raises ``KeyError``."""

    TYPE = "Membership"

    def add(self, member: Any) -> None:
        self.call("add", member)

    def remove(self, member: Any) -> None:
        self.call("remove", member)

    def add_ephemeral(self, member: Any) -> None:
        """Adds ``member`` for as long as this client's session lives."""
        self.call("add_ephemeral", member)

    def get_members(self) -> List[Any]:
        return list(self.call("get_members"))


class JobManager(Proxy):
    """ConCoord's JobManager."""

    TYPE = "JobManager"

    def schedule(self, job: Any) -> None:
        self.call("schedule", job)

    def deschedule(self, job: Any) -> None:
        self.call("deschedule", job)

    def update(self, job: Any, key: Any, value: Any) -> Any:
        return self.call("update", job, key, value)

    def list_jobs(self) -> List[Any]:
        return list(self.call("list_jobs"))


class BinaryTree(Proxy):
    """ConCoord's BinaryTree (the object keeps the root)."""

    TYPE = "BinaryTree"

    def insert(self, value: Any) -> None:
        self.call("insert", value)

    add_node = insert

    def find(self, value: Any) -> bool:
        return bool(self.call("find", value))

    def delete(self, value: Any) -> bool:
        return bool(self.call("delete", value))

    def get_min(self) -> Any:
        return self.call("get_min")

    def get_max(self) -> Any:
        return self.call("get_max")

    def get_depth(self) -> int:
        return int(self.call("get_depth"))

    def get_size(self) -> int:
        return int(self.call("get_size"))


class MeshMembership(Proxy):
    """ConCoord's MeshMembership; ``wait`` blocks until the group changes."""

    TYPE = "MeshMembership"

    def add_group(self, group: str, minsize: int) -> None:
        self.call("add_group", group, minsize)

    def remove_group(self, group: str) -> None:
        self.call("remove_group", group)

    def get_group_members(self, group: str) -> List[Any]:
        return list(self.call("get_group_members", group))

    def get_group_epoch(self, group: str) -> int:
        return int(self.call("get_group_epoch", group))

    def get_group_state(self, group: str) -> Any:
        return self.call("get_group_state", group)

    def approve_join(self, group: str, node: Any, epoch: int) -> Any:
        return self.call("approve_join", group, node, epoch)

    def check_member(self, group: str, node: Any) -> Any:
        return self.call("check_member", group, node)

    def notify_failure(self, group: str, epoch: int, node: Any) -> Any:
        return self.call("notify_failure", group, epoch, node)

    def wait(self, group: str) -> Any:
        """Blocks until the group changes (no timeout: ConCoord's has none)."""
        from . import _wire as wire

        raw = self.client.call_raw(self.target, "wait", wire.encode_args([group]), FOREVER, False)
        return wire.unpack(raw)


class NameserverCoord(Proxy):
    """ConCoord's NameserverCoord."""

    TYPE = "NameserverCoord"

    def addnodetosubdomain(self, subdomain: str, nodetype: Any, node: str) -> None:
        self.call("addnodetosubdomain", subdomain, nodetype, node)

    def delnodefromsubdomain(self, subdomain: str, nodetype: Any, node: str) -> Any:
        return self.call("delnodefromsubdomain", subdomain, nodetype, node)

    def updatesubdomain(self, subdomain: str, nodes: Any) -> None:
        self.call("updatesubdomain", subdomain, nodes)

    def delsubdomain(self, subdomain: str) -> bool:
        return bool(self.call("delsubdomain", subdomain))

    def getnodes(self, subdomain: str) -> Any:
        return self.call("getnodes", subdomain)

    def getsubdomains(self) -> Any:
        return self.call("getsubdomains")

    def getdomains(self) -> Any:
        return self.call("getdomains")
