"""The ``weave`` commands without a network: the requests each makes from its arguments,
and what it prints for given answers."""

from __future__ import annotations

import pytest

from router.cli.commands import (
    COMMANDS,
    ApiAnswer,
    ApiRequest,
    Command,
    Context,
    Output,
    UsageError,
    register,
    run,
    usage,
)

CONTEXT = Context("127.0.0.1:6784", "9.9.9")


@pytest.mark.parametrize(("argv", "request_"), [
    (["status"], ApiRequest("GET", "/status")),
    (["status", "peers"], ApiRequest("GET", "/status/peers")),
    (["status", "a", "b"], ApiRequest("GET", "/status/a/b")),
    (["status", "--json"], ApiRequest("GET", "/report", accept_json=True)),
    (["status", "peers", "--json"],
     ApiRequest("GET", "/report", query=(("format", "{{json .Router.Peers}}"),))),
    (["status", "--json", "ipam"],
     ApiRequest("GET", "/report", query=(("format", "{{json .IPAM}}"),))),
    (["report"], ApiRequest("GET", "/report", accept_json=True)),
    (["report", "--json"], ApiRequest("GET", "/report", accept_json=True)),
    (["report", "-f", "{{.Router.Name}}"],
     ApiRequest("GET", "/report", query=(("format", "{{.Router.Name}}"),))),
    (["connect", "10.0.0.1", "host:6783"],
     ApiRequest("POST", "/connect", form=(("peer", "10.0.0.1"), ("peer", "host:6783")))),
    (["connect", "--replace", "10.0.0.1"],
     ApiRequest("POST", "/connect", form=(("replace", "true"), ("peer", "10.0.0.1")))),
    (["connect", "--replace"], ApiRequest("POST", "/connect", form=(("replace", "true"),))),
    (["forget", "10.0.0.1"], ApiRequest("POST", "/forget", form=(("peer", "10.0.0.1"),))),
    (["version"], ApiRequest("GET", "/report", query=(("format", "{{ .Version }}"),))),
])
def test_plans(argv: list[str], request_: ApiRequest) -> None:
    assert COMMANDS[argv[0]].plan(argv[1:]) == (request_,)


@pytest.mark.parametrize("argv", [["connect"], ["forget"], ["report", "-f"],
                                  ["report", "x"], ["report", "-f", "a", "b"],
                                  ["report", "-f", "{{.}}", "--json"], ["version", "x"]])
def test_bad_arguments_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(UsageError):
        COMMANDS[argv[0]].plan(argv[1:])
    out = run(argv, lambda r: ApiAnswer(200), CONTEXT)
    assert (out.stdout, out.stderr, out.code) == ("", usage(), 1)


def test_requests_as_curl_sends_them() -> None:
    form = ApiRequest("POST", "/connect", form=(("replace", "true"), ("peer", "a b")))
    assert form.body() == b"replace=true&peer=a+b"
    assert form.headers() == {"Content-Type": "application/x-www-form-urlencoded"}
    assert ApiRequest("POST", "/connect").body() == b""
    query = ApiRequest("GET", "/report", query=(("format", "{{.Router.Name}} x"),))
    assert query.target() == "/report?format=%7B%7B.Router.Name%7D%7D+x"
    assert query.body() is None
    assert ApiRequest("GET", "/report", accept_json=True).headers() == {
        "Accept": "application/json"}


@pytest.mark.parametrize(("argv", "answer", "output"), [
    (["status"], ApiAnswer(200, "page\n"), Output("\npage\n\n")),
    (["--local", "status"], ApiAnswer(200, "page\n"), Output("\npage\n\n")),
    (["status"], ApiAnswer(503, "page\n"), Output("\n\n", "page\n", 1)),
    (["status", "peers"], ApiAnswer(200, "p\n"), Output("p\n")),
    (["status", "ipam"], ApiAnswer(200, ""), Output("")),
    (["status", "dns"], ApiAnswer(500, "error during template execution\n"),
     Output("", "error during template execution\n", 1)),
    (["status", "nonsense"], ApiAnswer(404, "404 page not found\n"),
     Output("", "Invalid 'weave status' sub-command: nonsense\n" + usage(), 1)),
    (["status", "nonsense", "--json"], ApiAnswer(404),
     Output("", "Invalid 'weave status' sub-command: nonsense\n" + usage(), 1)),
    (["status", "peers", "--json"], ApiAnswer(200, "[]"), Output("[]\n")),
    (["report", "-f", "{{.Router.Name}}"], ApiAnswer(200, "ce:00:00:00:00:01"),
     Output("ce:00:00:00:00:01")),
    (["report"], ApiAnswer(200, "{\n}"), Output("{\n}")),
    (["report", "-f", "{{"], ApiAnswer(400, "template: format:1: unclosed action\n"),
     Output("", "template: format:1: unclosed action\n", 1)),
    (["report"], ApiAnswer(404, "404 page not found\n"), Output("", "", 4)),
    (["connect", "x:y:z"], ApiAnswer(400, "address x:y:z:0: too many colons in address\n"),
     Output("", "address x:y:z:0: too many colons in address\n", 1)),
    (["connect", "10.0.0.1"], ApiAnswer(200), Output()),
    (["version"], ApiAnswer(200, "2.8.1"), Output("weave 2.8.1\n")),
    (["version"], ApiAnswer(200, " 2.8.1 \n x"), Output("weave 2.8.1 x\n")),
    (["version"], ApiAnswer(0, unreachable="connection refused"), Output("weave 9.9.9\n")),
    (["version"], ApiAnswer(500, "oops"), Output("weave 9.9.9\n")),
    (["status"], ApiAnswer(0, unreachable="connection refused"),
     Output("", "weave: the weave agent is not running (cannot reach "
                "http://127.0.0.1:6784: connection refused)\n", 1)),
])
def test_outputs(argv: list[str], answer: ApiAnswer, output: Output) -> None:
    assert run(argv, lambda _: answer, CONTEXT) == output


@pytest.mark.parametrize(("argv", "code", "stderr_starts"), [
    ([], 1, "Usage:"), (["help"], 0, "Usage:"), (["--help"], 0, "Usage:"),
    (["status", "--help"], 0, "Usage:"), (["launch"], 1, "Unknown weave command 'launch'\n"),
])
def test_help_and_unknown_commands(argv: list[str], code: int, stderr_starts: str) -> None:
    def refuse(_: ApiRequest) -> ApiAnswer:
        raise AssertionError("no request expected")
    out = run(argv, refuse, CONTEXT)
    assert (out.stdout, out.code) == ("", code)
    assert out.stderr.startswith(stderr_starts) and out.stderr.endswith(usage())


def test_commands_plug_in() -> None:
    """A command added to the table is run and listed."""
    extra = Command("frobnicate", "<thing> ...",
                    lambda args: tuple(ApiRequest("DELETE", f"/thing/{p}") for p in args),
                    lambda _, answers, __: Output("".join(a.body for a in answers)))
    register(extra)
    try:
        out = run(["frobnicate", "a", "b"], lambda r: ApiAnswer(200, r.path + "\n"), CONTEXT)
        assert out == Output("/thing/a\n/thing/b\n")
        assert "      frobnicate" in usage()
    finally:
        del COMMANDS["frobnicate"]


def test_ipam_commands() -> None:
    """rmpeer asks once per peer and prints every answer; prime waits on /ring; reset
    leaves the ring."""
    assert COMMANDS["rmpeer"].plan(["aa:bb:cc:dd:ee:ff", "node 2"]) == (
        ApiRequest("DELETE", "/peer/aa%3Abb%3Acc%3Add%3Aee%3Aff"),
        ApiRequest("DELETE", "/peer/node%202"))
    answers = iter([ApiAnswer(200, "16 IPs taken over from a\n"),
                    ApiAnswer(200, "0 IPs taken over from b\n")])
    assert run(["rmpeer", "a", "b"], lambda _: next(answers), CONTEXT) == Output(
        "16 IPs taken over from a\n0 IPs taken over from b\n")
    assert COMMANDS["prime"].plan([]) == (ApiRequest("GET", "/ring"),)
    assert COMMANDS["reset"].plan(["--force"]) == (ApiRequest("DELETE", "/peer"),)
    timed_out = ApiAnswer(503, "Prime for the ring timed out after 30s: awaiting consensus "
                               "(quorum: 2, known: 1)\n")
    assert run(["prime"], lambda _: timed_out, CONTEXT) == Output("", timed_out.body, 1)
    for bad in (["rmpeer"], ["prime", "x"], ["reset", "x"]):
        with pytest.raises(UsageError):
            COMMANDS[bad[0]].plan(bad[1:])
