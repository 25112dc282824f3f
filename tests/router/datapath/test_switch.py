"""The overlay switch over stand-in overlays: features, indexes, the best forwarder, failure."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from router.agent.overlay import Latch, Overlay, OverlayConnectionParams, OverlayError
from router.datapath.switch import OverlaySwitch, SwitchConnection
from tests.support.doubles import RecordingLog


class FakeConnection:
    def __init__(self, name: str, params: OverlayConnectionParams) -> None:
        self.name = name
        self.params = params
        self.established = Latch()
        self.failed: asyncio.Future[Exception] = asyncio.get_running_loop().create_future()
        self.confirmed = False
        self.stopped = False
        self.received: list[tuple[int, bytes]] = []

    def confirm(self) -> None:
        self.confirmed = True

    def control_message(self, tag: int, body: bytes) -> None:
        self.received.append((tag, body))

    def attrs(self) -> dict[str, Any]:
        return {"name": self.name, "mtu": 1000 + len(self.name)}

    async def stop(self) -> None:
        self.stopped = True


class FakeOverlay:
    def __init__(self, name: str, refuse: bool = False) -> None:
        self.name = name
        self.refuse = refuse
        self.connections: list[FakeConnection] = []
        self.started = self.stopped = False

    async def start(self) -> None:
        self.started = True

    def add_features(self, features: dict[str, str]) -> None:
        features["Ignored"] = self.name

    async def prepare_connection(self, params: OverlayConnectionParams) -> FakeConnection:
        if self.refuse:
            raise OverlayError(f"{self.name} cannot reach the peer")
        conn = FakeConnection(self.name, params)
        self.connections.append(conn)
        return conn

    def diagnostics(self) -> dict[str, Any] | None:
        return {"of": self.name}

    async def stop(self) -> None:
        self.stopped = True


def params(overlays: str | None, sent: list[tuple[int, bytes]]) -> OverlayConnectionParams:
    return OverlayConnectionParams(
        remote_name=0xCE0000000002, remote_nickname="peer", local_addr=("10.0.0.1", 6783),
        remote_addr=("10.0.0.2", 6783), outbound=True, conn_uid=7, session_key=None,
        send_control=lambda tag, body: sent.append((tag, body)),
        features={} if overlays is None else {"Overlays": overlays})


async def settle() -> None:
    """Let the switch's watchers see what just happened (a few loop iterations)."""
    for _ in range(10):
        await asyncio.sleep(0)


def run(test: Callable[[], Any]) -> Any:
    return asyncio.run(test())


def build(*overlays: FakeOverlay) -> tuple[OverlaySwitch, RecordingLog]:
    log = RecordingLog()
    entries: list[tuple[str, Overlay]] = [(o.name, o) for o in overlays]
    return OverlaySwitch(entries, log, compat="sleeve"), log


def test_features_diagnostics_and_lifecycle() -> None:
    fastdp, sleeve = FakeOverlay("fastdp"), FakeOverlay("sleeve")
    switch, _ = build(fastdp, sleeve)
    features: dict[str, str] = {}
    switch.add_features(features)
    assert features == {"Overlays": "fastdp sleeve"}
    assert switch.diagnostics() == {"fastdp": {"of": "fastdp"}, "sleeve": {"of": "sleeve"}}

    async def lifecycle() -> None:
        await switch.start()
        await switch.stop()

    run(lifecycle)
    assert fastdp.started and sleeve.started and fastdp.stopped and sleeve.stopped
    with pytest.raises(ValueError, match="repeat"):
        build(FakeOverlay("sleeve"), FakeOverlay("sleeve"))


def test_a_peer_without_overlays_gets_the_compat_overlay_alone() -> None:
    fastdp, sleeve = FakeOverlay("fastdp"), FakeOverlay("sleeve")
    switch, _ = build(fastdp, sleeve)

    async def prepare() -> object:
        return await switch.prepare_connection(params(None, []))

    conn = run(prepare)
    assert conn is sleeve.connections[0] and fastdp.connections == []


def test_no_overlay_in_common_refuses_the_connection() -> None:
    switch, _ = build(FakeOverlay("sleeve"))

    async def prepare() -> None:
        await switch.prepare_connection(params("fastdp", []))

    with pytest.raises(OverlayError, match="no overlays in common with peer"):
        run(prepare)


def test_control_messages_carry_the_index_both_ways() -> None:
    fastdp, sleeve = FakeOverlay("fastdp"), FakeOverlay("sleeve")
    switch, log = build(fastdp, sleeve)
    sent: list[tuple[int, bytes]] = []

    async def scenario() -> None:
        conn = await switch.prepare_connection(params("sleeve fastdp", sent))
        sleeve.connections[0].params.send_control(3, b"\x05\x9e")
        fastdp.connections[0].params.send_control(1, b"")
        conn.control_message(7, bytes.fromhex("0103059e"))
        conn.control_message(7, bytes.fromhex("0001"))
        conn.control_message(7, bytes.fromhex("0501"))  # no such sub-forwarder
        conn.control_message(7, b"\x00")  # too short
        await conn.stop()

    run(scenario)
    assert sent == [(7, bytes.fromhex("0103059e")), (7, bytes.fromhex("0001"))]
    assert sleeve.connections[0].received == [(3, b"\x05\x9e")]
    assert fastdp.connections[0].received == [(1, b"")]
    assert len(log.messages("overlay_switch: ignoring control message")) == 1
    assert sleeve.connections[0].stopped and fastdp.connections[0].stopped


def test_the_best_forwarder_and_the_end_of_the_last_one() -> None:
    fastdp, sleeve = FakeOverlay("fastdp"), FakeOverlay("sleeve")
    switch, log = build(fastdp, sleeve)

    async def scenario() -> list[object]:
        conn = await switch.prepare_connection(params("fastdp sleeve", []))
        assert isinstance(conn, SwitchConnection)
        seen: list[object] = [conn.attrs()["name"]]  # the first working one, before any
        conn.confirm()
        assert fastdp.connections[0].confirmed and sleeve.connections[0].confirmed
        # A sub-forwarder's establishment reaches the switch at once, in the same step.
        sleeve.connections[0].established.set()
        seen += [conn.established.is_set(), conn.attrs()["name"]]
        fastdp.connections[0].established.set()
        seen.append(conn.attrs()["name"])
        fastdp.connections[0].failed.set_result(OverlayError("heartbeats stopped"))
        await settle()
        seen += [conn.attrs()["name"], fastdp.connections[0].stopped, conn.failed.done()]
        sleeve.connections[0].failed.set_result(OverlayError("timed out"))
        await settle()
        seen += [conn.attrs(), str(conn.failed.result())]
        return seen

    assert run(scenario) == ["fastdp", True, "sleeve", "fastdp", "sleeve", True, False, {},
                             "no working forwarders to ce:00:00:00:00:02(peer)"]
    assert [f["overlay"] for f in log.messages("overlay_switch: using overlay")] == \
        ["fastdp", "sleeve", "fastdp", "sleeve"]


def test_an_overlay_that_refuses_is_skipped() -> None:
    fastdp, sleeve = FakeOverlay("fastdp", refuse=True), FakeOverlay("sleeve")
    switch, log = build(fastdp, sleeve)
    sent: list[tuple[int, bytes]] = []

    async def scenario() -> dict[str, Any]:
        conn = await switch.prepare_connection(params("fastdp sleeve", sent))
        sleeve.connections[0].params.send_control(1, b"")
        attrs = conn.attrs()
        await conn.stop()
        return attrs

    assert run(scenario)["name"] == "sleeve"
    assert sent == [(7, b"\x01\x01")]  # sleeve keeps index 1
    assert log.messages("overlay_switch: unable to use overlay")[0]["overlay"] == "fastdp"
