"""iptables flavour detection, as weave's launch script does it."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from common.kernel.exec import CommandError, Runner
from npc.dataplane.iptables import detect_mode


def saver(legacy: int, nft: int | None) -> Runner:
    def run(argv: Sequence[str], input_text: str | None = None) -> str:
        count = legacy if argv[0] == "iptables-legacy-save" else nft
        if count is None:
            raise CommandError(argv, 1, "", "not available", None)
        return "*filter\n" + "-A FORWARD -j ACCEPT\n" * count + "COMMIT\n"
    return run


@pytest.mark.parametrize(("legacy", "nft", "forced", "mode"), [
    (0, 0, None, "legacy"),
    (10, 50, None, "legacy"),
    (3, 2, None, "legacy"),
    (3, 4, None, "nft"),
    (0, None, None, "legacy"),
    (12, 0, "nft", "nft"),
    (0, 40, "legacy", "legacy"),
], ids=["empty-tie", "legacy-ten-or-more", "legacy-more", "nft-more", "nft-missing",
        "forced-nft", "forced-legacy"])
def test_detect_mode(legacy: int, nft: int | None, forced: str | None, mode: str) -> None:
    assert detect_mode(saver(legacy, nft), forced) == mode


def test_detect_mode_rejects_unknown_override() -> None:
    with pytest.raises(ValueError, match="'bogus'"):
        detect_mode(saver(0, 0), "bogus")
