"""The services' parts of ``/status`` (IPAM, DNS) and their own pages, as Go prints them.

They read the services' parts of the report in JSON form (Go's ``ipam.Status`` and
``nameserver.Status`` field names, see :mod:`router.api.report`).

* The ipam section says ``Status: idle`` before anything asked for an address, ``priming``
  or ``awaiting consensus (quorum: Q, known: K)`` while the ring is being agreed,
  ``ready`` once it exists, ``waiting for IP(s) to become available`` with allocations
  pending, or that every range belongs to unreachable peers (``use 'rmpeer'``).
* ``/status/ipam``: one line per owner of ring space, ours first (with ``(N active)``),
  then the others in ring order (Go's order there is a map's: any order is Go's), those
  not in the topology marked ``- unreachable!``: ``name(nick)`` padded to 37, the
  address count right-aligned in 8, and the share computed in float32 as Go does.  Before
  the ring exists Go's page is empty; ours says what IPAM waits for (``idle``,
  ``awaiting consensus (quorum: 2, known: 1)``), as issue 16 asks.
* The dns section and ``/status/dns`` (``hostname address container-id origin``); with
  no DNS (``--no-dns``, always here) the page fails as Go's template does.
"""

from __future__ import annotations

import struct
from typing import Any

from router.api.model import Report
from router.api.status import TemplateFailure, print_list


def _part(report: Report, name: str) -> dict[str, Any] | None:
    part = report.services.get(name)
    return part if isinstance(part, dict) else None


def _ipam_state(ipam: dict[str, Any]) -> str:
    entries = ipam.get("Entries") or []
    if entries:
        if all(e["Size"] == 0 or not e["IsKnownPeer"] for e in entries):
            return "all IP ranges owned by unreachable peers - use 'rmpeer' if they are dead"
        if ipam.get("PendingAllocates"):
            return "waiting for IP(s) to become available"
        return "ready"
    paxos = ipam.get("Paxos")
    if paxos:
        if paxos.get("Elector"):
            return (f"awaiting consensus (quorum: {paxos.get('Quorum', 0)}, "
                    f"known: {paxos.get('KnownNodes', 0)})")
        return "priming"
    return "idle"


def ipam_section(report: Report) -> str:
    """The ``Service: ipam`` section of ``/status`` ("" without IPAM)."""
    ipam = _part(report, "IPAM")
    if ipam is None:
        return ""
    return ("\n        Service: ipam\n"
            f"         Status: {_ipam_state(ipam)}\n"
            f"          Range: {ipam.get('Range', '')}\n"
            f"  DefaultSubnet: {ipam.get('DefaultSubnet', '')}\n")


def _float32(x: float) -> float:
    return float(struct.unpack("f", struct.pack("f", x))[0])


def _owner_line(name: str, nickname: str, ips: int, total: int, note: str) -> str:
    # Go: float32(ips) * 100.0 / float32(total), each step rounded to float32
    share = _float32(_float32(_float32(ips) * 100.0) / _float32(total)) if total else \
        float("nan") if ips == 0 else float("inf")
    return f"{f'{name}({nickname})':<37} {ips:>8} IPs ({_go_percent(share)}% of total) {note}\n"


def _go_percent(share: float) -> str:
    """``%04.1f``: one decimal, zero-padded to 4 (Go pads NaN and Inf with spaces)."""
    if share != share or share in (float("inf"), float("-inf")):
        text = "NaN" if share != share else ("+Inf" if share > 0 else "-Inf")
        return f"{text:>4}"
    return f"{share:04.1f}"


def render_ipam(report: Report) -> str:
    """``/status/ipam``."""
    ipam = _part(report, "IPAM")
    if ipam is None:
        raise TemplateFailure("no IPAM in this agent")
    owners: dict[str, list[Any]] = {}  # peer -> [nickname, reachable, ips]
    for entry in ipam.get("Entries") or []:
        owner = owners.setdefault(entry["Peer"], [entry["Nickname"], entry["IsKnownPeer"], 0])
        owner[2] += entry["Size"]
    if not owners:
        # New: the original printed nothing until a ring existed; say what IPAM waits for.
        return _ipam_state(ipam) + "\n"
    total = int(ipam.get("RangeNumIPs", 0))
    ours = report.router.name
    out: list[str] = []
    if ours in owners:
        nickname, _, ips = owners[ours]
        out.append(_owner_line(ours, nickname, ips, total, f"({ipam.get('ActiveIPs', 0)} active)"))
    for peer, (nickname, reachable, ips) in owners.items():
        if peer != ours:
            out.append(_owner_line(peer, nickname, ips, total,
                                   "" if reachable else "- unreachable!"))
    return "".join(out)


def dns_section(report: Report) -> str:
    """The ``Service: dns`` section of ``/status`` ("" without DNS)."""
    dns = _part(report, "DNS")
    if dns is None:
        return ""
    live = sum(1 for e in dns.get("Entries") or [] if e.get("Tombstone", 0) == 0)
    return ("\n        Service: dns\n"
            f"         Domain: {dns.get('Domain', '')}\n"
            f"       Upstream: {print_list(dns.get('Upstream') or [])}\n"
            f"            TTL: {dns.get('TTL', 0)}\n"
            f"        Entries: {live}\n")


def render_dns(report: Report) -> str:
    """``/status/dns``: fails without DNS, as Go's template does."""
    dns = _part(report, "DNS")
    if dns is None:
        raise TemplateFailure("no DNS in this agent")
    suffix = f".{dns.get('Domain', '')}"
    out = []
    for e in dns.get("Entries") or []:
        if e.get("Tombstone", 0) == 0:
            host = e["Hostname"].removesuffix(suffix)
            out.append(f"{host:<12} {e['Address']:<15} {e['ContainerID']:>12.12} {e['Origin']}\n")
    return "".join(out)


STANDARD_SECTIONS = (ipam_section, dns_section)
"""The sections Go's ``/status`` has after the router's (proxy and plugin are Docker's and
have no counterpart here)."""
