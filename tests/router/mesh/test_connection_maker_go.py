"""The connection maker does what Go's ``connectionMaker`` did, step by step (fixtures from Go).

fixtures/connmaker/scenarios.json: scenarios run through the vendored Go code (backoff
to the cap, terminations long and short, collisions and connections to ourselves,
inbound connections hiding port-less direct peers, forget and replace, discovery from
reported connections, suspended targets that are never retried). After every step the
fixture holds what Go dialled and every target's state, error and interval, the target
lists, the status entries, the termination count and whether a timer was set. Go's
retry delays are random; each scenario is replayed with the smallest, middle and
largest jitter, and must come out the same.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest

from router.mesh.connection_maker import (
    ConnectionMaker,
    OurConnection,
    Plan,
    ReportedConnection,
    TerminationCause,
)
from router.mesh.go_text import GoClock
from router.mesh.names import PeerName
from router.mesh.peer_address import resolve_peers
from tests.router.mesh.connmaker_fixtures import load

SCENARIOS: list[dict[str, Any]] = load("scenarios.json")
START = 5_000 * 1_000_000_000
CLOCK_WALL = 1_765_000_000 * 1_000_000_000
CAUSES = {"collision": TerminationCause.NAME_COLLISION, "self": TerminationCause.CONNECT_TO_SELF}
JITTERS: dict[str, Callable[[int], int]] = {
    "min": lambda n: 0, "mid": lambda n: n // 2, "max": lambda n: n - 1}


def no_lookup(host: str) -> Sequence[str]:
    raise AssertionError(f"the fixtures use IP literals only, not {host}")


class Replay:
    def __init__(self, scenario: dict[str, Any], jitter: Callable[[int], int]) -> None:
        self.maker = ConnectionMaker(PeerName.parse(scenario["ourself"]), jitter=jitter,
                                     discovery=scenario["discovery"], conn_limit=0)
        self.now = START
        self.conns: dict[str, OurConnection] = {}
        self.plan = Plan()

    def connection(self, step: dict[str, Any]) -> OurConnection:
        if step["conn"] in self.conns:
            return self.conns[step["conn"]]
        remote = PeerName.parse(step["remote"]) if step.get("remote") else None
        return OurConnection(len(self.conns) + 1000, step["addr"], step.get("outbound", False),
                             remote)

    def run(self, step: dict[str, Any]) -> Plan:
        op, maker, now = step["op"], self.maker, self.now
        if op == "initiate":
            taken, errors = resolve_peers(step.get("peers", []), no_lookup)
            assert list(errors) == step["errors"]
            return maker.initiate_connections(taken, step.get("replace", False), now)
        if op == "forget":
            return maker.forget_connections(step.get("peers", []), now)
        if op == "created":
            conn = self.conns[step["conn"]] = self.connection(step)
            return maker.connection_created(conn)
        if op == "aborted":
            return maker.connection_aborted(step["addr"], step["error"], now)
        if op == "terminated":
            cause = CAUSES.get(step.get("cause", ""), TerminationCause.OTHER)
            return maker.connection_terminated(self.connection(step), step["error"], now, cause)
        if op == "topology":
            reported = [ReportedConnection(PeerName.parse(peer["name"]),
                                           PeerName.parse(c["remote"]), c["addr"], c["outbound"])
                        for peer in step.get("topology", []) for c in peer["connections"]]
            return maker.topology_changed(reported, now)
        if op == "advance":
            self.now += step["ns"]
            return Plan(next_check_at=self.plan.next_check_at)
        assert op == "tick"
        return maker.tick(now)

    def observed(self, plan: Plan) -> dict[str, Any]:
        targets = self.maker.snapshot()
        clock = GoClock(CLOCK_WALL, self.now, START - 3_000_000_000)
        status = []
        for entry in self.maker.status_entries(clock):
            info = entry.info
            try_after = targets[entry.address].try_after
            if try_after is not None:
                info = info.replace(clock.time_string(try_after), "<T>")
            assert entry.outbound and entry.attrs is None
            status.append([entry.address, entry.state, info])
        return {
            "dialled": sorted(d.address for d in plan.dial),
            "targets": {a: {"state": t.state.value, "last_error": t.last_error,
                            "interval": t.try_interval, "never": t.try_after is None}
                        for a, t in targets.items()},
            "direct": list(self.maker.targets()),
            "active": list(self.maker.targets(active_only=True)),
            "status": status,
            "termination_count": self.maker.termination_count,
            "timer": plan.next_check_at is not None,
        }


@pytest.mark.parametrize("jitter", sorted(JITTERS))
@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s["id"] for s in SCENARIOS])
def test_replay_agrees_with_go(scenario: dict[str, Any], jitter: str) -> None:
    replay = Replay(scenario, JITTERS[jitter])
    for index, step in enumerate(scenario["steps"]):
        plan = replay.run(step)
        replay.plan = plan
        assert plan.refused == ()
        expected = {key: step[key] for key in ("dialled", "targets", "direct", "active",
                                               "status", "termination_count", "timer")}
        assert replay.observed(plan) == expected, f"step {index}: {step['op']}"


def test_fixtures_cover_every_rule() -> None:
    """The scenarios reach every state, status text and retry decision at least once."""
    states, status_states, reasons = set(), set(), set()
    for scenario in SCENARIOS:
        for step in scenario["steps"]:
            states |= {t["state"] for t in step["targets"].values()}
            status_states |= {s[1] for s in step["status"]}
            reasons |= {t["interval"] for t in step["targets"].values()}
    assert states == {"waiting", "attempting", "connected", "suspended"}
    assert status_states == {"failed", "connecting", "retrying"}
    assert 360_000_000_000 in reasons and 2_000_000_000 in reasons
