"""Who this agent is in the mesh: its peer name, nickname, UID and short ID.

Background (weave 2.8.1, ``prog/weaver/main.go`` ``peerName`` and ``net/uuid.go``
``GetSystemPeerName``). IPAM ownership is recorded by peer name, so a node that moves
from the Go weaver to ours must come back under the same name, and a fresh node must
derive the name the way Go would. Go's order, first match wins:

1. ``--name``, parsed as any user-typed peer name (``PeerName.parse``); an invalid one
   is fatal, it does not fall through.
2. The MAC of the ``--weave-bridge`` link (``weave``) when it exists: the weaver gives
   the bridge its peer name as MAC, so a restart finds its old name there.
3. The *system peer name*:

   a. When an old-style system UUID is readable (``/sys/class/dmi/id/product_uuid``, or
      if that file does not exist ``/sys/hypervisor/uuid``) and the state DB holds a
      peer name equal to the MAC derived from that UUID alone, that name: nodes named by
      weave before 1.9 (its shell script hashed only that UUID) keep their name.
   b. Otherwise the MAC derived from the machine ID followed by the old-style UUID,
      both as the files hold them (newlines included). The machine ID is
      ``$HOST_ROOT/etc/machine-id``, or if that file does not exist
      ``$HOST_ROOT/var/lib/dbus/machine-id``. The UUID paths are *not* under the host
      root (``/sys`` is the host's in the DaemonSet). An existing but empty file counts:
      it stops the fallback to the next file and contributes nothing.
   c. When both the machine ID and the UUID are missing or empty, Go fails with "All
      system IDs are blank". Its code then has a ``RandomMAC`` branch that can never
      run (it is reached only by a "does not exist" error, which the blank check has
      already turned into another error): a Go weaver refuses to start, so we do too.

Deriving a MAC (``MACfromUUID``): SHA-256 of the salt ``9oBJ0Jmip-`` followed by the
bytes, first six bytes, then the first byte's multicast bit cleared and its
locally-administered bit set. Any read error other than "does not exist" (a directory,
``/etc`` being a file, a permission) is fatal in Go and an :class:`IdentityError` here.

The UID is a fresh random non-zero 64-bit number per process start (it tells
incarnations of one name apart), the short ID a random 12-bit number (fastdp's VNI
space; the peer table resolves clashes); both read random bytes little-endian, as Go.
The nickname is ``--nickname``, else the host name.

Design: the logic here is pure. What it needs from the host comes through
:class:`HostView`: one small function each for reading a file, looking up a link's
hardware address, the host name, random bytes and the persisted peer name
(``router/agent/identity_host.py`` has the live ones). The persisted name is an
extension point: Go keeps it in BoltDB (``<db-prefix>data.db``, bucket ``top``, key
``peername``, a gob-encoded ``uint64``), which we cannot read yet; our state DB will
provide it, with the precedence of rule 3a.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from router.mesh.names import NAME_SIZE, PeerName, PeerNameError
from router.mesh.summary import SHORT_ID_BITS

DEFAULT_BRIDGE_NAME: Final = "weave"
"""Go's ``--weave-bridge`` default."""
DEFAULT_DB_PREFIX: Final = "/weavedb/weave"
"""Go's ``--db-prefix`` default (its BoltDB is ``<prefix>data.db``)."""
MACHINE_ID_PATHS: Final = ("/etc/machine-id", "/var/lib/dbus/machine-id")
"""Under the host root; the second is read only when the first does not exist."""
SYSTEM_UUID_PATHS: Final = ("/sys/class/dmi/id/product_uuid", "/sys/hypervisor/uuid")
"""Not under the host root; the second is read only when the first does not exist."""
MAC_SALT: Final = b"9oBJ0Jmip-"
"""Prefixed to the hashed bytes, so that other software hashing the same IDs into MACs
does not get ours."""

ReadFile = Callable[[str], bytes | None]
"""Contents of the file at ``path``; None when it does not exist (ENOENT, Go's
``os.IsNotExist``); raises :class:`IdentityError` on any other failure."""
LinkAddress = Callable[[str], bytes | None]
"""The hardware address of the link named ``name`` in our network namespace, as the
kernel reports it (any length, maybe empty); None when there is no such link."""
PersistedPeerName = Callable[[], PeerName | None]
"""The peer name the state DB recorded for this node; None when there is no DB or no
name in it; raises :class:`IdentityError` when a DB exists but cannot be read."""
RandomBytes = Callable[[int], bytes]
"""``n`` bytes from a cryptographic random source (Go uses ``crypto/rand``)."""


class IdentityError(Exception):
    """The peer name cannot be determined (the Go weaver exits at this point)."""


def no_persisted_peer_name() -> PeerName | None:
    """The persisted-name source until the state DB exists: nothing is persisted."""
    return None


@dataclass(frozen=True)
class HostView:
    """Everything identity reads from the host, one function each (see the aliases)."""

    read_file: ReadFile
    link_address: LinkAddress
    hostname: Callable[[], str]
    """The host name, as Go's ``os.Hostname``."""
    random_bytes: RandomBytes
    persisted_peer_name: PersistedPeerName = no_persisted_peer_name


@dataclass(frozen=True)
class LocalIdentity:
    """What the mesh announces about us (the local peer of the peer table)."""

    name: PeerName
    nickname: str
    uid: int
    """Non-zero, new at every process start."""
    short_id: int
    """12 bits; may be reassigned later when another peer holds it."""


def mac_from_uuid(system_id: bytes) -> bytes:
    """Go's ``MACfromUUID``: six bytes of a salted SHA-256, made a local unicast MAC."""
    digest = hashlib.sha256(MAC_SALT + system_id).digest()
    return _local_unicast(digest[:NAME_SIZE])


def random_peer_name(random_bytes: RandomBytes) -> PeerName:
    """A random local unicast MAC as a name (Go's ``RandomMAC``).

    Not part of :func:`peer_name`'s chain: Go 2.8.1 never reaches its random branch
    (see the module notes). Here for a caller that decides to diverge from Go."""
    return PeerName.from_bytes6(_local_unicast(_exactly(random_bytes, NAME_SIZE)))


def peer_name(name_flag: str, bridge_name: str, host_root: str, host: HostView) -> PeerName:
    """The name this agent runs under (Go's ``peerName``): ``--name`` if given, else
    the bridge's MAC if the bridge exists, else :func:`system_peer_name`.

    ``name_flag`` and ``bridge_name`` are ``--name`` and ``--weave-bridge``;
    ``host_root`` is ``--host-root``, prefixed as a string (Go concatenates).
    Raises :class:`IdentityError` naming the source when no name can be had."""
    if name_flag:
        return _parse_name(name_flag, "--name")
    address = host.link_address(bridge_name) if bridge_name else None
    if address is not None:
        # Go formats the address as net.HardwareAddr.String() and parses that: only a
        # six-byte address makes a name; an empty or odd-length one is fatal.
        return _parse_name(address.hex(":"), f"the MAC of link {bridge_name!r}")
    return system_peer_name(host_root, host)


def system_peer_name(host_root: str, host: HostView) -> PeerName:
    """Go's ``GetSystemPeerName``: rules 3a-3c of the module notes."""
    old_style_uuid = _first_existing(host.read_file, SYSTEM_UUID_PATHS)
    if old_style_uuid is not None:
        persisted = host.persisted_peer_name()
        old_style_name = PeerName.from_bytes6(mac_from_uuid(old_style_uuid))
        if persisted is not None and persisted == old_style_name:
            return persisted
    machine_id = _first_existing(host.read_file, tuple(host_root + p for p in MACHINE_ID_PATHS))
    if not machine_id and not old_style_uuid:
        raise IdentityError(
            "all system IDs are blank: none of the machine IDs "
            f"({', '.join(host_root + p for p in MACHINE_ID_PATHS)}) or system UUIDs "
            f"({', '.join(SYSTEM_UUID_PATHS)}) exists with content; give --name")
    return PeerName.from_bytes6(mac_from_uuid((machine_id or b"") + (old_style_uuid or b"")))


def nickname(nickname_flag: str, host: HostView) -> str:
    """``--nickname``, else the host name (asked only then, as Go does)."""
    return nickname_flag or host.hostname()


def random_uid(random_bytes: RandomBytes) -> int:
    """Go's ``randomPeerUID``: eight random bytes little-endian, drawn again while 0
    (UID 0 marks a placeholder peer)."""
    while True:
        uid = int.from_bytes(_exactly(random_bytes, 8), "little")
        if uid:
            return uid


def random_short_id(random_bytes: RandomBytes) -> int:
    """Go's ``randomPeerShortID``: two random bytes little-endian, low 12 bits."""
    return int.from_bytes(_exactly(random_bytes, 2), "little") & ((1 << SHORT_ID_BITS) - 1)


def local_identity(name_flag: str, nickname_flag: str, bridge_name: str, host_root: str,
                   host: HostView) -> LocalIdentity:
    """The whole identity at process start: name first (as Go: a failure there stops
    everything), then nickname, UID and short ID."""
    name = peer_name(name_flag, bridge_name, host_root, host)
    return LocalIdentity(name, nickname(nickname_flag, host), random_uid(host.random_bytes),
                         random_short_id(host.random_bytes))


def print_peer_name_output(name: PeerName) -> str:
    """What ``--print-peer-name`` writes to stdout before exiting 0: the name and a
    newline (``launch.sh`` takes it with ``$(...)``, which drops the newline; an empty
    output there means "Unable to get peer name")."""
    return f"{name}\n"


def _parse_name(text: str, source: str) -> PeerName:
    try:
        return PeerName.parse(text)
    except PeerNameError as err:
        raise IdentityError(f"peer name from {source}: {err}") from None


def _first_existing(read_file: ReadFile, paths: tuple[str, ...]) -> bytes | None:
    """The contents of the first of ``paths`` that exists (even if empty), else None."""
    for path in paths:
        content = read_file(path)
        if content is not None:
            return content
    return None


def _local_unicast(mac: bytes) -> bytes:
    """Clear the multicast bit and set the locally-administered bit of byte 0."""
    return bytes([(mac[0] & 0xFE) | 0x02]) + mac[1:]


def _exactly(random_bytes: RandomBytes, count: int) -> bytes:
    data = random_bytes(count)
    if len(data) != count:
        raise IdentityError(f"random source gave {len(data)} bytes, {count} asked")
    return data
