"""The nftables backend: the ``inet weave-npc`` table, one libnftables transaction a sync.

libnftables (Debian's ``python3-nftables``) takes a JSON batch and commits it as one
netlink transaction: the kernel switches from the old table to the new one atomically,
so no packet ever sees half a sync.  A sync writes only what changed:

* set and verdict-map **elements** are added and deleted one by one (pod churn is a
  handful of element operations, whatever the cluster size);
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
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from npc.compile.compiler import Options, SetListener
from npc.compile.incremental import SetDeltas
from npc.compile.ruleset import Ruleset
from npc.dataplane.exec import CommandError, Runner
from npc.dataplane.iptables import ApplyReport
from npc.render import nft as R

Json = dict[str, Any]


class NftError(Exception):
    """libnftables refused a command; carries the input and its error text."""

    def __init__(self, message: str, commands: list[Json] | None = None) -> None:
        super().__init__(message)
        self.commands = commands or []
        self.retryable = "resource busy" in message.lower()

    def describe(self) -> str:
        return str(self)


NftRunner = Callable[[list[Json]], Json]
"""Runs one JSON batch, returns the parsed JSON output (for list commands)."""


class LibNftables:
    """The libnftables seam (one handle, serialised)."""

    def __init__(self) -> None:
        import nftables  # Debian's python3-nftables (a ctypes wrapper of libnftables)

        self._nft = nftables.Nftables()
        self._nft.set_json_output(True)
        self._nft.set_handle_output(False)
        self._lock = threading.Lock()

    def __call__(self, commands: list[Json]) -> Json:
        with self._lock:
            rc, out, err = self._nft.json_cmd({"nftables": commands})
        if rc != 0:
            raise NftError(f"nft failed ({rc}): {str(err).strip()}", commands)
        return out if isinstance(out, dict) else {}


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
    def __init__(self, run: NftRunner, *, options: Options) -> None:
        self.run = run
        self.options = options
        self._known: NftState | None = None

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

    def desired(self, ruleset: Ruleset) -> R.NftTable:
        any_egress = any("Egress" in p.directions for p in ruleset.policies)
        return R.build_table(ruleset, allow_mcast=self.options.allow_mcast,
                             any_egress=any_egress)

    def apply(self, ruleset: Ruleset, *, install_hooks: bool = False) -> ApplyReport:
        return self.sync(ruleset, install_hooks=install_hooks, full_check=True)

    def prepare(self, *, install_hooks: bool) -> list[str]:
        """Before the first sync: if our table is missing, create it with the static chains
        and empty sets, which drop every new connection to a pod (fail closed)."""
        del install_hooks  # nftables mode needs no iptables hooks
        if self.read_state().chains:
            return []
        from npc.compile.compiler import compile_ruleset
        from npc.model.objects import ClusterState

        self.sync(compile_ruleset(ClusterState(), self.options), full_check=True)
        self._known = None
        return ["inet weave-npc"]

    def sync(self, ruleset: Ruleset, *, install_hooks: bool = False, full_check: bool = False,
             changed_sets: SetDeltas | None = None) -> ApplyReport:
        del install_hooks, changed_sets  # the table is rebuilt in memory and diffed
        known, self._known = self._known, None
        want = self.desired(ruleset)
        if full_check or known is None:
            state = self.read_state()
            drift = _differences(known, state) if known is not None else []
        else:
            state, drift = known, []
        commands = self.commands(want, state)
        report = ApplyReport(commands=2 if (full_check or known is None) else 0, drift=drift)
        if commands:
            self.run(commands)
            report.commands += 1
            report.chains_rewritten = sorted({c["add"]["rule"]["chain"] for c in commands
                                              if "add" in c and "rule" in c["add"]})
            report.ipset_lines = sum(1 for c in commands if any(
                "element" in c.get(v, {}) for v in ("add", "delete")))
        self._known = expected_state(want)
        return report

    def differences(self, ruleset: Ruleset) -> list[str]:
        """What in the kernel differs from ``ruleset`` (for ``npc debug``)."""
        return _differences(expected_state(self.desired(ruleset)), self.read_state())

    def commands(self, want: R.NftTable, state: NftState) -> list[Json]:
        """One transaction taking the kernel from ``state`` to ``want``."""
        cmds: list[Json] = []
        if not state.bridge_ok:
            cmds += R.bridge_table_commands(self.options.bridge_port)
        cmds.append({"add": {"table": {"family": "inet", "name": R.TABLE}}})
        cmds += self._set_commands(want, state)
        cmds += self._map_and_chain_commands(want, state)
        return [] if cmds == [{"add": {"table": {"family": "inet", "name": R.TABLE}}}] else cmds

    def _set_commands(self, want: R.NftTable, state: NftState) -> list[Json]:
        cmds: list[Json] = []
        for s in want.sets:
            have = state.sets.get(s.name)
            if have is None:
                spec = self._t(name=s.name, type="ipv4_addr", comment=s.comment)
                if s.interval:
                    spec["flags"] = ["interval"]
                cmds.append({"add": {"set": spec}})
                have = set()
            adds, dels = sorted(s.elements - have), sorted(have - s.elements)
            if adds:
                cmds.append({"add": {"element": self._t(name=s.name, elem=[
                    _elem_value(e) for e in adds])}})
            if dels:
                cmds.append({"delete": {"element": self._t(name=s.name, elem=[
                    _elem_value(e) for e in dels])}})
        return cmds

    def _map_and_chain_commands(self, want: R.NftTable, state: NftState) -> list[Json]:
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
        for name in sorted(set(state.chains) - wanted_chains):
            cmds += [{"flush": {"chain": self._t(name=name)}},
                     {"delete": {"chain": self._t(name=name)}}]
        for name in sorted(set(state.sets) - {s.name for s in want.sets}):
            cmds.append({"delete": {"set": self._t(name=name)}})
        return cmds

    def sync_compiling(self, compile: Callable[[SetListener | None], Ruleset], *,
                       install_hooks: bool = False, full_check: bool = False
                       ) -> tuple[Ruleset, ApplyReport]:
        """Compile, then sync in one transaction (atomic: nothing is loaded early)."""
        ruleset = compile(None)
        return ruleset, self.sync(ruleset, install_hooks=install_hooks, full_check=full_check)

    def remove_all(self) -> None:
        for family in ("inet", "bridge"):
            with contextlib.suppress(NftError):  # not there: nothing to remove
                self.run([{"delete": {"table": {"family": family, "name": R.TABLE}}}])


def expected_state(want: R.NftTable) -> NftState:
    return NftState(sets={s.name: set(s.elements) for s in want.sets},
                    maps={m.name: dict(m.elements) for m in want.maps},
                    chains={c.name: c.fingerprint for c in want.chains}, bridge_ok=True)


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


def dump_json(listing: Json) -> str:
    return json.dumps(listing, indent=1)
