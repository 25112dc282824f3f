"""The requests that may have to wait: allocate, claim, prime.

Each is tried when it arrives and again whenever something changes (a ring arrives,
space is donated, a peer denies a request, the 5-second tick); :meth:`Operation.attempt`
says whether it is finished.  A finished operation has called its ``done`` exactly once,
with its answer or an :class:`~router.ipam.errors.IpamError`.  The allocator owns the
queues; the agent's seam gives each operation its deadline and, when it passes,
withdraws it with a :class:`~router.ipam.errors.TimedOut` naming what it waited for.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Protocol

from router.ipam.errors import Cancelled, IpamError, Refused
from router.mesh.names import PeerName

if TYPE_CHECKING:
    from router.ipam.allocator import Allocator

NO_CONTAINER_ID = "_"
"""The ID that means "no container": the address is filed under its own text."""
MAX_CLAIM_TRIES = 5
"""How many times a claim in another peer's range asks an owner we cannot reach."""

Done = Callable[[str | None, IpamError | None], None]
"""``done(answer, error)``: exactly one of them is None (a prime's answer is "")."""


class Operation(Protocol):
    @property
    def kind(self) -> str: ...

    @property
    def ident(self) -> str: ...

    def attempt(self, alloc: Allocator) -> bool:
        """Try once; True when finished (``done`` was called)."""
        ...

    def finish(self, answer: str | None, error: IpamError | None) -> None: ...

    def describe(self) -> str: ...


@dataclass(eq=False)
class _Base:
    done: Done
    finished: bool = field(default=False, init=False)

    def finish(self, answer: str | None, error: IpamError | None) -> None:
        if not self.finished:
            self.finished = True
            self.done(answer, error)


@dataclass(eq=False)
class Allocate(_Base):
    ident: str
    subnet: ipaddress.IPv4Network
    is_container: bool
    kind: ClassVar[str] = "Allocate"

    def attempt(self, alloc: Allocator) -> bool:
        existing = alloc.owned_in(self.ident, self.subnet)
        if existing:
            self.finish(existing[0], None)
            return True
        if not alloc.universe.overlaps(self.subnet):
            self.finish(None, Refused(f"range {self.subnet} out of bounds: {alloc.universe}"))
            return True
        alloc.establish_ring()
        address = alloc.take_free_address(self.subnet)
        if address is not None:
            ident = str(address) if self.ident == NO_CONTAINER_ID else self.ident
            cidr = f"{address}/{self.subnet.prefixlen}"
            alloc.add_owned(ident, cidr, self.is_container)
            self.finish(cidr, None)
            return True
        alloc.ask_for_space(self.subnet)
        return False

    def describe(self) -> str:
        return f"{self.ident} {self.subnet}"


@dataclass(eq=False)
class Claim(_Base):
    ident: str
    address: ipaddress.IPv4Interface
    is_container: bool
    no_error_on_unknown: bool
    tries: int = field(default=0, init=False)
    kind: ClassVar[str] = "Claim"

    @property
    def filed_as(self) -> str:
        return str(self.address.ip) if self.ident == NO_CONTAINER_ID else self.ident

    def attempt(self, alloc: Allocator) -> bool:
        self.tries += 1
        cidr = str(self.address)
        ip = self.address.ip
        if not alloc.in_universe(ip):
            previous = alloc.who_owns(ip)
            if previous is None:
                alloc.add_owned(self.filed_as, cidr, self.is_container)
            elif previous != self.ident and self.ident != NO_CONTAINER_ID:
                self.finish(None, Refused(f"address {cidr} already in use by {previous}"))
                return True
            self.finish("", None)
            return True
        alloc.establish_ring()
        owner = alloc.ring_owner(ip)
        if owner is None:
            if self.no_error_on_unknown:
                self.finish("", None)  # answered, but keeps trying
            return False
        if owner != alloc.name:
            reachable = alloc.request_address(owner, ip)
            if not reachable and self.tries > MAX_CLAIM_TRIES and not self.no_error_on_unknown:
                self.denied(alloc, owner, "cannot reach it")
                return True
            if not reachable and self.no_error_on_unknown:
                self.finish("", None)
            return False
        existing = alloc.who_owns(ip)
        if existing is None:
            error = alloc.claim_address(ip)
            if error is None:
                alloc.add_owned(self.filed_as, cidr, self.is_container)
                self.finish("", None)
            else:
                self.finish(None, Refused(error))
        elif existing == self.filed_as or self.ident == NO_CONTAINER_ID:
            self.finish("", None)  # re-claimed
        elif existing == str(ip):
            self.finish(None, Refused(f"address {cidr} already in use"))
        else:
            self.finish(None, Refused(f"address {cidr} is already owned by {existing}"))
        return True

    def denied(self, alloc: Allocator, owner: int, reason: str = "") -> None:
        nickname = alloc.nicknames.get(owner)
        name = str(PeerName(owner)) + (f" ({nickname})" if nickname else "")
        self.finish(None, Refused(f"address {self.address} is owned by other peer {name}"
                                  + (f" - {reason}" if reason else "")))

    def describe(self) -> str:
        return f"{self.ident} {self.address}"


@dataclass(eq=False)
class Prime(_Base):
    ident: ClassVar[str] = ""
    kind: ClassVar[str] = "Prime"

    def attempt(self, alloc: Allocator) -> bool:
        if not alloc.ring_empty:
            self.finish("", None)
            return True
        alloc.establish_ring()
        return False

    def describe(self) -> str:
        return "prime"


def cancel(op: Operation) -> None:
    op.finish(None, Cancelled(op.kind, op.ident))


__all__ = ["MAX_CLAIM_TRIES", "NO_CONTAINER_ID", "Allocate", "Claim", "Done", "Operation",
           "Prime", "cancel"]
