"""Golden files: checked-in kernel state that tests compare with, regenerated with
``NPC_UPDATE_GOLDEN=1`` after an intended change (and the diff reviewed like code)."""

from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"
INPUT = [ROOT / "examples", GOLDEN / "extra.yaml"]



def normalise_iptables(text: str) -> str:
    lines = [re.sub(r"^\[\d+:\d+\] ", "", line) for line in text.splitlines()
             if line and not line.startswith("#")]
    return "\n".join(re.sub(r" \[\d+:\d+\]$", "", line) for line in lines) + "\n"


def normalise_ipset(text: str) -> str:
    """Hash sets list members in hash order, and initval is random: sort, drop it."""
    creates: list[str] = []
    adds: list[str] = []
    for line in text.splitlines():
        line = re.sub(r" (bucketsize \d+|initval 0x[0-9a-f]+)", "", line)
        (creates if line.startswith("create") else adds).append(line)
    return "\n".join(sorted(creates) + sorted(adds)) + "\n"


def without_comments(save: str) -> str:
    """iptables-save output minus its "# Generated/Completed on <time>" lines."""
    return "\n".join(line for line in save.splitlines() if not line.startswith("#"))


def check(name: str, actual: str) -> None:
    path = GOLDEN / name
    if os.environ.get("NPC_UPDATE_GOLDEN"):
        path.write_text(actual)
    assert path.exists(), f"{path} missing: run with NPC_UPDATE_GOLDEN=1"
    assert actual == path.read_text(), f"{name} differs from the golden file"
