"""``weave`` against a real HTTP server on 127.0.0.1: the captured output of the original
script (tests/interop/data/go-weave-cli.txt) from the same answers, the agent's own routes,
and an agent that is not there."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from common.service.http import Handler, HttpServer, Request, Response
from router.api.http import api_server, register_api
from router.api.model import Report
from router.cli.commands import usage
from router.cli.weave import main, own_version, split_address
from tests.router.api.captures import DATA, exchanges, report_for

CLI_CAPTURE = Path(DATA) / "go-weave-cli.txt"


def captured_runs() -> dict[str, tuple[int, str]]:
    """``weave ARGS`` -> (exit code, stdout with trailing whitespace cut), as captured."""
    parts = re.split(r"^\$ weave (.*?)   \(exit (\d+)\)\n", CLI_CAPTURE.read_text(),
                     flags=re.MULTILINE)
    runs = {}
    for args, code, section in zip(parts[1::3], parts[2::3], parts[3::3], strict=True):
        if "[stderr]" not in section:
            runs[args] = (int(code), section.removesuffix("\n\n"))
    return runs


RUNS = captured_runs()


def page(body: str) -> Handler:
    return lambda _: Response(200, body.encode(), "text/plain" if body else "")


def canned_server(runs: dict[str, tuple[int, str]]) -> HttpServer:
    """Answers what the capture's agent answered (pages taken from the captured output)."""
    status_page = runs["--local status"][1].removeprefix("\n") + "\n"
    pages = {"/status": status_page,
             "/status/peers": runs["--local status peers"][1] + "\n",
             "/status/connections": runs["--local status connections"][1] + "\n",
             "/status/ipam": ""}
    formats = {"{{.Router.Name}}": "ce:00:00:00:00:01", "{{ .Version }}": "2.8.1"}
    server = api_server(("127.0.0.1", 0))
    for path, body in pages.items():
        server.route("GET", path, page(body))

    def report(request: Request) -> Response:
        return Response.text(formats[request.arg("format") or ""])
    server.route("GET", "/report", report)
    return server


@pytest.fixture(scope="module")
def canned() -> Iterator[HttpServer]:
    server = canned_server(RUNS)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def weave(args: list[str], server: HttpServer | str, monkeypatch: pytest.MonkeyPatch,
          capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    address = server if isinstance(server, str) else f"127.0.0.1:{server.port}"
    monkeypatch.setenv("WEAVE_HTTP_ADDR", address)
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_the_capture_has_the_commands() -> None:
    assert set(RUNS) >= {"--local status", "--local status peers", "--local status ipam",
                         "--local status connections", "--local version",
                         "--local report -f {{.Router.Name}}"}


@pytest.mark.parametrize("args", sorted(RUNS))
def test_output_is_the_scripts(args: str, canned: HttpServer, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = weave(args.split(), canned, monkeypatch, capsys)
    assert (code, out.rstrip(), err) == (*RUNS[args], "")


def test_exact_framing(canned: HttpServer, monkeypatch: pytest.MonkeyPatch,
                       capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = weave(["status"], canned, monkeypatch, capsys)
    assert code == 0
    assert out.startswith("\n        Version: 2.8.1") and out.endswith("10.32.0.0/12\n\n")
    assert weave(["report", "-f", "{{.Router.Name}}"], canned, monkeypatch, capsys)[1] == \
        "ce:00:00:00:00:01"
    assert weave(["status", "ipam"], canned, monkeypatch, capsys)[1] == ""


@pytest.fixture(scope="module")
def agent_report() -> dict[str, Report]:
    return {"report": report_for("password", "peer-stopped")}


@pytest.fixture(scope="module")
def real(agent_report: dict[str, Report]) -> Iterator[HttpServer]:
    """The agent's own routes over a captured report."""
    refusals = {"x:y:z": "address x:y:z:0: too many colons in address",
                "1.2.3.4:99999": "address 99999: invalid port"}
    server = api_server(("127.0.0.1", 0))
    register_api(server, lambda: agent_report["report"],
                 lambda peers, _: [refusals[p] for p in peers if p in refusals],
                 lambda peers: None, CollectorRegistry())
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_status_through_the_agents_routes(real: HttpServer, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    page = next(e.body for e in exchanges("password")
                if (e.phase, e.path) == ("peer-stopped", "/status"))
    assert weave(["--local", "status"], real, monkeypatch, capsys) == (0, f"\n{page}\n", "")


def test_json_views(real: HttpServer, monkeypatch: pytest.MonkeyPatch,
                    capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = weave(["status", "peers", "--json"], real, monkeypatch, capsys)
    peers = json.loads(out)
    assert code == 0 and [p["NickName"] for p in peers] == ["node0", "node1"]
    code, out, _ = weave(["status", "--json"], real, monkeypatch, capsys)
    assert json.loads(out)["Router"]["Name"] == "ce:00:00:00:00:01"
    code, out, _ = weave(["status", "dns", "--json"], real, monkeypatch, capsys)
    assert (code, out) == (0, "null\n")


def test_errors_through_the_agents_routes(real: HttpServer, agent_report: dict[str, Report],
                                          monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert weave(["connect", "1.2.3.4:99999", "x:y:z", "10.0.0.1"], real, monkeypatch,
                 capsys) == (1, "", "address 99999: invalid port\n"
                                    "address x:y:z:0: too many colons in address\n")
    assert weave(["connect", "10.0.0.1"], real, monkeypatch, capsys) == (0, "", "")
    assert weave(["forget", "10.0.0.1"], real, monkeypatch, capsys) == (0, "", "")
    assert weave(["status", "nonsense"], real, monkeypatch, capsys) == (
        1, "", "Invalid 'weave status' sub-command: nonsense\n" + usage())
    assert weave(["status", "dns"], real, monkeypatch, capsys) == (
        1, "", "error during template execution\n")
    agent_report["report"] = replace(agent_report["report"], ready=False)
    try:
        code, out, err = weave(["status", "targets"], real, monkeypatch, capsys)
        assert (code, out, err) == (1, "", "192.168.77.2\n192.168.77.3\n")
    finally:
        agent_report["report"] = replace(agent_report["report"], ready=True)


@pytest.fixture
def closed_port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"127.0.0.1:{port}"


@pytest.mark.parametrize("args", [["status"], ["status", "peers"], ["report"],
                                  ["report", "-f", "{{.Version}}"], ["connect", "10.0.0.1"],
                                  ["forget", "10.0.0.1"]])
def test_agent_not_running(args: list[str], closed_port: str,
                           monkeypatch: pytest.MonkeyPatch,
                           capsys: pytest.CaptureFixture[str]) -> None:
    assert weave(args, closed_port, monkeypatch, capsys) == (
        1, "", f"weave: the weave agent is not running (cannot reach http://{closed_port}: "
               "connection refused)\n")


def test_version_without_agent_is_ours(closed_port: str, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert weave(["version"], closed_port, monkeypatch, capsys) == (
        0, f"weave {own_version()}\n", "")


@pytest.mark.parametrize("bad", ["6784", "host:", "host:99999", ":80", "host:port"])
def test_bad_address(bad: str, monkeypatch: pytest.MonkeyPatch,
                     capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="not host:port"):
        split_address(bad)
    assert weave(["status"], bad, monkeypatch, capsys) == (
        1, "", f"weave: WEAVE_HTTP_ADDR {bad!r} is not host:port\n")


def test_addresses() -> None:
    assert split_address("127.0.0.1:6784") == ("127.0.0.1", 6784)
    assert split_address("[::1]:6784") == ("::1", 6784)
    assert split_address("localhost:1") == ("localhost", 1)
