"""The ``/status`` pages of the agent, as the Go weaver 2.8.1 prints them.

``weave status`` shows these pages as they come, and operators' scripts cut them up
(``grep -oP '(?<= Name: ).*'``, ``tr -s ' ' | cut -d ' ' -f 2``), so every column, pad and
space is Go's:

* ``/status``: ``Version: V (version check text)``, then the router: protocol range
  (``weave 1..2``, or one number when min = max), name, encryption and peer discovery
  (``enabled``/``disabled``), target count, ``Connections: N (a established, b pending,
  c retrying, d failed, e connecting)`` (only the states present, in that order; a
  ``waiting`` target is counted in N but not named), ``Peers: N (with a established,
  b pending connections)`` over every peer's connections, ``TrustedSubnets`` (``none`` or
  a comma-separated list).  Each other service appends its own section (a
  :data:`StatusSection`, e.g. :func:`router.api.status_services.ipam_section`), which
  starts with the blank line that separates it.
* ``/status/peers``: each peer ``name(nick)``, then its connections, three spaces in:
  ``-> address(21) name(nick)(37) established|pending``.
* ``/status/connections``: ``-> address(21) state(11) info attrs``, where attrs are the
  overlay's attributes except ``name``, in key order and *run together*
  (``encrypted=truemtu=1414``: Go's template puts nothing between them), after a space
  that is there even when there are none.
* ``/status/targets``: one target per line.

Everything here is pure: a snapshot in, text out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from router.api.gofmt import format_value
from router.api.govalue import Shape, from_json
from router.api.model import Report
from router.api.report import version_check_text

StatusSection = Callable[[Report], str]
"""One service's part of ``/status``: ``""`` when the service is absent, else its lines,
starting with the empty line before ``        Service: ...``."""

CONNECTION_STATES = ("established", "pending", "retrying", "failed", "connecting")
"""The states ``/status`` counts, in the order it names them (also the metric's)."""


class TemplateFailure(Exception):
    """Go's template failed on this snapshot (e.g. ``/status/dns`` with no DNS): the
    agent answers ``500 error during template execution``, as Go does."""


def _counts(counts: dict[str, int], order: Sequence[str]) -> str:
    return ", ".join(f"{counts[state]} {state}" for state in order if state in counts)


def connection_counts(report: Report) -> str:
    """``1 established, 1 failed, 1 connecting`` for our connections and targets."""
    counts: dict[str, int] = {}
    for conn in report.router.connections:
        counts[conn.state] = counts.get(conn.state, 0) + 1
    return _counts(counts, CONNECTION_STATES)


def peer_connection_counts(report: Report) -> str:
    """``6 established`` / ``2 established, 4 pending`` over every peer's connections."""
    counts: dict[str, int] = {}
    for peer in report.router.peers:
        for conn in peer.connections:
            state = "established" if conn.established else "pending"
            counts[state] = counts.get(state, 0) + 1
    return _counts(counts, ("established", "pending"))


def print_list(items: Sequence[str]) -> str:
    return ", ".join(items) if items else "none"


def _enabled(flag: bool) -> str:
    return "enabled" if flag else "disabled"


def render_status(report: Report, sections: Sequence[StatusSection] = ()) -> str:
    """``/status``: the version line, the router's section, then each of ``sections``."""
    r = report.router
    if r.protocol_min_version == r.protocol_max_version:
        versions = str(r.protocol_max_version)
    else:
        versions = f"{r.protocol_min_version}..{r.protocol_max_version}"
    conn_counts = connection_counts(report)
    peer_counts = peer_connection_counts(report)
    lines = [
        f"        Version: {report.version} ({version_check_text(report.version_check)})",
        "",
        "        Service: router",
        f"       Protocol: {r.protocol} {versions}",
        f"           Name: {r.name}({r.nickname})",
        f"     Encryption: {_enabled(r.encryption)}",
        f"  PeerDiscovery: {_enabled(r.peer_discovery)}",
        f"        Targets: {len(r.targets)}",
        f"    Connections: {len(r.connections)}" + (f" ({conn_counts})" if conn_counts else ""),
        f"          Peers: {len(r.peers)}" + (f" (with {peer_counts} connections)"
                                              if peer_counts else ""),
        f" TrustedSubnets: {print_list(r.trusted_subnets)}",
    ]
    return "\n".join(lines) + "\n" + "".join(section(report) for section in sections)


def _arrow(outbound: bool) -> str:
    return "->" if outbound else "<-"


def render_peers(report: Report) -> str:
    """``/status/peers``."""
    out: list[str] = []
    for peer in report.router.peers:
        out.append(f"{peer.name}({peer.nickname})\n")
        for c in peer.connections:
            state = "established" if c.established else "pending"
            out.append(f"   {_arrow(c.outbound)} {c.address:<21} "
                       f"{f'{c.name}({c.nickname})':<37} {state}\n")
    return "".join(out)


_ANY = Shape("any")


def render_connections(report: Report) -> str:
    """``/status/connections``."""
    out: list[str] = []
    for c in report.router.connections:
        attrs = "".join(f"{key}={format_value(from_json(_ANY, value))}"
                        for key, value in sorted((c.attrs or {}).items(),
                                                 key=lambda kv: kv[0].encode())
                        if key != "name")
        out.append(f"{_arrow(c.outbound)} {c.address:<21} {c.state:<11} {c.info} {attrs}\n")
    return "".join(out)


def render_targets(report: Report) -> str:
    """``/status/targets``."""
    return "".join(f"{target}\n" for target in report.router.targets)
