"""The layering of the three packages, checked on every module's imports.

* ``common`` (what both halves need) imports neither ``npc`` nor ``router``; inside it,
  contract → kernel → service → lab, lower never importing higher.
* ``npc`` and ``router`` never import each other.
* Inside ``npc``: model → compile → render → dataplane/observe → controller → demo → cli.
* Inside each package, pure logic never touches the kernel or the network: npc's model,
  compile and render; the agent's wire formats and protocol state machines (the modules
  listed in ``ROUTER_PURE``); common's contract.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("common", "npc", "router")
LAYERS = {
    "common": {"contract": 0, "kernel": 1, "service": 2, "lab": 3},
    "npc": {"model": 0, "compile": 1, "render": 2, "dataplane": 3, "observe": 3,
            "controller": 4, "demo": 5, "cli": 6},
    "router": {},
}
PURE = {
    "common": {"contract"},
    "npc": {"model", "compile", "render"},
    "router": set(),
}
ROUTER_PURE = ("router/mesh/gob/", "router/mesh/messages.py", "router/mesh/protocol.py",
               "router/mesh/crypto.py", "router/mesh/features.py",
               "router/mesh/handshake.py", "router/mesh/session.py",
               "router/mesh/v1stream.py", "router/mesh/names.py", "router/mesh/summary.py",
               "router/mesh/peers.py", "router/mesh/short_ids.py", "router/mesh/routes.py",
               "router/mesh/topology_delta.py", "router/mesh/topology_delta_codec.py",
               "router/mesh/connection_maker.py", "router/mesh/connection_rules.py",
               "router/mesh/peer_address.py", "router/mesh/go_text.py",
               "router/mesh/topology_codec.py", "router/ipam/messages.py",
               "router/ipam/address.py", "router/ipam/ring_entries.py",
               "router/ipam/ring_merge.py", "router/ipam/ring.py",
               "router/ipam/rangeset.py", "router/ipam/space.py",
               "router/ipam/paxos.py", "router/ipam/config.py", "router/ipam/errors.py",
               "router/ipam/operations.py", "router/ipam/allocator.py",
               "router/api/ipam_http.py",
               "router/agent/identity.py",
               "router/api/model.py", "router/api/govalue.py", "router/api/gofmt.py",
               "router/api/gojson.py", "router/api/gotemplate_lex.py",
               "router/api/gotemplate_parse.py", "router/api/gotemplate.py",
               "router/api/report.py", "router/api/status.py",
               "router/api/status_services.py", "router/api/metrics.py",
               "router/cli/commands.py", "router/datapath/sleeve_frames.py",
               "router/datapath/sleeve_crypto.py", "router/datapath/control.py",
               "router/datapath/sleeve_forwarder.py")
KERNEL_MODULES = {"subprocess", "socket", "ctypes", "pyroute2", "nftables", "asyncio",
                  "select", "selectors", "threading"}
NEVER = {"common": {"npc", "router"}, "npc": {"router"}, "router": {"npc"}}


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def layer(module: str) -> tuple[str, str] | None:
    """(package, layer) of a module of ours whose package has layers."""
    parts = module.split(".")
    if parts[0] not in PACKAGES or len(parts) < 2:
        return None
    return (parts[0], parts[1]) if parts[1] in LAYERS[parts[0]] else None


def is_pure(rel: str) -> bool:
    package, _, rest = rel.partition("/")
    top = rest.split("/")[0].removesuffix(".py")
    if package == "router":
        return rel.startswith(ROUTER_PURE)
    return top in PURE[package]


MODULES = sorted(p.relative_to(ROOT).as_posix() for package in PACKAGES
                 for p in (ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("rel", MODULES)
def test_layering(rel: str) -> None:
    package = rel.split("/")[0]
    parts = Path(rel).with_suffix("").parts
    own = layer(".".join(parts))
    for module in imports(ROOT / rel):
        top = module.split(".")[0]
        assert top not in NEVER[package], f"{rel} ({package}) imports {module}"
        other = layer(module)
        if own is not None and other is not None and other[0] == own[0]:
            ranks = LAYERS[own[0]]
            assert ranks[other[1]] <= ranks[own[1]], (
                f"{rel} ({own[1]}) imports {module} ({other[1]}), a higher layer")
        if is_pure(rel):
            assert top not in KERNEL_MODULES, f"{rel} is pure logic but imports {module}"


def test_every_pure_router_module_exists() -> None:
    for rel in ROUTER_PURE:
        assert (ROOT / rel).exists(), f"{rel} is listed as pure but does not exist"


def test_the_check_sees_every_package() -> None:
    assert {m.split("/")[0] for m in MODULES} == set(PACKAGES)


TEST_MODULES = sorted(p.relative_to(ROOT).as_posix() for d in ("tests", "bench")
                      for p in (ROOT / d).rglob("*.py"))


@pytest.mark.parametrize("rel", TEST_MODULES)
def test_no_module_imports_a_test_module(rel: str) -> None:
    """Helpers live in support modules (tests/support/, tests/cluster.py...), never in a
    test module another one imports."""
    for module in imports(ROOT / rel):
        last = module.split(".")[-1]
        assert not (module.startswith("tests.") and last.startswith("test_")), (
            f"{rel} imports the test module {module}")
