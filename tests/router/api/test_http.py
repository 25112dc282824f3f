"""The agent's API on a real HTTP server (127.0.0.1, an ephemeral port), against the Go
weaver's captured exchanges: status code, Content-Type and body."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from urllib.parse import urlencode

import pytest
from prometheus_client import CollectorRegistry

from common.service.http import HttpServer
from router.api.http import api_server, register_api, register_status_addr, sniff_content_type
from router.api.metrics import WeaveCollector
from router.api.model import Report
from tests.router.api.captures import (
    SCENARIOS,
    Exchange,
    consistent_with_report,
    exchanges,
    ordered_like_page,
    ours_differs,
    report_for,
)


@dataclass
class Agent:
    """What the routes are given: the snapshot, and connect/forget that record calls."""

    report: Report
    connects: list[tuple[list[str], bool]] = field(default_factory=list)
    forgets: list[list[str]] = field(default_factory=list)
    refusals: dict[str, str] = field(default_factory=dict)

    def snapshot(self) -> Report:
        return self.report

    def connect(self, peers: list[str], replace: bool) -> list[str]:
        self.connects.append((peers, replace))
        return [self.refusals[p] for p in peers if p in self.refusals]

    def forget(self, peers: list[str]) -> None:
        self.forgets.append(peers)


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str | None
    body: str
    headers: dict[str, str]


def request(server: HttpServer, method: str, path: str, body: str | None = None,
            headers: dict[str, str] | None = None) -> Answer:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return Answer(response.status, response.getheader("Content-Type"),
                      response.read().decode(), dict(response.getheaders()))
    finally:
        connection.close()


@pytest.fixture(scope="module")
def shared_agent() -> Agent:
    return Agent(report_for("plain", "peer-stopped"))


@pytest.fixture(scope="module")
def server(shared_agent: Agent) -> Iterator[HttpServer]:
    """One server for the module (stopping one waits for its poll interval)."""
    registry = CollectorRegistry()
    registry.register(WeaveCollector(shared_agent.snapshot))
    server = api_server(("127.0.0.1", 0))
    register_api(server, shared_agent.snapshot, shared_agent.connect, shared_agent.forget,
                 registry)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def agent(shared_agent: Agent) -> Agent:
    """The server's agent, afresh for each test."""
    fresh = Agent(report_for("plain", "peer-stopped"))
    vars(shared_agent).update(vars(fresh))
    return shared_agent


READS = [(e, r) for s in SCENARIOS for e, r in consistent_with_report(s)
         if e.path.startswith(("/status", "/report", "/metrics", "/peers"))]


def send(server: HttpServer, exchange: Exchange) -> Answer:
    return request(server, exchange.method, exchange.path,
                   headers=exchange.request_headers)


@pytest.mark.parametrize(("exchange", "report"), READS, ids=[e.key for e, _ in READS])
def test_read_answers_are_gos(agent: Agent, server: HttpServer, exchange: Exchange,
                              report: Report) -> None:
    agent.report = ordered_like_page(report, exchange.path, exchange.body)
    answer = send(server, exchange)
    if ours_differs(exchange, answer.body):
        assert (answer.status, answer.content_type) == (200, "text/plain; charset=utf-8")
        return
    assert (answer.status, answer.content_type) == (exchange.status, exchange.content_type)
    assert answer.body == exchange.body
    if exchange.status >= 400:
        assert answer.headers.get("X-Content-Type-Options") == "nosniff"


CONTROL = [e for s in SCENARIOS for e in exchanges(s) if e.path in ("/connect", "/forget")]
GO_REFUSALS = {"not an address": "lookup not an address: no such host",
               "1.2.3.4:99999": "address 99999: invalid port",
               "x:y:z": "address x:y:z:0: too many colons in address"}


@pytest.mark.parametrize("exchange", CONTROL, ids=[f"{e.key} {e.form}" for e in CONTROL])
def test_connect_and_forget_answers_are_gos(agent: Agent, server: HttpServer,
                                            exchange: Exchange) -> None:
    agent.refusals = GO_REFUSALS
    form = [(key, value) for key, value in exchange.form or []]
    answer = request(server, "POST", exchange.path, urlencode(form),
                     {"Content-Type": "application/x-www-form-urlencoded"})
    assert (answer.status, answer.content_type, answer.body) == (
        exchange.status, exchange.content_type, exchange.body)
    peers = [value for key, value in form if key == "peer"]
    if exchange.path == "/connect":
        assert agent.connects == [(peers, ("replace", "true") in form)]
    else:
        assert agent.forgets == [peers]


def test_not_ready_pages_answer_503_with_their_body(agent: Agent, server: HttpServer) -> None:
    agent.report = replace(agent.report, ready=False)
    answer = request(server, "GET", "/status/targets")
    assert (answer.status, answer.body) == (503, "192.168.77.2\n192.168.77.3\n")
    failed = request(server, "GET", "/status/dns")
    assert (failed.status, failed.body) == (503, "error during template execution\n")
    assert request(server, "GET", "/report", headers={"Accept": "application/json"}).status \
        == 200


def test_empty_page_has_no_content_type(agent: Agent, server: HttpServer) -> None:
    agent.report = replace(agent.report, router=replace(agent.report.router, targets=()))
    answer = request(server, "GET", "/status/targets")
    assert (answer.status, answer.content_type, answer.body) == (200, None, "")


def test_wrong_method_is_405_without_body(server: HttpServer) -> None:
    for method, path in (("POST", "/status"), ("GET", "/connect"), ("DELETE", "/report")):
        answer = request(server, method, path)
        assert (answer.status, answer.content_type, answer.body) == (405, None, "")


def test_report_json_needs_exactly_application_json(server: HttpServer) -> None:
    answer = request(server, "GET", "/report", headers={"Accept": "application/json, */*"})
    assert (answer.status, answer.body) == (400, "error: must supply one format parameter\n")


@pytest.mark.parametrize(("template", "status", "content_type", "body"), [
    ("<html>{{.Router.NickName}}</html>", 200, "text/html; charset=utf-8",
     "<html>node0</html>"),
    ("{{json .Router.Targets}}", 200, "text/plain; charset=utf-8",
     '["192.168.77.2","192.168.77.3"]'),
    ("{{.Router.Name}} {{.DNS.Domain}}", 200, "text/plain; charset=utf-8",
     "ce:00:00:00:00:01 error during template execution\n"),
    ("{{.DNS.Domain}}", 500, "text/plain; charset=utf-8", "error during template execution\n"),
    ("{{.Router.Name", 400, "text/plain; charset=utf-8",
     "template: format:1: unclosed action\n"),
    ("{{if false}}x{{end}}", 200, None, ""),
])
def test_format_answers(server: HttpServer, template: str, status: int,
                        content_type: str | None, body: str) -> None:
    answer = request(server, "GET", "/report?" + urlencode({"format": template}))
    assert (answer.status, answer.content_type, answer.body) == (status, content_type, body)


def test_status_addr_serves_the_read_only_part(agent: Agent) -> None:
    registry = CollectorRegistry()
    server = api_server(("127.0.0.1", 0))
    register_status_addr(server, agent.snapshot, registry)
    server.start()
    try:
        assert request(server, "GET", "/status/peers").status == 200
        assert request(server, "GET", "/metrics").status == 200
        refused = request(server, "POST", "/connect", "peer=10.0.0.1",
                          {"Content-Type": "application/x-www-form-urlencoded"})
        assert (refused.status, refused.body) == (404, "404 page not found\n")
    finally:
        server.stop()
    assert agent.connects == []


@pytest.mark.parametrize(("body", "kind"), [
    (b"", ""), (b"plain", "text/plain; charset=utf-8"),
    (b"  <!-- c -->", "text/html; charset=utf-8"), (b"<Px", "text/plain; charset=utf-8"),
    (b"<p>x", "text/html; charset=utf-8"), (b"<?xml version", "text/xml; charset=utf-8"),
    (b"\x00\x01", "application/octet-stream"), (b"\xef\xbb\xbfx", "text/plain; charset=utf-8"),
    ("é".encode(), "text/plain; charset=utf-8"),
])
def test_sniffing(body: bytes, kind: str) -> None:
    assert sniff_content_type(body) == kind
