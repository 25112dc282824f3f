"""Patching the last compiled ruleset for pod changes, in time proportional to the change.

Pod churn is the common event (pods come and go, gain IPs, change labels), and it changes
set *members* only — unless it changes which rules exist.  Rules depend on pods in exactly
two ways, both detected here, and then the caller compiles in full:

* a policy that selected no pods starts selecting one (or the last one goes): a policy
  that selects nothing has no rules;
* the set of numbers a named port used by some policy resolves to changes (one rule per
  number).

Everything else is decided per set by the predicate the full compile recorded for it
(:class:`npc.compile.compiler.CompileIndex`): the old pod leaves the sets it was in, the
new pod joins the sets it belongs to.  A pod whose IP another pod also holds falls back
to a full compile too (the full compile's fail-closed rule for shared IPs).  A property
test checks that patching always gives exactly the full compile's ruleset.
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, replace

from npc.compile.compiler import (
    CompileIndex,
    Options,
    PodPredicate,
    SetListener,
    compile_with_index,
    pod_member,
)
from npc.compile.ruleset import Member, PolicySummary, Ruleset
from npc.model.objects import ClusterState, ContainerPort, LabelSelector, Pod, Protocol

SetDeltas = dict[str, dict[str, Member | None]]
"""Set name → IP → its member now (added or re-commented), or None (removed)."""


@dataclass(frozen=True)
class PodChange:
    """A pod was added (old None), changed, or deleted (new None)."""

    old: Pod | None
    new: Pod | None


class IncrementalCompiler:
    def __init__(self, options: Options) -> None:
        self.options = options
        self.ruleset: Ruleset | None = None
        self._index: CompileIndex | None = None
        self._members: dict[str, list[Member]] = {}  # set → members sorted by value
        self._ip_owners: Counter[str] = Counter()
        self._ns_labels: dict[str, dict[str, str]] = {}
        self._numbers: Counter[tuple[str, Protocol, int]] = Counter()
        self._summaries: dict[str, PolicySummary] = {}
        self._selectors: dict[str, tuple[str, LabelSelector]] = {}
        self._set_position: dict[str, int] = {}
        self._scoped: dict[str | None, list[tuple[str, PodPredicate]]] = {}

    def full(self, state: ClusterState, on_set: SetListener | None = None) -> Ruleset:
        """Compile everything and remember what patching needs (``on_set``: see
        :data:`npc.compile.compiler.SetListener`)."""
        ruleset, index = compile_with_index(state, self.options, on_set)
        self.ruleset, self._index = ruleset, index
        self._members = {s.name: list(s.members) for s in ruleset.sets
                         if s.name in index.predicates}
        self._ip_owners = Counter(p.ipv4 for p in state.pods if p.ipv4)
        self._ns_labels = {ns.name: ns.label_map for ns in state.namespaces}
        self._numbers = Counter(
            (cp.name, cp.protocol, cp.port) for p in state.pods if p.ipv4
            for cp in _named(p) if (cp.name, cp.protocol) in index.named_ports_used)
        self._summaries = {s.policy: s for s in ruleset.policies}
        self._set_position = {s.name: i for i, s in enumerate(ruleset.sets)}
        self._scoped = {}
        for name, member_of in index.predicates.items():
            self._scoped.setdefault(index.scopes[name], []).append((name, member_of))
        self._selectors = {p.key: (p.namespace, p.pod_selector) for p in state.policies}
        self._policies_in: dict[str, list[str]] = {}
        for p in state.policies:
            self._policies_in.setdefault(p.namespace, []).append(p.key)
        return ruleset

    def patch(self, changes: list[PodChange]) -> tuple[Ruleset, SetDeltas] | None:
        """The ruleset after ``changes`` and, per changed set, its member changes; or None
        when only a full compile can tell (the caller then calls :meth:`full`)."""
        if self.ruleset is None or self._index is None:
            return None
        touched: SetDeltas = {}
        for change in changes:
            if not self._patch_one(change, touched, self._summaries):
                self.ruleset = None  # state diverged: only a full compile is valid now
                return None
        # Only what changed is rebuilt: the cost follows the change, not the cluster.
        sets = list(self.ruleset.sets)
        for name in touched:
            at = self._set_position[name]
            sets[at] = replace(sets[at], members=tuple(self._members[name]))
        self.ruleset = replace(self.ruleset, sets=tuple(sets),
                               policies=tuple(self._summaries.values()))
        return self.ruleset, touched

    def _patch_one(self, change: PodChange, touched: SetDeltas,
                   summaries: dict[str, PolicySummary]) -> bool:
        assert self._index is not None
        old = change.old if change.old is not None and change.old.ipv4 else None
        new = change.new if change.new is not None and change.new.ipv4 else None
        if old is None and new is None:
            return True
        if any(p.namespace not in self._ns_labels for p in (old, new) if p is not None):
            return False  # a namespace we have not seen: its sets do not exist yet
        if old is not None:
            if self._ip_owners[str(old.ipv4)] > 1:
                return False  # leaving a shared IP: the other pod keeps it in its sets
            self._ip_owners[str(old.ipv4)] -= 1
        if new is not None:
            self._ip_owners[str(new.ipv4)] += 1
            if self._ip_owners[str(new.ipv4)] > 1:
                return False  # shared IP: the full compile's fail-closed rule decides
        if not self._numbers_stable(old, new) or not self._targets_stable(old, new, summaries):
            return False
        labels = self._ns_labels.get
        scopes = dict.fromkeys([*(p.namespace for p in (old, new) if p is not None), None])
        for name, member_of in (item for scope in scopes
                                for item in self._scoped.get(scope, ())):
            was = old is not None and member_of(old, lambda ns: labels(ns) or {})
            now = new is not None and member_of(new, lambda ns: labels(ns) or {})
            if was:
                assert old is not None
                _remove(self._members[name], str(old.ipv4))
                touched.setdefault(name, {})[str(old.ipv4)] = None
            if now:
                assert new is not None
                member = pod_member(new)
                _insert(self._members[name], member)
                touched.setdefault(name, {})[member.value] = member
        return True

    def _numbers_stable(self, old: Pod | None, new: Pod | None) -> bool:
        """Named ports used by policies keep resolving to the same set of numbers."""
        assert self._index is not None
        used = self._index.named_ports_used
        for pod, step in ((old, -1), (new, 1)):
            for cp in _named(pod) if pod is not None else ():
                key = (cp.name, cp.protocol, cp.port)
                if (cp.name, cp.protocol) not in used:
                    continue
                before = self._numbers[key]
                self._numbers[key] += step
                if (before == 0) != (self._numbers[key] == 0):
                    return False
        return True

    def _targets_stable(self, old: Pod | None, new: Pod | None,
                        summaries: dict[str, PolicySummary]) -> bool:
        """Update which pods each policy selects; False if a policy starts or stops
        selecting any pod (its rules appear or go)."""
        namespaces = {p.namespace for p in (old, new) if p is not None}
        for key in (k for ns in sorted(namespaces) for k in self._policies_in.get(ns, ())):
            namespace, selector = self._selectors[key]
            leaving = (old is not None and old.namespace == namespace
                       and selector.matches(old.label_map))
            joining = (new is not None and new.namespace == namespace
                       and selector.matches(new.label_map))
            if leaving == joining and (not leaving or (old and old.key) == (new and new.key)):
                continue  # the same pods: most pod events change no policy's targets
            summary = summaries[key]
            targets = list(summary.targets)  # in _pod_order, as the full compile sorts
            if leaving:
                assert old is not None
                targets.remove(old.key)
            if joining:
                assert new is not None
                bisect.insort(targets, new.key, key=_pod_order)
            if (not targets) != (not summary.targets):
                return False
            summaries[key] = replace(summary, targets=tuple(targets))
        return True


def _remove(members: list[Member], value: str) -> None:
    i = bisect.bisect_left(members, value, key=lambda m: m.value)
    if i < len(members) and members[i].value == value:
        del members[i]


def _insert(members: list[Member], member: Member) -> None:
    i = bisect.bisect_left(members, member.value, key=lambda m: m.value)
    if i < len(members) and members[i].value == member.value:
        members[i] = member
    else:
        members.insert(i, member)


def _pod_order(key: str) -> tuple[str, str]:
    namespace, _, name = key.partition("/")
    return namespace, name


def _named(pod: Pod) -> list[ContainerPort]:
    seen: set[tuple[str, Protocol]] = set()
    out = []
    for cp in pod.container_ports:  # the first port of a name wins, as in Selection
        if cp.name and (cp.name, cp.protocol) not in seen:
            seen.add((cp.name, cp.protocol))
            out.append(cp)
    return out

