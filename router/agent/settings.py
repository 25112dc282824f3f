"""``weaver``'s flags, each declared once, and its frozen settings value.

The flags are the Go weaver's where they apply to Kubernetes (so an existing DaemonSet's
``EXTRA_ARGS`` keep working), with their defaults and environment variables; peers to
connect to are positional arguments.  ``--password`` may also come from ``WEAVE_PASSWORD``
or, new, from a file (``--password-file``, e.g. a mounted Secret), so that the password
need not sit in the pod's environment.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from common import contract
from common.service.settings import (
    Flag,
    add_flags,
    build,
    go_booleans,
    log_flags,
    parse_address,
    parse_bool,
    parse_positive_float,
    resolve,
)
from router.ipam.config import (
    CONSENSUS,
    DEFAULT_RANGE,
    InitMode,
    parse_init,
    parse_optional_subnet,
)

Subnet = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_port(text: str) -> int:
    port = int(text)
    if not 0 < port < 65536:
        raise ValueError(f"{port} is not a port")
    return port


def parse_subnets(text: str) -> tuple[Subnet, ...]:
    """Comma-separated CIDRs (Go's ``--trusted-subnets``)."""
    subnets = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            subnets.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(f"{part!r} is not a CIDR") from None
    return tuple(subnets)


def parse_optional_address(text: str) -> tuple[str, int] | None:
    return parse_address(text) if text else None


NAME = Flag("name", "", "name of this peer (a MAC address; default: from the weave "
            "bridge, else from the machine's IDs)", str)
NICKNAME = Flag("nickname", "", "nickname of this peer (default: the hostname)", str)
PORT = Flag("port", contract.MESH_PORT, "router port (TCP control, UDP data)", parse_port)
PASSWORD = Flag("password", "", "network password (encrypts the mesh and its data)", str,
                env="WEAVE_PASSWORD")
PASSWORD_FILE = Flag("password_file", "", "read the network password from this file", str)
CONN_LIMIT = Flag("conn_limit", 200, "connection limit (0 for unlimited)", int)
HTTP_ADDR = Flag("http_addr", ("127.0.0.1", contract.API_PORT),
                 "address of the HTTP API (loopback only)", parse_address,
                 env="WEAVE_HTTP_ADDR", metavar="HOST:PORT")
METRICS_ADDR = Flag("metrics_addr", ("0.0.0.0", contract.ROUTER_METRICS_PORT),
                    "address of /metrics, /healthz and /readyz", parse_address,
                    env="WEAVE_METRICS_ADDR", metavar="HOST:PORT")
STATUS_ADDR = Flag("status_addr", None, "address of the read-only status pages (off unless "
                   "set)", parse_optional_address, env="WEAVE_STATUS_ADDR",
                   metavar="HOST:PORT")
NO_SUBNETS: tuple[Subnet, ...] = ()
TRUSTED_SUBNETS = Flag("trusted_subnets", NO_SUBNETS, "comma-separated CIDRs of peers whose "
                       "connections need no data encryption", parse_subnets)
NO_DISCOVERY = Flag("no_discovery", False, "do not connect to peers other peers know of",
                    parse_bool, boolean=True)
DB_PREFIX = Flag("db_prefix", contract.DB_PREFIX, "where the agent keeps its state", str)
LOG_LEVEL, LOG_FORMAT = log_flags("info")
PRINT_PEER_NAME = Flag("print_peer_name", False, "print this host's peer name and exit",
                       parse_bool, boolean=True)
GOSSIP_INTERVAL = Flag("gossip_interval", 30.0, "seconds between complete gossips of each "
                       "channel", float)
NO_INCREMENTAL_TOPOLOGY = Flag("no_incremental_topology", False, "gossip the topology in "
                               "the original's format even to our own peers (each change "
                               "as every changed peer's whole connection list)", parse_bool,
                               boolean=True)
IPALLOC_RANGE = Flag("ipalloc_range", parse_optional_subnet(DEFAULT_RANGE), "range of "
                     "addresses the pods' addresses come from, in CIDR notation (empty: "
                     "no IPAM)", parse_optional_subnet, env="IPALLOC_RANGE", metavar="CIDR")
IPALLOC_INIT = Flag("ipalloc_init", CONSENSUS, "how the ring is made: consensus[=PEERS], "
                    "seed=NAME,NAME... or observer", parse_init, env="IPALLOC_INIT",
                    metavar="MODE")
IPALLOC_DEFAULT_SUBNET = Flag("ipalloc_default_subnet", None, "subnet to allocate within "
                              "by default (default: the whole range)",
                              parse_optional_subnet, metavar="CIDR")
IPALLOC_TIMEOUT = Flag("ipalloc_timeout", 30.0, "seconds an allocation, claim or prime "
                       "may wait (for consensus, or for space from a peer) before it "
                       "fails saying what it waited for", parse_positive_float)
HOST_ROOT = Flag("host_root", "", "where the host's filesystem is mounted (for its "
                 "machine-id)", str, env="HOST_ROOT")

FLAGS = (NAME, NICKNAME, PORT, PASSWORD, PASSWORD_FILE, CONN_LIMIT, HTTP_ADDR, METRICS_ADDR,
         STATUS_ADDR, TRUSTED_SUBNETS, NO_DISCOVERY, DB_PREFIX, LOG_LEVEL, LOG_FORMAT,
         PRINT_PEER_NAME, GOSSIP_INTERVAL, NO_INCREMENTAL_TOPOLOGY, IPALLOC_RANGE,
         IPALLOC_INIT, IPALLOC_DEFAULT_SUBNET, IPALLOC_TIMEOUT, HOST_ROOT)


@dataclass(frozen=True)
class Settings:
    name: str = NAME.default
    nickname: str = NICKNAME.default
    port: int = PORT.default
    password: str = PASSWORD.default
    password_file: str = PASSWORD_FILE.default
    conn_limit: int = CONN_LIMIT.default
    http_addr: tuple[str, int] = HTTP_ADDR.default
    metrics_addr: tuple[str, int] = METRICS_ADDR.default
    status_addr: tuple[str, int] | None = STATUS_ADDR.default
    trusted_subnets: tuple[Subnet, ...] = TRUSTED_SUBNETS.default
    no_discovery: bool = NO_DISCOVERY.default
    db_prefix: str = DB_PREFIX.default
    log_level: str = LOG_LEVEL.default
    log_format: str = LOG_FORMAT.default
    print_peer_name: bool = PRINT_PEER_NAME.default
    gossip_interval: float = GOSSIP_INTERVAL.default
    no_incremental_topology: bool = NO_INCREMENTAL_TOPOLOGY.default
    ipalloc_range: ipaddress.IPv4Network | None = IPALLOC_RANGE.default
    ipalloc_init: InitMode = IPALLOC_INIT.default
    ipalloc_default_subnet: ipaddress.IPv4Network | None = IPALLOC_DEFAULT_SUBNET.default
    ipalloc_timeout: float = IPALLOC_TIMEOUT.default
    host_root: str = HOST_ROOT.default
    peers: tuple[str, ...] = ()
    sources: dict[str, str] = field(default_factory=dict, compare=False)

    def password_bytes(self) -> bytes | None:
        """The network password (None: none; weave treats an empty one as none)."""
        if self.password_file:
            text = Path(self.password_file).read_text().rstrip("\r\n")
            return text.encode() or None
        return self.password.encode() or None

    @property
    def default_subnet(self) -> ipaddress.IPv4Network | None:
        """Where allocations go unless they name a subnet."""
        return self.ipalloc_default_subnet or self.ipalloc_range


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="weaver", description=(
        "The weave agent: the mesh router of Weave Net (peers, gossip, routes) and its "
        "HTTP API."))
    add_flags(p, FLAGS)
    p.add_argument("peers", nargs="*", metavar="PEER", help="peers to connect to "
                   "(host or host:port)")
    return p


def from_arguments(argv: Sequence[str], env: Mapping[str, str] | None = None) -> Settings:
    """``EXTRA_ARGS`` first (as weave's launch script did), then the command line."""
    env = os.environ if env is None else env
    args = parser().parse_args(go_booleans([*shlex.split(env.get("EXTRA_ARGS", "")), *argv],
                                           FLAGS))
    resolved = resolve(FLAGS, args, env)
    if resolved.values["password"] and resolved.values["password_file"]:
        resolved.problems.append("--password and --password-file: give one of them")
    if resolved.values["password_file"] and not Path(resolved.values["password_file"]).is_file():
        resolved.problems.append(f"--password-file: {resolved.values['password_file']} is "
                                 "not a readable file")
    if resolved.values["conn_limit"] < 0:
        resolved.problems.append("--conn-limit: must be 0 (unlimited) or positive")
    if resolved.values["gossip_interval"] <= 0:
        resolved.problems.append("--gossip-interval: must be positive")
    ipam_range = resolved.values.get("ipalloc_range")
    default_subnet = resolved.values.get("ipalloc_default_subnet")
    if default_subnet is not None and ipam_range is None:
        resolved.problems.append("--ipalloc-default-subnet specified without --ipalloc-range")
    elif default_subnet is not None and not default_subnet.overlaps(ipam_range):
        resolved.problems.append(f"--ipalloc-default-subnet: {default_subnet} does not "
                                 f"overlap with the allocation range {ipam_range}")
    return build(Settings, resolved, peers=tuple(args.peers))


__all__ = ["FLAGS", "Settings", "from_arguments", "parser"]
