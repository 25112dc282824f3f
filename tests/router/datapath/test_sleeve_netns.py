"""Sleeve between network namespaces: the real path MTU discovery of Go's sleeve.

On a 1500-byte link both ends must settle on 1438 (plain) or 1414 (encrypted), the MTU a
Go weaver reports.  Behind a router whose far link has a smaller MTU, the first MTU test
is lost, the router's ICMP "fragmentation needed" teaches the kernel the path MTU, the
next try is refused with EMSGSIZE, and the search restarts from the smaller value.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from common.kernel.netns import open_netns, write_sysctls
from common.lab.netns import delete_netns, ip_batch
from router.datapath.sleeve import MESH_PORT
from router.datapath.sleeve_forwarder import HeartbeatSchedule
from tests.router.datapath.overlay_nodes import OverlayPair

pytestmark = pytest.mark.kernel

PREFIX = f"nps{os.getpid()}"
"""Matches the conftest's sweep of labs left by dead test processes (np?<pid>-...)."""
KEY = bytes(range(32))
SCHEDULE = HeartbeatSchedule(fast=0.05, slow=0.5)


@contextmanager
def namespaces(*names: str) -> Iterator[dict[str, int]]:
    full = [f"{PREFIX}-{name}" for name in names]
    delete_netns(full)
    ip_batch(None, [f"netns add {name}" for name in full])
    fds: dict[str, int] = {}
    try:
        for short, name in zip(names, full, strict=True):
            fds[short] = open_netns(name)
            ip_batch(name, ["link set lo up"])
        yield fds
    finally:
        for fd in fds.values():
            os.close(fd)
        delete_netns(full)


def ns(name: str) -> str:
    return f"{PREFIX}-{name}"


@contextmanager
def direct_link(mtu: int) -> Iterator[dict[str, int]]:
    """a (10.201.0.1) and b (10.201.0.2) on one veth pair."""
    with namespaces("a", "b") as fds:
        ip_batch(None, [f"link add sa netns {ns('a')} mtu {mtu} type veth "
                        f"peer name sb netns {ns('b')} mtu {mtu}"])
        ip_batch(ns("a"), ["addr add 10.201.0.1/24 dev sa", "link set sa up"])
        ip_batch(ns("b"), ["addr add 10.201.0.2/24 dev sb", "link set sb up"])
        yield fds


@contextmanager
def routed_link(far_mtu: int) -> Iterator[dict[str, int]]:
    """a (10.202.1.1) -- 1500 -- r -- far_mtu -- b (10.202.2.2)."""
    with namespaces("a", "r", "b") as fds:
        ip_batch(None, [
            f"link add sa netns {ns('a')} type veth peer name ra netns {ns('r')}",
            f"link add sb netns {ns('b')} mtu {far_mtu} type veth "
            f"peer name rb netns {ns('r')} mtu {far_mtu}",
        ])
        ip_batch(ns("a"), ["addr add 10.202.1.1/24 dev sa", "link set sa up",
                           "route add default via 10.202.1.254"])
        ip_batch(ns("r"), ["addr add 10.202.1.254/24 dev ra", "link set ra up",
                           "addr add 10.202.2.254/24 dev rb", "link set rb up"])
        ip_batch(ns("b"), ["addr add 10.202.2.2/24 dev sb", "link set sb up",
                           "route add default via 10.202.2.254"])
        write_sysctls(fds["r"], {"net.ipv4.ip_forward": "1"})
        yield fds


def established_with_mtu(pair: OverlayPair, mtu: int) -> bool:
    return all(pair.established(agent) and pair.attrs(agent)["mtu"] == mtu
               for agent in (pair.a, pair.b))


@pytest.mark.parametrize(("key", "mtu"), [(None, 1438), (KEY, 1414)],
                         ids=["plain", "encrypted"])
def test_a_1500_byte_link_gives_go_s_mtu(key: bytes | None, mtu: int) -> None:
    with direct_link(1500) as fds, \
            OverlayPair(("10.201.0.1", "10.201.0.2"), port=MESH_PORT,
                        netns_fds=(fds["a"], fds["b"]), schedule=SCHEDULE) as pair:
        pair.connect((key, key))
        # The MTU reads as the candidate from the kernel's answer at once; its search
        # (one round trip here) ends later, with the log line checked below.
        pair.wait_for(lambda: established_with_mtu(pair, mtu) and all(
            agent.log.messages("sleeve: effective MTU verified") for agent in (pair.a, pair.b)),
            10.0, f"both ends established with mtu {mtu}, verified")
        for agent, peer in ((pair.a, "ce:00:00:00:00:02(b)"), (pair.b, "ce:00:00:00:00:01(a)")):
            assert agent.log.messages("sleeve: effective MTU verified") == [
                {"peer": peer, "mtu": mtu}]


@pytest.mark.parametrize(("key", "mtu"), [(None, 1338), (KEY, 1314)],
                         ids=["plain", "encrypted"])
def test_a_smaller_mtu_beyond_a_router_is_discovered(key: bytes | None, mtu: int) -> None:
    with routed_link(1400) as fds, \
            OverlayPair(("10.202.1.1", "10.202.2.2"), port=MESH_PORT,
                        netns_fds=(fds["a"], fds["b"]), schedule=SCHEDULE) as pair:
        pair.connect((key, key))
        pair.wait_for(lambda: established_with_mtu(pair, mtu), 10.0,
                      f"both ends established with mtu {mtu}")
