"""Our switch and sleeve replay the conversations recorded with weave's own forwarder.

The fixture drove a real Go sleeve forwarder (behind its overlay switch, or alone as the
compat overlay) step by step, as a peer would.  Here our overlay takes the Go forwarder's
place, on 127.0.0.1 with real UDP sockets, and a plain socket plays the peer: after every
step, our control messages, establishment and attributes must be Go's, and so must the
bytes of the first heartbeat and of the tests sent on establishment.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
from collections.abc import Callable
from typing import Any

import pytest

from router.agent.overlay import Overlay, OverlayConnection, OverlayConnectionParams
from router.datapath.control import (
    OVERLAY_CONTROL_TAG,
    OVERLAYS_FEATURE,
    SleeveControlTag,
    common_overlays,
    parse_overlays_feature,
    wrap_for_switch,
)
from router.datapath.sleeve import SleeveOverlay
from router.datapath.sleeve_crypto import DatagramSealer, NaClSealer, PlainSealer
from router.datapath.sleeve_frames import (
    FRAG_TEST_SIZE,
    HEARTBEAT_FRAME_SIZE,
    SleeveFrame,
    encode_frame,
    frag_test_frame,
    heartbeat_frame,
    mtu_test_frame,
)
from router.datapath.switch import OverlaySwitch
from tests.router.datapath.sleeve_fixtures import cases, key
from tests.support.doubles import RecordingLog

SETTLE = 0.06


class Peer:
    """The peer's end: a UDP socket and the sealers it would use."""

    def __init__(self, case: dict[str, Any]) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.name = int(case["peer_name"], 16)
        self.go_name = int(case["go_name"], 16)
        self.uid = int(case["conn_uid"])
        peer_outbound = not case["go_outbound"]
        self.sealers: dict[bool, DatagramSealer] = {
            df: (NaClSealer(self.name, key(), peer_outbound, df) if case["encrypted"]
                 else PlainSealer(self.name)) for df in (False, True)}

    def send_special(self, payload: bytes, to: tuple[str, int], df: bool = True) -> None:
        frame = encode_frame(SleeveFrame(self.name, self.go_name, payload))
        self.sock.sendto(self.sealers[df].seal(frame), to)

    def received(self) -> list[bytes]:
        datagrams = []
        while True:
            try:
                datagrams.append(self.sock.recv(70000))
            except BlockingIOError:
                return datagrams


async def replay(case: dict[str, Any]) -> list[dict[str, Any]]:
    log = RecordingLog()
    overlays = [(name, SleeveOverlay(int(case["go_name"], 16), log, host="127.0.0.1", port=0))
                for name in case["go_overlays"]]
    switch = OverlaySwitch(overlays, log)
    await switch.start()
    sleeve = dict(overlays)["sleeve"]
    peer = Peer(case)
    controls: list[tuple[int, bytes]] = []
    feature = case["peer_overlays_feature"]
    params = OverlayConnectionParams(
        remote_name=peer.name, remote_nickname="py", local_addr=("127.0.0.1", 6783),
        remote_addr=peer.sock.getsockname(), outbound=case["go_outbound"],
        conn_uid=peer.uid, session_key=key() if case["encrypted"] else None,
        send_control=lambda tag, body: controls.append((tag, body)),
        features={} if feature is None else {OVERLAYS_FEATURE: feature})
    conn = await switch.prepare_connection(params)
    try:
        return await run_steps(case, conn, sleeve, peer, controls)
    finally:
        await conn.stop()
        await switch.stop()
        peer.sock.close()


def control_to_sleeve(case: dict[str, Any], conn: OverlayConnection, tag: int,
                      body: bytes) -> None:
    """Address a sleeve control message to the forwarder as the peer's switch would."""
    feature = case["peer_overlays_feature"]
    if feature is None:
        conn.control_message(tag, body)
        return
    index = common_overlays(case["go_overlays"], parse_overlays_feature(feature)).index("sleeve")
    conn.control_message(OVERLAY_CONTROL_TAG, wrap_for_switch(index, tag, body))


async def run_steps(case: dict[str, Any], conn: OverlayConnection, sleeve: Overlay,
                    peer: Peer, controls: list[tuple[int, bytes]]) -> list[dict[str, Any]]:
    assert isinstance(sleeve, SleeveOverlay)
    to = sleeve.address
    damaged = bytearray(frag_test_frame())
    damaged[-1] = 1
    actions: dict[str, Callable[[], None]] = {
        "confirm": conn.confirm,
        "heartbeat from the peer": lambda: peer.send_special(heartbeat_frame(peer.uid), to),
        "heartbeat from the peer with another connection uid":
            lambda: peer.send_special(heartbeat_frame(peer.uid + 1), to),
        "second heartbeat from the peer": lambda: peer.send_special(heartbeat_frame(peer.uid), to),
        "ConnectionEstablished from the peer": lambda: control_to_sleeve(
            case, conn, SleeveControlTag.CONNECTION_ESTABLISHED, b""),
        "MTU test of 1438 from the peer": lambda: peer.send_special(mtu_test_frame(1438), to),
        "fragmentation test from the peer":
            lambda: peer.send_special(frag_test_frame(), to, df=False),
        "fragmentation test from the peer, not all zeros":
            lambda: peer.send_special(bytes(damaged), to, df=False),
        "FragmentationReceived from the peer": lambda: control_to_sleeve(
            case, conn, SleeveControlTag.FRAGMENTATION_RECEIVED, b""),
        "PMTUVerified for no candidate": lambda: control_to_sleeve(
            case, conn, SleeveControlTag.PMTU_VERIFIED, b"\x05\x9e"),
        "truncated PMTUVerified": lambda: control_to_sleeve(
            case, conn, SleeveControlTag.PMTU_VERIFIED, b"\x05"),
        "unknown control tag": lambda: control_to_sleeve(case, conn, 9, b"\x01\x02"),
    }
    observed = []
    for step in case["steps"]:
        actions[step["step"]]()
        await asyncio.sleep(SETTLE)
        observed.append({"step": step["step"], "datagrams": peer.received(),
                         "controls": list(controls), "established": conn.established.is_set(),
                         "attrs": conn.attrs()})
        controls.clear()
    return observed


def conversation_id(case: dict[str, Any]) -> str:
    return str(case["case"])


@pytest.mark.parametrize("case", cases("conversations"), ids=conversation_id)
def test_our_forwarder_behaves_as_go_s(case: dict[str, Any]) -> None:
    observed = asyncio.run(replay(case))
    check_answers(case, observed)
    check_datagrams(case, {step["step"]: step["datagrams"] for step in observed})


def check_answers(case: dict[str, Any], observed: list[dict[str, Any]]) -> None:
    for ours, go in zip(observed, case["steps"], strict=True):
        where = go["step"]
        assert [(tag, body.hex()) for tag, body in ours["controls"]] == \
            [(c["tag"], c["body"]) for c in go["controls"]], where
        assert ours["established"] == go["established"], where
        assert ours["attrs"] == go["attrs"], where


def go_datagrams(case: dict[str, Any], step: str) -> list[dict[str, Any]]:
    found = next(s for s in case["steps"] if s["step"] == step)["datagrams"]
    return [d for d in found if d["from"] == "sleeve"]


def check_datagrams(case: dict[str, Any], observed: dict[str, list[bytes]]) -> None:
    """The first heartbeat byte for byte; then the fragmentation test and the PMTU probe
    sent on establishment (compared by length and SHA-256, as the fixture keeps them)."""
    heartbeat_length = 66 if case["encrypted"] else 42
    first_step = "confirm" if case["go_outbound"] else "heartbeat from the peer"
    go_first = go_datagrams(case, first_step)[0]
    assert go_first["length"] == heartbeat_length
    assert observed[first_step][0].hex() == go_first["datagram"]
    if not case["go_outbound"]:
        assert observed["confirm"] == [], "the acceptor awaits contact"

    step = "ConnectionEstablished from the peer"
    ours = {len(d): hashlib.sha256(d).hexdigest() for d in observed[step]
            if len(d) > heartbeat_length}
    go = {d["length"]: d["sha256"] for d in go_datagrams(case, step)
          if d["length"] > heartbeat_length}
    assert sorted(ours) == sorted(go)
    frag_test_length = max(go)  # 60001 bytes of frame; the DF probe has 60000
    assert frag_test_length - (heartbeat_length - HEARTBEAT_FRAME_SIZE) == FRAG_TEST_SIZE
    assert ours[frag_test_length] == go[frag_test_length]  # non-DF, sequence 0
    if not case["encrypted"]:
        assert ours == go  # the probe's sequence number depends on the heartbeats sent
