"""``npc debug explain SRC DST PORT[/PROTO]``: the verdict for one connection and the
policies and rules that decide it, walked through the layout this node's kernel holds: the
iptables chains, or the nftables table (``--backend`` to choose when the node holds
neither, e.g. with ``-f`` files on another machine)."""

from __future__ import annotations

import sys
from typing import Any

from common.kernel.exec import SubprocessRunner
from npc.compile.compiler import Options
from npc.compile.interpret import Explanation, explain_connection, format_explanation
from npc.controller.inspect import desired_state
from npc.dataplane.select import in_use
from npc.model.objects import ClusterState, Pod, Protocol
from npc.render.nft import build_table
from npc.render.nft_walk import explain_connection_nft

USAGE = "usage: npc debug explain SRC DST PORT[/PROTO]  (SRC, DST: namespace/pod or an IP)"


def _endpoint(state: ClusterState, text: str) -> tuple[str, Pod | None]:
    """An endpoint's IP and pod: "ns/name" names a pod, anything else is an IP."""
    if "/" in text and not text[0].isdigit():
        for pod in state.pods:
            if pod.key == text:
                if pod.ipv4 is None:
                    raise ValueError(f"pod {text} takes no part in policy (no IPv4 address, "
                                     "finished, or on the host network)")
                return pod.ipv4, pod
        raise ValueError(f"no pod {text}")
    for pod in state.pods:
        if pod.ipv4 == text:
            return text, pod
    return text, None


def _port(text: str) -> tuple[int, Protocol]:
    number, _, proto = text.partition("/")
    if not number.isdigit() or not 0 < int(number) < 65536:
        raise ValueError(f"bad port {text!r}")
    try:
        return int(number), Protocol((proto or "TCP").upper())
    except ValueError:
        raise ValueError(f"bad protocol in {text!r}: use tcp, udp or sctp") from None


def cmd_explain(what: list[str], files: list[str] | None, kubeconfig: str | None,
                options: Options, backend: str = "auto") -> int:
    if len(what) != 4 or what[0] != "explain":
        print(USAGE, file=sys.stderr)
        return 2
    ruleset, state = desired_state(files, kubeconfig, options)
    if ruleset is None or state is None:
        return 2
    try:
        src_ip, src = _endpoint(state, what[1])
        dst_ip, dst = _endpoint(state, what[2])
        port, protocol = _port(what[3])
    except ValueError as exc:
        print(f"npc: error: {exc}", file=sys.stderr)
        return 2
    same_node = bool(src and dst and src.node_name and src.node_name == dst.node_name)
    layout = in_use(backend, SubprocessRunner())
    explanation: Explanation[Any]
    if layout == "nftables":
        table = build_table(ruleset, allow_mcast=options.allow_mcast)
        explanation = explain_connection_nft(table, ruleset, src_ip, dst_ip, port, protocol,
                                             same_node=same_node,
                                             bridge_port=options.bridge_port)
    else:
        explanation = explain_connection(ruleset, src_ip, dst_ip, port, protocol,
                                         same_node=same_node)
    names = f"{what[1]} ({src_ip}) -> {what[2]} ({dst_ip}) {port}/{protocol.value}"
    print(f"# {names}, {'same node' if same_node else 'different nodes'}, "
          f"{layout} layout")
    sys.stdout.write(format_explanation(explanation))
    return 0
