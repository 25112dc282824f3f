"""The ``inet weave-npc`` table as libnftables JSON commands: what takes the kernel from
what it holds to the desired :class:`~npc.render.nft.NftTable` (pure).

libnftables commits a JSON batch as one netlink transaction: the kernel switches from the
old table to the new one atomically, so no packet ever sees half a sync.  A sync writes
only what changed:

* set and verdict-map **elements** are added and deleted one by one (pod churn is a
  handful of element operations, whatever the cluster size);
* a chain whose fingerprint (kept in its first rule's comment) differs is flushed and
  refilled in the same transaction; unchanged chains keep their counters;
* chains and sets nothing wants any more are deleted last, after the map elements that
  jumped to them are gone.

What it changes from is an :class:`NftState`: what the backend last wrote, or what the
kernel reports back (``nft -j list table``, :func:`parse_table`).  Only what the kernel
reports faithfully is read: names of sets, maps and chains, set members, map elements and
each chain's first rule's comment (where the fingerprint is), never rule text, which the
kernel normalises.  The backend (:mod:`npc.dataplane.nftables`) runs the commands.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from npc.render.nft import (
    TABLE,
    Dispatch,
    NftChain,
    NftSet,
    NftTable,
    bridge_table_commands,
    canonical_cidr,
)

Json = dict[str, Any]
SetFill = tuple[str, Collection[str] | Mapping[str, str]]
"""A new set of ``inet weave-npc`` and the addresses it is to hold, or a new verdict map
and the chain each address jumps to."""


@dataclass
class NftState:
    """What ``inet weave-npc`` holds (or is believed to hold), as far as a sync compares
    it: names and contents, never rule text."""

    sets: dict[str, set[str]] = field(default_factory=dict)
    maps: dict[str, dict[str, str]] = field(default_factory=dict)
    chains: dict[str, str] = field(default_factory=dict)  # name → fingerprint ("" unknown)
    bridge_ok: bool = False

    def copy(self) -> NftState:
        """A copy sharing nothing mutable with this state."""
        return NftState({name: set(members) for name, members in self.sets.items()},
                        {name: dict(elements) for name, elements in self.maps.items()},
                        dict(self.chains), self.bridge_ok)


def _element(value: Any) -> str:
    if isinstance(value, dict) and "prefix" in value:
        return canonical_cidr(f"{value['prefix']['addr']}/{value['prefix']['len']}")
    if isinstance(value, dict) and "elem" in value:
        return _element(value["elem"]["val"])
    return str(value)


def parse_table(listing: Json) -> NftState:
    """``nft -j list table inet weave-npc`` as an :class:`NftState` (``bridge_ok`` left
    False: the bridge table is another listing)."""
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
        state.chains[chain] = NftChain(chain, ()).fingerprint
    return state


def expected_state(want: NftTable) -> NftState:
    """What the kernel holds once ``want`` is written."""
    return NftState(sets={s.name: set(s.elements) for s in want.sets},
                    maps={m.name: dict(m.elements) for m in want.maps},
                    chains={c.name: c.fingerprint for c in want.chains}, bridge_ok=True)


def settled(state: NftState, dispatch: Sequence[Dispatch]) -> NftState:
    """``state`` with its pending pods folded into the dispatch maps as
    :meth:`NftablesBackend.tidy <npc.dataplane.nftables.NftablesBackend.tidy>` would (each
    at the group chain of the target sets that hold it there, counted present): the state
    a full sync would leave, when ``state`` is the result of pod events.  ``dispatch`` is
    the layout (the table's)."""
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


def state_differences(expected: NftState, actual: NftState) -> list[str]:
    """What of ``expected`` ``actual`` lacks or holds otherwise, one line each."""
    out = [f"set {n}" for n, v in expected.sets.items() if actual.sets.get(n) != v]
    out += [f"set {n}" for n, v in expected.maps.items() if actual.maps.get(n) != v]
    out += [f"chain {n}" for n, fp in expected.chains.items() if actual.chains.get(n) != fp]
    if not actual.bridge_ok:
        out.append("table bridge weave-npc")
    return out


# ---- commands ----------------------------------------------------------------------------
def table_object(**fields: Any) -> Json:
    """The JSON spec of an object of ``inet weave-npc``: family, table, then ``fields``."""
    return {"family": "inet", "table": TABLE, **fields}


def elem_value(element: str) -> Any:
    """A set element (an address or a CIDR) as libnftables JSON takes it."""
    if "/" in element:
        addr, length = element.split("/")
        return {"prefix": {"addr": addr, "len": int(length)}}
    return element


def set_spec(s: NftSet) -> Json:
    """What ``add set`` takes to create ``s`` (empty)."""
    spec = table_object(name=s.name, type="ipv4_addr", comment=s.comment)
    if s.interval:
        spec["flags"] = ["interval"]
    return spec


def table_commands(want: NftTable, state: NftState, *, bridge_port: str,
                   fills: list[SetFill] | None = None) -> list[Json]:
    """One transaction taking the kernel from ``state`` to ``want`` (the bridge table
    classifying ``bridge_port`` too, unless ``state`` has it); none if nothing differs.
    Given ``fills``, the elements of new sets of plain addresses and of new maps are
    appended there instead, for the backend to write before the transaction over netlink
    (see ``NftablesBackend._declare_and_fill``)."""
    cmds: list[Json] = []
    if not state.bridge_ok:
        cmds += bridge_table_commands(bridge_port)
    cmds.append({"add": {"table": {"family": "inet", "name": TABLE}}})
    cmds += _set_commands(want, state, fills)
    cmds += _map_and_chain_commands(want, state, fills)
    return [] if cmds == [{"add": {"table": {"family": "inet", "name": TABLE}}}] else cmds


def _set_commands(want: NftTable, state: NftState, fills: list[SetFill] | None) -> list[Json]:
    cmds: list[Json] = []
    for s in want.sets:
        have = state.sets.get(s.name)
        if have is None:
            cmds.append({"add": {"set": set_spec(s)}})
            if fills is not None and not s.interval:
                fills.append((s.name, s.elements))
                continue
            have = set()
        adds, dels = sorted(s.elements - have), sorted(have - s.elements)
        if adds:
            cmds.append({"add": {"element": table_object(name=s.name, elem=[
                elem_value(e) for e in adds])}})
        if dels:
            cmds.append({"delete": {"element": table_object(name=s.name, elem=[
                elem_value(e) for e in dels])}})
    return cmds


def _map_and_chain_commands(want: NftTable, state: NftState,
                            fills: list[SetFill] | None) -> list[Json]:
    cmds: list[Json] = []
    wanted_chains = {c.name for c in want.chains}
    for c in want.chains:  # chains first: map elements and rules jump to them
        if c.name not in state.chains:
            spec = table_object(name=c.name)
            if c.hook:
                spec.update(type="filter", hook=c.hook[0], prio=c.hook[1],
                            policy="accept")
            cmds.append({"add": {"chain": spec}})
    for m in want.maps:
        have = state.maps.get(m.name)
        if have is None:
            cmds.append({"add": {"map": table_object(name=m.name, type="ipv4_addr",
                                                     map="verdict")}})
            if fills is not None:
                fills.append((m.name, dict(m.elements)))
                continue
            have = {}
        wanted = dict(m.elements)
        stale = sorted(k for k, v in have.items() if wanted.get(k) != v)
        fresh = sorted(k for k, v in wanted.items() if have.get(k) != v)
        if stale:
            cmds.append({"delete": {"element": table_object(name=m.name, elem=stale)}})
        if fresh:
            cmds.append({"add": {"element": table_object(name=m.name, elem=[
                [k, {"jump": {"target": wanted[k]}}] for k in fresh])}})
    for c in want.chains:
        if state.chains.get(c.name) != c.fingerprint:
            if c.name in state.chains:
                cmds.append({"flush": {"chain": table_object(name=c.name)}})
            cmds += [{"add": {"rule": table_object(chain=c.name, **r)}}
                     for r in c.rules_with_fingerprint()]
    cmds += chain_removals(sorted(set(state.chains) - wanted_chains))
    for name in sorted(set(state.sets) - {s.name for s in want.sets}):
        cmds.append({"delete": {"set": table_object(name=name)}})
    return cmds


def chain_commands(chains: Sequence[NftChain]) -> list[Json]:
    """Create the regular chains ``chains`` with their rules."""
    cmds: list[Json] = [{"add": {"chain": table_object(name=c.name)}} for c in chains]
    return cmds + [{"add": {"rule": table_object(chain=c.name, **r)}} for c in chains
                   for r in c.rules_with_fingerprint()]


def chain_removals(names: Sequence[str]) -> list[Json]:
    """Remove chains ``names``: all flushed before any is deleted, since a group chain's
    jumps hold the target chains (a chain something jumps to cannot go)."""
    return ([{"flush": {"chain": table_object(name=name)}} for name in names]
            + [{"delete": {"chain": table_object(name=name)}} for name in names])
