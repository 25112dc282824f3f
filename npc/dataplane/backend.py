"""The one interface between the controller and the kernel.

The controller (and ``npc apply``, ``npc debug``) drive a backend without knowing which:
iptables and ipset (:mod:`.iptables`), one nftables table (:mod:`.nftables`), or none at
all (:mod:`.memory`, for dry runs and the controller's tests).  Every backend

* raises :data:`BackendError` (a :class:`common.kernel.errors.KernelError`) when the
  kernel refuses or a command fails; anything else is a bug;
* reports what a write did in an :class:`ApplyReport`;
* shows what the kernel holds, mapped to the policies it came from, in a
  :class:`KernelView` (``npc debug``).

Backend-specific choices (the iptables flavour, whether to install weaver's hooks, the
nftables runner) are made when the backend is built (:mod:`.select`), not passed through
this interface.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from common.kernel.errors import KernelError
from npc.compile.compiler import SetListener
from npc.compile.incremental import SetDeltas
from npc.compile.ruleset import Ruleset

BackendError = KernelError
"""What every backend raises when the kernel (or a command) fails."""


@dataclass
class ApplyReport:
    """What one apply wrote (empty lists: the kernel already matched)."""

    ipset_lines: int = 0
    chains_rewritten: list[str] = field(default_factory=list)
    hooks_installed: bool = False
    sets_destroyed: list[str] = field(default_factory=list)
    commands: int = 0
    drift: list[str] = field(default_factory=list)
    """What a full check found different from what we last wrote (outside changes)."""

    @property
    def changed(self) -> bool:
        return bool(self.ipset_lines or self.chains_rewritten or self.hooks_installed
                    or self.sets_destroyed)


@dataclass(frozen=True)
class KernelView:
    """What ``npc debug`` shows of this network namespace: the kernel's state as text
    (each rule mapped to the policy rule it came from, with packet counters where the
    kernel keeps them, every difference from the desired state flagged) and how many
    differences there are (0 when no desired state was given)."""

    text: str
    differences: int


class Backend(Protocol):
    description: str
    """For logs: which backend, and how it talks to the kernel."""

    def prepare(self, empty: Ruleset) -> list[str]:
        """Before the first sync: if the kernel holds nothing of ours, install ``empty``
        (the ruleset of an empty cluster), which drops every new connection to a pod:
        fail closed until the first sync.  What exists (a restart) is left alone and
        keeps enforcing the last state.  Returns what was created."""
        ...

    def sync(self, ruleset: Ruleset, *, full_check: bool = False,
             changed_sets: SetDeltas | None = None) -> ApplyReport:
        """Converge the kernel to ``ruleset``.  Between full checks the kernel is assumed
        to hold what the last successful sync wrote; a full check reads it back, reports
        what differs as drift, and repairs it.  ``changed_sets``: exactly these member
        changes happened since the last sync (nothing else), to be written as deltas."""
        ...

    def sync_compiling(self, compile: Callable[[SetListener | None], Ruleset], *,
                       full_check: bool = False) -> tuple[Ruleset, ApplyReport]:
        """A full sync of the ruleset ``compile`` returns, loading sets into the kernel
        while it runs (``compile`` calls the listener with each set as it is done)."""
        ...

    def untidy(self) -> int:
        """How much work :meth:`tidy` has waiting (0: none)."""
        ...

    def tidy(self) -> ApplyReport | None:
        """Work that only speeds up packets, done when the controller is idle (the
        nftables backend folds pending pods into its dispatch maps); None if none."""
        ...

    def apply(self, ruleset: Ruleset) -> ApplyReport:
        """Read the kernel and converge it to ``ruleset`` (``npc apply``: a full check)."""
        ...

    def inspect(self, desired: Ruleset | None) -> KernelView:
        """The kernel as it is, next to ``desired`` (None: unknown, show the kernel)."""
        ...

    def remove_all(self) -> None:
        """Delete everything of ours from the kernel (``weave reset``)."""
        ...
