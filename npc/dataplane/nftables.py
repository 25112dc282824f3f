"""The nftables backend: the ``inet weave-npc`` table, one libnftables transaction a sync.

libnftables (Debian's ``python3-nftables``) takes a JSON batch and commits it as one
netlink transaction: the kernel switches from the old table to the new one atomically,
so no packet ever sees half a sync.  A sync writes only what changed:

* set and verdict-map **elements** are added and deleted one by one (pod churn is a
  handful of element operations, whatever the cluster size);
* a pod event (the incremental compiler's exact set member changes) is translated into
  those element operations directly, without building the table (:class:`_Patching`), so
  its cost does not depend on the cluster's size;
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
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
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
from npc.render import nft as R

Json = dict[str, Any]


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
SetFill = tuple[str, Collection[str] | Mapping[str, str]]
"""A new set of ``inet weave-npc`` and the addresses it is to hold, or a new verdict map
and the chain each address jumps to."""


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
            changes, gone = removals(commands, R.TABLE)
            elements = element_commands(changes) if changes else []
            if elements is not None and (elements or gone):
                with self._netlink_lock:
                    try:
                        self._netlink.patch(R.TABLE, [], elements, gone)
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
                self._netlink.fill(R.TABLE, sets, new)
            except NetlinkRefused as exc:
                raise NftError(f"nft failed (netlink fill): {exc}") from None

    def patch(self, patch: Patch) -> None:
        """A pod event's transaction over netlink: new group chains, element changes,
        emptied group chains (libnftables would first refill its cache of the whole
        table, a cost that grows with the cluster)."""
        assert self._netlink is not None
        with self._netlink_lock:
            try:
                self._netlink.patch(R.TABLE, *patch)
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


@dataclass
class NftState:
    sets: dict[str, set[str]] = field(default_factory=dict)
    maps: dict[str, dict[str, str]] = field(default_factory=dict)
    chains: dict[str, str] = field(default_factory=dict)  # name → fingerprint ("" unknown)
    bridge_ok: bool = False


def _element(value: Any) -> str:
    if isinstance(value, dict) and "prefix" in value:
        return R.canonical_cidr(f"{value['prefix']['addr']}/{value['prefix']['len']}")
    if isinstance(value, dict) and "elem" in value:
        return _element(value["elem"]["val"])
    return str(value)


def parse_table(listing: Json) -> NftState:
    state = NftState()
    rules_first: dict[str, str] = {}
    for item in listing.get("nftables", []):
        if "set" in item:
            s = item["set"]
            state.sets[s["name"]] = {_element(e) for e in s.get("elem", [])}
        elif "map" in item:
            m = item["map"]
            state.maps[m["name"]] = {
                _element(k): (v.get("jump") or v.get("goto") or {}).get("target", "")
                for k, v in m.get("elem", [])}
        elif "chain" in item:
            state.chains.setdefault(item["chain"]["name"], "")
        elif "rule" in item:
            r = item["rule"]
            if r["chain"] not in rules_first:
                rules_first[r["chain"]] = r.get("comment", "")
    for chain, comment in rules_first.items():
        if comment.startswith("#"):
            state.chains[chain] = comment[1:].split(" ", 1)[0]
    for chain in set(state.chains) - set(rules_first):
        # An empty chain (a policy with no rules) has no rule to carry a fingerprint.
        state.chains[chain] = R.NftChain(chain, ()).fingerprint
    return state


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
        self.description = f"nftables (inet {R.TABLE})"
        if isinstance(run, LibNftables) and run.fills:
            fill, patch = fill or run.fill, patch or run.patch
        self.fill = fill
        """Fills new sets before the transaction that puts them to use (see
        :meth:`_declare_and_fill`); without it their elements are in that transaction."""
        self.patch = patch
        """Writes a pod event's transaction (see :meth:`_sync_elements`); without it, that
        goes through ``run`` as JSON."""
        self._known_state: NftState | None = None
        self._patching_state: _Patching | None = None
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
    def _patching(self) -> _Patching | None:
        """How set member changes map onto ``_known`` (valid while ``_known`` is set)."""
        self._settle()
        return self._patching_state

    @_patching.setter
    def _patching(self, patching: _Patching | None) -> None:
        self._settle()
        self._patching_state = patching

    def _settle(self) -> None:
        """Wait for the last full sync's bookkeeping, if any, and take it in (if it
        raised, that is raised here, and nothing is known: the next sync reads the
        kernel)."""
        pending, self._bookkeeping = self._bookkeeping, None
        if pending is not None:
            self._known_state, self._patching_state = pending.result()

    def _t(self, **kw: Any) -> Json:
        return {"family": "inet", "table": R.TABLE, **kw}

    def read_state(self) -> NftState:
        try:
            listing = self.run([{"list": {"table": {"family": "inet", "name": R.TABLE}}}])
        except NftError:
            return NftState()
        state = parse_table(listing)
        try:
            self.run([{"list": {"table": {"family": "bridge", "name": R.TABLE}}}])
            state.bridge_ok = True
        except NftError:
            state.bridge_ok = False
        return state

    def desired(self, ruleset: Ruleset, built: Mapping[str, R.NftSet] | None = None
                ) -> R.NftTable:
        return R.build_table(ruleset, allow_mcast=self.options.allow_mcast, built=built)

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
        return [f"inet {R.TABLE}"]

    def inspect(self, desired: Ruleset | None) -> KernelView:
        """``nft list table inet weave-npc`` (rules carry their policy rules as comments,
        and their counters), then every difference from ``desired``."""
        try:
            if self.listing is not None:
                text = self.listing()
            else:
                text = json.dumps(self.run([{"list": {"table": {
                    "family": "inet", "name": R.TABLE}}}]), indent=1) + "\n"
        except KernelError as exc:
            return KernelView(f"# no table inet {R.TABLE}: {exc.describe()}\n",
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
            drift = _differences(known, state) if known is not None else []
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
                  want: R.NftTable | None = None) -> ApplyReport:
        """Write what takes the kernel from ``state`` to ``ruleset``'s table (``want``,
        if already built)."""
        want = want if want is not None else self.desired(ruleset)
        fills: list[SetFill] | None = [] if self.fill is not None else None
        commands = self.commands(want, state, fills)
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

    def _write(self, known: NftState, plan: _ElementPlan, deltas: SetDeltas) -> ApplyReport:
        """Write ``plan`` (for ``deltas``) in one transaction and take it into ``known``
        and the patching index."""
        patch = self._netlink_patch(plan) if self.patch is not None else None
        commands = self._element_commands(plan) if patch is None else []
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

    def _netlink_patch(self, plan: _ElementPlan) -> Patch | None:
        """``plan`` for netlink, in :meth:`_element_commands`' order; None if an element
        is not an IPv4 address (netlink here encodes no other)."""
        elements = _element_changes(plan)
        if not all(is_ipv4(key) for c in elements for key, _ in c.elements):
            return None
        creates, rest = _netlink_chains(self._chain_commands(plan.creates))
        assert not rest  # group chains only jump
        return creates, elements, list(plan.gone)

    def _chain_commands(self, chains: list[R.NftChain]) -> list[Json]:
        """Create the regular chains ``chains`` with their rules."""
        cmds: list[Json] = [{"add": {"chain": self._t(name=c.name)}} for c in chains]
        return cmds + [{"add": {"rule": self._t(chain=c.name, **r)}} for c in chains
                       for r in c.rules_with_fingerprint()]

    def _element_commands(self, plan: _ElementPlan) -> list[Json]:
        """New group chains first (map elements jump to them), then set and map elements,
        then the group chains no map element jumps to any more."""
        cmds = self._chain_commands(plan.creates)
        cmds += [{"delete" if c.delete else "add": {"element": self._t(name=c.name, elem=[
            _elem_value(key) if chain is None else [key, {"jump": {"target": chain}}]
            for key, chain in c.elements])}} for c in _element_changes(plan)]
        return cmds + _chain_removals(plan.gone, self._t)

    def differences(self, ruleset: Ruleset) -> list[str]:
        """What in the kernel differs from ``ruleset`` (for ``npc debug``); pending pods
        count as dispatched where their target sets send them (see :func:`settled`)."""
        want = self.desired(ruleset)
        return _differences(expected_state(want), settled(self.read_state(), want.dispatch))

    def commands(self, want: R.NftTable, state: NftState,
                 fills: list[SetFill] | None = None) -> list[Json]:
        """One transaction taking the kernel from ``state`` to ``want``.  Given ``fills``,
        the elements of new sets of plain addresses and of new maps go there instead
        (see :meth:`_declare_and_fill`)."""
        cmds: list[Json] = []
        if not state.bridge_ok:
            cmds += R.bridge_table_commands(self.options.bridge_port)
        cmds.append({"add": {"table": {"family": "inet", "name": R.TABLE}}})
        cmds += self._set_commands(want, state, fills)
        cmds += self._map_and_chain_commands(want, state, fills)
        return [] if cmds == [{"add": {"table": {"family": "inet", "name": R.TABLE}}}] else cmds

    def set_spec(self, s: R.NftSet) -> Json:
        """What ``add set`` takes to create ``s`` (empty)."""
        spec = self._t(name=s.name, type="ipv4_addr", comment=s.comment)
        if s.interval:
            spec["flags"] = ["interval"]
        return spec

    def _set_commands(self, want: R.NftTable, state: NftState,
                      fills: list[SetFill] | None) -> list[Json]:
        cmds: list[Json] = []
        for s in want.sets:
            have = state.sets.get(s.name)
            if have is None:
                cmds.append({"add": {"set": self.set_spec(s)}})
                if fills is not None and not s.interval:
                    fills.append((s.name, s.elements))
                    continue
                have = set()
            adds, dels = sorted(s.elements - have), sorted(have - s.elements)
            if adds:
                cmds.append({"add": {"element": self._t(name=s.name, elem=[
                    _elem_value(e) for e in adds])}})
            if dels:
                cmds.append({"delete": {"element": self._t(name=s.name, elem=[
                    _elem_value(e) for e in dels])}})
        return cmds

    def _map_and_chain_commands(self, want: R.NftTable, state: NftState,
                                fills: list[SetFill] | None) -> list[Json]:
        cmds: list[Json] = []
        wanted_chains = {c.name for c in want.chains}
        for c in want.chains:  # chains first: map elements and rules jump to them
            if c.name not in state.chains:
                spec = self._t(name=c.name)
                if c.hook:
                    spec.update(type="filter", hook=c.hook[0], prio=c.hook[1],
                                policy="accept")
                cmds.append({"add": {"chain": spec}})
        for m in want.maps:
            have = state.maps.get(m.name)
            if have is None:
                cmds.append({"add": {"map": self._t(name=m.name, type="ipv4_addr",
                                                    map="verdict")}})
                if fills is not None:
                    fills.append((m.name, dict(m.elements)))
                    continue
                have = {}
            wanted = dict(m.elements)
            stale = sorted(k for k, v in have.items() if wanted.get(k) != v)
            fresh = sorted(k for k, v in wanted.items() if have.get(k) != v)
            if stale:
                cmds.append({"delete": {"element": self._t(name=m.name, elem=stale)}})
            if fresh:
                cmds.append({"add": {"element": self._t(name=m.name, elem=[
                    [k, {"jump": {"target": wanted[k]}}] for k in fresh])}})
        for c in want.chains:
            if state.chains.get(c.name) != c.fingerprint:
                if c.name in state.chains:
                    cmds.append({"flush": {"chain": self._t(name=c.name)}})
                cmds += [{"add": {"rule": self._t(chain=c.name, **r)}}
                         for r in c.rules_with_fingerprint()]
        cmds += _chain_removals(sorted(set(state.chains) - wanted_chains), self._t)
        for name in sorted(set(state.sets) - {s.name for s in want.sets}):
            cmds.append({"delete": {"set": self._t(name=name)}})
        return cmds

    def remove_all(self) -> None:
        for family in ("inet", "bridge"):
            with contextlib.suppress(NftError):  # not there: nothing to remove
                self.run([{"delete": {"table": {"family": family, "name": R.TABLE}}}])


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

    def __init__(self, ruleset: Ruleset, want: R.NftTable) -> None:
        self._kept: list[tuple[NftState, _Patching | None]] = []
        self._work = _Background(lambda _: self._kept.append(
            (expected_state(want), _Patching.build(ruleset, want))), None, "nft-bookkeeping")
        self._work.start()

    def result(self) -> tuple[NftState, _Patching | None]:
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
        self._queue: queue.SimpleQueue[R.NftSet | None] = queue.SimpleQueue()
        self._seen: dict[str, IpSet] = {}
        self.built: dict[str, R.NftSet] = {}
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
        nft_set = R.address_set(ipset, self._seen)
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

    def _load(self, sets: list[R.NftSet]) -> None:
        backend = self._backend
        assert backend.fill is not None
        backend.fill([(s.name, s.elements) for s in sets], [s.name for s in sets])
        self.transactions += 1
        for s in sets:
            self.loaded[s.name] = set(s.elements)


@dataclass
class _ElementPlan:
    """The element operations one batch of set member changes needs, worked out before
    anything is written."""

    add: defaultdict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    delete: defaultdict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    unmap: defaultdict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    """Dispatch map → the pods whose element goes (before ``remap`` adds it back)."""
    remap: defaultdict[str, dict[str, str]] = field(default_factory=lambda: defaultdict(dict))
    """Dispatch map → pod → the group chain it jumps to now."""
    pending: defaultdict[str, dict[str, frozenset[str] | None]] = field(
        default_factory=lambda: defaultdict(dict))
    """Dispatch map → pod → the target sets it is pending with now (None: no longer
    pending)."""
    moved: Counter[str] = field(default_factory=Counter)
    """Group chain → change in the number of pods dispatched to it."""
    keys: dict[str, tuple[R.Dispatch, frozenset[str]]] = field(default_factory=dict)
    """Group chain a pod moved to → its dispatch and key (it may be new)."""
    creates: list[R.NftChain] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)

    def want(self, known: NftState, name: str, element: str, present: bool) -> None:
        """``element`` is to be in nft set ``name`` or not."""
        if present != (element in known.sets[name]):
            (self.add if present else self.delete)[name].add(element)


@dataclass
class _Patching:
    """What turns set member changes into element operations without building the table:
    built on each full sync from the Ruleset and its table, kept in step with ``_known``
    by every delta sync.  Each changed member costs a few dictionary lookups (and one per
    part of each union holding it)."""

    roles: R.SetRoles
    dispatch: tuple[R.Dispatch, ...]
    groups: dict[str, frozenset[str]]
    """Group chain → its key (the target sets its pods are in), both directions."""
    sizes: Counter[str]
    """Group chain → the number of pods the dispatch maps send to it (never 0)."""
    loose: dict[str, set[str]]
    """Union parts without an nft set of their own (default-allow sets) → members."""
    pending: dict[str, dict[str, frozenset[str]]]
    """Dispatch map → the pods in its pending set → the target sets each is in."""

    @classmethod
    def build(cls, ruleset: Ruleset, want: R.NftTable) -> _Patching | None:
        """None when a pod's group could depend on a set without an nft set of its own
        (then every sync takes the full path)."""
        roles = R.set_roles(ruleset)
        if any(t not in roles.own for d in want.dispatch for t in d.targets):
            return None
        by_name = ruleset.set_by_name()
        maps = {d.map for d in want.dispatch}
        return cls(roles, want.dispatch,
                   {chain: key for d in want.dispatch for chain, key in d.groups.items()},
                   Counter(chain for m in want.maps if m.name in maps
                           for _, chain in m.elements),
                   {name: {m.value for m in by_name[name].members} for name in roles.loose},
                   {d.map: {} for d in want.dispatch})

    def untidy(self) -> int:
        return sum(len(pods) for pods in self.pending.values())

    def plan(self, known: NftState, deltas: SetDeltas) -> _ElementPlan | None:
        """The element operations taking ``known`` through ``deltas``; None if some
        change cannot be mapped with certainty."""
        roles = self.roles
        if any(name in roles.blocked or (name not in roles.own and name not in self.loose)
               for name in deltas):
            return None

        def holds(name: str, ip: str) -> bool:
            """Whether set ``name`` holds ``ip`` after the changes."""
            change = deltas.get(name)
            if change is not None and ip in change:
                return change[ip] is not None
            own = roles.own.get(name)
            return ip in (known.sets[own] if own is not None else self.loose[name])

        plan = _ElementPlan()
        in_unions: dict[tuple[str, str], bool] = {}  # (union, ip) → a part gains ip
        for name, changes in deltas.items():
            own = roles.own.get(name)
            unions = roles.containing.get(name, ())
            for ip, member in changes.items():
                if own is not None:
                    plan.want(known, own, ip, member is not None)
                for union in unions:
                    if member is not None:
                        in_unions[union, ip] = True
                    else:
                        in_unions.setdefault((union, ip), False)
        for (union, ip), gained in in_unions.items():
            # A union loses an address only if none of its parts holds it any more.
            plan.want(known, union, ip,
                      gained or any(holds(p, ip) for p in roles.unions[union]))
        for d in self.dispatch:
            if not self._plan_dispatch(plan, d, known, deltas, holds):
                return None
        self._plan_chains(plan, known)
        return plan

    def _plan_dispatch(self, plan: _ElementPlan, d: R.Dispatch, known: NftState,
                       deltas: SetDeltas, holds: Callable[[str, str], bool]) -> bool:
        """Each pod whose target sets changed leaves its group chain's map element and
        becomes pending (or stops being pending, if no target set holds it now): element
        operations the kernel need not validate the table for (see :mod:`npc.render.nft`)."""
        touched = [name for name in deltas if name in d.targets]
        elements, waiting = known.maps[d.map], self.pending[d.map]
        for ip in sorted({ip for name in touched for ip in deltas[name]}):
            old = elements.get(ip)
            if old is not None and old not in self.groups:
                return False  # a chain this index does not know: only a rebuild can tell
            before = self.groups[old] if old is not None else waiting.get(ip, frozenset())
            key = frozenset(t for t in before.union(touched) if holds(t, ip))
            if key == before:
                continue
            if old is not None:
                plan.unmap[d.map].add(ip)
                plan.moved[old] -= 1
            plan.pending[d.map][ip] = key or None
            plan.want(known, d.pending, ip, bool(key))
        return True

    def folding(self, known: NftState) -> _ElementPlan:
        """The plan that moves every pending pod into its dispatch map, at the group chain
        of its target sets (created if it is new)."""
        plan = _ElementPlan()
        for d in self.dispatch:
            for ip, key in self.pending[d.map].items():
                chain = R.group_chain_name(d.prefix, key)
                plan.remap[d.map][ip] = chain
                plan.moved[chain] += 1
                plan.keys[chain] = (d, key)
                plan.pending[d.map][ip] = None
                plan.want(known, d.pending, ip, False)
        self._plan_chains(plan, known)
        return plan

    def _plan_chains(self, plan: _ElementPlan, known: NftState) -> None:
        """Group chains that gain their first pod are created; those that lose their last
        one go (the full path's table would not have them either)."""
        for chain, change in sorted(plan.moved.items()):
            left = self.sizes[chain] + change
            if left > 0 and chain not in known.chains:
                d, key = plan.keys[chain]
                plan.creates.append(d.chain(key))
            elif left == 0 and chain in known.chains:
                plan.gone.append(chain)

    def commit(self, known: NftState, plan: _ElementPlan, deltas: SetDeltas) -> None:
        """``plan`` was written: bring ``known`` and this index up to date."""
        for name, elements in plan.add.items():
            known.sets[name].update(elements)
        for name, elements in plan.delete.items():
            known.sets[name].difference_update(elements)
        for name, ips in plan.unmap.items():
            for ip in ips:
                del known.maps[name][ip]
        for name, targets in plan.remap.items():
            known.maps[name].update(targets)
        for chain in plan.creates:
            known.chains[chain.name] = chain.fingerprint
            self.groups[chain.name] = plan.keys[chain.name][1]
        for name in plan.gone:
            del known.chains[name], self.groups[name]
        self.sizes.update(plan.moved)
        for name in plan.moved:
            if self.sizes[name] == 0:
                del self.sizes[name]
        for name, changes in plan.pending.items():
            waiting = self.pending[name]
            for ip, key in changes.items():
                if key is None:
                    waiting.pop(ip, None)
                else:
                    waiting[ip] = key
        for name in deltas.keys() & self.loose.keys():
            members = self.loose[name]
            for ip, member in deltas[name].items():
                if member is None:
                    members.discard(ip)
                else:
                    members.add(ip)


def _chain_removals(names: Sequence[str], spec: Callable[..., Json]) -> list[Json]:
    """Remove chains ``names``: all flushed before any is deleted, since a group chain's
    jumps hold the target chains (a chain something jumps to cannot go)."""
    return ([{"flush": {"chain": spec(name=name)}} for name in names]
            + [{"delete": {"chain": spec(name=name)}} for name in names])


def expected_state(want: R.NftTable) -> NftState:
    return NftState(sets={s.name: set(s.elements) for s in want.sets},
                    maps={m.name: dict(m.elements) for m in want.maps},
                    chains={c.name: c.fingerprint for c in want.chains}, bridge_ok=True)


def settled(state: NftState, dispatch: Sequence[R.Dispatch]) -> NftState:
    """``state`` with its pending pods folded into the dispatch maps as
    :meth:`NftablesBackend.tidy` would (each at the group chain of the target sets that
    hold it there, counted present): the state a full sync would leave, when ``state`` is
    the result of pod events.  ``dispatch`` is the layout (the table's)."""
    sets, maps, chains = dict(state.sets), dict(state.maps), dict(state.chains)
    for d in dispatch:
        waiting = sets.get(d.pending)
        if not waiting:
            continue
        sets[d.pending], maps[d.map] = set(), dict(maps.get(d.map, {}))
        for ip in waiting:
            key = d.key_of(ip, state.sets)
            if key:
                chain = d.chain(key)
                maps[d.map][ip] = chain.name
                chains.setdefault(chain.name, chain.fingerprint)
    return NftState(sets, maps, chains, state.bridge_ok)


def _element_changes(plan: _ElementPlan) -> list[ElementCommand]:
    """``plan``'s element changes in the order they must go: additions to sets, deletions
    from sets, map elements removed, then map elements (re)pointed at their chains."""
    def command(delete: bool, name: str, elements: Sequence[tuple[str, str | None]]
                ) -> ElementCommand:
        return ElementCommand(delete, "inet", R.TABLE, name, tuple(elements))

    changes = ((False, plan.add), (True, plan.delete), (True, plan.unmap))
    out = [command(delete, name, [(e, None) for e in sorted(members)])
           for delete, per_set in changes for name, members in sorted(per_set.items())
           if members]
    return out + [command(False, name, sorted(targets.items()))
                  for name, targets in sorted(plan.remap.items()) if targets]


def _elem_value(element: str) -> Any:
    if "/" in element:
        addr, length = element.split("/")
        return {"prefix": {"addr": addr, "len": int(length)}}
    return element


def _differences(expected: NftState, actual: NftState) -> list[str]:
    out = [f"set {n}" for n, v in expected.sets.items() if actual.sets.get(n) != v]
    out += [f"set {n}" for n, v in expected.maps.items() if actual.maps.get(n) != v]
    out += [f"chain {n}" for n, fp in expected.chains.items() if actual.chains.get(n) != fp]
    if not actual.bridge_ok:
        out.append("table bridge weave-npc")
    return out
