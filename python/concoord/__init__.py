"""A Python 3 client for concoord: replicated objects and distributed locks
over Multi-Paxos, with Python ``threading`` semantics across machines.

>>> from concoord import Client, Lock, Counter
>>> client = Client("127.0.0.1:14000,127.0.0.1:14001")
>>> with Lock(client, "locks/orders-db"):
...     Counter(client, "jobs/nightly").increment()
"""

from . import errors
from .client import DEFAULT_SESSION_TTL, Client, ClientOptions, fetch_objects, fetch_status
from .data import (
    Bank,
    BinaryTree,
    Counter,
    JobManager,
    Log,
    Membership,
    MeshMembership,
    NameserverCoord,
    Queue,
    Stack,
    Value,
)
from .errors import ConcoordError
from .proxy import Object, Proxy
from .threading import (
    Barrier,
    BoundedSemaphore,
    Condition,
    Election,
    Event,
    Lock,
    RLock,
    Semaphore,
)

__version__ = "0.1.0"

__all__ = [
    "Client",
    "ClientOptions",
    "DEFAULT_SESSION_TTL",
    "ConcoordError",
    "errors",
    "fetch_status",
    "fetch_objects",
    "Proxy",
    "Object",
    "Lock",
    "RLock",
    "Semaphore",
    "BoundedSemaphore",
    "Condition",
    "Barrier",
    "Event",
    "Election",
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
