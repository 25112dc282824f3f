"""The ``weave`` commands: which API requests each makes and what it then prints.

Operators run ``weave --local status`` (and ``status peers``, ``report -f ...``,
``connect``...) inside the weave pod, and their scripts read the output, so each command
asks the agent what the original ``weave`` shell script asks and prints what it prints:

* an answer 2xx is printed as is (no newline added: ``report -f '{{.Router.Name}}'``
  prints the name alone); any other answer's body goes to stderr and the exit code is 1;
  a 404 prints nothing and exits 4 (``status`` then says the sub-command is invalid);
* ``status`` with no sub-command prints an empty line before and after the page;
* ``version`` prints ``weave `` and the agent's version, spaces collapsed as ``echo``
  does; when the agent does not answer it names this program's own version instead;
* ``connect [--replace] PEER...`` posts ``replace=true`` (if asked) and ``peer=`` per
  peer to ``/connect``; ``forget PEER...`` to ``/forget``;
* ``rmpeer PEER...`` asks ``DELETE /peer/PEER`` for each (``N IPs taken over from
  PEER``), ``prime`` waits on ``GET /ring`` until a ring exists, ``reset`` asks ``DELETE
  /peer`` (our ranges go to another peer; in Kubernetes the pod's removal does the rest).

``--json`` (ours) makes ``status`` print the same data as JSON: the report for plain
``status``, ``{{json .Router.Peers}}`` for ``status peers`` and so on.  When the agent
cannot be reached at all, every command but ``version`` says so in one line and exits 1.

Commands are entries of :data:`COMMANDS` (a :class:`Command`: its usage line, a pure
``plan`` from arguments to requests, a pure ``show`` from answers to output), so other
parts of the agent add theirs with :func:`register`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import quote, urlencode


class UsageError(Exception):
    """The arguments do not fit the command: print the usage, exit 1."""


@dataclass(frozen=True)
class ApiRequest:
    method: str
    path: str
    query: tuple[tuple[str, str], ...] = ()
    form: tuple[tuple[str, str], ...] = ()
    accept_json: bool = False

    def target(self) -> str:
        """The path with its query, url-encoded (as ``curl --data-urlencode``)."""
        return self.path + ("?" + urlencode(self.query) if self.query else "")

    def body(self) -> bytes | None:
        return urlencode(self.form).encode() if self.form or self.method == "POST" else None

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"} if self.accept_json else {}
        if self.method == "POST":
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        return headers


@dataclass(frozen=True)
class ApiAnswer:
    status: int
    body: str = ""
    unreachable: str | None = None
    """Why the agent could not be asked (then ``status`` is 0)."""


@dataclass(frozen=True)
class Output:
    stdout: str = ""
    stderr: str = ""
    code: int = 0


@dataclass(frozen=True)
class Context:
    address: str
    """Where the agent is asked (``host:port``)."""
    own_version: str = "unknown"
    """This program's version (``version`` names it when the agent does not answer)."""


@dataclass(frozen=True)
class Command:
    name: str
    usage: str
    """Its line(s) in the usage text, after the name."""
    plan: Callable[[list[str]], tuple[ApiRequest, ...]]
    show: Callable[[list[str], list[ApiAnswer], Context], Output]
    answers_when_down: bool = False
    """``show`` handles an agent that cannot be reached (``version``)."""


COMMANDS: dict[str, Command] = {}


def register(command: Command) -> None:
    COMMANDS[command.name] = command


def not_running(address: str, reason: str) -> Output:
    return Output(stderr=f"weave: the weave agent is not running (cannot reach "
                         f"http://{address}: {reason})\n", code=1)


def answered(answer: ApiAnswer) -> Output:
    """The script's ``call_weave``: 2xx to stdout, 404 silent (exit 4), else stderr."""
    if 200 <= answer.status < 300:
        return Output(stdout=answer.body)
    if answer.status == 404:
        return Output(code=4)
    return Output(stderr=answer.body, code=1)


def usage() -> str:
    width = max(len(name) for name in COMMANDS) + 2
    lines = ["Usage:", "", "weave --help | help"]
    for name, command in sorted(COMMANDS.items()):
        lines.append(f"      {name:<{width}}{command.usage}".rstrip())
    lines += ["",
              "where <peer> = <ip_address_or_fqdn>[:<port>]",
              "",
              "The agent is asked over HTTP at $WEAVE_HTTP_ADDR (default 127.0.0.1:6784).",
              "'--local' before the command is accepted and ignored."]
    return "\n".join(lines) + "\n"


# ---- status -------------------------------------------------------------------------

JSON_OF_STATUS = {"peers": ".Router.Peers", "connections": ".Router.Connections",
                  "targets": ".Router.Targets", "ipam": ".IPAM", "dns": ".DNS"}


def _split_json(args: Sequence[str]) -> tuple[list[str], bool]:
    rest = [a for a in args if a != "--json"]
    return rest, len(rest) != len(args)


def _status_plan(args: list[str]) -> tuple[ApiRequest, ...]:
    subs, as_json = _split_json(args)
    if not as_json:
        return (ApiRequest("GET", "/".join(["/status", *subs])),)
    if not subs:
        return (ApiRequest("GET", "/report", accept_json=True),)
    if len(subs) == 1 and subs[0] in JSON_OF_STATUS:
        return (ApiRequest("GET", "/report",
                           query=(("format", f"{{{{json {JSON_OF_STATUS[subs[0]]}}}}}"),)),)
    return (ApiRequest("GET", "/status/invalid"),)  # shown as an invalid sub-command


def _status_show(args: list[str], answers: list[ApiAnswer], _: Context) -> Output:
    subs, as_json = _split_json(args)
    (answer,) = answers
    out = answered(answer)
    invalid = (as_json and subs and (len(subs) > 1 or subs[0] not in JSON_OF_STATUS)) or \
        answer.status == 404
    if invalid:
        return Output(stderr=f"Invalid 'weave status' sub-command: {' '.join(subs)}\n"
                      + usage(), code=1)
    if as_json:
        return Output(out.stdout + ("\n" if out.stdout and not out.stdout.endswith("\n")
                                    else ""), out.stderr, out.code)
    if subs:
        return out
    return Output("\n" + out.stdout + "\n", out.stderr, out.code)


# ---- report -------------------------------------------------------------------------

def _report_plan(args: list[str]) -> tuple[ApiRequest, ...]:
    rest, _ = _split_json(args)
    if not rest:
        return (ApiRequest("GET", "/report", accept_json=True),)
    if len(rest) == 2 and rest[0] == "-f" and "--json" not in args:
        return (ApiRequest("GET", "/report", query=(("format", rest[1]),)),)
    raise UsageError("report takes no arguments, or -f <format>")


def _single(_: list[str], answers: list[ApiAnswer], __: Context) -> Output:
    return answered(answers[0])


# ---- connect, forget ----------------------------------------------------------------

def _connect_plan(args: list[str]) -> tuple[ApiRequest, ...]:
    if not args:
        raise UsageError("connect needs peers (or --replace)")
    form: list[tuple[str, str]] = []
    if args[0] == "--replace":
        form.append(("replace", "true"))
        args = args[1:]
    form += [("peer", peer) for peer in args]
    return (ApiRequest("POST", "/connect", form=tuple(form)),)


def _forget_plan(args: list[str]) -> tuple[ApiRequest, ...]:
    if not args:
        raise UsageError("forget needs peers")
    return (ApiRequest("POST", "/forget", form=tuple(("peer", p) for p in args)),)


# ---- IPAM: rmpeer, prime, reset ---------------------------------------------------------

def _rmpeer_plan(args: list[str]) -> tuple[ApiRequest, ...]:
    if not args:
        raise UsageError("rmpeer needs peers")
    return tuple(ApiRequest("DELETE", "/peer/" + quote(peer, safe="")) for peer in args)


def _all_printed(_: list[str], answers: list[ApiAnswer], __: Context) -> Output:
    """Each answer in turn (``rmpeer A B``: one line per peer); exit 1 if any failed."""
    outputs = [answered(answer) for answer in answers]
    return Output("".join(o.stdout for o in outputs), "".join(o.stderr for o in outputs),
                  max((o.code for o in outputs), default=0))


def _prime_plan(args: list[str]) -> tuple[ApiRequest, ...]:
    if args:
        raise UsageError("prime takes no arguments")
    return (ApiRequest("GET", "/ring"),)


def _reset_plan(args: list[str]) -> tuple[ApiRequest, ...]:
    if args and args != ["--force"]:
        raise UsageError("reset takes no arguments but --force")
    return (ApiRequest("DELETE", "/peer"),)


# ---- version ------------------------------------------------------------------------

def _version_plan(args: list[str]) -> tuple[ApiRequest, ...]:
    if args:
        raise UsageError("version takes no arguments")
    return (ApiRequest("GET", "/report", query=(("format", "{{ .Version }}"),)),)


def _version_show(_: list[str], answers: list[ApiAnswer], context: Context) -> Output:
    answer = answers[0]
    if 200 <= answer.status < 300:
        return Output(" ".join(f"weave {answer.body}".split()) + "\n")
    return Output(f"weave {context.own_version}\n")


for _command in (
    Command("status", "[targets | connections | peers | dns | ipam] [--json]",
            _status_plan, _status_show),
    Command("report", "[-f <format>]", _report_plan, _single),
    Command("connect", "[--replace] [<peer> ...]", _connect_plan, _single),
    Command("forget", "<peer> ...", _forget_plan, _single),
    Command("version", "", _version_plan, _version_show, answers_when_down=True),
    Command("rmpeer", "<peer_id> ...", _rmpeer_plan, _all_printed),
    Command("prime", "", _prime_plan, _single),
    Command("reset", "[--force]", _reset_plan, _single),
):
    register(_command)


def run(argv: Sequence[str], ask: Callable[[ApiRequest], ApiAnswer], context: Context) -> Output:
    """What ``weave ARGV`` prints and exits with, asking the agent through ``ask``."""
    args = list(argv)
    if args[:1] == ["--local"]:
        args = args[1:]
    if not args:
        return Output(stderr=usage(), code=1)
    name, rest = args[0], args[1:]
    if name in ("help", "--help") or rest[:1] == ["--help"]:
        return Output(stderr=usage())
    command = COMMANDS.get(name)
    if command is None:
        return Output(stderr=f"Unknown weave command '{name}'\n" + usage(), code=1)
    try:
        requests = command.plan(rest)
    except UsageError:
        return Output(stderr=usage(), code=1)
    answers: list[ApiAnswer] = []
    for request in requests:
        answer = ask(request)
        if answer.unreachable is not None and not command.answers_when_down:
            return not_running(context.address, answer.unreachable)
        answers.append(answer)
    return command.show(rest, answers, context)
