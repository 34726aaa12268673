"""concoord's wire format, as the Rust side (proto/src/wire.rs) writes it.

A frame is a 4-byte big-endian length (tokio-util's LengthDelimitedCodec
defaults) and then the MessagePack of a ``Frame`` as rmp-serde 1.x encodes
it with its default configuration:

* a struct is an array of its fields in declaration order;
* a unit enum variant is its name as a string (``"KeepAlive"``);
* any other variant is a one-entry map ``{name: fields}``, where a newtype
  variant's value is the inner value itself and a struct or tuple variant's
  is an array;
* ``Result`` is the enum ``{"Ok": v}`` / ``{"Err": e}``;
* ``Vec<u8>`` marked ``serde_bytes_vec`` (a call's arguments) is bin, but an
  unmarked one (a reply's result bytes) is an array of integers.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple, Union

import msgpack  # type: ignore[import-untyped]

#: ``PROTOCOL_VERSION`` in proto/src/wire.rs: a replica refuses any other.
PROTOCOL_VERSION = 8
#: ``MAX_FRAME_BYTES``: larger frames are refused and the connection closed.
MAX_FRAME_BYTES = 16 << 20
#: The reserved method a client opens its session with (``ttl_ms``).
OPEN_SESSION_METHOD = "concoord_open_session"
INIT_METHOD = "concoord_init"
STR_METHOD = "concoord_str"
DELETE_METHOD = "concoord_delete"

_LEN = struct.Struct(">I")

CommandId = Tuple[int, int]


class WireError(Exception):
    """Bytes from the network that are not a frame."""


# --- what a client sends -------------------------------------------------


def hello(client_id: int, token: str) -> bytes:
    return _frame({"Hello": [PROTOCOL_VERSION, {"Client": client_id}, token]})


def call(
    cid: CommandId, name: str, type_name: str, method: str, args: bytes, ack_below: int
) -> bytes:
    return _frame({"Call": [list(cid), [name, type_name], method, args, ack_below]})


def cancel(cid: CommandId) -> bytes:
    return _frame({"Cancel": [list(cid)]})


def keep_alive() -> bytes:
    return _frame("KeepAlive")


def status_request() -> bytes:
    return _frame("StatusRequest")


def objects_request(after: str, limit: int) -> bytes:
    return _frame({"ObjectsRequest": [after, limit]})


def encode_args(args: Sequence[Any]) -> bytes:
    """Positional arguments: always a MessagePack array (``Args::decode``)."""
    return pack(list(args))


def pack(value: Any) -> bytes:
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def _frame(value: Any) -> bytes:
    payload = pack(value)
    return _LEN.pack(len(payload)) + payload


# --- what a replica sends -------------------------------------------------


@dataclass
class Welcome:
    node: int
    members: List[str]


@dataclass
class Refused:
    kind: str
    message: str


@dataclass
class Reply:
    id: CommandId
    #: The result's MessagePack bytes, when the call succeeded.
    ok: Optional[bytes]
    #: ``(kind, message)`` when the object (or the group) raised.
    err: Optional[Tuple[str, str]]


@dataclass
class Parked:
    id: CommandId


@dataclass
class Redirect:
    id: CommandId
    leader: Optional[str]
    members: List[str]


@dataclass
class Status:
    """One replica's view of itself and its group (``StatusInfo``)."""

    id: int
    address: str
    role: str
    leader: Optional[str]
    ballot: Any
    members: List[str]
    next_slot: int
    executed_slot: int
    snapshot_slot: int
    clients: int
    parked: int
    uptime_s: int
    object: str
    sessions: int


@dataclass
class Objects:
    objects: List[Tuple[str, str, int]]
    more: bool


@dataclass
class Other:
    """A frame a client has no use for (peer traffic, joins)."""

    name: str


Frame = Union[Welcome, Refused, Reply, Parked, Redirect, Status, Objects, Other]


class FrameReader:
    """Cuts a byte stream into frames; never trusts a length."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> List[Frame]:
        self._buf += data
        frames: List[Frame] = []
        while len(self._buf) >= 4:
            (length,) = _LEN.unpack_from(self._buf)
            if length > MAX_FRAME_BYTES:
                raise WireError(f"frame of {length} bytes is over the {MAX_FRAME_BYTES}-byte limit")
            if len(self._buf) < 4 + length:
                break
            payload = bytes(self._buf[4 : 4 + length])
            del self._buf[: 4 + length]
            frames.append(decode_frame(payload))
        return frames


def _cid(value: Any) -> CommandId:
    client, seq = value
    return (int(client), int(seq))


def _bytes(value: Any) -> bytes:
    # An unmarked Vec<u8> arrives as an array of integers; accept bin too.
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    return bytes(value)


def decode_frame(payload: bytes) -> Frame:
    try:
        value = unpack(payload)
        if isinstance(value, str):
            return Other(value)
        if not isinstance(value, dict) or len(value) != 1:
            raise WireError(f"not a frame: {value!r:.80}")
        ((name, body),) = value.items()
        if name == "Welcome":
            return Welcome(int(body[0]), list(body[1]))
        if name == "Refused":
            return Refused(str(body[0]), str(body[1]))
        if name == "Reply":
            cid, result = body
            ((tag, inner),) = result.items()
            if tag == "Ok":
                return Reply(_cid(cid), _bytes(inner), None)
            return Reply(_cid(cid), None, (str(inner[0]), str(inner[1])))
        if name == "Parked":
            return Parked(_cid(body[0]))
        if name == "Redirect":
            return Redirect(_cid(body[0]), body[1], list(body[2]))
        if name == "Status":
            return Status(*body)
        if name == "Objects":
            return Objects([tuple(o) for o in body[0]], bool(body[1]))
        return Other(str(name))
    except WireError:
        raise
    except Exception as e:  # any malformed shape is one kind of error to the caller
        raise WireError(f"malformed frame: {e}") from e
