"""The features map both ends exchange first: what we send, and the checked view of what we get.

Background (``connection.go`` makeFeatures/parseFeatures, ``peer_name_mac.go``,
weave's ``router/overlay_switch.go``): the first message on a connection is
a gob-encoded map[string]string. Weave 2.8.1 sends PeerNameFlavour ("mac"),
Name (the 48-bit peer name as a MAC), NickName, ShortID (12 bits, decimal),
UID and ConnID (64-bit decimal), Trusted (whether the sender trusts the
receiver's address under --trusted-subnets, as Go prints a bool) and
Overlays (space-separated overlay names). PeerNameFlavour, Name, NickName,
UID and ConnID are mandatory; ShortID and Trusted are optional (absent:
no short id, not trusted); Overlays is read by the overlay switch (absent:
the peer only speaks sleeve). Version 1 sends only the five mandatory
entries, unencrypted. Both ends XOR the two ConnIDs into the connection UID.

Design: values are parsed exactly as Go's strconv and fmt.Sscanf accept
them (the fixtures pin the edge cases) into frozen typed values; every
rejection is a FeaturesError naming the entry. The gob codec is injected
(FeaturesCodec) so this layer does not depend on how gob is written.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Protocol, TypeVar

from router.mesh.protocol import FeaturesError

PEER_NAME_FLAVOUR: Final = "mac"
PEER_NAME_BITS: Final = 48
SHORT_ID_BITS: Final = 12
MANDATORY_FEATURES: Final = ("PeerNameFlavour", "Name", "NickName", "UID", "ConnID")
"""Checked in this order; the first one missing is reported."""
V1_FEATURES: Final = frozenset(MANDATORY_FEATURES)
"""The only entries version 1 sends or keeps (it sends them unencrypted)."""
V1_PUBLIC_KEY_FEATURE: Final = "PublicKey"

T = TypeVar("T")

_DECIMAL: Final = re.compile(r"[0-9]+", re.ASCII)
_GO_BOOLS: Final = {"1": True, "t": True, "T": True, "TRUE": True, "true": True, "True": True,
                    "0": False, "f": False, "F": False, "FALSE": False, "false": False,
                    "False": False}
_HEX_DIGITS: Final = frozenset("0123456789abcdefABCDEF")
# Unicode white space as Go's fmt scanner skips it before a number ("\n" excepted: an error).
_GO_SPACES: Final = frozenset("\t\v\f\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000"
                              + "".join(chr(c) for c in range(0x2000, 0x200B)))


class FeaturesCodec(Protocol):
    """Encodes and decodes the features map as Go's encoding/gob does for a
    map[string]string written by a fresh gob.Encoder: the type definition
    message, then the value message.

    decode_features receives exactly those messages (in version 1 they are
    cut out of the connection's gob stream) and raises ValueError (or a
    subclass) for bytes it cannot decode. A module with two such functions
    satisfies this protocol."""

    def encode_features(self, features: dict[str, str]) -> bytes: ...

    def decode_features(self, data: bytes) -> dict[str, str]: ...


def format_peer_name(name: int) -> str:
    """The 48-bit peer name as Go prints it: six lowercase hex pairs joined by ':'."""
    if not 0 <= name < 1 << PEER_NAME_BITS:
        raise ValueError(f"a peer name is {PEER_NAME_BITS} bits, got {name}")
    return ":".join(f"{byte:02x}" for byte in name.to_bytes(6, "big"))


def parse_peer_name(text: str) -> int:
    """A MAC-flavoured peer name as mesh's PeerNameFromString reads it.

    Six groups of one or two hex digits separated by ':'; or, with one '::'
    standing for zero groups, one to four groups split around it (groups
    before it fill from the left, after it from the right). Like fmt.Sscanf,
    white space is skipped before each group. Raises ValueError."""
    for before, after in _PEER_NAME_LAYOUTS:
        groups = _scan_groups(text, before, after)
        if groups is not None:
            value = 0
            for group in groups:
                value = value << 8 | group
            return value
    raise ValueError(f"invalid peer name format: {text!r}")


# (groups before '::', groups after it); (6, -1) is the form without '::'.
_PEER_NAME_LAYOUTS: Final = ((6, -1), (0, 4), (1, 3), (2, 2), (3, 1), (4, 0), (0, 3), (1, 2),
                             (2, 1), (3, 0), (0, 2), (1, 1), (2, 0), (0, 1), (1, 0))


def _layout_tokens(before: int, after: int) -> list[str]:
    """The fmt.Sscanf format of one layout as tokens: "x" is a %2x group."""
    if after < 0:
        return ["x"] + [":", "x"] * 5
    head = ["x"] + [":", "x"] * (before - 1) if before else []
    tail = ["x"] + [":", "x"] * (after - 1) if after else []
    return [*head, "::", *tail]


def _scan_groups(text: str, before: int, after: int) -> list[int] | None:
    position = 0
    values: list[int] = []
    tokens = _layout_tokens(before, after)
    for token in tokens:
        if token == "x":
            while position < len(text) and text[position] in _GO_SPACES:
                position += 1
            end = position
            while end < len(text) and end - position < 2 and text[end] in _HEX_DIGITS:
                end += 1
            if end == position:
                return None
            values.append(int(text[position:end], 16))
            position = end
        elif text.startswith(token, position):
            position += len(token)
        else:
            return None
    if position != len(text):
        return None
    if after < 0:
        return values
    return values[:before] + [0] * (6 - before - after) + values[before:]


def parse_go_uint(text: str, bits: int) -> int:
    """strconv.ParseUint(text, 10, bits): ASCII decimal digits only, no sign. Raises ValueError."""
    if not _DECIMAL.fullmatch(text):
        raise ValueError(f"{text!r} is not an unsigned decimal number")
    value = int(text)
    if value >= 1 << bits:
        raise ValueError(f"{text!r} is out of range for {bits} bits")
    return value


def parse_go_bool(text: str) -> bool:
    """strconv.ParseBool(text). Raises ValueError."""
    try:
        return _GO_BOOLS[text]
    except KeyError:
        raise ValueError(f"{text!r} is not a boolean") from None


@dataclass(frozen=True, slots=True)
class LocalFeatures:
    """What we announce about ourselves on one connection."""

    name: int
    """Our 48-bit peer name."""
    nickname: str
    uid: int
    """Our 64-bit incarnation id (random per process start)."""
    conn_id: int
    """A random 64-bit number for this connection."""
    short_id: int
    trusts_remote: bool
    """Whether the peer's address is under our --trusted-subnets."""
    overlays: tuple[str, ...] | None = None
    """Our overlay names in preference order (weave: fastdp, sleeve); None sends no
    Overlays entry, as mesh with no overlay does."""
    extra: tuple[tuple[str, str], ...] = ()
    """Features of ours the original does not know (it ignores them), e.g. that we
    speak incremental topology updates."""

    def __post_init__(self) -> None:
        format_peer_name(self.name)
        for label, value, bits in (("uid", self.uid, 64), ("conn_id", self.conn_id, 64),
                                   ("short_id", self.short_id, SHORT_ID_BITS)):
            if not 0 <= value < 1 << bits:
                raise ValueError(f"{label} must fit in {bits} bits, got {value}")

    def to_wire(self) -> dict[str, str]:
        """The features map as weave 2.8.1 sends it."""
        wire = {
            "PeerNameFlavour": PEER_NAME_FLAVOUR,
            "Name": format_peer_name(self.name),
            "NickName": self.nickname,
            "ShortID": str(self.short_id),
            "UID": str(self.uid),
            "ConnID": str(self.conn_id),
            "Trusted": "true" if self.trusts_remote else "false",
        }
        if self.overlays is not None:
            wire["Overlays"] = " ".join(self.overlays)
        for key, value in self.extra:
            wire.setdefault(key, value)
        return wire


@dataclass(frozen=True, slots=True)
class RemoteFeatures:
    """The peer's features, checked and parsed."""

    name: int
    nickname: str
    uid: int
    conn_id: int
    short_id: int | None
    """None when the peer sent no ShortID (mesh then marks it as having none)."""
    trusted_by_remote: bool
    """The peer's Trusted entry: does the PEER trust OUR address? (absent: False)."""
    overlays: tuple[str, ...] | None
    """The peer's overlay names in its order; None when it sent no Overlays entry."""


def v1_subset(features: Mapping[str, str]) -> dict[str, str]:
    """The entries version 1 keeps (sent and received)."""
    return {key: value for key, value in features.items() if key in V1_FEATURES}


def parse_remote_features(features: Mapping[str, str]) -> RemoteFeatures:
    """Check and parse the peer's features map as mesh's parseFeatures does."""
    for key in MANDATORY_FEATURES:
        if key not in features:
            raise FeaturesError(f"the peer's features lack the mandatory entry {key!r}")
    flavour = features["PeerNameFlavour"]
    if flavour != PEER_NAME_FLAVOUR:
        raise FeaturesError(
            f"peer name flavour mismatch: we use {PEER_NAME_FLAVOUR!r} peer names, the peer "
            f"uses {flavour!r} (its weave was built with another peer-name flavour)")
    name = _parsed(features, "Name", parse_peer_name)
    short_id = None
    if "ShortID" in features:
        short_id = _parsed(features, "ShortID", lambda text: parse_go_uint(text, SHORT_ID_BITS))
    trusted = _parsed(features, "Trusted", parse_go_bool) if "Trusted" in features else False
    overlays = tuple(features["Overlays"].split(" ")) if "Overlays" in features else None
    return RemoteFeatures(
        name=name,
        nickname=features["NickName"],
        uid=_parsed(features, "UID", lambda text: parse_go_uint(text, 64)),
        conn_id=_parsed(features, "ConnID", lambda text: parse_go_uint(text, 64)),
        short_id=short_id,
        trusted_by_remote=trusted,
        overlays=overlays,
    )


def _parsed(features: Mapping[str, str], key: str, parse: Callable[[str], T]) -> T:
    try:
        return parse(features[key])
    except ValueError as error:
        raise FeaturesError(f"invalid {key} in the peer's features: {error}") from None
