"""Loading the Go-generated topology fixtures (tests/router/fixtures/topology/*.json).

They come from tests/router/fixtures/gen/topology/generate.sh, which runs the mesh
package vendored by weave 2.8.1.
"""

from __future__ import annotations

import json
import random
from functools import cache
from pathlib import Path
from typing import Any

from router.mesh.names import PeerName
from router.mesh.routes import Topology
from router.mesh.summary import ConnectionSummary, PeerSummary

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "topology"


@cache
def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def name(text: str) -> PeerName:
    return PeerName.parse(text)


def connection(raw: dict[str, Any]) -> ConnectionSummary:
    return ConnectionSummary(name(raw["remote"]), raw["addr"], raw["outbound"], raw["established"])


def summary(raw: dict[str, Any]) -> PeerSummary:
    return PeerSummary(name(raw["name"]), raw["nickname"], raw["uid"], raw["version"],
                       raw["short_id"], raw["has_short_id"],
                       tuple(connection(c) for c in raw["connections"]))


def topology_of(peers: list[dict[str, Any]]) -> Topology:
    """Peer → remote → established, with placeholders for names only referenced."""
    topo: dict[PeerName, dict[PeerName, bool]] = {}
    for raw in peers:
        topo[name(raw["name"])] = {name(c["remote"]): c["established"]
                                   for c in raw["connections"]}
    for conns in list(topo.values()):
        for remote in conns:
            topo.setdefault(remote, {})
    return topo


class ScriptedRandom(random.Random):
    """A random source whose ``randrange`` answers come from a script first.

    The Go fixtures record which short ID Go's ``chooseShortID`` picked (it uses
    crypto/rand); scripting that value makes our table pick the same one.
    """

    def __init__(self) -> None:
        super().__init__(0)
        self.script: list[int] = []

    def randrange(self, start: int, stop: int | None = None, step: int = 1) -> int:
        # The int | None = None default mirrors random.Random's signature.
        if self.script:
            return self.script.pop(0)
        return super().randrange(start, stop, step)
