"""The agent's Prometheus metrics, named, labelled and printed as weave 2.8.1's ``/metrics``.

Go's weaver builds every metric afresh at scrape time from a status snapshot, and so does
:class:`WeaveCollector` (a ``prometheus_client`` custom collector given a function that
returns the current :class:`~router.api.model.Report`):

* ``weave_connections{state,type,encryption}`` (gauge): our connections and targets by
  state (established, pending, retrying, failed, connecting; ``waiting`` is not counted),
  type (the overlay's ``name`` attribute, ``unknown`` without one, e.g. for a target) and
  encryption (``yes`` when the ``encrypted`` attribute is true, else ``""``).  For every
  (state, type) seen, both encryption values are given, the absent one as 0.
* ``weave_connection_terminations_total`` (counter).
* From the IPAM part, when there is one: ``weave_ips{state="local-used"}``,
  ``weave_max_ips``, ``weave_ipam_unreachable_count``, ``weave_ipam_unreachable_percentage``
  (the share of the range owned by peers the topology does not know), and
  ``weave_ipam_pending_allocates``/``_claims``.  From the DNS part: ``weave_dns_entries``.

Go's client sorts families by name, samples by label values, label names alphabetically,
and writes numbers with ``strconv``'s shortest ``%g`` (``2``, ``1.048576e+06``), where
``prometheus_client`` writes ``2.0``.  :func:`render_metrics` writes a registry the way Go
does, with Go's content type (:data:`CONTENT_TYPE`), so scrapers and dashboards that
compared text see no change.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from router.api.gofmt import format_float
from router.api.model import Report
from router.api.status import CONNECTION_STATES

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""What Go's promhttp answers ``/metrics`` with (text format 0.0.4)."""

CONNECTION_LABELS = ("encryption", "state", "type")
"""``weave_connections``' labels (Go declares state, type, encryption; it prints them
sorted, as they are declared here)."""

HELP = {
    "weave_connections": "Number of peer-to-peer connections.",
    "weave_connection_terminations_total": "Number of peer-to-peer connections terminated.",
    "weave_ips": "Number of IP addresses.",
    "weave_max_ips": "Size of IP address space used by allocator.",
    "weave_dns_entries": "Number of DNS entries.",
    "weave_ipam_unreachable_count": "Number of unreachable peers.",
    # two spaces: the original's text, which dashboards may show
    "weave_ipam_unreachable_percentage": "Percentage of IP addresses owned  by unreachable peers.",
    "weave_ipam_pending_allocates": "Number of pending allocates.",
    "weave_ipam_pending_claims": "Number of pending claims.",
}


def connection_metrics(report: Report) -> list[Metric]:
    """``weave_connections`` and ``weave_connection_terminations_total``."""
    counts: dict[tuple[str, str], list[int]] = {}  # (state, type) -> [encrypted, plain]
    for conn in report.router.connections:
        if conn.state not in CONNECTION_STATES:
            continue
        attrs = conn.attrs or {}
        kind = str(attrs["name"]) if "name" in attrs else "unknown"
        pair = counts.setdefault((conn.state, kind), [0, 0])
        pair[0 if attrs.get("encrypted") is True else 1] += 1
    gauge = GaugeMetricFamily("weave_connections", HELP["weave_connections"],
                              labels=list(CONNECTION_LABELS))
    for (state, kind), (encrypted, plain) in counts.items():
        gauge.add_metric(["yes", state, kind], encrypted)
        gauge.add_metric(["", state, kind], plain)
    terminations = CounterMetricFamily("weave_connection_terminations_total",
                                       HELP["weave_connection_terminations_total"])
    terminations.add_metric([], report.router.termination_count)
    return [gauge, terminations]


def _gauge(name: str, value: float, labels: dict[str, str] | None = None) -> Metric:
    family = GaugeMetricFamily(name, HELP[name], labels=list(labels or {}))
    family.add_metric(list((labels or {}).values()), value)
    return family


def ipam_metrics(report: Report) -> list[Metric]:
    """The IPAM gauges ([] without IPAM)."""
    ipam: Any = report.services.get("IPAM")
    if not isinstance(ipam, dict):
        return []
    owners: dict[str, list[Any]] = {}  # peer -> [reachable, ips]
    for entry in ipam.get("Entries") or []:
        owner = owners.setdefault(entry["Peer"], [entry["IsKnownPeer"], 0])
        owner[1] += entry["Size"]
    unreachable = [ips for reachable, ips in owners.values() if not reachable]
    total = ipam.get("RangeNumIPs", 0)
    share = sum(unreachable) * 100.0 / total if total else (math.nan if not unreachable
                                                             else math.inf)
    return [
        _gauge("weave_ips", ipam.get("ActiveIPs", 0), {"state": "local-used"}),
        _gauge("weave_max_ips", total),
        _gauge("weave_ipam_unreachable_count", len(unreachable)),
        _gauge("weave_ipam_unreachable_percentage", share),
        _gauge("weave_ipam_pending_allocates", len(ipam.get("PendingAllocates") or [])),
        _gauge("weave_ipam_pending_claims", len(ipam.get("PendingClaims") or [])),
    ]


def dns_metrics(report: Report) -> list[Metric]:
    """``weave_dns_entries``: our live entries ([] without DNS)."""
    dns: Any = report.services.get("DNS")
    if not isinstance(dns, dict):
        return []
    ours = sum(1 for e in dns.get("Entries") or []
               if e.get("Tombstone", 0) == 0 and e.get("Origin") == report.router.name)
    return [_gauge("weave_dns_entries", ours)]


STANDARD_METRICS = (connection_metrics, ipam_metrics, dns_metrics)


class WeaveCollector(Collector):
    """Collects the weave metrics from a fresh snapshot at every scrape."""

    def __init__(self, snapshot: Callable[[], Report],
                 sources: Iterable[Callable[[Report], list[Metric]]] = STANDARD_METRICS) -> None:
        self._snapshot = snapshot
        self._sources = tuple(sources)

    def collect(self) -> Iterator[Metric]:
        report = self._snapshot()
        for source in self._sources:
            yield from source(report)

    def describe(self) -> Iterator[Metric]:
        """The families' names without asking for a snapshot (at registration)."""
        for name in HELP:
            if name.endswith("_total"):
                yield CounterMetricFamily(name, HELP[name])
            else:
                yield GaugeMetricFamily(name, HELP[name])


def _escape(text: str, *, quotes: bool) -> str:
    text = text.replace("\\", "\\\\").replace("\n", "\\n")
    return text.replace('"', '\\"') if quotes else text


def _exposed_name(family: Metric) -> str:
    if family.type == "counter" and any(s.name == family.name + "_total"
                                        for s in family.samples):
        return family.name + "_total"
    return family.name


def _sample_line(name: str, labels: dict[str, str], value: float) -> str:
    pairs = ",".join(f'{key}="{_escape(labels[key], quotes=True)}"' for key in sorted(labels))
    return f"{name}{{{pairs}}} {format_float(float(value))}\n" if pairs else \
        f"{name} {format_float(float(value))}\n"


def render_family(family: Metric) -> str:
    """One family in Go's text format."""
    name = _exposed_name(family)
    kind = {"unknown": "untyped", "info": "gauge", "stateset": "gauge"}.get(family.type,
                                                                             family.type)
    samples = [s for s in family.samples if not s.name.endswith("_created")]
    if family.type in ("counter", "gauge", "unknown", "info", "stateset"):
        samples.sort(key=lambda s: [s.labels[k] for k in sorted(s.labels)])
    lines = [f"# HELP {name} {_escape(family.documentation, quotes=False)}\n",
             f"# TYPE {name} {kind}\n"]
    lines += [_sample_line(s.name, s.labels, s.value) for s in samples]
    return "".join(lines)


def render_metrics(registry: CollectorRegistry) -> bytes:
    """The registry in Go's text exposition format (families sorted by name)."""
    families = sorted(registry.collect(), key=_exposed_name)
    return "".join(render_family(f) for f in families if f.samples).encode()
