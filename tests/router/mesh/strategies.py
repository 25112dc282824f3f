"""Hypothesis strategies shared by the mesh wire tests."""

from __future__ import annotations

import itertools

from hypothesis import strategies as st


def payload_lists(max_size: int = 3000) -> st.SearchStrategy[list[bytes]]:
    """Up to eight payloads, each empty, small or up to ``max_size`` bytes."""
    sizes = st.one_of(st.integers(0, 40), st.integers(0, max_size))
    payload = sizes.flatmap(lambda n: st.binary(min_size=n, max_size=n))
    return st.lists(payload, max_size=8)


@st.composite
def chunked(draw: st.DrawFn, wire: bytes) -> list[bytes]:
    """``wire`` cut at random places: whole, in a few pieces, or byte by byte."""
    if len(wire) <= 1:
        return [wire]
    if len(wire) <= 4000 and draw(st.integers(0, 4)) == 0:
        return [wire[i:i + 1] for i in range(len(wire))]
    cuts = sorted(draw(st.sets(st.integers(1, len(wire) - 1), max_size=12)))
    bounds = [0, *cuts, len(wire)]
    return [wire[start:end] for start, end in itertools.pairwise(bounds)]
