"""Reachability matrices in the style of the upstream Kubernetes netpol e2e suite.

Upstream (``test/e2e/network/netpol``) probes every ordered pod pair for one
port/protocol, prints a "truth table" (header of destinations, one row per
source, ``.`` = connected, ``X`` = blocked) for the expected and the observed
result plus a comparison, and retries a wrong matrix once before failing, because
a policy change may still be propagating into the dataplane.  Here the retry
re-probes only the mismatched cells, which is cheaper and equally informative.
Self-pairs are never probed and print as ``-``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from common.lab.probe import ProbeResult, Protocol

Pair = tuple[str, str]
#: Probes many (src, dst) pairs for (port, protocol, timeout); returns a result per pair.
ProbeMany = Callable[[Sequence[Pair], int, Protocol, float], dict[Pair, ProbeResult]]


def ordered_pairs(keys: Sequence[str]) -> list[Pair]:
    """All (src, dst) with src != dst, row-major."""
    return [(s, d) for s in keys for d in keys if s != d]


def format_truth_table(
    froms: Sequence[str],
    tos: Sequence[str],
    mark: Callable[[str, str], str],
    indent: str = "",
) -> str:
    """Render a table: header ``-`` + destinations, then ``src mark mark ...`` rows."""
    first = max([1, *(len(f) for f in froms)])
    widths = [max(1, len(t)) for t in tos]
    header = [f"{'-':<{first}}", *(f"{t:<{w}}" for t, w in zip(tos, widths, strict=True))]
    lines = [indent + " ".join(header).rstrip()]
    for src in froms:
        cells = [f"{mark(src, dst):<{w}}" for dst, w in zip(tos, widths, strict=True)]
        lines.append(indent + " ".join([f"{src:<{first}}", *cells]).rstrip())
    return "\n".join(lines)


def bool_mark(values: Mapping[Pair, bool]) -> Callable[[str, str], str]:
    """Cell renderer for booleans: ``.``/``X``; ``-`` on the diagonal, ``?`` if unknown."""

    def mark(src: str, dst: str) -> str:
        if src == dst:
            return "-"
        val = values.get((src, dst))
        if val is None:
            return "?"
        return "." if val else "X"

    return mark


@dataclass
class Matrix:
    """Observed reachability for one (port, protocol) over ``keys`` (rows = sources)."""

    keys: list[str]
    port: int
    protocol: Protocol
    results: dict[Pair, ProbeResult] = field(default_factory=dict)

    def connected(self, src: str, dst: str) -> bool:
        """Whether ``src`` reached ``dst`` (KeyError for unprobed pairs)."""
        return self.results[(src, dst)].ok

    def as_dict(self) -> dict[Pair, bool]:
        """Plain {(src, dst): connected}, comparable with an expectation."""
        return {pair: res.ok for pair, res in self.results.items()}

    def failures(self) -> dict[Pair, ProbeResult]:
        """The blocked cells with their failure kinds."""
        return {pair: res for pair, res in self.results.items() if not res.ok}

    def format(self, indent: str = "") -> str:
        """Upstream-style truth table."""
        return format_truth_table(self.keys, self.keys, bool_mark(self.as_dict()), indent)

    def __str__(self) -> str:
        return f"{self.protocol}/{self.port}:\n{self.format('  ')}"


def probe_matrix(
    probe_many: ProbeMany, keys: Sequence[str], port: int, protocol: Protocol, timeout: float
) -> Matrix:
    """Probe every ordered pair of ``keys`` (all in parallel)."""
    results = probe_many(ordered_pairs(keys), port, protocol, timeout)
    return Matrix(list(keys), port, protocol, results)


@dataclass
class Comparison:
    """Expected vs observed; ``mismatches`` lists differing cells (row-major)."""

    expected: dict[Pair, bool]
    observed: Matrix
    mismatches: list[Pair]
    retried: bool = False

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def format(self) -> str:
        """Expected, observed, comparison table and one line per wrong cell."""
        keys = self.observed.keys
        obs = self.observed.as_dict()
        bad = set(self.mismatches)

        def cmp_mark(src: str, dst: str) -> str:
            if src == dst:
                return "-"
            if (src, dst) not in self.expected or (src, dst) not in obs:
                return "?"
            return "X" if (src, dst) in bad else "."

        title = f"{self.observed.protocol}/{self.observed.port}"
        parts = [
            f"expected {title}:",
            format_truth_table(keys, keys, bool_mark(self.expected), "  "),
            f"observed {title}{' (after retrying wrong cells once)' if self.retried else ''}:",
            self.observed.format("  "),
            "comparison ('.' = as expected, 'X' = wrong):",
            format_truth_table(keys, keys, cmp_mark, "  "),
        ]
        if self.mismatches:
            parts.append(f"{len(self.mismatches)} wrong cell(s):")
        for src, dst in self.mismatches:
            res = self.observed.results[(src, dst)]
            want = "connected" if self.expected[(src, dst)] else "blocked"
            why = f"{res.kind} {res.detail}".strip()
            got = "connected" if res.ok else f"blocked ({why})"
            parts.append(f"  {src} -> {dst}: expected {want}, observed {got}")
        return "\n".join(parts)


def compare(expected: Mapping[Pair, bool], observed: Matrix) -> Comparison:
    """Cells where both sides have a value and they differ (self-pairs ignored)."""
    obs = observed.as_dict()
    mismatches = [
        pair
        for pair in ordered_pairs(observed.keys)
        if pair in expected and pair in obs and expected[pair] != obs[pair]
    ]
    return Comparison(dict(expected), observed, mismatches)


def retry_mismatches(probe_many: ProbeMany, comparison: Comparison, timeout: float) -> Comparison:
    """Re-probe only the wrong cells once; return the updated comparison."""
    if comparison.ok:
        return comparison
    old = comparison.observed
    again = probe_many(comparison.mismatches, old.port, old.protocol, timeout)
    merged = Matrix(old.keys, old.port, old.protocol, {**old.results, **again})
    result = compare(comparison.expected, merged)
    result.retried = True
    return result


def validate(
    probe_many: ProbeMany,
    expected: Mapping[Pair, bool],
    keys: Sequence[str],
    port: int,
    protocol: Protocol,
    timeout: float,
    retry: bool = True,
) -> Comparison:
    """Probe a full matrix, compare with ``expected``, retry wrong cells once if asked."""
    comparison = compare(expected, probe_matrix(probe_many, keys, port, protocol, timeout))
    if retry:
        comparison = retry_mismatches(probe_many, comparison, timeout)
    return comparison


def expect_all(keys: Iterable[str], value: bool = True) -> dict[Pair, bool]:
    """An expectation with every ordered pair set to ``value``."""
    return dict.fromkeys(ordered_pairs(list(keys)), value)
