"""npc's flags, each declared once (default, environment variable, help), and the frozen
settings value of ``npc run`` / ``weave-npc`` built from them at start.

The flags and defaults are weave-npc's (reference §5), so an existing DaemonSet's args keep
working; ``EXTRA_ARGS`` is put before the command line as weave's launch script did, and
unknown positional arguments are tolerated as before.  ``npc apply`` and ``npc debug``
take the same declarations for the flags they share.  Every problem is reported at once,
with where the offending value came from.
"""

from __future__ import annotations

import argparse
import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from common import contract
from common.service.settings import (
    Flag,
    Resolved,
    SettingsError,
    add_flags,
    build,
    go_booleans,
    log_flags,
    one_of,
    parse_address,
    parse_bool,
    parse_positive_float,
    parse_positive_int,
    resolve,
)
from npc.compile.compiler import Options

BACKENDS = ("iptables", "nftables", "auto")

METRICS_ADDR = Flag("metrics_addr", ("", contract.NPC_METRICS_PORT),
                    "address of the metrics and health server", parse_address,
                    metavar="HOST:PORT")
LOG_LEVEL, LOG_FORMAT = log_flags("debug")
NODE_NAME = Flag("node_name", "", "this node's name", str, env="HOSTNAME")
ALLOW_MCAST = Flag("allow_mcast", True, "allow all multicast traffic", parse_bool,
                   boolean=True)
MAX_LIST_SIZE = Flag("max_list_size", 1024, "size of list:set ipsets", parse_positive_int)
BRIDGE_PORT_NAME = Flag("bridge_port_name", contract.BRIDGE_PORT,
                        "bridge port toward the router", str)
KUBECONFIG = Flag("kubeconfig", None, "kubeconfig file (default: in-cluster service account,"
                  " then $KUBECONFIG, then ~/.kube/config)", str)
BACKEND = Flag("backend", "iptables", "kernel backend: iptables, nftables or auto (nftables "
               "unless iptables is configured or already in use)", one_of(*BACKENDS),
               env=contract.NPC_BACKEND_ENV)
INSTALL_HOOKS = Flag("install_hooks", False, "install weaver's FORWARD/INPUT hooks into "
                     "npc's chains (normally weaver does; iptables backend)", parse_bool,
                     boolean=True)
FULL_CHECK_INTERVAL = Flag("full_check_interval", 60.0, "seconds between full comparisons "
                           "of the kernel with the desired state", parse_positive_float)
IPTABLES_MODE = Flag("iptables_mode", None, "iptables flavour: nft or legacy (default: the "
                     "one whose tables hold rules)", one_of("nft", "legacy"),
                     env="IPTABLES_BACKEND", flag="--iptables-mode")

POLICY_FLAGS = (ALLOW_MCAST, BRIDGE_PORT_NAME, MAX_LIST_SIZE)
"""What the compile depends on: every command that compiles takes them."""
RUN_FLAGS = (METRICS_ADDR, LOG_LEVEL, LOG_FORMAT, NODE_NAME, *POLICY_FLAGS, KUBECONFIG,
             BACKEND, INSTALL_HOOKS, FULL_CHECK_INTERVAL, IPTABLES_MODE)


@dataclass(frozen=True)
class Settings:
    metrics_addr: tuple[str, int] = METRICS_ADDR.default
    log_level: str = LOG_LEVEL.default
    log_format: str = LOG_FORMAT.default
    allow_mcast: bool = ALLOW_MCAST.default
    node_name: str = NODE_NAME.default
    max_list_size: int = MAX_LIST_SIZE.default
    bridge_port_name: str = BRIDGE_PORT_NAME.default
    kubeconfig: str | None = KUBECONFIG.default
    backend: str = BACKEND.default
    iptables_mode: str | None = IPTABLES_MODE.default
    install_hooks: bool = INSTALL_HOOKS.default
    full_check_interval: float = FULL_CHECK_INTERVAL.default
    min_sync_interval: float = 0.0
    """Least time between the starts of two syncs.  0: a change is applied at once, and
    whatever arrives during a sync is batched into the next one (a sync costs what
    changed, so a burst needs no extra delay to coalesce)."""
    sources: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def options(self) -> Options:
        return options(self.allow_mcast, self.bridge_port_name, self.max_list_size)


def options(allow_mcast: bool, bridge_port: str, max_list_size: int) -> Options:
    return Options(allow_mcast=allow_mcast, bridge_port=bridge_port,
                   max_list_size=max_list_size)


def policy_options(resolved: Resolved) -> Options:
    """The compile's options from resolved :data:`POLICY_FLAGS`."""
    v = resolved.values
    return options(v["allow_mcast"], v["bridge_port_name"], v["max_list_size"])


def command_line(argv: Sequence[str], env: Mapping[str, str]) -> list[str]:
    """argv with ``EXTRA_ARGS`` put first, as weave's launch script did, so the container's
    own args override it (scripts/launch.sh does the same and unsets the variable)."""
    return [*shlex.split(env.get("EXTRA_ARGS", "")), *argv]


def run_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="weave-npc", description=(
        "The weave-npc controller: watches Pods, Namespaces and NetworkPolicies and keeps "
        "this node's kernel in step."))
    add_flags(parser, RUN_FLAGS)
    parser.add_argument("args", nargs="*", help=argparse.SUPPRESS)  # tolerated, as before
    return parser


def from_environment(argv: Sequence[str], env: Mapping[str, str] | None = None
                     ) -> Settings:
    env = os.environ if env is None else env
    given = run_parser().parse_args(go_booleans(command_line(argv, env), RUN_FLAGS))
    resolved = resolve(RUN_FLAGS, given, env)
    if not resolved.values["node_name"]:
        resolved.problems.append("--node-name: not given and $HOSTNAME is empty")
    extra: dict[str, Any] = {}
    return build(Settings, resolved, **extra)


__all__ = ["BACKENDS", "POLICY_FLAGS", "RUN_FLAGS", "Settings", "SettingsError",
           "from_environment", "policy_options", "run_parser"]
