"""Go-generated fixtures for sleeve (tests/router/fixtures/gen/sleeve): datagrams and
decryption results from weave's own frame_crypto.go, and conversations with a real Go
sleeve forwarder behind its overlay switch."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from router.datapath.sleeve_frames import SleeveFrame

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "sleeve.json"


@functools.cache
def go_fixtures() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(FIXTURE.read_text())
    return data


def key() -> bytes:
    return bytes.fromhex(go_fixtures()["key"])


def frames_of(records: list[dict[str, str]]) -> list[SleeveFrame]:
    return [SleeveFrame(int(r["src"], 16), int(r["dst"], 16), bytes.fromhex(r["frame"]))
            for r in records]


def cases(section: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = go_fixtures()[section]
    return found
