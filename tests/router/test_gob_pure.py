"""The gob codec and the message schemas are pure: no I/O, and nothing above them.

They sit at the bottom of the router's layers (mesh wire formats, IPAM
messages), so they import neither the kernel-facing or networking modules nor
any other part of the router.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROUTER = Path(__file__).resolve().parents[2] / "router"
PURE_MODULES = sorted(
    [
        *(ROUTER / "mesh" / "gob").glob("*.py"),
        ROUTER / "mesh" / "messages.py",
        ROUTER / "ipam" / "messages.py",
    ]
)
IO_MODULES = {"asyncio", "socket", "subprocess", "ctypes", "selectors", "threading", "pyroute2"}
ALLOWED_ROUTER = {"router.mesh.gob", "router.mesh.messages"}


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.parametrize("path", PURE_MODULES, ids=[p.name for p in PURE_MODULES])
def test_pure(path: Path) -> None:
    assert path.exists()
    for module in imported_modules(path):
        assert module.split(".")[0] not in IO_MODULES, f"{path.name} imports {module}"
        if module.startswith("router"):
            assert any(module.startswith(a) for a in ALLOWED_ROUTER), f"{path.name}: {module}"
