"""``npc debug`` on a live node: the kernel's chains and sets next to the desired state.

Kernel rules are matched to desired rules by the fingerprint in their comment, which maps
each one back to the policies and rule indexes it came from; packet counters come from
``iptables-save -c``.  Anything that differs from the desired state is flagged:
rules the kernel has that we do not want, rules we want that the kernel lacks, set
members missing or extra, sets missing or stale.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from npc.compile.ruleset import Rule, Ruleset
from npc.render.ipsets import KernelSet, canonical_member
from npc.render.iptables import FINGERPRINT

_COUNTED = re.compile(r"^\[(\d+):(\d+)\] -A (\S+) (.*)$")
_COMMENT = re.compile(r'--comment (?:"((?:[^"\\]|\\.)*)"|(\S+))')


@dataclass(frozen=True)
class KernelRule:
    chain: str
    packets: int
    bytes: int
    text: str
    fingerprint: str


def parse_counted_save(text: str) -> dict[str, list[KernelRule]]:
    """Our chains in ``iptables-save -c`` output, in order, with counters."""
    chains: dict[str, list[KernelRule]] = {}
    for line in text.splitlines():
        if line.startswith(":WEAVE-NPC"):
            chains.setdefault(line[1:].split()[0], [])
            continue
        m = _COUNTED.match(line)
        if not m or not m.group(3).startswith("WEAVE-NPC"):
            continue
        comment = _COMMENT.search(m.group(4))
        raw = (comment.group(1) or comment.group(2)) if comment else ""
        fp = FINGERPRINT.search(raw.replace('\\"', '"'))
        chains.setdefault(m.group(3), []).append(KernelRule(
            m.group(3), int(m.group(1)), int(m.group(2)), m.group(4),
            fp.group(1) if fp else ""))
    return chains


def _origins(rule: Rule) -> str:
    return "; ".join(str(o) for o in rule.origins)


def render_live(kernel_chains: dict[str, list[KernelRule]], kernel_sets: dict[str, KernelSet],
                desired: Ruleset | None) -> tuple[str, int]:
    """Text for ``npc debug`` on a node, and the number of differences found."""
    out: list[str] = []
    differences = 0
    by_fp: dict[str, dict[str, Rule]] = {}
    if desired is not None:
        by_fp = {c.name: {r.fingerprint: r for r in c.rules} for c in desired.chains}
    else:
        out.append("# desired state unknown (no API access): showing the kernel only")
    out.append("# chains (filter table): packets bytes  rule  <- policy rule")
    chain_names = [c.name for c in desired.chains] if desired else sorted(kernel_chains)
    for name in chain_names:
        rules = kernel_chains.get(name)
        if rules is None:
            out.append(f"{name}  !! MISSING from the kernel")
            differences += 1
            continue
        out.append(f"{name}  ({len(rules)} rules)")
        wanted = by_fp.get(name, {})
        for i, kr in enumerate(rules, start=1):
            match = wanted.get(kr.fingerprint)
            origin = _origins(match) if match else ("" if desired is None else
                                                     "!! NOT in the desired state")
            if desired is not None and match is None:
                differences += 1
            out.append(f"  {i:3} {kr.packets:>9} {kr.bytes:>11}  {kr.text}")
            if origin:
                out.append(f"      <- {origin}")
        have = {kr.fingerprint for kr in rules}
        for fp, rule in wanted.items():
            if fp not in have:
                differences += 1
                out.append(f"      !! MISSING rule #{fp} <- {_origins(rule)}")
    out.append("")
    out.append("# ipsets")
    desired_sets = {s.name: s for s in desired.sets} if desired else {}
    for name in sorted(set(kernel_sets) | set(desired_sets)):
        have_set = kernel_sets.get(name)
        want = desired_sets.get(name)
        label = want.description if want else ""
        if have_set is None:
            out.append(f"{name}  !! MISSING from the kernel ({label})")
            differences += 1
            continue
        if desired is not None and want is None:
            out.append(f"{name}  {have_set.kind}  !! STALE: not in the desired state")
            differences += 1
            continue
        out.append(f"{name}  {have_set.kind}  {label}".rstrip())
        want_members = {canonical_member(m.value) for m in want.members} if want else set()
        for value, comment in sorted(have_set.members.items()):
            flag = "" if (want is None or value in want_members) else "  !! EXTRA"
            differences += bool(flag)
            out.append(f"    {value:<18} {comment}{flag}".rstrip())
        for value in sorted(want_members - set(have_set.members)):
            differences += 1
            out.append(f"    {value:<18} !! MISSING")
    out.append("")
    if desired is not None:
        out.append(f"# {differences} difference(s) from the desired state")
    return "\n".join(out) + "\n", differences
