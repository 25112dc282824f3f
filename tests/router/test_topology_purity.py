"""The topology modules are pure: no I/O, no asyncio, no clock; only these imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

MESH = Path(__file__).resolve().parents[2] / "router" / "mesh"
MODULES = ["names.py", "summary.py", "short_ids.py", "peers.py", "routes.py",
           "topology_delta.py", "topology_delta_codec.py"]
ALLOWED = {"__future__", "collections", "collections.abc", "dataclasses", "typing", "random",
           "math", "hashlib", "struct", "enum", "itertools", "operator"}


def imported(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize("module", MODULES)
def test_topology_modules_import_only_pure_things(module: str) -> None:
    for name in imported(MESH / module):
        assert name in ALLOWED or name.startswith("router.mesh."), f"{module} imports {name}"
