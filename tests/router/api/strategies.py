"""Hypothesis strategies for status snapshots (router.api.model) in the shapes the agent
fills: attributes as the overlay gives them, the data path's extras and IPAM's part in
their JSON form with every field Go prints."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from router.api.model import (
    BroadcastRoute,
    ConnectionStatus,
    LocalConnection,
    PeerStatus,
    Report,
    RouterStatus,
    UnicastRoute,
    VersionCheck,
)

texts = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=12)
"""Text without line breaks (a page's lines are split on them)."""
names = st.from_regex(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}", fullmatch=True)
addresses = st.from_regex(r"10\.0\.[0-9]{1,2}\.[0-9]{1,3}:[0-9]{2,5}", fullmatch=True)
uint64 = st.integers(0, 2**64 - 1)

attrs = st.none() | st.fixed_dictionaries(
    {"name": st.sampled_from(["sleeve", "fastdp"]), "mtu": st.integers(576, 9000)},
    optional={"encrypted": st.booleans()})

connections = st.builds(ConnectionStatus, names, texts, addresses, st.booleans(), st.booleans())
peers = st.builds(PeerStatus, names, texts, uint64, st.integers(0, 4095), uint64,
                  st.lists(connections, max_size=3).map(tuple))
local = st.builds(LocalConnection, addresses, st.booleans(),
                  st.sampled_from(["established", "pending", "retrying", "failed",
                                   "connecting", "waiting"]), texts, attrs)
times = st.from_regex(r"20[0-9]{2}-0[1-9]-1[0-9]T1[0-9]:[0-5][0-9]:[0-5][0-9](\.[0-9]{0,8}[1-9])?Z",
                      fullmatch=True)
macs = st.lists(st.fixed_dictionaries({"Mac": names, "Name": names, "NickName": texts,
                                       "LastSeen": times}), max_size=3)
extras = st.fixed_dictionaries({
    "Interface": texts,
    "CaptureStats": st.none() | st.dictionaries(texts, st.integers(0, 2**40), max_size=3),
    "MACs": st.none() | macs.filter(bool),
})
entries = st.fixed_dictionaries({"Token": texts, "Size": st.integers(0, 2**32 - 1),
                                 "Peer": names, "Nickname": texts,
                                 "IsKnownPeer": st.booleans(), "Version": st.integers(0, 99)})
ipam = st.fixed_dictionaries({
    "Paxos": st.none() | st.fixed_dictionaries({"Elector": st.booleans(),
                                                 "KnownNodes": st.integers(0, 9),
                                                 "Quorum": st.integers(0, 9)}),
    "Range": texts, "RangeNumIPs": st.integers(0, 2**32), "ActiveIPs": st.integers(0, 99),
    "DefaultSubnet": texts,
    "Entries": st.none() | st.lists(entries, min_size=1, max_size=3),
    "PendingClaims": st.none() | st.lists(st.fixed_dictionaries({
        "Ident": texts, "CIDR": st.fixed_dictionaries({"Addr": texts,
                                                       "PrefixLen": st.integers(0, 32)})}),
        min_size=1, max_size=2),
    "PendingAllocates": st.none() | st.lists(texts, min_size=1, max_size=2),
})
diagnostics: st.SearchStrategy[Any] = st.none() | st.dictionaries(
    st.sampled_from(["sleeve", "fastdp"]), st.none() | st.dictionaries(
        texts, st.integers(0, 99), max_size=2), max_size=2)


def _tuples(strategy: st.SearchStrategy[Any], max_size: int = 3) -> st.SearchStrategy[Any]:
    return st.lists(strategy, max_size=max_size).map(tuple)


routers = st.builds(
    RouterStatus, protocol=st.just("weave"), protocol_min_version=st.integers(1, 2),
    protocol_max_version=st.just(2), encryption=st.booleans(), peer_discovery=st.booleans(),
    name=names, nickname=texts, port=st.integers(1, 65535), peers=_tuples(peers),
    unicast_routes=_tuples(st.builds(UnicastRoute, names, names)),
    broadcast_routes=_tuples(st.builds(BroadcastRoute, names, _tuples(names))),
    connections=_tuples(local), termination_count=st.integers(0, 99),
    targets=_tuples(st.from_regex(r"10\.0\.0\.[0-9]{1,3}", fullmatch=True)),
    overlay_diagnostics=diagnostics, trusted_subnets=_tuples(texts), extra=extras)

reports = st.builds(Report, ready=st.booleans(), version=texts, router=routers,
                    services=st.fixed_dictionaries({}, optional={"IPAM": ipam}),
                    version_check=st.builds(VersionCheck, st.booleans(), st.booleans(),
                                            texts))
