"""Stand-ins for the controller's collaborators: a log that records, and backends (the
product's in-memory one) that refuse writes or leave work to tidy, as the real ones may."""

from __future__ import annotations

from typing import Any

from common.kernel.exec import CommandError
from npc.compile.incremental import SetDeltas
from npc.compile.ruleset import Ruleset
from npc.dataplane.backend import ApplyReport
from npc.dataplane.memory import MemoryBackend
from npc.dataplane.nft_runner import NftError


class RecordingLog:
    """A structlog-like logger: every call is recorded as (level, message, fields)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Any:
        return lambda msg, **kw: self.lines.append((level, msg, kw))

    def messages(self, msg: str) -> list[dict[str, Any]]:
        """The fields of every line with this message."""
        return [kw for _, m, kw in self.lines if m == msg]


class FlakyBackend(MemoryBackend):
    """Refuses its next ``fail`` syncs as a held xtables lock makes iptables-restore do."""

    def __init__(self) -> None:
        super().__init__()
        self.fail = 0

    def sync(self, ruleset: Ruleset, *, full_check: bool = False,
             changed_sets: SetDeltas | None = None) -> ApplyReport:
        if self.fail:
            self.fail -= 1
            raise CommandError(["iptables-restore"], 4, "", "Another app is currently "
                               "holding the xtables lock", None)
        return super().sync(ruleset, full_check=full_check, changed_sets=changed_sets)


class UntidyBackend(FlakyBackend):
    """Each sync leaves a pod pending, as the nftables backend's pod events do; a tidy
    folds them all (or, once, fails as a refused netlink transaction)."""

    def __init__(self) -> None:
        super().__init__()
        self.pending = 0
        self.tidies: list[int] = []
        self.fail_tidy = False

    def sync(self, ruleset: Ruleset, *, full_check: bool = False,
             changed_sets: SetDeltas | None = None) -> ApplyReport:
        report = super().sync(ruleset, full_check=full_check, changed_sets=changed_sets)
        self.pending += 1
        return report

    def untidy(self) -> int:
        return self.pending

    def tidy(self) -> ApplyReport | None:
        if self.fail_tidy:
            self.fail_tidy = False
            raise NftError("nft failed (netlink): injected")
        self.tidies.append(self.pending)
        self.pending = 0
        return ApplyReport(ipset_lines=1)
