"""Weave's fixed names: what the agent (``router``) and the policy controller (``npc``) must
agree on, and what an existing Weave Net node already has, so that either half can replace
the Go original's on its own.

The agent creates the bridge and its port and hooks the bridge's traffic into npc's
chains; npc fills those chains (or its nftables table) and logs what they block to the
NFLOG group; both serve their metrics on their own ports.
"""

from __future__ import annotations

from typing import Final

BRIDGE: Final = "weave"
"""The Linux bridge every pod on a node is attached to."""
BRIDGE_PORT: Final = "vethwe-bridge"
"""The bridge's port toward the agent's data path (traffic from and to other nodes)."""

NPC_CHAIN: Final = "WEAVE-NPC"
"""Where the agent's FORWARD hook sends traffic going out on the bridge (to pods)."""
NPC_EGRESS_CHAIN: Final = "WEAVE-NPC-EGRESS"
"""Where the agent's FORWARD and INPUT hooks send traffic coming in on the bridge."""
NPC_BACKEND_ENV: Final = "NPC_BACKEND"
"""The DaemonSet gives both containers the same value (iptables or nftables): the agent
installs its iptables hooks only for the iptables backend."""

NFLOG_GROUP: Final = 86
"""npc logs the new connections it blocks to this group."""
NPC_EGRESS_MARK: Final = 0x40000
"""npc marks packets an egress rule allowed (clear of kube-proxy's 0x4000 and 0x8000)."""
IPSEC_MARK: Final = 0x20000
"""The agent's mark for traffic its IPsec policy encrypts."""

MESH_PORT: Final = 6783
"""TCP: the mesh's control connections; UDP: the sleeve overlay."""
API_PORT: Final = 6784
"""TCP on 127.0.0.1: the agent's HTTP API (CNI plugin, ``weave`` CLI); UDP: VXLAN."""
ROUTER_METRICS_PORT: Final = 6782
NPC_METRICS_PORT: Final = 6781
DB_PREFIX: Final = "/weavedb/weave-net"
"""Where the agent keeps its state (``--db-prefix``)."""
