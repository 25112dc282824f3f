"""The layering of npc, checked: a lower layer never imports a higher one.

model → compile → render → dataplane/observe → controller → lab → cli.  Pure logic
(model, compile, render) never touches the kernel; only dataplane and observe do.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "npc"
LAYERS = {"model": 0, "compile": 1, "render": 2, "dataplane": 3, "observe": 3,
          "controller": 4, "lab": 5, "cli": 6}
PURE = {"model", "compile", "render"}
KERNEL_MODULES = {"subprocess", "socket", "ctypes", "pyroute2", "nftables"}


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "npc" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in LAYERS else None


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


MODULES = sorted(p for p in ROOT.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(ROOT)) for p in MODULES])
def test_lower_layers_never_import_higher_ones(path: Path) -> None:
    rel = path.relative_to(ROOT)
    own = rel.parts[0] if len(rel.parts) > 1 else rel.stem
    if own not in LAYERS:
        return
    for module in imports(path):
        other = layer_of(module)
        assert other is None or LAYERS[other] <= LAYERS[own], (
            f"npc/{rel} ({own}) imports {module} ({other})")
        if own in PURE:
            assert module.split(".")[0] not in KERNEL_MODULES, (
                f"npc/{rel} is pure logic but imports {module}")
