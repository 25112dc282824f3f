"""A pod event's set member changes as element operations on ``inet weave-npc``, worked
out without building the table (pure).

A pod event (the incremental compiler's exact set member changes: no set appeared or
went, no rule changed) needs only element operations: the pod's address goes into or out
of the nft sets of the Ruleset's sets that changed and of the unions holding them, and
the pod leaves its dispatch map's element for the pending set (see :mod:`npc.render.nft`:
an element that jumps would make the kernel validate the whole table).  :class:`Patching`
is the index that maps each change onto the table the last full sync wrote, so a pod
event costs what it changes, not what the cluster holds; a change it cannot map with
certainty (a set without an nft set of its own, a chain it does not know) is left to a
full sync.  The same index later folds the pending pods into the maps
(:meth:`Patching.folding`).  The backend (:mod:`npc.dataplane.nftables`) writes the plans
in one transaction each.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from npc.compile.incremental import SetDeltas
from npc.compile.ruleset import Ruleset
from npc.render.nft import (
    Dispatch,
    NftChain,
    NftTable,
    SetRoles,
    group_chain_name,
    set_roles,
)
from npc.render.nft_diff import (
    Json,
    NftState,
    chain_commands,
    chain_removals,
    elem_value,
    table_object,
)


@dataclass
class ElementPlan:
    """The element operations one batch of set member changes needs, worked out before
    anything is written (by :meth:`Patching.plan` or :meth:`Patching.folding`); once it
    is written, :meth:`Patching.commit` takes it in."""

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
    keys: dict[str, tuple[Dispatch, frozenset[str]]] = field(default_factory=dict)
    """Group chain a pod moved to → its dispatch and key (it may be new)."""
    creates: list[NftChain] = field(default_factory=list)
    """Group chains to create (before the map elements that jump to them)."""
    gone: list[str] = field(default_factory=list)
    """Group chains to remove (after the last map element that jumped to them)."""

    def want(self, known: NftState, name: str, element: str, present: bool) -> None:
        """``element`` is to be in nft set ``name`` or not."""
        if present != (element in known.sets[name]):
            (self.add if present else self.delete)[name].add(element)


@dataclass
class Patching:
    """What turns set member changes into element operations without building the table:
    built on each full sync from the Ruleset and its table, kept in step with what the
    backend believes the kernel holds by every delta sync.  Each changed member costs a
    few dictionary lookups (and one per part of each union holding it)."""

    roles: SetRoles
    dispatch: tuple[Dispatch, ...]
    groups: dict[str, frozenset[str]]
    """Group chain → its key (the target sets its pods are in), both directions."""
    sizes: Counter[str]
    """Group chain → the number of pods the dispatch maps send to it (never 0)."""
    loose: dict[str, set[str]]
    """Union parts without an nft set of their own (default-allow sets) → members."""
    pending: dict[str, dict[str, frozenset[str]]]
    """Dispatch map → the pods in its pending set → the target sets each is in."""

    @classmethod
    def build(cls, ruleset: Ruleset, want: NftTable) -> Patching | None:
        """None when a pod's group could depend on a set without an nft set of its own
        (then every sync takes the full path)."""
        roles = set_roles(ruleset)
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
        """How many pods are pending (see :mod:`npc.render.nft`)."""
        return sum(len(pods) for pods in self.pending.values())

    def plan(self, known: NftState, deltas: SetDeltas) -> ElementPlan | None:
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

        plan = ElementPlan()
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

    def _plan_dispatch(self, plan: ElementPlan, d: Dispatch, known: NftState,
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

    def folding(self, known: NftState) -> ElementPlan:
        """The plan that moves every pending pod into its dispatch map, at the group chain
        of its target sets (created if it is new)."""
        plan = ElementPlan()
        for d in self.dispatch:
            for ip, key in self.pending[d.map].items():
                chain = group_chain_name(d.prefix, key)
                plan.remap[d.map][ip] = chain
                plan.moved[chain] += 1
                plan.keys[chain] = (d, key)
                plan.pending[d.map][ip] = None
                plan.want(known, d.pending, ip, False)
        self._plan_chains(plan, known)
        return plan

    def _plan_chains(self, plan: ElementPlan, known: NftState) -> None:
        """Group chains that gain their first pod are created; those that lose their last
        one go (the full path's table would not have them either)."""
        for chain, change in sorted(plan.moved.items()):
            left = self.sizes[chain] + change
            if left > 0 and chain not in known.chains:
                d, key = plan.keys[chain]
                plan.creates.append(d.chain(key))
            elif left == 0 and chain in known.chains:
                plan.gone.append(chain)

    def commit(self, known: NftState, plan: ElementPlan, deltas: SetDeltas) -> None:
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


class ElementChange(NamedTuple):
    """Add (or delete) ``elements`` of set or map ``name`` of ``inet weave-npc``: each
    (key, the chain a map element jumps to, or None for a set element)."""

    delete: bool
    name: str
    elements: tuple[tuple[str, str | None], ...]


def element_changes(plan: ElementPlan) -> list[ElementChange]:
    """``plan``'s element changes in the order they must go: additions to sets, deletions
    from sets, map elements removed, then map elements (re)pointed at their chains."""
    changes = ((False, plan.add), (True, plan.delete), (True, plan.unmap))
    out = [ElementChange(delete, name, tuple([(e, None) for e in sorted(members)]))
           for delete, per_set in changes for name, members in sorted(per_set.items())
           if members]
    return out + [ElementChange(False, name, tuple(sorted(targets.items())))
                  for name, targets in sorted(plan.remap.items()) if targets]


def plan_commands(plan: ElementPlan) -> list[Json]:
    """``plan`` as one libnftables JSON transaction: new group chains first (map elements
    jump to them), then set and map elements, then the group chains no map element jumps
    to any more."""
    cmds = chain_commands(plan.creates)
    cmds += [{"delete" if c.delete else "add": {"element": table_object(name=c.name, elem=[
        elem_value(key) if chain is None else [key, {"jump": {"target": chain}}]
        for key, chain in c.elements])}} for c in element_changes(plan)]
    return cmds + chain_removals(plan.gone)
