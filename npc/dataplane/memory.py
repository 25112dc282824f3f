"""A backend with no kernel: it keeps the ruleset it was given.

The controller's tests drive it (they assert on what was applied, not on call
sequences), and it serves a dry run: everything npc does but the kernel writes.
"""

from __future__ import annotations

from collections.abc import Callable

from npc.compile.compiler import SetListener
from npc.compile.incremental import SetDeltas
from npc.compile.ruleset import Ruleset
from npc.dataplane.backend import ApplyReport, KernelView
from npc.render import dump


class MemoryBackend:
    description = "in memory (no kernel)"

    def __init__(self) -> None:
        self.ruleset: Ruleset | None = None
        """What the "kernel" holds: the last ruleset applied (None: nothing of ours)."""
        self.applied: list[tuple[Ruleset, bool]] = []
        """Every ruleset applied, with whether it was a full check, oldest first."""

    def prepare(self, empty: Ruleset) -> list[str]:
        if self.ruleset is not None:
            return []
        self.ruleset = empty
        return ["memory"]

    def sync(self, ruleset: Ruleset, *, full_check: bool = False,
             changed_sets: SetDeltas | None = None) -> ApplyReport:
        before = self.ruleset
        self.ruleset = ruleset
        self.applied.append((ruleset, full_check))
        changed = before is None or before.chains != ruleset.chains
        return ApplyReport(chains_rewritten=[c.name for c in ruleset.chains] if changed
                           else [], ipset_lines=sum(len(s.members) for s in ruleset.sets)
                           if before is None or before.sets != ruleset.sets else 0)

    def sync_compiling(self, compile: Callable[[SetListener | None], Ruleset], *,
                       full_check: bool = False) -> tuple[Ruleset, ApplyReport]:
        ruleset = compile(None)
        return ruleset, self.sync(ruleset, full_check=full_check)

    def untidy(self) -> int:
        return 0

    def tidy(self) -> ApplyReport | None:
        return None

    def apply(self, ruleset: Ruleset) -> ApplyReport:
        return self.sync(ruleset, full_check=True)

    def inspect(self, desired: Ruleset | None) -> KernelView:
        if self.ruleset is None:
            return KernelView("# nothing applied\n", 0 if desired is None else 1)
        differs = desired is not None and desired != self.ruleset
        return KernelView(dump.to_text(self.ruleset), int(differs))

    def remove_all(self) -> None:
        self.ruleset = None
