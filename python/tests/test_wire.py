"""The Python encoder and decoder against the bytes rmp-serde gives each
frame in this build (written by tests/python_client.rs)."""

from __future__ import annotations

import json
import os
from typing import Any, Dict

import pytest

from concoord import _wire as wire

CID = (0xFEDCBA9876543211, 7)


@pytest.fixture(scope="module")
def vectors() -> Dict[str, Dict[str, bytes]]:
    path = os.environ.get("CONCOORD_WIRE_VECTORS")
    if not path:
        pytest.skip("CONCOORD_WIRE_VECTORS not set (tests/python_client.rs sets it)")
    with open(path) as f:
        raw: Dict[str, Dict[str, str]] = json.load(f)
    return {side: {k: bytes.fromhex(v) for k, v in table.items()} for side, table in raw.items()}


def payload(frame: bytes) -> bytes:
    assert int.from_bytes(frame[:4], "big") == len(frame) - 4, "4-byte big-endian length prefix"
    return frame[4:]


def test_frames_a_client_sends_match_rust_bytes(vectors: Dict[str, Dict[str, bytes]]) -> None:
    ours = {
        "hello": wire.hello(CID[0], "tok"),
        "call": wire.call(CID, "jobs/a", "Counter", "increment", wire.encode_args([1, "x", 2.5]), 5),
        "cancel": wire.cancel(CID),
        "keep_alive": wire.keep_alive(),
        "status_request": wire.status_request(),
        "objects_request": wire.objects_request("a", 10),
    }
    assert set(ours) == set(vectors["sent"])
    for name, frame in ours.items():
        assert payload(frame) == vectors["sent"][name], name


def test_frames_a_client_receives_decode(vectors: Dict[str, Dict[str, bytes]]) -> None:
    got: Dict[str, Any] = {k: wire.decode_frame(v) for k, v in vectors["received"].items()}
    assert got["welcome"] == wire.Welcome(42, ["127.0.0.1:1", "127.0.0.1:2"])
    assert got["refused"] == wire.Refused("Refused", "wrong security token")
    ok = got["reply_ok"]
    assert (ok.id, ok.err, wire.unpack(ok.ok)) == (CID, None, [True, "v"])
    assert got["reply_err"] == wire.Reply(CID, None, ("KeyError", "no such account"))
    assert got["parked"] == wire.Parked(CID)
    assert got["redirect"] == wire.Redirect(CID, "127.0.0.1:2", ["127.0.0.1:1"])
    assert got["redirect_no_leader"] == wire.Redirect(CID, None, [])
    status = got["status"]
    assert (status.id, status.role, status.leader, status.executed_slot, status.sessions) == (
        9,
        "leader",
        "127.0.0.1:1",
        2,
        7,
    )
    assert got["objects"] == wire.Objects([("a", "Lock", 2)], True)


def test_reader_refuses_an_oversized_length() -> None:
    reader = wire.FrameReader()
    with pytest.raises(wire.WireError, match="limit"):
        reader.feed((wire.MAX_FRAME_BYTES + 1).to_bytes(4, "big"))


def test_reader_reassembles_split_frames() -> None:
    frame = wire._frame({"Parked": [list(CID)]})
    reader = wire.FrameReader()
    assert reader.feed(frame[:3]) == []
    assert reader.feed(frame[3:] + frame) == [wire.Parked(CID), wire.Parked(CID)]
