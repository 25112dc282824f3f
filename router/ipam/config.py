"""IPAM's settings: the range, the default subnet, and how the ring comes to be.

``--ipalloc-init`` takes the original's forms:

* ``consensus`` (the quorum from the number of peers we were given) or ``consensus=N``
  (N peers in the cluster);
* ``seed=NAME,NAME…``: the ring is made at once from these peer names;
* ``observer``: never votes; asks the others for their ring.

The quorum fixes the original's two-node case (reference §3.2): Weave Net's Kubernetes
launcher passes ``consensus=<number of other nodes>``, which gives a quorum of 1 with two
nodes, so each could make a ring of its own before they meet.  Ours is never below a
majority of the peers we were told of plus ourselves.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from router.ipam.address import parse_cidr
from router.mesh.names import PeerName, PeerNameError

DEFAULT_RANGE = "10.32.0.0/12"
MIN_SUBNET_SIZE = 4


@dataclass(frozen=True)
class InitMode:
    """What ``--ipalloc-init`` asked for."""

    kind: str
    """``consensus``, ``seed`` or ``observer``."""
    peer_count: int = 0
    """``consensus=N``'s N (0: not given)."""
    seeds: tuple[PeerName, ...] = ()

    def quorum(self, targets: int) -> int:
        """The quorum for consensus, ``targets`` being how many peers we were told to
        connect to.  Go's rule (N/2+1 with N given, else (targets+1)/2+1), but never below
        a majority of ``targets`` and ourselves."""
        majority = (targets + 1) // 2 + 1
        if self.peer_count > 0:
            return max(self.peer_count // 2 + 1, majority)
        return majority


CONSENSUS = InitMode("consensus")


def parse_init(text: str) -> InitMode:
    """``--ipalloc-init``'s value (empty: consensus)."""
    if not text:
        return CONSENSUS
    kind, sep, parameter = text.partition("=")
    if kind == "consensus":
        if not sep:
            return CONSENSUS
        try:
            count = int(parameter)
        except ValueError:
            raise ValueError(f"bad consensus parameter: {parameter!r} is not a number"
                             ) from None
        if count < 0:
            raise ValueError(f"bad consensus parameter: {count} is negative")
        return InitMode("consensus", peer_count=count)
    if kind == "seed":
        if not parameter:
            raise ValueError("seed mode requires peer name list")
        try:
            seeds = tuple(PeerName.parse(name) for name in parameter.split(","))
        except PeerNameError as exc:
            raise ValueError(f"bad seed parameter: {exc}") from None
        return InitMode("seed", seeds=seeds)
    if kind == "observer":
        if sep:
            raise ValueError("observer mode takes no parameter")
        return InitMode("observer")
    raise ValueError(f"unknown mode: {kind}")


def parse_subnet(text: str) -> ipaddress.IPv4Network:
    """A range or subnet to allocate in (Go's ``ParseCIDRSubnet``, with its texts)."""
    cidr = parse_cidr(text)
    if not cidr.is_subnet:
        raise ValueError(f"invalid subnet - bits after network prefix are not all zero: "
                         f"{text}")
    if cidr.size < MIN_SUBNET_SIZE:
        raise ValueError(f"invalid subnet - smaller than minimum size {MIN_SUBNET_SIZE}: "
                         f"{text}")
    return ipaddress.IPv4Network((cidr.addr, cidr.prefix_len))


def parse_optional_subnet(text: str) -> ipaddress.IPv4Network | None:
    return parse_subnet(text) if text else None


__all__ = ["CONSENSUS", "DEFAULT_RANGE", "InitMode", "parse_init", "parse_optional_subnet",
           "parse_subnet"]
