"""Prometheus metrics of the controller, on a registry of its own.

``weavenpc_policy_enforcement_errors`` keeps the original's name without ``_total``
(dashboards query it), so it is exposed by a small custom collector; a ``_total`` alias
is exposed beside it for tools that expect the convention.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import Metric
from prometheus_client.registry import Collector


class _PlainCounter(Collector):
    def __init__(self, name: str, documentation: str) -> None:
        self.name = name
        self.documentation = documentation
        self._value = 0.0
        self._lock = threading.Lock()

    def inc(self, amount: float = 1.0) -> None:
        with self._lock:
            self._value += amount

    @property
    def value(self) -> float:
        with self._lock:
            return self._value

    def collect(self) -> Iterator[Metric]:
        metric = Metric(self.name, self.documentation, "counter")
        metric.add_sample(self.name, {}, self.value)
        yield metric
        alias = Metric(f"{self.name}_total", self.documentation, "counter")
        alias.add_sample(f"{self.name}_total", {}, self.value)
        yield alias


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.policy_errors = _PlainCounter(
            "weavenpc_policy_enforcement_errors",
            "Policies that could not be enforced as written (their pods are isolated).")
        registry.register(self.policy_errors)
        self.sync_seconds = Histogram(
            "weavenpc_sync_duration_seconds", "Time to compile and apply one sync.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry)
        self.syncs = Counter("weavenpc_syncs", "Syncs by result.", ["result"],
                             registry=registry)
        self.last_success = Gauge("weavenpc_last_successful_sync_timestamp_seconds",
                                  "Unix time of the last successful sync.", registry=registry)
        self.rules = Gauge("weavenpc_ruleset_rules", "Rules in npc's chains.",
                           registry=registry)
        self.sets = Gauge("weavenpc_ruleset_sets", "ipsets npc maintains.", registry=registry)
        self.set_members = Gauge("weavenpc_ruleset_set_members",
                                 "Members of all ipsets npc maintains.", registry=registry)
        self.drift = Counter("weavenpc_drift_repairs",
                             "Objects found changed from outside and repaired.", ["kind"],
                             registry=registry)
        self.folds = Counter("weavenpc_pending_folds",
                             "Transactions folding pending pods into the nftables dispatch "
                             "maps (see Backend.tidy).", registry=registry)
        self.kernel_failures = Counter("weavenpc_kernel_command_failures",
                                       "Failed kernel commands (retried).", registry=registry)
        self.api_errors = Counter("weavenpc_api_errors",
                                  "Failed API requests (retried), by resource.",
                                  ["resource"], registry=registry)
        self.ready = Gauge("weavenpc_ready", "1 once the first full sync is applied.",
                           registry=registry)
