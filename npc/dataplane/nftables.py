"""The nftables backend: the ``inet weave-npc`` table, one libnftables transaction a sync.

libnftables (Debian's ``python3-nftables``) takes a JSON batch and commits it as one
netlink transaction: the kernel switches from the old table to the new one atomically,
so no packet ever sees half a sync.  A sync writes only what changed: the commands that
take what we last wrote (or, first, on full checks and after a failure, what
``nft -j list table`` reads back) to the desired table are worked out by
:mod:`npc.render.nft_diff`; a pod event (the incremental compiler's exact set member
changes) is translated into element operations directly, without building the table
(:class:`~npc.render.nft_patch.Patching`), so its cost does not depend on the cluster's
size.

A full sync first writes what nothing reaches yet (new sets, maps and regular chains)
in small transactions, fills the new sets and maps over netlink
(:mod:`npc.dataplane.nft_runner`), beside the compile when it can
(:mod:`npc.dataplane.nft_loader`), then puts everything to use in one last transaction:
the switch stays atomic and libnftables' peak stays small.

npc owns ``inet weave-npc`` and the two-rule ``bridge weave-npc``; it touches nothing else.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping

from common.kernel.errors import KernelError
from npc.compile.compiler import Options, SetListener, collector_paused
from npc.compile.incremental import SetDeltas
from npc.compile.ruleset import Ruleset
from npc.dataplane.backend import ApplyReport, KernelView
from npc.dataplane.nft_loader import Background, Bookkeeping, Gate, SetLoader
from npc.dataplane.nft_runner import (
    Fill,
    LibNftables,
    NftError,
    NftRunner,
    Patch,
    netlink_chains,
    netlink_patch,
)
from npc.render import nft as nft_render
from npc.render.nft_diff import (
    Json,
    NftState,
    SetFill,
    expected_state,
    parse_table,
    settled,
    state_differences,
    table_commands,
)
from npc.render.nft_patch import ElementPlan, Patching, plan_commands

STAGE_BATCH = 256
"""Commands per transaction when staging what nothing reaches yet (dependencies come
first in a sync's commands, so any cut is valid): libnftables' transient heap grows with
the size of a transaction, and glibc keeps its peak."""
TIDY_AT = 256
"""Pending pods (see :meth:`NftablesBackend.tidy`) beyond which a pod event folds them into
the dispatch maps itself: each adds a look at every target set to its new connections."""


class NftablesBackend:
    """The :class:`~npc.dataplane.backend.Backend` that keeps ``inet weave-npc`` (and
    ``bridge weave-npc``) as a Ruleset's table.  ``run`` takes every JSON batch (one
    transaction each); ``fill`` and ``patch``, when given (a :class:`LibNftables` with
    netlink gives both), write new sets and a pod event's changes over netlink instead.
    The threads a sync starts (:mod:`npc.dataplane.nft_loader`) inherit the syncing
    thread's network namespace."""

    def __init__(self, run: NftRunner, *, options: Options,
                 fill: Fill | None = None,
                 patch: Callable[[Patch], None] | None = None,
                 listing: Callable[[], str] | None = None) -> None:
        self.run = run
        self.listing = listing
        """``nft list table inet weave-npc`` as text, for ``npc debug`` (None: the JSON
        listing is shown instead)."""
        self.options = options
        self.description = f"nftables (inet {nft_render.TABLE})"
        if isinstance(run, LibNftables):
            fill, patch = fill or run.fill, patch or run.patch
        self.fill = fill
        """Fills new sets before the transaction that puts them to use (see
        :meth:`_declare_and_fill`); without it their elements are in that transaction.
        The sets :meth:`sync_compiling` loads beside the compile are filled by it too."""
        self.patch = patch
        """Writes a pod event's transaction (see :meth:`_sync_elements`); without it, that
        goes through ``run`` as JSON."""
        self._known_state: NftState | None = None
        self._patching_state: Patching | None = None
        self._bookkeeping: Bookkeeping | None = None
        """The last full sync's bookkeeping, still being worked out (see
        :class:`~npc.dataplane.nft_loader.Bookkeeping`): :attr:`_known` and
        :attr:`_patching` wait for it."""

    @property
    def _known(self) -> NftState | None:
        """What we believe the kernel holds: what the last successful sync wrote."""
        self._settle()
        return self._known_state

    @_known.setter
    def _known(self, state: NftState | None) -> None:
        self._settle()
        self._known_state = state

    @property
    def _patching(self) -> Patching | None:
        """How set member changes map onto ``_known`` (valid while ``_known`` is set)."""
        self._settle()
        return self._patching_state

    @_patching.setter
    def _patching(self, patching: Patching | None) -> None:
        self._settle()
        self._patching_state = patching

    def known_state(self) -> NftState | None:
        """A copy of what the backend believes the kernel holds (what the last successful
        sync wrote, pod events included), or None when it believes nothing: then the
        next sync reads the kernel back."""
        known = self._known
        return known.copy() if known is not None else None

    def set_roles(self) -> nft_render.SetRoles | None:
        """The part each of the last full sync's Ruleset's sets plays in its table (see
        :func:`npc.render.nft.set_roles`), as pod events use it (the patching index's own
        value, not to be changed); None when pod events take the full path (nothing
        known, or no patching index)."""
        patching = self._patching
        return patching.roles if patching is not None else None

    def pending_pods(self) -> dict[str, dict[str, frozenset[str]]] | None:
        """A copy of the pending pods as pod events track them: dispatch map → pod → the
        target sets it is pending with (see :meth:`untidy`); None when pod events take
        the full path."""
        patching = self._patching
        if patching is None:
            return None
        return {name: dict(pods) for name, pods in patching.pending.items()}

    def _settle(self) -> None:
        """Wait for the last full sync's bookkeeping, if any, and take it in (if it
        raised, that is raised here, and nothing is known: the next sync reads the
        kernel)."""
        pending, self._bookkeeping = self._bookkeeping, None
        if pending is not None:
            self._known_state, self._patching_state = pending.result()

    def read_state(self) -> NftState:
        try:
            listing = self.run([{"list": {"table": {"family": "inet", "name": nft_render.TABLE}}}])
        except NftError:
            return NftState()
        state = parse_table(listing)
        try:
            self.run([{"list": {"table": {"family": "bridge", "name": nft_render.TABLE}}}])
            state.bridge_ok = True
        except NftError:
            state.bridge_ok = False
        return state

    def desired(self, ruleset: Ruleset, built: Mapping[str, nft_render.NftSet] | None = None
                ) -> nft_render.NftTable:
        return nft_render.build_table(ruleset, allow_mcast=self.options.allow_mcast, built=built)

    def apply(self, ruleset: Ruleset) -> ApplyReport:
        return self.sync(ruleset, full_check=True)

    def prepare(self, empty: Ruleset) -> list[str]:
        """Before the first sync: if our table is missing, create it from ``empty`` (the
        static chains and empty sets), which drops every new connection to a pod (fail
        closed)."""
        if self.read_state().chains:
            return []
        self.sync(empty, full_check=True)
        self._known = None
        return [f"inet {nft_render.TABLE}"]

    def inspect(self, desired: Ruleset | None) -> KernelView:
        """``nft list table inet weave-npc`` (rules carry their policy rules as comments,
        and their counters), then every difference from ``desired``."""
        try:
            if self.listing is not None:
                text = self.listing()
            else:
                text = json.dumps(self.run([{"list": {"table": {
                    "family": "inet", "name": nft_render.TABLE}}}]), indent=1) + "\n"
        except KernelError as exc:
            return KernelView(f"# no table inet {nft_render.TABLE}: {exc.describe()}\n",
                              0 if desired is None else 1)
        if desired is None:
            return KernelView(text, 0)
        differences = self.differences(desired)
        lines = [f"!! differs from the desired state: {item}" for item in differences]
        lines.append(f"# {len(differences)} difference(s) from the desired state")
        return KernelView(text + "\n".join(lines) + "\n", len(differences))

    def sync(self, ruleset: Ruleset, *, full_check: bool = False,
             changed_sets: SetDeltas | None = None) -> ApplyReport:
        """Converge the kernel to ``ruleset``: build the table in memory and write what
        differs from what we last wrote (or, on a full check, from what the kernel holds).

        ``changed_sets`` (from the incremental compiler: exactly these member changes, no
        set appeared or went, no rule changed) are written as element operations without
        building the table, so a pod event costs what it changes; a change that cannot be
        mapped with certainty takes the full path.
        """
        known = self._known
        if changed_sets is not None and known is not None and not full_check:
            report = self._sync_elements(known, changed_sets)
            if report is not None:
                return report
        self._known, self._patching = None, None  # until this sync succeeds, trust nothing
        state, report = self._starting_state(known, full_check)
        return self._converge(ruleset, state, report)

    def _starting_state(self, known: NftState | None, full_check: bool
                        ) -> tuple[NftState, ApplyReport]:
        """What a full sync starts from: what we last wrote, or (first, or checking) what
        the kernel holds, with the differences between the two as drift."""
        if full_check or known is None:
            state = self.read_state()
            drift = state_differences(known, state) if known is not None else []
            return state, ApplyReport(commands=2, drift=drift)
        return known, ApplyReport(commands=0)

    @collector_paused()  # its allocations live on: see collector_paused
    def sync_compiling(self, compile: Callable[[SetListener | None], Ruleset], *,
                       full_check: bool = False) -> tuple[Ruleset, ApplyReport]:
        """A full sync that overlaps the compile with the kernel's work: each new address
        set the compiler completes is created and filled by a thread of its own (see
        :class:`~npc.dataplane.nft_loader.SetLoader`) while the compile goes on; nothing
        refers to those sets until the final transaction, so the switch stays atomic.
        The kernel ends as :meth:`sync` leaves it.  Returns the compiled ruleset too."""
        if self.fill is None:  # no netlink: one transaction, as sync
            ruleset = compile(None)
            return ruleset, self.sync(ruleset, full_check=full_check)
        known, self._known, self._patching = self._known, None, None
        state, report = self._starting_state(known, full_check)
        loader = SetLoader(self.fill, set(state.sets))
        try:
            ruleset = compile(loader.offer)
            # While the loader finishes its last sets; reusing the sets it was offered.
            want = self.desired(ruleset, loader.built)
        except BaseException:
            with contextlib.suppress(Exception):  # the compile's error is the one to tell
                loader.finish()
            raise
        loaded = loader.finish()  # raises what the loader met: the next sync reads back
        report.commands += loader.transactions
        report.ipset_lines += len(loaded)
        state = NftState({**state.sets, **loaded}, state.maps, state.chains, state.bridge_ok)
        return ruleset, self._converge(ruleset, state, report, want)

    def _converge(self, ruleset: Ruleset, state: NftState, report: ApplyReport,
                  want: nft_render.NftTable | None = None) -> ApplyReport:
        """Write what takes the kernel from ``state`` to ``ruleset``'s table (``want``,
        if already built)."""
        want = want if want is not None else self.desired(ruleset)
        fills: list[SetFill] | None = [] if self.fill is not None else None
        commands = table_commands(want, state, bridge_port=self.options.bridge_port,
                                  fills=fills)
        written: list[Json] = []
        if fills is not None:
            staged, commands = self._declare_and_fill(commands, fills)
            report.commands += -(-len(staged) // STAGE_BATCH) + bool(fills)
            report.ipset_lines += sum(1 for _, elements in fills if elements)
            written += staged
        if commands:
            self.run(commands)
            report.commands += 1
            written += commands
        # The kernel holds the table: the rest is for the next sync, taken in when needed.
        self._bookkeeping = Bookkeeping(ruleset, want)
        report.chains_rewritten = sorted({c["add"]["rule"]["chain"] for c in written
                                          if "rule" in c.get("add", {})})
        report.ipset_lines += sum(1 for c in written if any(
            "element" in c.get(v, {}) for v in ("add", "delete")))
        return report

    def _declare_and_fill(self, commands: list[Json], fills: list[SetFill]
                          ) -> tuple[list[Json], list[Json]]:
        """Write first what ``commands`` adds that nothing reaches yet: new sets, maps and
        regular chains with their rules (only base chains, hooked into the kernel, and the
        elements of maps they use can make them live).  The structure goes in
        transactions of :data:`STAGE_BATCH` commands, then the new sets of ``fills`` and
        the new maps' elements go over netlink.  Returns what was staged and the rest of
        ``commands``: the one transaction that puts everything to use, so the switch
        stays atomic.  If it fails, what was staged is left complete and unused, and the
        next sync (reading the kernel back) keeps or deletes it.

        This keeps libnftables' peak small: its transient heap (which glibc keeps) grows
        with the size of a transaction, by tens of megabytes for one holding everything;
        elements written over netlink cost it nothing."""
        def added(kind: str) -> set[str]:
            return {c["add"][kind]["name"] for c in commands if kind in c.get("add", {})
                    and c["add"][kind].get("family") == "inet" and "hook" not in c["add"][kind]}

        new_sets, new_chains = added("set") | added("map"), added("chain")
        staged: list[Json] = []
        rest: list[Json] = []
        for c in commands:
            add = c.get("add", {})
            what: Json = next(iter(add.values()), {})
            unreached = what.get("family") == "inet" and (
                "table" in add
                or (("set" in add or "map" in add or "element" in add) and what["name"] in new_sets)
                or ("chain" in add and what["name"] in new_chains)
                or ("rule" in add and what["chain"] in new_chains))
            (staged if unreached else rest).append(c)
        # Sets and maps, then chains, come before any rule.  One thread fills the new
        # sets (the kernel's work, over netlink) as soon as they are declared, then the
        # maps once the chains they jump to exist; the chains' rules are encoded for
        # netlink meanwhile (the chains' transaction waits for the socket anyway).
        declarations = [c for c in staged if not {"chain", "rule"} & c["add"].keys()]
        structure = [c for c in staged if {"chain", "rule"} & c["add"].keys()]
        chains_made = Gate()
        filling = Background(self._fill_in_order, (
            [f for f in fills if not isinstance(f[1], Mapping)],
            [f for f in fills if isinstance(f[1], Mapping)], chains_made))
        try:
            for start in range(0, len(declarations), STAGE_BATCH):
                self.run(declarations[start:start + STAGE_BATCH])
            filling.start()
            if self.patch is not None:
                created, structure = netlink_chains(structure)
                self.patch((created, [], []))
            chains = next((i for i, c in enumerate(structure) if "rule" in c["add"]),
                          len(structure))
            for start in range(0, len(structure), STAGE_BATCH):
                if start >= chains:
                    chains_made.open()
                self.run(structure[start:start + STAGE_BATCH])
        except BaseException:
            chains_made.open(go=False)
            with contextlib.suppress(Exception):  # the staging's error is the one to tell
                filling.join()
            raise
        chains_made.open()
        filling.join()  # raises what the fill met
        return staged, rest

    def _fill_in_order(self, work: tuple[list[SetFill], list[SetFill], Gate]) -> None:
        """Fill ``sets``, then, once ``gate`` opens (unless it says not to), ``maps``."""
        sets, maps, gate = work
        self._fill_all(sets)
        if gate.wait():
            self._fill_all(maps)

    def _fill_all(self, fills: list[SetFill]) -> None:
        if fills:
            assert self.fill is not None
            self.fill(fills)

    def _sync_elements(self, known: NftState, deltas: SetDeltas) -> ApplyReport | None:
        """Write set member changes as element operations in one transaction, updating
        ``known`` in place; None (nothing written) when some change has no certain form.
        Once :data:`TIDY_AT` pods are pending, they are folded into the maps (a second
        transaction, see :meth:`tidy`): the controller's idle time may never come."""
        plan = self._patching.plan(known, deltas) if self._patching is not None else None
        if plan is None:
            return None
        report = self._write(known, plan, deltas)
        if self.untidy() >= TIDY_AT:
            folded = self.tidy()
            if folded is not None:
                report.commands += folded.commands
                report.ipset_lines += folded.ipset_lines
                report.chains_rewritten += folded.chains_rewritten
        return report

    def untidy(self) -> int:
        """How many pods are pending: dispatched through a pending chain, not a map (see
        :mod:`npc.render.nft`); 0 while nothing is known."""
        if self._bookkeeping is not None:
            return 0  # a full sync just ran: it leaves none
        patching = self._patching
        return patching.untidy() if patching is not None and self._known is not None else 0

    def tidy(self) -> ApplyReport | None:
        """Fold the pending pods into the dispatch maps (creating the group chains they
        need), in one transaction: for their new connections, one lookup instead of a
        look at every target set.  It costs the kernel a validation of the whole table
        (see :mod:`npc.render.nft`), paid here once for all of them rather than by each
        pod event.  None when nothing is pending."""
        known, patching = self._known, self._patching
        if known is None or patching is None or not patching.untidy():
            return None
        return self._write(known, patching.folding(known), {})

    def _write(self, known: NftState, plan: ElementPlan, deltas: SetDeltas) -> ApplyReport:
        """Write ``plan`` (for ``deltas``) in one transaction and take it into ``known``
        and the patching index."""
        patch = netlink_patch(plan) if self.patch is not None else None
        commands = plan_commands(plan) if patch is None else []
        report = ApplyReport(commands=0)
        if (patch is not None and any(patch)) or commands:
            self._known = None  # if the transaction fails, the next sync reads the kernel
            if patch is not None:
                assert self.patch is not None
                self.patch(patch)
                report.ipset_lines = len(patch[1])
            else:
                self.run(commands)
                report.ipset_lines = sum(1 for c in commands if any(
                    "element" in c.get(v, {}) for v in ("add", "delete")))
            report.commands = 1
            report.chains_rewritten = [c.name for c in plan.creates]
        assert self._patching is not None
        self._patching.commit(known, plan, deltas)
        self._known = known
        return report

    def differences(self, ruleset: Ruleset) -> list[str]:
        """What in the kernel differs from ``ruleset`` (for ``npc debug``); pending pods
        count as dispatched where their target sets send them (see :func:`settled`)."""
        want = self.desired(ruleset)
        return state_differences(expected_state(want), settled(self.read_state(), want.dispatch))

    def remove_all(self) -> None:
        for family in ("inet", "bridge"):
            with contextlib.suppress(NftError):  # not there: nothing to remove
                self.run([{"delete": {"table": {"family": family, "name": nft_render.TABLE}}}])
