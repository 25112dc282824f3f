"""Peer names: 48-bit identities written as MAC addresses (mesh flavour ``"mac"``).

Background: weave 2.8.1 builds mesh with the MAC flavour of peer names
(``peer_name_mac.go``). A name is a 48-bit number, usually the MAC of the ``weave``
bridge, printed as six lower-case two-digit hex groups (``0a:1b:2c:3d:4e:5f``) and
sent on the wire as six big-endian bytes. ``UnknownPeerName`` (0) is a sentinel:
the route tables use it as "next hop to ourselves".

Parsing follows Go exactly, because a name typed by a user (``weave connect``,
``DELETE /peer/<name>``) or sent in a handshake must mean the same thing to a Go peer
and to us. Go tries fifteen ``fmt.Sscanf`` patterns in a fixed order: the full
six-group form and every form with one ``::`` standing for zero-filled groups
(``::1``, ``ab::cd``, ``1:2::``, ...), each with a NUL appended to input and pattern
so that nothing may follow. ``Sscanf``'s ``%2x`` verb lends the forms some
leniency that this module reproduces: a group is one or two hex digits of either
case, and white space (Go's list: ``\\t\\v\\f\\r``, space, U+0085, U+00A0, ...) may
precede any group, but never a newline, and never a colon or the end. Because the
NUL is the end marker, anything after an embedded NUL is ignored, as in Go.

Design: ``PeerName`` is an ``int`` subclass, so names are cheap dictionary keys,
compare in the order Go's route computation sorts them (numerically), and print in
Go's form with ``str()``.
"""

from __future__ import annotations

from typing import Final

NAME_SIZE: Final = 6
"""Bytes in a peer name on the wire."""
PEER_NAME_FLAVOUR: Final = "mac"
"""What the handshake's ``PeerNameFlavour`` feature must say."""

_MAX_NAME: Final = (1 << 48) - 1
_HEX_DIGITS: Final = frozenset("0123456789abcdefABCDEF")
# fmt's isSpace table (scan.go): the runes Sscanf skips before a number.
_GO_SPACE_RANGES: Final = (
    (0x0009, 0x000D), (0x0020, 0x0020), (0x0085, 0x0085), (0x00A0, 0x00A0),
    (0x1680, 0x1680), (0x2000, 0x200A), (0x2028, 0x2029), (0x202F, 0x202F),
    (0x205F, 0x205F), (0x3000, 0x3000),
)
# The patterns of PeerNameFromString, in Go's order: each group is a position
# 0..5 (most significant first) scanned with %2x; "::" is a literal.
_PATTERNS: Final[tuple[tuple[str | int, ...], ...]] = (
    (0, ":", 1, ":", 2, ":", 3, ":", 4, ":", 5),
    ("::", 2, ":", 3, ":", 4, ":", 5),
    (0, "::", 3, ":", 4, ":", 5),
    (0, ":", 1, "::", 4, ":", 5),
    (0, ":", 1, ":", 2, "::", 5),
    (0, ":", 1, ":", 2, ":", 3, "::"),
    ("::", 3, ":", 4, ":", 5),
    (0, "::", 4, ":", 5),
    (0, ":", 1, "::", 5),
    (0, ":", 1, ":", 2, "::"),
    ("::", 4, ":", 5),
    (0, "::", 5),
    (0, ":", 1, "::"),
    ("::", 5),
    (0, "::"),
)


class PeerNameError(ValueError):
    """A peer name that is not 48 bits, or text Go would not parse as one."""


class PeerName(int):
    """A 48-bit peer name. ``str()`` gives Go's MAC form; order is numeric."""

    __slots__ = ()

    def __new__(cls, value: int) -> PeerName:
        if isinstance(value, bool) or not 0 <= int(value) <= _MAX_NAME:
            raise PeerNameError(f"peer name out of range (48 bits): {value!r}")
        return super().__new__(cls, value)

    @classmethod
    def parse(cls, text: str) -> PeerName:
        """Parse as Go's ``PeerNameFromString`` does (see the module notes)."""
        subject = text + "\0"
        for pattern in _PATTERNS:
            groups = _scan(subject, (*pattern, "\0"))
            if groups is not None:
                value = 0
                for position, group in groups.items():
                    value |= group << (8 * (5 - position))
                return cls(value)
        raise PeerNameError(f"invalid peer name format: {text!r}")

    @classmethod
    def from_bytes6(cls, data: bytes) -> PeerName:
        """The name in a six-byte big-endian wire field (``NameByte``).

        Go folds any length into 64 bits; names from real peers are always six
        bytes, so anything else is refused here rather than silently truncated.
        """
        if len(data) != NAME_SIZE:
            raise PeerNameError(f"peer name must be {NAME_SIZE} bytes, got {len(data)}")
        return cls(int.from_bytes(data, "big"))

    def to_bytes6(self) -> bytes:
        """The six-byte big-endian wire form."""
        return int(self).to_bytes(NAME_SIZE, "big")

    def __str__(self) -> str:
        return int(self).to_bytes(NAME_SIZE, "big").hex(":")

    def __repr__(self) -> str:
        return f"PeerName('{self}')"


UNKNOWN_PEER_NAME: Final = PeerName(0)
"""Go's ``UnknownPeerName``: the sentinel next hop for routes to ourselves."""


def _is_go_space(char: str) -> bool:
    code = ord(char)
    return any(low <= code <= high for low, high in _GO_SPACE_RANGES)


def _scan(subject: str, pattern: tuple[str | int, ...]) -> dict[int, int] | None:
    """Match ``subject`` against one pattern the way ``fmt.Sscanf`` does.

    Returns the scanned groups by position, or None where Sscanf reports an error.
    Input left over after the pattern's final literal is ignored, as in Go.
    """
    groups: dict[int, int] = {}
    at = 0
    for item in pattern:
        if isinstance(item, str):
            if not subject.startswith(item, at):
                return None
            at += len(item)
            continue
        after_space = _skip_space(subject, at)
        if after_space is None:
            return None
        at = after_space
        digits = 0
        while digits < 2 and at + digits < len(subject) and subject[at + digits] in _HEX_DIGITS:
            digits += 1
        if digits == 0:
            return None
        groups[item] = int(subject[at:at + digits], 16)
        at += digits
    return groups


def _skip_space(subject: str, at: int) -> int | None:
    """Sscanf's SkipSpace before a verb: a newline (or CR LF) is an error."""
    while at < len(subject):
        char = subject[at]
        if char == "\n":
            return None
        if not _is_go_space(char):
            return at
        at += 1
    return at
