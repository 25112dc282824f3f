"""Go's ``time.Time.String()`` and ``%q`` texts (times from Go's own output)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any

import pytest

from router.mesh.go_text import GoClock, go_quote, go_time_string
from tests.router.mesh.connmaker_fixtures import load

TIMES: list[dict[str, Any]] = load("times.json")


class UnnamedZone(tzinfo):
    """A fixed offset without an abbreviation (Go's ``FixedZone("", offset)``)."""

    def __init__(self, offset: int) -> None:
        self._offset = timedelta(seconds=offset)

    def utcoffset(self, dt: datetime | None) -> timedelta:
        return self._offset

    def dst(self, dt: datetime | None) -> timedelta:
        return timedelta(0)

    def tzname(self, dt: datetime | None) -> str | None:
        return None


def zone_of(case: dict[str, Any]) -> tzinfo:
    if case["zone_name"] == "UTC" and case["zone_offset"] == 0:
        return UTC
    if case["zone_name"]:
        return timezone(timedelta(seconds=case["zone_offset"]), case["zone_name"])
    return UnnamedZone(case["zone_offset"])


@pytest.mark.parametrize("case", TIMES, ids=lambda c: c["text"])
def test_time_strings_agree_with_go(case: dict[str, Any]) -> None:
    assert go_time_string(case["wall_ns"], case["mono_ns"], zone_of(case)) == case["text"]


def test_fixtures_cover_the_branches() -> None:
    texts = [c["text"] for c in TIMES]
    assert any(" m=-" in t for t in texts)
    assert any(c["mono_ns"] is None for c in TIMES)
    assert any(c["mono_ns"] is not None and abs(c["mono_ns"]) >= 10**18 for c in TIMES)
    assert any(re.search(r" \d\d:\d\d:\d\d [+-]", t) for t in texts)  # no fraction


def test_clock_prints_monotonic_instants() -> None:
    """The capture's retry time: 4.364308607 s after the weaver started."""
    wall = int(datetime(2026, 12, 6, 20, 23, tzinfo=UTC).timestamp()) * 1_000_000_000
    clock = GoClock(wall_ns=wall, monotonic_ns=10_000_000_000, started_ns=7_000_000_000)
    instant = clock.monotonic_ns + 1_364_308_607
    assert clock.time_string(instant) == "2026-12-06 20:23:01.364308607 +0000 UTC m=+4.364308607"


@pytest.mark.parametrize(("text", "quoted"), [
    ("plain", '"plain"'), ('a"b\\c', '"a\\"b\\\\c"'), ("\t\n\r\a\b\f\v", '"\\t\\n\\r\\a\\b\\f\\v"'),
    ("\x00\x7f", '"\\x00\\x7f"'), ("é日本", '"é日本"'), ("\u200b\u2028", '"\\u200b\\u2028"'),
    ("\U000e0001", '"\\U000e0001"'), ("\U0001f600", '"\U0001f600"'), (" ", '" "'),
    ("\u00a0", '"\\u00a0"'),
])
def test_go_quote(text: str, quoted: str) -> None:
    assert go_quote(text) == quoted
