"""``/metrics``: the weave families against the Go weaver's captured scrapes."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from router.api.metrics import CONTENT_TYPE, WeaveCollector, render_metrics
from router.api.model import LocalConnection, Report
from tests.router.api.captures import SCENARIOS, Exchange, consistent_with_report, report_for

SCRAPES = [(e, r) for s in SCENARIOS for e, r in consistent_with_report(s)
           if e.path == "/metrics"]


def scrape(report: Report) -> str:
    registry = CollectorRegistry()
    registry.register(WeaveCollector(lambda: report))
    return render_metrics(registry).decode()


def test_the_captures_have_scrapes_with_reports() -> None:
    assert len(SCRAPES) >= 4
    assert {e.content_type for e, _ in SCRAPES} == {CONTENT_TYPE}


@pytest.mark.parametrize(("exchange", "report"), SCRAPES, ids=[e.key for e, _ in SCRAPES])
def test_scrape_is_gos(exchange: Exchange, report: Report) -> None:
    assert exchange.body_filter == "lines containing weave_ only"
    assert scrape(report) == exchange.body


def test_failed_and_connecting_targets_are_unknown_and_unencrypted() -> None:
    """The peer-stopped capture has a /metrics after its /report, when the failed
    target existed: both encryption values per (state, type), type unknown."""
    text = scrape(report_for("password", "peer-stopped"))
    assert 'weave_connections{encryption="",state="failed",type="unknown"} 1\n' in text
    assert 'weave_connections{encryption="yes",state="failed",type="unknown"} 0\n' in text
    assert 'weave_connections{encryption="yes",state="established",type="sleeve"} 1\n' in text


def test_waiting_targets_are_not_counted_and_no_connections_no_family() -> None:
    report = report_for("plain", "peer-stopped")
    waiting = (LocalConnection("10.0.0.9:6783", True, "waiting", "until: never"),)
    text = scrape(replace(report, router=replace(report.router, connections=waiting)))
    assert "weave_connections" not in text.replace("weave_connection_terminations", "")
    assert "weave_connection_terminations_total 1\n" in text


def test_unreachable_share_and_no_ipam() -> None:
    report = report_for("plain", "peer-stopped")
    assert "weave_ipam_unreachable_percentage 25\n" in scrape(report)
    bare = scrape(replace(report, services={}))
    assert "weave_ips" not in bare and "weave_ipam" not in bare and "weave_max_ips" not in bare


def test_dns_entries_count_ours() -> None:
    report = report_for("plain", "peer-stopped")
    entries = [{"Hostname": "a", "Origin": report.router.name, "ContainerID": "c",
                "Address": "10.32.0.1", "Version": 0, "Tombstone": 0},
               {"Hostname": "b", "Origin": "someone else", "ContainerID": "c",
                "Address": "10.32.0.2", "Version": 0, "Tombstone": 0},
               {"Hostname": "c", "Origin": report.router.name, "ContainerID": "c",
                "Address": "10.32.0.3", "Version": 0, "Tombstone": 7}]
    dns = {"Domain": "weave.local.", "Upstream": [], "Address": "", "TTL": 1,
           "Entries": entries}
    text = scrape(replace(report, services={"DNS": dns}))
    assert "# TYPE weave_dns_entries gauge\nweave_dns_entries 1\n" in text


def test_rendering_other_families_as_go_does() -> None:
    registry = CollectorRegistry()
    counter = Counter("zz_requests", "Requests\nwith \\ newline.", ["path"], registry=registry)
    counter.labels(path='a"b').inc(3)
    gauge = Gauge("aa_value", "Value.", registry=registry)
    gauge.set(math.inf)
    histogram = Histogram("mm_seconds", "Time.", buckets=[0.5], registry=registry)
    histogram.observe(0.25)
    text = render_metrics(registry).decode()
    assert text.index("aa_value") < text.index("mm_seconds") < text.index("zz_requests")
    assert "# HELP zz_requests_total Requests\\nwith \\\\ newline.\n" in text
    assert 'zz_requests_total{path="a\\"b"} 3\n' in text
    assert "aa_value +Inf\n" in text
    assert 'mm_seconds_bucket{le="0.5"} 1\nmm_seconds_bucket{le="+Inf"} 1\n' in text
    assert "_created" not in text


def test_registering_does_not_take_a_snapshot() -> None:
    def refuse() -> Report:
        raise AssertionError("snapshot taken at registration")
    CollectorRegistry().register(WeaveCollector(refuse))
