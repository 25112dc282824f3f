"""Golden kernel state: apply representative policies in a fresh network namespace and
compare ``iptables-save`` / ``ipset save`` with checked-in text, for both iptables
flavours.  Regenerate with ``NPC_UPDATE_GOLDEN=1`` after an intended change, and review
the diff like code."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.kernel.exec import SubprocessRunner
from common.lab.netns import scratch_netns
from npc.compile.compiler import compile_ruleset
from npc.dataplane.iptables import IptablesBackend
from npc.model.load import load_files

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden"
INPUT = [ROOT / "examples", GOLDEN / "extra.yaml"]


@pytest.fixture
def netns() -> Iterator[str]:
    with scratch_netns("npcgold") as name:
        yield name


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


@pytest.mark.parametrize("mode", ["nft", "legacy"])
def test_golden_kernel_state(mode: str, netns: str) -> None:
    loaded = load_files(INPUT)
    assert not loaded.failed
    runner = SubprocessRunner(("ip", "netns", "exec", netns))
    backend = IptablesBackend(runner, mode=mode, install_hooks=True)
    ruleset = compile_ruleset(loaded.state())
    first = backend.apply(ruleset)
    assert first.changed
    check("iptables-save.txt", normalise_iptables(runner([f"iptables-{mode}-save",
                                                          "-t", "filter"])))
    check("ipset-save.txt", normalise_ipset(runner(["ipset", "save"])))
    # Idempotence: the same state again writes nothing at all.
    before = without_comments(runner([f"iptables-{mode}-save", "-c"]))
    second = backend.apply(ruleset)
    assert not second.changed, second
    assert second.commands == 2  # the two reads, no write
    assert without_comments(runner([f"iptables-{mode}-save", "-c"])) == before
