"""The nftables backend: the ``inet weave-npc`` table, one libnftables transaction a sync.

libnftables (Debian's ``python3-nftables``) takes a JSON batch and commits it as one
netlink transaction: the kernel switches from the old table to the new one atomically,
so no packet ever sees half a sync.  A sync writes only what changed:

* set and verdict-map **elements** are added and deleted one by one (pod churn is a
  handful of element operations, whatever the cluster size);
* a pod event (the incremental compiler's exact set member changes) is translated into
  those element operations directly, without building the table
  (:class:`~npc.render.nft_patch.Patching`), so its cost does not depend on the cluster's size;
* a chain whose fingerprint (kept in its first rule's comment) differs is flushed and
  refilled in the same transaction; unchanged chains keep their counters;
* chains and sets nothing wants any more are deleted last, after the map elements that
  jumped to them are gone.

Reading back (first sync, full checks, after a failure) uses ``nft -j list table``.
npc owns ``inet weave-npc`` and the two-rule ``bridge weave-npc``; it touches nothing else.
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from common.kernel.errors import KernelError
from common.kernel.exec import CommandError, Runner
from npc.compile.compiler import Options, SetListener, collector_paused
from npc.compile.incremental import SetDeltas
from npc.compile.ruleset import IpSet, Ruleset, SetKind
from npc.dataplane.backend import ApplyReport, KernelView
from npc.dataplane.nft_expr import rule_expressions
from npc.dataplane.nft_netlink import (
    ElementCommand,
    NetlinkRefused,
    NewChain,
    NftNetlink,
    element_commands,
    is_ipv4,
    removals,
)
from npc.render import nft as nft_render
from npc.render.nft_diff import (
    Json,
    NftState,
    SetFill,
    chain_commands,
    expected_state,
    parse_table,
    settled,
    state_differences,
    table_commands,
)
from npc.render.nft_patch import ElementPlan, Patching, element_changes, plan_commands


class NftError(KernelError):
    """libnftables refused a command; carries the input and its error text."""

    def __init__(self, message: str, commands: list[Json] | None = None) -> None:
        super().__init__(message)
        self.commands = commands or []
        self.retryable = "resource busy" in message.lower()

STAGE_BATCH = 256
"""Commands per transaction when staging what nothing reaches yet (dependencies come
first in a sync's commands, so any cut is valid): libnftables' transient heap grows with
the size of a transaction, and glibc keeps its peak."""
TIDY_AT = 256
"""Pending pods (see :meth:`NftablesBackend.tidy`) beyond which a pod event folds them into
the dispatch maps itself: each adds a look at every target set to its new connections."""


class Fill(Protocol):
    """Fills sets and maps no rule refers to yet (over netlink), creating the plain
    address sets ``new`` (and the table) first."""

    def __call__(self, sets: list[SetFill], new: Sequence[str] = ()) -> None: ...


Patch = tuple[list[NewChain], list[ElementCommand], list[str]]
"""A pod event's writes, for netlink: chains to create, element commands, chains to
remove (see :meth:`NftNetlink.patch`)."""
NftRunner = Callable[[list[Json]], Json]
"""Runs one JSON batch, returns the parsed JSON output (for list commands)."""


class LibNftables:
    """The libnftables seam: one handle and one netlink socket, each serialised on its
    own (a fill may go on while libnftables works).  A batch of element changes only (a
    pod event's) skips libnftables' cache fill and goes straight over netlink, as one
    transaction all the same (see :mod:`npc.dataplane.nft_netlink`), and so does one that
    then removes chains (a full sync's switch, once its new chains are staged)."""

    def __init__(self, *, netlink: bool = True) -> None:
        import nftables  # Debian's python3-nftables (a ctypes wrapper of libnftables)

        self._nft = nftables.Nftables()
        self._nft.set_json_output(True)
        self._nft.set_handle_output(False)
        self._netlink = NftNetlink() if netlink else None
        self._lock = threading.Lock()
        self._netlink_lock = threading.Lock()

    def __call__(self, commands: list[Json]) -> Json:
        if self._netlink is not None:
            # Element changes, then maybe chains removed (a full sync's switch).
            changes, gone = removals(commands, nft_render.TABLE)
            elements = element_commands(changes) if changes else []
            if elements is not None and (elements or gone):
                with self._netlink_lock:
                    try:
                        self._netlink.patch(nft_render.TABLE, [], elements, gone)
                    except NetlinkRefused as exc:
                        raise NftError(f"nft failed (netlink): {exc}", commands) from None
                return {}
        with self._lock:
            rc, out, err = self._nft.json_cmd({"nftables": commands})
        if rc != 0:
            raise NftError(f"nft failed ({rc}): {str(err).strip()}", commands)
        return out if isinstance(out, dict) else {}

    @property
    def fills(self) -> bool:
        """Whether :meth:`fill` writes over netlink (otherwise it is not to be used)."""
        return self._netlink is not None

    def fill(self, sets: list[SetFill], new: Sequence[str] = ()) -> None:
        """Fill new, still unreferenced sets and maps over netlink, bypassing libnftables:
        its parse tree of tens of thousands of elements would cost tens of megabytes of
        C heap that glibc keeps for the life of the process.  The address sets ``new``
        (and the table) are created first, in the same transaction: libnftables would
        first refill its cache of the whole table."""
        assert self._netlink is not None
        with self._netlink_lock:
            try:
                self._netlink.fill(nft_render.TABLE, sets, new)
            except NetlinkRefused as exc:
                raise NftError(f"nft failed (netlink fill): {exc}") from None

    def patch(self, patch: Patch) -> None:
        """A pod event's transaction over netlink: new group chains, element changes,
        emptied group chains (libnftables would first refill its cache of the whole
        table, a cost that grows with the cluster)."""
        assert self._netlink is not None
        with self._netlink_lock:
            try:
                self._netlink.patch(nft_render.TABLE, *patch)
            except NetlinkRefused as exc:
                raise NftError(f"nft failed (netlink): {exc}") from None


class NftCli:
    """The same JSON batches through the ``nft`` command (``nft -j -f -``), optionally under
    a prefix such as ``ip netns exec node0``: one process, one transaction per batch."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    def __call__(self, commands: list[Json]) -> Json:
        if len(commands) == 1 and "list" in commands[0]:
            what = commands[0]["list"]
            if "table" in what:
                t = what["table"]
                argv = ["nft", "-j", "list", "table", t["family"], t["name"]]
            else:
                argv = ["nft", "-j", "list", "tables"]
            try:
                out = self.runner(argv)
            except CommandError as exc:
                raise NftError(exc.describe(), commands) from None
            return json.loads(out) if out.strip() else {}
        try:
            self.runner(["nft", "-j", "-f", "-"], json.dumps({"nftables": commands}))
        except CommandError as exc:
            raise NftError(exc.describe(), commands) from None
        return {}


def available() -> bool:
    """libnftables is importable and the kernel answers."""
    try:
        LibNftables()([{"list": {"tables": {}}}])
    except Exception:
        return False
    return True


class NftablesBackend:
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
        if isinstance(run, LibNftables) and run.fills:
            fill, patch = fill or run.fill, patch or run.patch
        self.fill = fill
        """Fills new sets before the transaction that puts them to use (see
        :meth:`_declare_and_fill`); without it their elements are in that transaction."""
        self.patch = patch
        """Writes a pod event's transaction (see :meth:`_sync_elements`); without it, that
        goes through ``run`` as JSON."""
        self._known_state: NftState | None = None
        self._patching_state: Patching | None = None
        self._bookkeeping: _Bookkeeping | None = None
        """The last full sync's bookkeeping, still being worked out (see
        :class:`_Bookkeeping`): :attr:`_known` and :attr:`_patching` wait for it."""

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
        :class:`_SetLoader`) while the compile goes on; nothing refers to those sets
        until the final transaction, so the switch stays atomic.  The kernel ends as
        :meth:`sync` leaves it.  Returns the compiled ruleset too."""
        if self.fill is None:  # no netlink: one transaction, as sync
            ruleset = compile(None)
            return ruleset, self.sync(ruleset, full_check=full_check)
        known, self._known, self._patching = self._known, None, None
        state, report = self._starting_state(known, full_check)
        loader = _SetLoader(self, set(state.sets))
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
        self._bookkeeping = _Bookkeeping(ruleset, want)
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
        chains_made = _Gate()
        filling = _Background(self._fill_in_order, (
            [f for f in fills if not isinstance(f[1], Mapping)],
            [f for f in fills if isinstance(f[1], Mapping)], chains_made))
        try:
            for start in range(0, len(declarations), STAGE_BATCH):
                self.run(declarations[start:start + STAGE_BATCH])
            filling.start()
            if self.patch is not None:
                created, structure = _netlink_chains(structure)
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
        filling.start()
        chains_made.open()
        filling.join()  # raises what the fill met
        return staged, rest

    def _fill_in_order(self, work: tuple[list[SetFill], list[SetFill], _Gate]) -> None:
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
        patch = self._netlink_patch(plan) if self.patch is not None else None
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

    def _netlink_patch(self, plan: ElementPlan) -> Patch | None:
        """``plan`` for netlink, in :meth:`_element_commands`' order; None if an element
        is not an IPv4 address (netlink here encodes no other)."""
        elements = [ElementCommand(c.delete, "inet", nft_render.TABLE, c.name, c.elements)
                    for c in element_changes(plan)]
        if not all(is_ipv4(key) for c in elements for key, _ in c.elements):
            return None
        creates, rest = _netlink_chains(chain_commands(plan.creates))
        assert not rest  # group chains only jump
        return creates, elements, list(plan.gone)

    def differences(self, ruleset: Ruleset) -> list[str]:
        """What in the kernel differs from ``ruleset`` (for ``npc debug``); pending pods
        count as dispatched where their target sets send them (see :func:`settled`)."""
        want = self.desired(ruleset)
        return state_differences(expected_state(want), settled(self.read_state(), want.dispatch))

    def remove_all(self) -> None:
        for family in ("inet", "bridge"):
            with contextlib.suppress(NftError):  # not there: nothing to remove
                self.run([{"delete": {"table": {"family": family, "name": nft_render.TABLE}}}])


def _netlink_chains(commands: list[Json]) -> tuple[list[NewChain], list[Json]]:
    """The new chains that ``commands`` adds (``add chain``, then ``add rule``), for
    netlink: every chain, with its rules if netlink encodes each of them (see
    :mod:`npc.dataplane.nft_expr`); and the rest of ``commands``, the rules of the other
    chains (in order), for libnftables."""
    rules: dict[str, list[Json]] = {c["add"]["chain"]["name"]: [] for c in commands
                                    if "chain" in c["add"]}
    for c in commands:
        if "rule" in c["add"]:
            rules[c["add"]["rule"]["chain"]].append(c["add"]["rule"])
    out: list[NewChain] = []
    rest: set[str] = set()
    for name, chain_rules in rules.items():
        encoded = [rule_expressions(r) for r in chain_rules]
        if None in encoded:
            rest.add(name)
            out.append(NewChain(name))
        else:
            out.append(NewChain(name, tuple((e, r.get("comment", ""))
                                            for e, r in zip(encoded, chain_rules, strict=True)
                                            if e is not None)))
    return out, [c for c in commands if "rule" in c["add"] and c["add"]["rule"]["chain"] in rest]


class _Background:
    """``work(arg)`` in a thread of its own, started once (it inherits the starting
    thread's network namespace); join() raises what it raised.  Once done, it holds
    neither ``work`` nor ``arg`` (what they refer to, a whole table say, may go)."""

    def __init__(self, work: Callable[[Any], None], arg: Any, name: str = "nft-fill") -> None:
        self._work: Callable[[Any], None] | None = work
        self._arg, self._name = arg, name
        self._thread: threading.Thread | None = None
        self._error: Exception | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def _run(self) -> None:
        work, arg, self._work, self._arg = self._work, self._arg, None, None
        try:
            assert work is not None  # started once
            work(arg)
        except Exception as exc:  # handed to the joining thread
            self._error = exc

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()
        if self._error is not None:
            raise self._error


class _Bookkeeping:
    """What the next delta sync needs after a full sync of ``ruleset`` as ``want``: the
    state it leaves in the kernel and how member changes map onto it.  Worked out in a
    thread of its own, started once the kernel holds the table and waited for only when
    next needed: the sync returns at once, and the 20-50 ms (at 10,000 pods) of pure
    Python go while the controller waits for the next event.  (Started earlier, beside
    the writing, it took the interpreter lock from the rules' encoding.)"""

    def __init__(self, ruleset: Ruleset, want: nft_render.NftTable) -> None:
        self._kept: list[tuple[NftState, Patching | None]] = []
        self._work = _Background(lambda _: self._kept.append(
            (expected_state(want), Patching.build(ruleset, want))), None, "nft-bookkeeping")
        self._work.start()

    def result(self) -> tuple[NftState, Patching | None]:
        self._work.join()  # raises what the work met
        [kept] = self._kept
        return kept


class _Gate:
    """Holds a thread back until another opens it, saying whether to go on."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._go = True

    def open(self, *, go: bool = True) -> None:
        if not self._event.is_set():
            self._go = go
            self._event.set()

    def wait(self) -> bool:
        self._event.wait()
        return self._go


class _SetLoader:
    """Creates and fills new address sets in a thread of its own while the compile goes
    on: the compile thread offers each set as the compiler completes it; the loader
    takes whatever has queued up and creates and fills those sets over netlink, the
    creation in the fill's first transaction (the socket releases the GIL, so the
    kernel's work runs beside the compile).  Sets the kernel already has are left to the
    final transaction (their changes must be atomic with the rules').  The thread
    inherits the syncing thread's network namespace."""

    def __init__(self, backend: NftablesBackend, existing: set[str]) -> None:
        self._backend = backend
        self._existing = existing
        self._queue: queue.SimpleQueue[nft_render.NftSet | None] = queue.SimpleQueue()
        self._seen: dict[str, IpSet] = {}
        self.built: dict[str, nft_render.NftSet] = {}
        """Ruleset set name → the address set made of it (loaded or already there)."""
        self.loaded: dict[str, set[str]] = {}
        """Set → the addresses it was filled with, once created and filled."""
        self.transactions = 0
        self.error: Exception | None = None
        self._thread = threading.Thread(target=self._work, name="nft-set-loader", daemon=True)
        self._thread.start()

    def offer(self, ipset: IpSet) -> None:
        self._seen[ipset.name] = ipset
        if ipset.kind is SetKind.LIST_SET and any(
                m.value not in self._seen for m in ipset.members):
            return  # not as the compiler promises: leave it to the final transaction
        nft_set = nft_render.address_set(ipset, self._seen)
        if nft_set is None:
            return
        self.built[ipset.name] = nft_set
        if nft_set.name not in self._existing and self.error is None:
            self._queue.put(nft_set)

    def finish(self) -> dict[str, set[str]]:
        """Wait until every offered set is loaded; raise what the loader met, if anything
        (then the sets loaded so far are complete but unused)."""
        self._queue.put(None)
        self._thread.join()
        if self.error is not None:
            raise self.error
        return self.loaded

    def _work(self) -> None:
        done = False
        while not done:
            batch = [self._queue.get()]
            with contextlib.suppress(queue.Empty):
                while True:
                    batch.append(self._queue.get_nowait())
            done = None in batch
            sets = [s for s in batch if s is not None]
            if not sets or self.error is not None:
                continue
            try:
                self._load(sets)
            except Exception as exc:  # handed to the syncing thread by finish()
                self.error = exc

    def _load(self, sets: list[nft_render.NftSet]) -> None:
        backend = self._backend
        assert backend.fill is not None
        backend.fill([(s.name, s.elements) for s in sets], [s.name for s in sets])
        self.transactions += 1
        for s in sets:
            self.loaded[s.name] = set(s.elements)
