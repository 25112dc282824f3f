"""The ``/status`` pages against the Go weaver's captured answers, byte for byte.

Each page captured in a phase before anything changed is rendered from the phase's
captured ``/report`` (with the lists Go fills from maps in the order the page shows).
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from router.api.model import ConnectionStatus, LocalConnection, Report, VersionCheck
from router.api.status import (
    TemplateFailure,
    render_connections,
    render_peers,
    render_status,
    render_targets,
)
from router.api.status_services import (
    STANDARD_SECTIONS,
    dns_section,
    ipam_section,
    render_dns,
    render_ipam,
)
from tests.router.api.captures import (
    SCENARIOS,
    Exchange,
    consistent_with_report,
    ordered_like_page,
    ours_differs,
    report_for,
)

RENDERERS = {
    "/status": lambda r: render_status(r, STANDARD_SECTIONS),
    "/status/peers": render_peers,
    "/status/connections": render_connections,
    "/status/targets": render_targets,
    "/status/ipam": render_ipam,
    "/status/dns": render_dns,
}
PAGES = [(e, r) for s in SCENARIOS for e, r in consistent_with_report(s) if e.path in RENDERERS]


def test_the_captures_give_every_page() -> None:
    assert {e.path for e, _ in PAGES} == set(RENDERERS)
    assert len(PAGES) >= 30


@pytest.mark.parametrize(("exchange", "report"), PAGES, ids=[e.key for e, _ in PAGES])
def test_page_is_gos(exchange: Exchange, report: Report) -> None:
    snapshot = ordered_like_page(report, exchange.path, exchange.body)
    try:
        body = RENDERERS[exchange.path](snapshot)
    except TemplateFailure:
        assert exchange.status == 500
        assert exchange.body == "error during template execution\n"
        return
    assert exchange.status == 200
    assert body == exchange.body or ours_differs(exchange, body)


def test_connection_counts_name_states_in_gos_order() -> None:
    report = report_for("plain", "peer-stopped")
    conns = tuple(LocalConnection(f"10.0.0.{i}:6783", True, state, "")
                  for i, state in enumerate(["connecting", "retrying", "pending", "waiting",
                                             "established", "failed", "retrying"]))
    page = render_status(replace(report, router=replace(report.router, connections=conns)))
    assert "    Connections: 7 (1 established, 1 pending, 2 retrying, 1 failed, 1 connecting)\n" \
        in page


def test_no_connections_no_parentheses() -> None:
    report = report_for("plain", "peer-stopped")
    lonely = replace(report.router, connections=(), peers=(replace(
        report.router.peers[0], connections=()),), targets=())
    page = render_status(replace(report, router=lonely))
    assert "    Connections: 0\n          Peers: 1\n" in page
    assert "        Targets: 0\n" in page


def test_pending_peer_connections_are_counted() -> None:
    report = report_for("plain", "peer-stopped")
    peer = report.router.peers[0]
    pending = replace(peer, connections=(*peer.connections,
                                         ConnectionStatus("ce:00:00:00:00:09", "n9",
                                                          "10.0.0.9:6783", True, False)))
    page = render_status(replace(report, router=replace(report.router, peers=(pending,))))
    assert "          Peers: 1 (with 1 established, 1 pending connections)\n" in page
    assert render_peers(replace(report, router=replace(report.router, peers=(pending,)))) \
        .endswith("   -> 10.0.0.9:6783         ce:00:00:00:00:09(n9)                 pending\n")


def test_version_line_and_single_protocol_version() -> None:
    report = report_for("plain", "peer-stopped")
    one = replace(report, router=replace(report.router, protocol_min_version=2),
                  version_check=VersionCheck(enabled=True, success=True, new_version="2.9.0"))
    page = render_status(one)
    assert page.startswith("        Version: 2.8.1 (version 2.9.0 available - please upgrade!)\n")
    assert "       Protocol: weave 2\n" in page


def test_trusted_subnets_listed() -> None:
    report = report_for("plain", "peer-stopped")
    trusting = replace(report, router=replace(report.router,
                                              trusted_subnets=("10.0.0.0/8", "192.168.0.0/16")))
    assert " TrustedSubnets: 10.0.0.0/8, 192.168.0.0/16\n" in render_status(trusting)


def test_connection_attributes_run_together_after_a_space() -> None:
    report = report_for("plain", "peer-stopped")
    conn = LocalConnection("10.0.0.1:6783", False, "established",
                           "encrypted   fastdp ce:00:00:00:00:02(node1)",
                           {"name": "fastdp", "mtu": 1376, "encrypted": True, "a": 0.5})
    page = render_connections(replace(report, router=replace(report.router,
                                                             connections=(conn,))))
    assert page == ("<- 10.0.0.1:6783         established encrypted   fastdp "
                    "ce:00:00:00:00:02(node1) a=0.5encrypted=truemtu=1376\n")


def test_services_absent_add_no_sections_and_their_pages_fail() -> None:
    report = replace(report_for("plain", "peer-stopped"), services={})
    assert ipam_section(report) == dns_section(report) == ""
    assert render_status(report, STANDARD_SECTIONS) == render_status(report)
    for page in (render_ipam, render_dns):
        with pytest.raises(TemplateFailure):
            page(report)


IPAM = {"Paxos": None, "Range": "10.32.0.0/12", "RangeNumIPs": 1048576, "ActiveIPs": 0,
        "DefaultSubnet": "10.32.0.0/12", "Entries": None, "PendingClaims": None,
        "PendingAllocates": None}


@pytest.mark.parametrize(("ipam", "status"), [
    (IPAM, "idle"),
    ({**IPAM, "Paxos": {"Elector": False, "KnownNodes": 0, "Quorum": 0}}, "priming"),
    ({**IPAM, "Paxos": {"Elector": True, "KnownNodes": 1, "Quorum": 2}},
     "awaiting consensus (quorum: 2, known: 1)"),
    ({**IPAM, "Entries": [{"Token": "10.32.0.0", "Size": 1048576, "Peer": "x",
                           "Nickname": "n", "IsKnownPeer": False, "Version": 1}]},
     "all IP ranges owned by unreachable peers - use 'rmpeer' if they are dead"),
    ({**IPAM, "PendingAllocates": ["c1 10.32.0.0-10.47.255.255"],
      "Entries": [{"Token": "10.32.0.0", "Size": 1048576, "Peer": "x", "Nickname": "n",
                   "IsKnownPeer": True, "Version": 1}]},
     "waiting for IP(s) to become available"),
])
def test_ipam_states(ipam: dict[str, object], status: str) -> None:
    report = replace(report_for("plain", "peer-stopped"), services={"IPAM": ipam})
    assert f"         Status: {status}\n" in ipam_section(report)


def test_dns_section_and_page() -> None:
    dns = {"Domain": "weave.local.", "Upstream": ["8.8.8.8", "8.8.4.4"], "Address": "",
           "TTL": 1, "Entries": [
               {"Hostname": "two.weave.local.", "Origin": "ba:98", "ContainerID":
                "83689b8f34e0aaaa", "Address": "10.32.0.2", "Version": 0, "Tombstone": 0},
               {"Hostname": "gone.weave.local.", "Origin": "ba:98", "ContainerID": "x",
                "Address": "10.32.0.3", "Version": 0, "Tombstone": 5}]}
    report = replace(report_for("plain", "peer-stopped"), services={"DNS": dns})
    assert dns_section(report) == ("\n        Service: dns\n         Domain: weave.local.\n"
                                   "       Upstream: 8.8.8.8, 8.8.4.4\n            TTL: 1\n"
                                   "        Entries: 1\n")
    assert render_dns(report) == "two          10.32.0.2       83689b8f34e0 ba:98\n"
