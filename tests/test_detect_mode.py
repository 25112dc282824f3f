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


@pytest.mark.parametrize(("legacy", "nft", "env", "mode"), [
    (0, 0, {}, "legacy"),
    (10, 50, {}, "legacy"),
    (3, 2, {}, "legacy"),
    (3, 4, {}, "nft"),
    (0, None, {}, "legacy"),
    (12, 0, {"IPTABLES_BACKEND": "nft"}, "nft"),
    (0, 40, {"IPTABLES_BACKEND": "legacy"}, "legacy"),
], ids=["empty-tie", "legacy-ten-or-more", "legacy-more", "nft-more", "nft-missing",
        "env-nft", "env-legacy"])
def test_detect_mode(legacy: int, nft: int | None, env: dict[str, str], mode: str) -> None:
    assert detect_mode(saver(legacy, nft), env) == mode


def test_detect_mode_rejects_unknown_override() -> None:
    with pytest.raises(ValueError, match="IPTABLES_BACKEND"):
        detect_mode(saver(0, 0), {"IPTABLES_BACKEND": "bogus"})
