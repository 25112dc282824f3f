"""The agent's HTTP servers, wired to its loop.

* The API on ``--http-addr`` (127.0.0.1:6784): status pages, ``/report``, ``/connect``,
  ``/forget``, ``/metrics`` (:mod:`router.api.http`); requests from anything but the host
  itself are refused (403), whatever address it is bound to.
* Metrics on ``--metrics-addr`` (0.0.0.0:6782): ``/metrics`` as the original serves it,
  plus ``/healthz`` (the agent's loop answers) and ``/readyz`` (the mesh listens and the
  agent answers; IPAM and the data path add their conditions as they arrive).
* The read-only status pages on ``--status-addr``, when set.

Handlers run in the servers' threads; everything they read or change goes through the
:class:`~router.agent.main.LoopBridge` to the agent's loop.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from common.service.http import HttpServer, Request, Response, loopback_only, probe_handler
from router.agent.ipam import IpamBridge
from router.agent.mesh import GossipStats
from router.agent.runtime import Agent
from router.agent.settings import Settings
from router.api.http import api_server, register_api, register_metrics, register_status_addr
from router.api.ipam_http import register_ipam
from router.api.metrics import WeaveCollector
from router.api.model import Report
from router.ipam.allocator import Counters

if TYPE_CHECKING:
    from router.agent.main import LoopBridge


class GossipCollector(Collector):
    """``weave_gossip_{messages,bytes}_{sent,received}_total{channel}`` (new: the original
    has no measure of its gossip's cost)."""

    def __init__(self, stats: Callable[[], GossipStats]) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self.stats()
        for direction, table in (("sent", stats.sent), ("received", stats.received)):
            for unit in ("messages", "bytes"):
                family = CounterMetricFamily(
                    f"weave_gossip_{unit}_{direction}", f"Gossip {unit} {direction}, by "
                    "channel.", labels=["channel"])
                for channel, counter in sorted(table.items()):
                    family.add_metric([channel], getattr(counter, unit))
                yield family


class IpamCollector(Collector):
    """``weave_ipam_ring_conflicts_total`` (ranges of ours that a peer's ring gave to
    another owner, kept and repaired), ``weave_ipam_ring_refusals_total`` (rings of
    another range or other seeds, refused) and ``weave_ipam_malformed_messages_total``:
    new, where the original closed the connection instead."""

    def __init__(self, counters: Callable[[], Counters]) -> None:
        self.counters = counters

    def collect(self) -> Iterator[Metric]:
        counters = self.counters()
        for name, value, text in (
                ("ring_conflicts", counters.ring_conflicts,
                 "Ring merges that gave one of our ranges in use to another peer, repaired."),
                ("ring_refusals", counters.ring_refusals,
                 "Rings refused: another allocation range, or seeded by other peers."),
                ("malformed_messages", counters.malformed,
                 "IPAM messages that could not be decoded, dropped.")):
            family = CounterMetricFamily(f"weave_ipam_{name}", text)
            family.add_metric([], value)
            yield family


def start_servers(settings: Settings, agent: Agent, bridge: LoopBridge) -> list[HttpServer]:
    def snapshot() -> Report:
        return bridge.call(agent.report)

    def connect(peers: list[str], replace: bool) -> list[str]:
        return bridge.wait(lambda: agent.connect(peers, replace=replace))

    def forget(peers: list[str]) -> None:
        bridge.call(lambda: agent.forget(peers))

    def alive() -> bool:
        try:
            return bridge.call(lambda: True)
        except Exception:
            return False

    registry = CollectorRegistry()
    registry.register(WeaveCollector(snapshot))
    registry.register(GossipCollector(lambda: bridge.call(agent.mesh.stats.copy)))
    ipam = agent.ipam
    if ipam is not None:
        registry.register(IpamCollector(lambda: bridge.call(
            lambda: dataclasses.replace(ipam.allocator.counters))))
    api = api_server(settings.http_addr, allow=loopback_only)
    register_api(api, snapshot, connect, forget, registry)
    metrics = HttpServer(settings.metrics_addr)
    register_metrics(metrics, registry)
    metrics.route("GET", "/healthz", probe_handler(alive))
    def ready(_: Request) -> Response:
        try:
            waiting = bridge.call(agent.not_ready)
        except Exception:
            return Response.text("not ready: the agent does not answer\n", 503)
        if waiting is not None:
            return Response.text(f"not ready: {waiting}\n", 503)
        return Response.text("ok\n")

    metrics.route("GET", "/readyz", ready)
    if ipam is not None:
        register_ipam(api, IpamBridge(ipam, bridge.loop))
    servers = [api, metrics]
    if settings.status_addr is not None:
        status = api_server(settings.status_addr)
        register_status_addr(status, snapshot, registry)
        servers.append(status)
    for server in servers:
        server.start()
    return servers
