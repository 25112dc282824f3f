"""Desired sets + the sets in the kernel → one ``ipset restore`` script (pure).

ipset background: iptables rules refer to a set by its index, so a set cannot be
destroyed while a rule (or a list:set) refers to it, and ``ipset restore`` is not
transactional: it stops at the first failing line.  Hence the order of a sync:

0. only when a set of the wrong type holds a name we need (left by the Go original, whose
   names collided): the rules using it are taken out, then it is destroyed (the kernel
   neither renames nor destroys a set that a rule refers to);
1. this script: create new sets, apply member deltas, and rebuild sets that change
   wholesale in a temporary set that is then swapped in (``swap`` exchanges contents behind
   the names, so rules keep pointing at the name they used) — never a flush in place;
2. ``iptables-restore``: rules now refer only to desired sets;
3. :func:`garbage_script`: destroy the ``weave-`` sets that nothing wants any more.

Hash sets come before list:sets, whose members must exist when they are added.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from npc.compile import names
from npc.compile.ruleset import IpSet, SetKind

MAXELEM = 1048576
"""Room for a very large cluster; hash sets grow on demand, so this costs nothing."""


@dataclass
class KernelSet:
    name: str
    kind: str
    options: tuple[str, ...] = ()
    members: dict[str, str] = field(default_factory=dict)  # value → comment

    @property
    def has_comment(self) -> bool:
        return "comment" in self.options

    @property
    def list_size(self) -> int | None:
        if "size" in self.options:
            return int(self.options[self.options.index("size") + 1])
        return None


def canonical_member(value: str) -> str:
    """A member as ``ipset save`` prints it (a /32 network is printed as the address)."""
    return value[:-3] if value.endswith("/32") else value


def parse_ipset_save(text: str, prefix: str = names.SET_PREFIX) -> dict[str, KernelSet]:
    """Parse ``ipset save`` output, keeping the sets whose name starts with ``prefix``."""
    sets: dict[str, KernelSet] = {}
    for line in text.splitlines():
        if line.startswith("create "):
            parts = line.split()
            if parts[1].startswith(prefix):
                sets[parts[1]] = KernelSet(parts[1], parts[2], tuple(parts[3:]))
        elif line.startswith("add "):
            _, name, rest = line.split(" ", 2)
            if name in sets:
                value, _, tail = rest.partition(" ")
                comment = ""
                m = re.search(r'comment "((?:[^"\\]|\\.)*)"', tail)
                if m:
                    comment = m.group(1)
                sets[name].members[canonical_member(value)] = comment
    return sets


def _create(name: str, kind: SetKind, list_size: int) -> str:
    if kind is SetKind.LIST_SET:
        return f"create {name} list:set size {list_size} comment"
    return f"create {name} {kind.value} family inet hashsize 1024 maxelem {MAXELEM} comment"


def comment_text(comment: str) -> str:
    """A member comment as ipset keeps it (no double quotes or backslashes to escape)."""
    return comment.replace('"', "'").replace("\\", "/")


def _add(name: str, value: str, comment: str, with_comment: bool, exist: bool = False) -> str:
    flag = " -exist" if exist else ""
    if with_comment and comment:
        return f'add{flag} {name} {value} comment "{comment_text(comment)}"'
    return f"add{flag} {name} {value}"


def conflicts(current: dict[str, KernelSet], desired: Sequence[IpSet]) -> list[str]:
    """Desired names held in the kernel by a set of another type (or a list:set too small
    for its members): those must be destroyed and created anew."""
    out = []
    for want in desired:
        have = current.get(want.name)
        if have is None:
            continue
        too_small = (want.kind is SetKind.LIST_SET
                     and (have.list_size or 8) < len(want.members))
        if have.kind != want.kind.value or too_small:
            out.append(want.name)
    return out


def release_script(current: dict[str, KernelSet], doomed: Sequence[str]) -> str:
    """Take ``doomed`` sets out of every list:set holding them, then destroy them."""
    lines = [f"del {s.name} {member}" for s in current.values() if s.kind == "list:set"
             for member in s.members if member in doomed]
    lines += [f"destroy {name}" for name in doomed]
    return "".join(line + "\n" for line in lines)


@dataclass(frozen=True)
class IpsetPlan:
    lines: tuple[str, ...]

    @property
    def script(self) -> str:
        return "\n".join(self.lines) + "\n" if self.lines else ""


def _is_wholesale(changed: int, before: int, after: int) -> bool:
    # More than half of the members change: build aside and swap, instead of a long
    # stream of deltas that leaves the set half-updated while it runs.
    return changed > 16 and changed * 2 > max(before, after)


def plan_ipsets(current: dict[str, KernelSet], desired: Sequence[IpSet], *,
                list_size: int) -> IpsetPlan:
    lines: list[str] = []
    ordered = sorted(desired, key=lambda s: (s.kind is SetKind.LIST_SET, s.name))
    for want in ordered:
        have = current.get(want.name)
        if have is None:
            lines.append(_create(want.name, want.kind, list_size))
            lines += [_add(want.name, m.value, m.comment, True) for m in want.members]
            continue
        wanted = {canonical_member(m.value): m.comment for m in want.members}
        adds = [v for v in wanted if v not in have.members]
        dels = [v for v in have.members if v not in wanted]
        recomment = [v for v in wanted if v in have.members and have.has_comment
                     and have.members[v] != wanted[v]]
        if _is_wholesale(len(adds) + len(dels), len(have.members), len(wanted)):
            tmp = names.temporary_set_name(want.name)
            if tmp in current:
                lines.append(f"destroy {tmp}")
            lines.append(_create(tmp, want.kind, list_size))
            lines += [_add(tmp, m.value, m.comment, True) for m in want.members]
            lines += [f"swap {tmp} {want.name}", f"destroy {tmp}"]
            continue
        lines += [_add(want.name, v, wanted[v], have.has_comment) for v in adds]
        lines += [_add(want.name, v, wanted[v], True, exist=True) for v in recomment]
        lines += [f"del {want.name} {v}" for v in dels]
    return IpsetPlan(tuple(lines))


def garbage(current: dict[str, KernelSet], desired: Iterable[IpSet]) -> list[str]:
    """Our sets that nothing wants any more, list:sets first (they refer to others)."""
    wanted = {s.name for s in desired}
    stale = [s for s in current.values() if s.name not in wanted]
    stale.sort(key=lambda s: (s.kind != "list:set", s.name))
    return [s.name for s in stale]


def destroy_script(set_names: Iterable[str]) -> str:
    return "".join(f"destroy {n}\n" for n in set_names)


def full_script(desired: Sequence[IpSet], list_size: int) -> str:
    """The script that builds every desired set from nothing (``npc debug --format
    restore``, and the floor of the benchmarks)."""
    return plan_ipsets({}, desired, list_size=list_size).script
