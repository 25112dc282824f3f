"""``/report?format=``: what Go's weaver answers for templates over captured reports.

tests/router/fixtures/api_go_fixtures.json was written by Go's text/template and
encoding/json (tests/router/fixtures/gen/statusgen) over the captured ``/report`` bodies,
following weave 2.8.1's handler; here the same reports go through our model and template
engine and must give the same status and the same bytes.
"""

from __future__ import annotations

from typing import Any

import pytest

from router.api.report import MUST_SUPPLY_FORMAT, format_report
from tests.router.api.captures import go_fixtures, report_for

CASES = go_fixtures()["templates"]


@pytest.mark.parametrize("case", CASES, ids=[f"{c['report']}:{c['template'][:40]!r}"
                                             for c in CASES])
def test_template_answer_is_gos(case: dict[str, Any]) -> None:
    scenario, phase = case["report"].split("/")
    answer = format_report(report_for(scenario, phase), [case["template"]])
    assert (answer.status, answer.body) == (case["status"], case["body"])


def test_the_captured_format_request() -> None:
    """The capture's own ``?format={{.Router.Name}} {{.IPAM.Paxos}}``."""
    answer = format_report(report_for("plain", "before-consensus"),
                           ["{{.Router.Name}} {{.IPAM.Paxos}}"])
    assert (answer.status, answer.body) == (200, "ce:00:00:00:00:01 <nil>")


@pytest.mark.parametrize("formats", [[], ["{{.Version}}", "{{.Version}}"]])
def test_one_format_parameter_is_required(formats: list[str]) -> None:
    answer = format_report(report_for("plain", "before-consensus"), formats)
    assert (answer.status, answer.body) == (400, MUST_SUPPLY_FORMAT)


@pytest.mark.parametrize(("template", "named"), [
    ("{{.Router}}", "*mesh.Status"),
    ("{{.}}", "pointer"),
    ('{{define "x"}}a{{end}}', "{{define}}"),
    ('{{template "x"}}', "{{template}}"),
    ('{{block "x" .}}a{{end}}', "{{block}}"),
    ("{{html .Version}}", "html"),
    ("{{urlquery .Version}}", "urlquery"),
    ("{{slice .Version 1}}", "slice"),
    ("{{call .Version}}", "call"),
    ("{{1+2i}}", "complex"),
    ('{{printf "%#v" .Ready}}', "%#v"),
])
def test_unsupported_constructs_are_refused_by_name(template: str, named: str) -> None:
    answer = format_report(report_for("plain", "before-consensus"), [template])
    assert answer.status == 400
    assert answer.body.startswith("unsupported in weaver's report templates: ")
    assert named in answer.body and answer.body.endswith("\n")


def test_deep_nesting_is_refused_not_crashed() -> None:
    template = "{{" + "(" * 2000 + ".Version" + ")" * 2000 + "}}"
    answer = format_report(report_for("plain", "before-consensus"), [template])
    assert answer.status == 400 and "nested" in answer.body
    shallow = "{{" + "(" * 50 + ".Version" + ")" * 50 + "}}"
    assert format_report(report_for("plain", "before-consensus"), [shallow]).body == "2.8.1"
