"""Go-generated fixtures for the connection maker (tests/router/fixtures/gen/connmaker)."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "connmaker"


@functools.cache
def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())
