"""The jumps from the built-in FORWARD and INPUT chains into npc's chains.

In Weave Net these are installed by weaver (the router) when started with
``--expect-npc``; npc installs them only when asked (``--install-hooks``).  Both call
:func:`hook_restore_lines` so there is one definition.  The block sits at the top of
FORWARD in this order; if any rule is missing or out of place the block is removed and
inserted again, within the same ``iptables-restore`` transaction as npc's chains.
INPUT gets one appended jump so pod → node traffic meets the egress chain.

Without npc's chains filled, rule 2 jumps into an empty ``WEAVE-NPC`` and rules 3-4 log
and drop every new packet toward a pod: policy is fail-closed by construction.
"""

from __future__ import annotations

from common import contract
from npc.compile import names
from npc.compile.layout import forward_hooks, input_hook

__all__ = ["builtin_rules", "forward_hooks", "hook_restore_lines", "hook_restore_text",
           "input_hook"]

def _normalise(rule: str) -> str:
    # iptables-save escapes quotes inside a quoted comment; compare without escapes.
    return rule.replace("\\'", "'").replace('\\"', '"').strip()


def builtin_rules(save_text: str, chain: str) -> list[str]:
    """The rules of a built-in chain in ``iptables-save`` output, in order."""
    prefix = f"-A {chain} "
    return [_normalise(line[len(prefix):]) for line in save_text.splitlines()
            if line.startswith(prefix)]


def hook_restore_lines(save_text: str, bridge: str = contract.BRIDGE) -> list[str]:
    """Restore lines that make FORWARD and INPUT hold the hooks; [] if they already do.

    ``save_text`` is the current ``iptables-save -t filter`` output.
    """
    lines: list[str] = []
    forward = builtin_rules(save_text, "FORWARD")
    wanted = list(forward_hooks(bridge))
    if forward[: len(wanted)] != wanted:
        # Remove every copy of our rules, then insert the block at the top, in order.
        for rule in forward:
            if rule in wanted:
                lines.append(f"-D FORWARD {rule}")
        lines += [f"-I FORWARD {i} {rule}" for i, rule in enumerate(wanted, start=1)]
    if input_hook(bridge) not in builtin_rules(save_text, "INPUT"):
        lines.append(f"-A INPUT {input_hook(bridge)}")
    return lines


def hook_restore_text(save_text: str, bridge: str = contract.BRIDGE) -> str:
    """A complete restore file for the hooks alone (what the router runs); "" if none."""
    lines = hook_restore_lines(save_text, bridge)
    if not lines:
        return ""
    chains = [f":{names.MAIN_CHAIN} - [0:0]", f":{names.EGRESS_CHAIN} - [0:0]"] \
        if f":{names.MAIN_CHAIN} " not in save_text else []
    return "\n".join(["*filter", *chains, *lines, "COMMIT"]) + "\n"
