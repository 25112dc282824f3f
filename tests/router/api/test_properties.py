"""Properties of the rendering over generated snapshots: the JSON report reads back as
the snapshot, and the pages hold what the snapshot holds."""

from __future__ import annotations

import json

from hypothesis import given, settings

from router.api.metrics import connection_metrics
from router.api.model import Report
from router.api.report import format_report, report_json
from router.api.status import (
    CONNECTION_STATES,
    render_connections,
    render_peers,
    render_status,
    render_targets,
)
from tests.router.api.captures import parse_report
from tests.router.api.strategies import reports


@settings(max_examples=80)
@given(reports)
def test_report_json_reads_back_as_the_snapshot(report: Report) -> None:
    text = report_json(report)
    assert parse_report(text) == report
    assert not text.endswith("\n")
    assert "<" not in text and ">" not in text and "&" not in text


@settings(max_examples=60)
@given(reports)
def test_template_json_is_the_reports_json(report: Report) -> None:
    """``{{json .}}`` is the compact form of the same document."""
    answer = format_report(report, ["{{json .}}"])
    assert answer.status == 200
    assert json.loads(answer.body) == json.loads(report_json(report))


@settings(max_examples=60)
@given(reports)
def test_pages_list_what_the_snapshot_holds(report: Report) -> None:
    router = report.router
    assert render_targets(report).splitlines() == list(router.targets)
    connection_lines = render_connections(report).splitlines()
    assert [line.split()[1] for line in connection_lines] == [c.address
                                                              for c in router.connections]
    peer_lines = render_peers(report).splitlines()
    assert len(peer_lines) == len(router.peers) + sum(len(p.connections)
                                                      for p in router.peers)
    page = render_status(report)
    assert f"    Connections: {len(router.connections)}" in page
    assert f"        Targets: {len(router.targets)}\n" in page


@settings(max_examples=60)
@given(reports)
def test_connection_gauge_counts_every_counted_connection(report: Report) -> None:
    gauge, terminations = connection_metrics(report)
    counted = sum(1 for c in report.router.connections if c.state in CONNECTION_STATES)
    assert sum(s.value for s in gauge.samples) == counted
    assert {s.labels["encryption"] for s in gauge.samples} <= {"", "yes"}
    assert terminations.samples[0].value == report.router.termination_count
