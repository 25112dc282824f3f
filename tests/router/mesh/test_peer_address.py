"""Peer addresses are taken or refused as Go's ``InitiateConnections`` does, with its texts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from router.mesh.peer_address import (
    DirectPeer,
    PeerAddressError,
    join_host_port,
    lookup_tcp_port,
    no_such_host,
    parse_peer,
    resolve_peer,
    resolve_peers,
    split_host_port,
)
from tests.router.mesh.connmaker_fixtures import load

CASES: list[dict[str, Any]] = load("addresses.json")


def no_lookup(host: str) -> Sequence[str]:
    raise AssertionError(f"unexpected lookup of {host!r}")


@pytest.mark.parametrize("case", CASES, ids=[repr(c["peers"]) for c in CASES])
def test_addresses_agree_with_go(case: dict[str, Any]) -> None:
    taken, errors = resolve_peers(case["peers"], no_lookup)
    assert list(errors) == case["errors"]
    assert [(p.peer, p.ip, p.port, p.target_address()) for p in taken] == [
        (t["peer"], t["ip"], t["port"], t["target"]) for t in case["taken"] or []]


def test_the_capture_texts() -> None:
    """The texts the Go weaver answered to POST /connect (tests/interop/data)."""
    taken, errors = resolve_peers(["1.2.3.4:99999", "x:y:z"], no_lookup)
    assert taken == ()
    assert "\n".join(errors) == ("address 99999: invalid port\n"
                                 "address x:y:z:0: too many colons in address")

    def lookup(host: str) -> Sequence[str]:
        raise no_such_host(host)

    assert resolve_peers(["not an address"], lookup)[1] == (
        "lookup not an address: no such host",)


@pytest.mark.parametrize(("answer", "peer", "expected"), [
    (["10.1.0.1"], "node1", "10.1.0.1"),
    (["fd00::1", "10.1.0.1", "10.1.0.2"], "node1:7000", "10.1.0.1"),
    (["fd00::1", "fd00::2"], "node1", "fd00::1"),
    (["10.1.0.1", "fd00::1"], "[node1]", "fd00::1"),
    (["::ffff:10.1.0.9"], "node1", "10.1.0.9"),
    (["junk", "10.1.0.3"], "node1", "10.1.0.3"),
], ids=["one", "first-ipv4", "only-ipv6", "bracket-prefers-ipv6", "v4-mapped", "junk-skipped"])
def test_names_take_the_address_go_would(answer: list[str], peer: str, expected: str) -> None:
    looked_up: list[str] = []

    def lookup(host: str) -> Sequence[str]:
        looked_up.append(host)
        return answer

    resolved = resolve_peer(parse_peer(peer), lookup)
    assert resolved.ip == expected
    assert looked_up == ["node1"]


def test_ipv6_targets_are_bracketed_and_literals_need_no_lookup() -> None:
    assert DirectPeer("n", "fd00::1", 0).target_address() == "[fd00::1]:6783"
    assert DirectPeer("n", "10.0.0.1", 0).target_address(7000) == "10.0.0.1:7000"
    assert resolve_peer(parse_peer("10.0.0.1:80"), no_lookup) == DirectPeer("10.0.0.1:80",
                                                                            "10.0.0.1", 80)


def test_an_empty_answer_is_no_such_host() -> None:
    with pytest.raises(PeerAddressError, match=r"^lookup ghost: no such host$"):
        resolve_peer(parse_peer("ghost"), lambda host: [])


@pytest.mark.parametrize(("text", "expected"), [
    ("a:1", ("a", "1")), ("[::1]:2", ("::1", "2")), (":3", ("", "3")), ("a:", ("a", "")),
])
def test_split_host_port(text: str, expected: tuple[str, str]) -> None:
    assert split_host_port(text) == expected
    assert split_host_port(join_host_port(*expected)) == expected


@pytest.mark.parametrize(("service", "port"), [("0", 0), ("", 0), ("SSH", 22), ("00080", 80)])
def test_lookup_tcp_port(service: str, port: int) -> None:
    assert lookup_tcp_port(service) == port


def test_malformed_input_raises_one_error_type() -> None:
    for bad in ["[", "]", "[:", "a:b:c", "[a]:1:2", "[[a]]:1"]:
        with pytest.raises(PeerAddressError):
            split_host_port(bad)
