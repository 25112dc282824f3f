"""Human-readable and JSON views of a Ruleset (what ``npc debug`` prints)."""

from __future__ import annotations

import json
from typing import Any

from npc.compile.ruleset import Ruleset
from npc.render import ipsets as ipset_render
from npc.render.iptables import render_chains, rule_args


def _quoted(args: list[str]) -> str:
    return " ".join(f'"{a}"' if " " in a else a for a in args)


def to_text(ruleset: Ruleset) -> str:
    out: list[str] = []
    if ruleset.problems:
        out.append(f"# problems ({len(ruleset.problems)}): enforced fail-closed")
        out += [f"!  {p}" for p in ruleset.problems]
        out.append("")
    out.append(f"# policies ({len(ruleset.policies)})")
    for p in ruleset.policies:
        selected = ", ".join(p.targets) or "no pods (does nothing)"
        state = "REJECTED, isolates and allows nothing" if p.rejected else f"{p.rules} rules"
        out.append(f"{p.policy}  isolates {'+'.join(p.directions)} of: {selected}; {state}")
    out.append("")
    out.append(f"# ipsets ({len(ruleset.sets)})")
    for s in ruleset.sets:
        out.append(f"{s.name}  {s.kind.value}  {s.description}  [hashed from {s.source!r}]")
        out += [f"    {m.value:<18} {m.comment}".rstrip() for m in s.members]
        if not s.members:
            out.append("    (empty)")
    out.append("")
    out.append("# chains (filter table)")
    for c in ruleset.chains:
        out.append(f"{c.name}  ({len(c.rules)} rules)")
        for i, r in enumerate(c.rules, start=1):
            out.append(f"  {i:3}  {_quoted(rule_args(r))}")
            out.append(f"       from: {'; '.join(str(o) for o in r.origins)}")
    return "\n".join(out) + "\n"


def to_json(ruleset: Ruleset) -> str:
    data: dict[str, Any] = {
        "problems": [{"object": p.obj, "message": p.message} for p in ruleset.problems],
        "policies": [{"policy": p.policy, "directions": list(p.directions),
                      "target_set": p.target_set, "targets": list(p.targets),
                      "rules": p.rules, "rejected": p.rejected} for p in ruleset.policies],
        "sets": [{"name": s.name, "type": s.kind.value, "description": s.description,
                  "source": s.source,
                  "members": [{"value": m.value, "comment": m.comment} for m in s.members]}
                 for s in ruleset.sets],
        "chains": [{"name": c.name, "rules": [
            {"args": rule_args(r), "fingerprint": r.fingerprint,
             "origins": [{"policy": o.policy, "direction": o.direction, "rule": o.rule,
                          "peer": o.peer, "port": o.port, "what": o.what}
                         for o in r.origins]}
            for r in c.rules]} for c in ruleset.chains],
    }
    return json.dumps(data, indent=2, sort_keys=False) + "\n"


def to_restore(ruleset: Ruleset, list_size: int) -> str:
    """The exact input an empty kernel gets: ``ipset restore`` then ``iptables-restore``."""
    return ("# ipset restore\n" + ipset_render.full_script(ruleset.sets, list_size)
            + "# iptables-restore --noflush\n" + render_chains(ruleset.chains))
