"""Tie-break, add-connection verdicts, remote identity and accept rate (fixtures from Go).

fixtures/connmaker/rules.json holds Go's ``breakTie`` results, ``handleAddConnection``
run on a local peer with a duplicate and/or other connections under a limit (which
connection it shut down and with what, what it returned), and ``registerRemote`` for
unknown, known, colliding and self remotes.
"""

from __future__ import annotations

from typing import Any

import pytest

from router.mesh.connection_maker import TerminationCause
from router.mesh.connection_rules import (
    ACCEPT_MAX_TOKENS,
    ACCEPT_TOKEN_DELAY,
    AcceptLimiter,
    AddVerdict,
    PeerIdentity,
    RefusalKind,
    add_connection_verdict,
    break_tie,
    connection_added_message,
    is_restarted_peer,
    peer_display,
    register_remote_refusal,
)
from router.mesh.names import PeerName
from tests.router.mesh.connmaker_fixtures import load

RULES: dict[str, Any] = load("rules.json")
OURSELF = PeerIdentity(PeerName.parse("00:00:00:00:00:01"), 1, "self")
KNOWN = {OURSELF.name, PeerName.parse("00:00:00:00:00:02")}
MS = 1_000_000


@pytest.mark.parametrize("case", RULES["tie"], ids=lambda c: f"{c['conn_uid']}-{c['other_uid']}")
def test_tie_break_agrees_with_go(case: dict[str, Any]) -> None:
    assert break_tie(case["conn_uid"], case["other_uid"]).value == case["result"]


@pytest.mark.parametrize("case", RULES["add"], ids=lambda c: "-".join(
    str(c[key]) for key in ("conn_uid", "existing_uid", "others", "limit")))
def test_add_connection_agrees_with_go(case: dict[str, Any]) -> None:
    existing = case["existing_uid"]
    verdict = add_connection_verdict(
        conn_uid=case["conn_uid"], existing_uid=existing,
        connection_count=case["others"] + (existing is not None), conn_limit=case["limit"],
        remote=case["remote"], ourself=case["ourself"])
    assert verdict == AddVerdict(case["existing_closed"], case["refused"])


@pytest.mark.parametrize("case", RULES["register"],
                         ids=lambda c: f"{c['nickname']}-{c['accept_new_peer']}")
def test_register_remote_agrees_with_go(case: dict[str, Any]) -> None:
    remote = PeerIdentity(PeerName.parse(case["name"]), case["uid"], case["nickname"])
    assert (remote.name in KNOWN) == case["known"]
    refusal = register_remote_refusal(OURSELF, remote, remote_known=case["known"],
                                      accept_new_peer=case["accept_new_peer"],
                                      remote_address=case["address"])
    assert (refusal.message if refusal else None) == case["refused"]
    cause = refusal.termination_cause if refusal else None
    assert (cause is TerminationCause.NAME_COLLISION) == case["collision"]
    assert (cause is TerminationCause.CONNECT_TO_SELF) == case["self"]
    if refusal and refusal.kind is RefusalKind.UNKNOWN_PEER:
        assert cause is TerminationCause.OTHER


def test_peer_display_and_added_messages() -> None:
    assert peer_display(PeerName(0xce0000000003), "node2") == "ce:00:00:00:00:03(node2)"
    assert str(OURSELF) == "00:00:00:00:00:01(self)"
    assert connection_added_message(True, True) == "connection added (restarted peer)"
    assert connection_added_message(False, True) == "connection added"
    assert connection_added_message(False, False) == "connection added (new peer)"
    assert is_restarted_peer(7, 8) and not is_restarted_peer(7, 7)
    assert not is_restarted_peer(None, 8)


def test_accept_limiter_allows_a_burst_then_one_per_interval() -> None:
    """A full bucket holds tokens stamped now - 20 x 50 ms ... now; Go's wait() sleeps
    only for a token stamped in the future, so capacity + 1 accepts pass at once."""
    now = 1_000_000 * MS
    limiter = AcceptLimiter(now)
    assert [limiter.wait(now) for _ in range(ACCEPT_MAX_TOKENS + 1)] == [0] * 21
    assert limiter.wait(now) == ACCEPT_TOKEN_DELAY
    assert limiter.wait(now + ACCEPT_TOKEN_DELAY) == ACCEPT_TOKEN_DELAY


def test_accept_limiter_unaligned_clock_waits_less_than_an_interval() -> None:
    now = 1_000_000 * MS + 7 * MS  # Go truncates the full-bucket stamp to 50 ms
    limiter = AcceptLimiter(now)
    assert [limiter.wait(now) for _ in range(ACCEPT_MAX_TOKENS + 1)] == [0] * 21
    assert limiter.wait(now) == ACCEPT_TOKEN_DELAY - 7 * MS


def test_accept_limiter_refills_to_capacity_only() -> None:
    now = 7 * MS
    limiter = AcceptLimiter(now)
    later = now + 3_600_000 * MS  # an hour idle refills the bucket, but no further
    sleeps = [limiter.wait(later) for _ in range(ACCEPT_MAX_TOKENS + 2)]
    assert sleeps[:-1] == [0] * 21
    assert sleeps[-1] > 0


def test_accept_limiter_partial_refill() -> None:
    now = 0
    limiter = AcceptLimiter(now)
    for _ in range(ACCEPT_MAX_TOKENS):
        limiter.wait(now)
    now += 5 * ACCEPT_TOKEN_DELAY  # tokens stamped 0, 50, ..., 250 ms are due
    assert [limiter.wait(now) for _ in range(6)] == [0] * 6
    assert limiter.wait(now) == ACCEPT_TOKEN_DELAY


def test_accept_limiter_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        AcceptLimiter(0, capacity=0)
