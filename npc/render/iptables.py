"""Ruleset chains → ``iptables-restore --noflush`` input (filter table).

With ``--noflush``, declaring a user chain (``:NAME - [0:0]``) creates it if missing and
flushes it if present, and the whole file is committed as one transaction.  So a sync
rewrites exactly the chains that changed, atomically, and leaves every other chain and the
built-in chains' other rules alone.  Each rule's comment ends with `` #<fingerprint>`` so
the chain can later be compared with the desired one by reading comments back, which the
kernel keeps verbatim (rule text itself is normalised by the kernel and by iptables-save).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from npc.compile.ruleset import (
    L4,
    Accept,
    Addr,
    Chain,
    CtState,
    Direction,
    Drop,
    DstLocal,
    InSet,
    Jump,
    Mark,
    Match,
    Nflog,
    PhysDev,
    Return,
    Rule,
    SetMark,
    Verdict,
)

FINGERPRINT = re.compile(r" #([0-9a-f]{10})$")


def _match_args(m: Match) -> list[str]:
    if isinstance(m, CtState):
        return ["-m", "state", "--state", ",".join(m.states)]
    if isinstance(m, Addr):
        return ["-s" if m.direction is Direction.SRC else "-d", m.cidr]
    if isinstance(m, InSet):
        return ["-m", "set", *(["!"] if m.negate else []), "--match-set", m.set_name,
                m.direction.value]
    if isinstance(m, L4):
        proto = m.protocol.value.lower()
        args = ["-p", proto]
        if m.port_low is not None:
            high = m.port_high if m.port_high is not None else m.port_low
            port = str(m.port_low) if high == m.port_low else f"{m.port_low}:{high}"
            args += ["-m", proto, "--dport", port]
        return args
    if isinstance(m, PhysDev):
        side = "--physdev-in" if m.is_in else "--physdev-out"
        return ["-m", "physdev", side, m.port, "--physdev-is-bridged"]
    if isinstance(m, DstLocal):
        return ["-m", "addrtype", "--dst-type", "LOCAL"]
    if isinstance(m, Mark):
        return ["-m", "mark", *(["!"] if m.negate else []), "--mark",
                f"{m.value:#x}/{m.mask:#x}"]
    raise TypeError(f"no iptables form for {m!r}")


def _verdict_args(v: Verdict) -> list[str]:
    if isinstance(v, Accept):
        return ["-j", "ACCEPT"]
    if isinstance(v, Drop):
        return ["-j", "DROP"]
    if isinstance(v, Return):
        return ["-j", "RETURN"]
    if isinstance(v, Jump):
        return ["-j", v.chain]
    if isinstance(v, Nflog):
        return ["-j", "NFLOG", "--nflog-group", str(v.group)]
    if isinstance(v, SetMark):
        return ["-j", "MARK", "--set-xmark", f"{v.value:#x}/{v.mask:#x}"]
    raise TypeError(f"no iptables form for {v!r}")


def comment_text(rule: Rule) -> str:
    # iptables-restore has no escape for every character: keep the text plain.
    text = re.sub(r'["\\\n\r]', "'", rule.comment)
    return f"{text} #{rule.fingerprint}"


def rule_args(rule: Rule) -> list[str]:
    args: list[str] = []
    for m in rule.matches:
        args += _match_args(m)
    args += ["-m", "comment", "--comment", comment_text(rule)]
    return args + _verdict_args(rule.verdict)


def _quote(arg: str) -> str:
    return f'"{arg}"' if (" " in arg or not arg) else arg


def rule_line(chain: str, rule: Rule) -> str:
    return " ".join(["-A", chain, *(_quote(a) for a in rule_args(rule))])


def render_chains(chains: Iterable[Chain], extra_lines: Iterable[str] = ()) -> str:
    """An ``iptables-restore --noflush`` file that rewrites ``chains`` in one commit.

    ``extra_lines`` (already in restore syntax, e.g. hooks in built-in chains) are placed
    after the chains they may jump to are declared.
    """
    chains = list(chains)
    lines = ["*filter"]
    lines += [f":{c.name} - [0:0]" for c in chains]
    for c in chains:
        lines += [rule_line(c.name, r) for r in c.rules]
    lines += list(extra_lines)
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def fingerprints(chain: Chain) -> tuple[str, ...]:
    return tuple(r.fingerprint for r in chain.rules)
