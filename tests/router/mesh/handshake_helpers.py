"""Drivers for handshake tests: replaying a Go transcript, and two Handshakes wired together."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from nacl.public import PrivateKey

from router.mesh.features import FeaturesCodec, LocalFeatures, parse_peer_name, v1_subset
from router.mesh.handshake import Handshake, HandshakeConfig, HandshakeResult
from router.mesh.protocol import MeshProtocolError
from tests.router.mesh.gobmap import ReplayCodec

Cutter = Callable[[int], int]
"""Given the bytes in flight, how many to deliver now (1..n)."""


def whole(available: int) -> int:
    return available


def local_features_of(features: dict[str, str]) -> LocalFeatures:
    """The LocalFeatures whose to_wire() is ``features`` (a full weave 2.8.1 map)."""
    return LocalFeatures(
        name=parse_peer_name(features["Name"]), nickname=features["NickName"],
        uid=int(features["UID"]), conn_id=int(features["ConnID"]),
        short_id=int(features["ShortID"]), trusts_remote=features["Trusted"] == "true",
        overlays=tuple(features["Overlays"].split(" ")))


@dataclass
class Replay:
    """What our end did when fed the other Go end's bytes."""

    wrote: bytes
    result: HandshakeResult | None
    error: MeshProtocolError | None
    received: list[bytes]
    """Payloads after the features (pending plus any fed later)."""


def replay_side(case: dict[str, Any], side: str,
                chunks: Callable[[bytes], Iterable[bytes]]) -> Replay:
    """Play ``side`` ("a" or "b") of a Go transcript with our Handshake, fed the
    other side's recorded bytes in the given chunks; then send the same
    after-handshake messages the Go side sent."""
    params, mine = case[side], case[f"{side}_result"]
    theirs = case["b_result" if side == "a" else "a_result"]
    password = bytes.fromhex(params["password"]) if params["password"] is not None else None
    local = local_features_of(params["features"])
    expected = local.to_wire()
    if mine["version"] == 1:
        expected = v1_subset(expected)
        if password is not None:
            expected["PublicKey"] = params["public_key"]
    codec = ReplayCodec(expected, bytes.fromhex(mine["features_gob"]))
    key = PrivateKey(bytes.fromhex(params["private_key"])) if params.get("private_key") else None
    config = HandshakeConfig(local, params["outbound"], password, params["min_version"],
                             params["max_version"])
    handshake = Handshake(config, codec, key)
    wrote = bytearray(handshake.start())
    outcome = Replay(b"", None, None, [])
    for chunk in chunks(bytes.fromhex(theirs["wrote"])):
        if outcome.error is not None:
            break
        if outcome.result is not None:
            outcome.received += outcome.result.session.feed(chunk)
            continue
        progress = handshake.receive(chunk)
        wrote += progress.send
        outcome.error = progress.error
        outcome.result = progress.result
        if progress.result is not None:
            outcome.received += progress.result.pending
    if outcome.result is not None:
        for message in mine["after_messages"]:
            wrote += outcome.result.session.seal(bytes.fromhex(message))
    outcome.wrote = bytes(wrote)
    return outcome


@dataclass
class End:
    """One end of an in-process connection."""

    handshake: Handshake
    inbox: bytearray = field(default_factory=bytearray)
    result: HandshakeResult | None = None
    error: MeshProtocolError | None = None
    received: list[bytes] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.result is not None or self.error is not None


def make_handshake(local: LocalFeatures, codec: FeaturesCodec, *, outbound: bool,
                   password: bytes | None = None, versions: tuple[int, int] = (1, 2)) -> Handshake:
    return Handshake(HandshakeConfig(local, outbound, password, *versions), codec)


def run_pair(dialler: Handshake, acceptor: Handshake, cut: Cutter = whole) -> tuple[End, End]:
    """Both ends send their header at once, then each delivers the other's bytes
    in pieces chosen by ``cut`` until nothing is in flight."""
    ends = (End(dialler), End(acceptor))
    ends[1].inbox += dialler.start()
    ends[0].inbox += acceptor.start()
    while any(end.inbox and end.error is None for end in ends):
        for me, other in ((0, 1), (1, 0)):
            end = ends[me]
            if not end.inbox or end.error is not None:
                continue
            count = cut(len(end.inbox))
            chunk = bytes(end.inbox[:count])
            del end.inbox[:count]
            if end.result is not None:
                end.received += end.result.session.feed(chunk)
                continue
            progress = end.handshake.receive(chunk)
            ends[other].inbox += progress.send
            end.result, end.error = progress.result, progress.error
            if progress.result is not None:
                end.received += progress.result.pending
    return ends
