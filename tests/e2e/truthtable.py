"""Upstream's Reachability semantics: start from a default, apply expectations in order."""

from __future__ import annotations

from collections.abc import Sequence

from tests.e2e.scenario import (
    Expect,
    ExpectAllEgress,
    ExpectAllIngress,
    ExpectPeer,
    Reachability,
)


def _matches(key: str, ns: str, pod: str) -> bool:
    k_ns, k_pod = key.split("/")
    return (not ns or ns == k_ns) and (not pod or pod == k_pod)


def expected(reach: Reachability, pods: Sequence[str]) -> dict[tuple[str, str], bool]:
    """Expected outcome for every ordered pair of distinct pods (self-pairs are ignored, as
    upstream ignores loopback)."""
    table = {(s, d): reach.default for s in pods for d in pods if s != d}
    for e in reach.expectations:
        for (s, d) in table:
            if isinstance(e, ExpectPeer):
                hit = _matches(s, e.from_ns, e.from_pod) and _matches(d, e.to_ns, e.to_pod)
            elif isinstance(e, ExpectAllIngress):
                hit = d == e.pod
            elif isinstance(e, ExpectAllEgress):
                hit = s == e.pod
            else:
                assert isinstance(e, Expect)
                hit = (s, d) == (e.src, e.dst)
            if hit:
                table[(s, d)] = e.connected
    return table
