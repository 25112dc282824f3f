"""Go-generated fixtures for the mesh wire protocol (tests/router/fixtures/gen/protocol)."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "mesh_protocol.json"


@functools.cache
def go_fixtures() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(FIXTURE.read_text())
    return data


def transcript(name: str) -> dict[str, Any]:
    for case in go_fixtures()["transcripts"]:
        if case["name"] == name:
            found: dict[str, Any] = case
            return found
    raise KeyError(name)
