"""Golden kernel state: apply representative policies in a fresh network namespace and
compare ``iptables-save`` / ``ipset save`` with checked-in text, for both iptables
flavours.  Regenerate with ``NPC_UPDATE_GOLDEN=1`` after an intended change, and review
the diff like code."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from common.kernel.exec import SubprocessRunner
from common.lab.netns import scratch_netns
from npc.compile.compiler import compile_ruleset
from npc.dataplane.iptables import IptablesBackend
from npc.model.load import load_files
from tests.support.golden import INPUT, check, normalise_ipset, normalise_iptables, without_comments

pytestmark = pytest.mark.kernel  # network namespaces, netfilter, real traffic


@pytest.fixture
def netns() -> Iterator[str]:
    with scratch_netns("npcgold") as name:
        yield name


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
