"""The wire-protocol modules stay sans-IO, and lower ones never import higher ones."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

MESH = Path(__file__).resolve().parents[3] / "router" / "mesh"
WIRE_MODULES = {
    # module: the router.mesh modules it may import
    "protocol": set(),
    "crypto": {"protocol"},
    "v1stream": {"protocol"},
    "features": {"protocol"},
    "session": {"protocol", "crypto", "v1stream"},
    "handshake": {"protocol", "crypto", "v1stream", "features", "session"},
}
IO_MODULES = {"socket", "asyncio", "subprocess", "ctypes", "threading", "selectors", "time",
              "pyroute2", "os"}


def imported(module: str) -> set[str]:
    tree = ast.parse((MESH / f"{module}.py").read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module == "router.mesh":
            found.update(f"router.mesh.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize("module", sorted(WIRE_MODULES))
def test_wire_modules_do_no_io_and_respect_the_layering(module: str) -> None:
    for name in imported(module):
        assert name.split(".")[0] not in IO_MODULES, f"router/mesh/{module}.py imports {name}"
        if name.startswith("router.mesh."):
            assert name.removeprefix("router.mesh.") in WIRE_MODULES[module], (
                f"router/mesh/{module}.py imports {name}")


CLOCKLESS_MODULES = ("connection_maker", "connection_rules", "peer_address", "go_text")
"""Decision logic the runtime drives: time and randomness come in as arguments."""


@pytest.mark.parametrize("module", CLOCKLESS_MODULES)
def test_connection_logic_reads_no_clock_and_draws_no_randomness(module: str) -> None:
    for name in imported(module):
        assert name.split(".")[0] not in IO_MODULES | {"random", "secrets"}, (
            f"router/mesh/{module}.py imports {name}")
