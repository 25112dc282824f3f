"""The live host behind :class:`router.agent.identity.HostView`: files, one rtnetlink
query, the host name and the random source.

Kernel background: Go's weaver finds the bridge with ``net.InterfaceByName``, an
RTM_GETLINK dump in the calling thread's network namespace, matched on the primary
name. We ask the kernel for the one link by name (RTM_GETLINK with IFLA_IFNAME): it
answers ENODEV when there is none. Since Linux 5.5 that request also matches an
*alternative* name, which Go's dump would not, so a reply whose IFLA_IFNAME differs
counts as "no such link". The query goes over a plain netlink socket (framing from
``common.kernel.nfnetlink``), not pyroute2's ``IPRoute``, which cannot be used from a
thread that runs an asyncio loop; a socket belongs to the network namespace of the
thread that opens it, so the lookup sees the namespace we are in, never the one
``/sys/class/net`` was mounted from.

Design decision: Go falls back to the system name on *any* ``InterfaceByName`` error;
we fall back only when the link does not exist and raise :class:`IdentityError` when
the kernel cannot be asked, because a silently different name would orphan the node's
IPAM ranges.
"""

from __future__ import annotations

import errno
import os
import socket
import struct

from common.kernel.nfnetlink import HEADER, attr, attr_table, iter_messages, text
from router.agent.identity import (
    HostView,
    IdentityError,
    PersistedPeerName,
    no_persisted_peer_name,
)

_RTM_NEWLINK, _RTM_GETLINK = 16, 18
_NLMSG_ERROR = 2
_NLM_F_REQUEST = 1
_IFLA_ADDRESS, _IFLA_IFNAME = 1, 3
_IFNAMSIZ = 16
_IFINFOMSG = struct.Struct("=BxHiII")  # family, (pad), type, index, flags, change
_ERRNO = struct.Struct("=i")
_LINK_QUERY_TIMEOUT = 5.0
_SEQ = 1


def read_host_file(path: str) -> bytes | None:
    """The file's bytes; None when it does not exist (ENOENT only, as Go's
    ``os.IsNotExist``); :class:`IdentityError` for anything else (a directory, a
    path through a file, no permission)."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise IdentityError(f"reading {path}: {err.strerror or err}") from None


def link_hardware_address(name: str) -> bytes | None:
    """The hardware address (IFLA_ADDRESS, maybe empty) of the link called ``name`` in
    the calling thread's network namespace; None when there is no such link."""
    encoded = name.encode()
    if not 0 < len(encoded) < _IFNAMSIZ or b"\0" in encoded:
        return None  # no link can carry that name; Go's name match finds none either
    body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + attr(_IFLA_IFNAME, text(name))
    request = HEADER.pack(HEADER.size + len(body), _RTM_GETLINK, _NLM_F_REQUEST, _SEQ, 0) + body
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
            sock.settimeout(_LINK_QUERY_TIMEOUT)
            sock.bind((0, 0))
            sock.send(request)
            reply = sock.recv(1 << 16)
    except OSError as err:
        raise IdentityError(f"asking the kernel for link {name!r}: {err}") from None
    return parse_getlink_reply(name, reply)


def parse_getlink_reply(name: str, reply: bytes) -> bytes | None:
    """What the kernel's reply to our RTM_GETLINK for ``name`` says: the address, None
    for no such link; :class:`IdentityError` for a refusal or a reply without a link."""
    for message in iter_messages(reply):
        if message.seq != _SEQ:
            continue
        if message.msg_type == _NLMSG_ERROR and len(message.body) >= _ERRNO.size:
            code = -_ERRNO.unpack_from(message.body)[0]
            if code == errno.ENODEV:
                return None
            raise IdentityError(f"asking the kernel for link {name!r}: {os.strerror(code)}")
        if message.msg_type == _RTM_NEWLINK and len(message.body) >= _IFINFOMSG.size:
            attrs = attr_table(message.body, _IFINFOMSG.size)
            if attrs.get(_IFLA_IFNAME, b"").rstrip(b"\0") != name.encode():
                return None  # matched an alternative name
            return attrs.get(_IFLA_ADDRESS, b"")
    raise IdentityError(f"asking the kernel for link {name!r}: no usable reply")


def go_hostname() -> str:
    """The host name as Go's ``os.Hostname`` reads it: uname's node name, unless empty
    or possibly truncated (64 bytes or more), then ``/proc/sys/kernel/hostname``."""
    name = os.uname().nodename
    if 0 < len(name.encode()) < 64:
        return name
    try:
        with open("/proc/sys/kernel/hostname", "rb") as handle:
            raw = handle.read(512)
    except OSError as err:
        raise IdentityError(f"reading the host name: {err}") from None
    return raw.removesuffix(b"\n").decode(errors="replace")


def live_host(persisted_peer_name: PersistedPeerName = no_persisted_peer_name) -> HostView:
    """The host as it is; ``persisted_peer_name`` is the state DB's source, once there
    is one (see ``router.agent.identity``)."""
    return HostView(read_file=read_host_file, link_address=link_hardware_address,
                    hostname=go_hostname, random_bytes=os.urandom,
                    persisted_peer_name=persisted_peer_name)
