"""Settings of ``npc run`` / ``weave-npc``: one frozen value built and validated at start.

The flags and defaults are weave-npc's (reference §5), so an existing DaemonSet's args keep
working; ``EXTRA_ARGS`` is put before the command line as weave's launch script did, and
unknown positional arguments are tolerated as before.  Every problem is reported at once,
with where the offending value came from.
"""

from __future__ import annotations

import argparse
import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

LOG_LEVELS = ("debug", "info", "warning", "warn", "error")


@dataclass(frozen=True)
class Settings:
    metrics_addr: tuple[str, int] = ("", 6781)
    log_level: str = "debug"
    log_format: str = "text"
    allow_mcast: bool = True
    node_name: str = ""
    max_list_size: int = 1024
    bridge_port_name: str = "vethwe-bridge"
    kubeconfig: str | None = None
    backend: str = "iptables"
    iptables_mode: str | None = None
    install_hooks: bool = False
    full_check_interval: float = 60.0
    min_sync_interval: float = 0.0
    """Least time between the starts of two syncs.  0: a change is applied at once, and
    whatever arrives during a sync is batched into the next one (a sync costs what
    changed, so a burst needs no extra delay to coalesce)."""
    sources: dict[str, str] = field(default_factory=dict, compare=False)


class SettingsError(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid settings:\n  " + "\n  ".join(problems))
        self.problems = problems


def _bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "1", "yes", "t"):
        return True
    if lowered in ("false", "0", "no", "f"):
        return False
    raise argparse.ArgumentTypeError(f"not a boolean: {text!r}")


def add_run_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metrics-addr", default=":6781",
                   help="address of the metrics and health server (default :6781)")
    p.add_argument("--log-level", default="debug", help="debug, info, warning or error")
    p.add_argument("--log-format", default="text", choices=("text", "json"),
                   help="text: weave's line format; json: one object per line")
    p.add_argument("--allow-mcast", default=True, type=_bool, nargs="?", const=True,
                   metavar="BOOL", help="allow all multicast traffic (default true)")
    p.add_argument("--node-name", default="", help="this node's name (default $HOSTNAME)")
    p.add_argument("--max-list-size", default=1024, type=int,
                   help="size of list:set ipsets (default 1024)")
    p.add_argument("--bridge-port-name", default="vethwe-bridge",
                   help="bridge port toward the router (default vethwe-bridge)")
    p.add_argument("--kubeconfig", default=None,
                   help="kubeconfig file (default: in-cluster service account, then "
                        "$KUBECONFIG, then ~/.kube/config)")
    p.add_argument("--backend", default="iptables", choices=("iptables", "nftables", "auto"),
                   help="kernel backend (default iptables; auto: nftables unless iptables "
                        "is configured or already in use)")
    p.add_argument("--install-hooks", action="store_true",
                   help="install weaver's FORWARD/INPUT hooks (normally weaver does)")
    p.add_argument("--full-check-interval", default=60.0, type=float,
                   help="seconds between full comparisons of the kernel with the desired "
                        "state (default 60)")
    p.add_argument("args", nargs="*", help=argparse.SUPPRESS)  # tolerated, as before


def command_line(argv: Sequence[str], env: Mapping[str, str]) -> list[str]:
    """argv with ``EXTRA_ARGS`` put first, as weave's launch script did, so the container's
    own args override it (scripts/launch.sh does the same and unsets the variable)."""
    return [*shlex.split(env.get("EXTRA_ARGS", "")), *argv]


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"{text!r} is not host:port (e.g. :6781 or 127.0.0.1:6781)")
    return host.strip("[]"), int(port)


def build(args: argparse.Namespace, env: Mapping[str, str],
          given: set[str]) -> Settings:
    """Validate parsed flags and the environment; raise SettingsError listing every
    problem.  ``given`` names the flags present on the command line."""
    problems: list[str] = []
    sources = {name: ("flag" if name in given else "default")
               for name in ("metrics_addr", "log_level", "node_name", "kubeconfig")}
    try:
        metrics = _address(args.metrics_addr)
    except ValueError as exc:
        problems.append(f"--metrics-addr ({sources['metrics_addr']}): {exc}")
        metrics = ("", 6781)
    level = args.log_level.lower()
    if level not in LOG_LEVELS:
        problems.append(f"--log-level ({sources['log_level']}): {args.log_level!r} is not "
                        f"one of {', '.join(LOG_LEVELS)}")
    node = args.node_name
    if not node:
        node = env.get("HOSTNAME", "")
        sources["node_name"] = "environment HOSTNAME"
    if not node:
        problems.append("--node-name: not given and $HOSTNAME is empty")
    if args.max_list_size < 1:
        problems.append(f"--max-list-size: {args.max_list_size} must be positive")
    mode = env.get("IPTABLES_BACKEND") or None
    if mode not in (None, "nft", "legacy"):
        problems.append(f"IPTABLES_BACKEND (environment): {mode!r} must be nft or legacy")
    if args.full_check_interval <= 0:
        problems.append("--full-check-interval must be positive")
    if problems:
        raise SettingsError(problems)
    return Settings(
        metrics_addr=metrics, log_level=level, log_format=args.log_format,
        allow_mcast=args.allow_mcast, node_name=node, max_list_size=args.max_list_size,
        bridge_port_name=args.bridge_port_name, kubeconfig=args.kubeconfig,
        backend=args.backend, iptables_mode=mode, install_hooks=args.install_hooks,
        full_check_interval=args.full_check_interval, sources=sources)


def given_flags(argv: Sequence[str]) -> set[str]:
    return {a[2:].split("=", 1)[0].replace("-", "_") for a in argv if a.startswith("--")}


def from_environment(argv: Sequence[str], env: Mapping[str, str] | None = None
                     ) -> Settings:
    env = os.environ if env is None else env
    full = command_line(argv, env)
    parser = argparse.ArgumentParser(prog="weave-npc")
    add_run_flags(parser)
    return build(parser.parse_args(full), env, given_flags(full))
