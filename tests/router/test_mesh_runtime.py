"""The mesh runtime in one process: several meshes on loopback, real TCP, the real
handshake and gossip, no data path (the null overlay).  What real agents in network
namespaces do is tested in tests/router/test_agents.py."""

from __future__ import annotations

import asyncio
import random
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest

from router.agent.connection import MeshConnection
from router.agent.gossip import GossipData, Messages
from router.agent.mesh import GossipCounter, Mesh, MeshConfig
from router.agent.overlay import NullOverlay
from router.agent.topology import TopologyData
from router.mesh.names import PeerName
from router.mesh.peers import UpdateResult
from router.mesh.summary import PeerSummary
from router.mesh.topology_delta import Purpose, SummaryRequest
from tests.router.topology_strategies import fresh_table
from tests.support.doubles import RecordingLog


@dataclass
class Node:
    mesh: Mesh
    server: asyncio.Server
    log: RecordingLog

    @property
    def port(self) -> int:
        return int(self.server.sockets[0].getsockname()[1])

    @property
    def name(self) -> PeerName:
        return self.mesh.name


@dataclass
class Cluster:
    nodes: list[Node] = field(default_factory=list)

    async def add(self, index: int, *, password: bytes | None = None,
                  name: int | None = None, conn_limit: int = 200,
                  seed: int | None = None, incremental: bool = True,
                  gossip_interval: float = 1.0) -> Node:
        log = RecordingLog()
        peer = PeerName(name if name is not None else 0xCE0000000001 + index)
        mesh = Mesh(MeshConfig(peer, f"n{index}", password=password, conn_limit=conn_limit,
                               gossip_interval=gossip_interval, incremental_topology=incremental),
                    NullOverlay(), log,
                    random.Random(index if seed is None else seed))
        mesh.start()

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            host, port = writer.get_extra_info("peername")[:2]
            mesh.serve(reader, writer, outbound=False, address=f"{host}:{port}")

        server = await asyncio.start_server(accept, "127.0.0.1", 0)
        node = Node(mesh, server, log)
        self.nodes.append(node)
        return node

    async def connect(self, a: Node, b: Node) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", b.port)
        a.mesh.serve(reader, writer, outbound=True, address=f"127.0.0.1:{b.port}")

    async def close(self) -> None:
        for node in self.nodes:
            node.server.close()
            await node.mesh.stop()


@asynccontextmanager
async def cluster() -> AsyncIterator[Cluster]:
    running = Cluster()
    try:
        yield running
    finally:
        await running.close()


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 60))


def test_a_chain_gives_routes_through_the_middle_and_relays_unicast_gossip() -> None:
    """A - B - C: every peer learns the whole topology, A routes to C via B, and a
    unicast A sends C on a channel arrives, relayed by B (which has no gossiper for it:
    its surrogate channel relays)."""
    received: list[tuple[PeerName, bytes]] = []

    class Inbox:
        def on_unicast(self, source: PeerName, payload: bytes) -> None:
            received.append((source, payload))

        def on_broadcast(self, source: PeerName, payload: bytes) -> GossipData | None:
            return None

        def gossip(self) -> GossipData | None:
            return None

        def on_gossip(self, payload: bytes) -> GossipData | None:
            return None

    async def test() -> None:
        async with cluster() as c:
            a, b, z = [await c.add(i) for i in range(3)]
            await c.connect(a, b)
            await c.connect(b, z)
            names = {a.name, b.name, z.name}
            await until(lambda: all(n.mesh.table.names() == names for n in (a, b, z))
                        and a.mesh.routes.unicast(z.name) == b.name
                        and z.mesh.routes.unicast(a.name) == b.name)
            channel = a.mesh.new_gossip("test", Inbox())
            z.mesh.new_gossip("test", Inbox())
            channel.gossip_unicast(z.name, b"hello")
            await until(lambda: bool(received))
            assert received == [(a.name, b"hello")]
            assert any("created surrogate channel" in line[1] for line in b.log.lines)
    run(test)


def test_broadcast_reaches_every_peer_once() -> None:
    got: dict[PeerName, list[bytes]] = {}

    class Listener:
        def __init__(self, me: PeerName) -> None:
            self.me = me

        def on_unicast(self, source: PeerName, payload: bytes) -> None:
            pass

        def on_broadcast(self, source: PeerName, payload: bytes) -> GossipData | None:
            got.setdefault(self.me, []).append(payload)
            return Messages((payload,))

        def gossip(self) -> GossipData | None:
            return None

        def on_gossip(self, payload: bytes) -> GossipData | None:
            return None

    async def test() -> None:
        async with cluster() as c:
            nodes = [await c.add(i) for i in range(5)]
            for i, j in ((0, 1), (1, 2), (2, 3), (3, 4), (4, 0), (1, 3)):  # a ring + a chord
                await c.connect(nodes[i], nodes[j])
            names = {n.name for n in nodes}
            await until(lambda: all(n.mesh.table.names() == names for n in nodes)
                        and all(len(n.mesh.routes.unicast_table) == 5 for n in nodes))
            channels = [n.mesh.new_gossip("bcast", Listener(n.name)) for n in nodes]
            channels[0].gossip_broadcast(Messages((b"news",)))
            await until(lambda: len(got) == 4)
            await asyncio.sleep(0.3)
            assert got == {n.name: [b"news"] for n in nodes[1:]}
    run(test)


def test_a_restarted_peer_is_a_new_incarnation() -> None:
    """C leaves and a new C (same name, new UID) joins: the others take its new summary
    (the old incarnation's connections are gone) and route to it again."""
    async def test() -> None:
        async with cluster() as c:
            a, b, z = [await c.add(i) for i in range(3)]
            await c.connect(a, b)
            await c.connect(z, b)
            await until(lambda: a.mesh.routes.unicast(z.name) == b.name)
            old_uid = z.mesh.uid
            z.server.close()
            await z.mesh.stop()
            await until(lambda: z.name not in a.mesh.table.names())
            c.nodes.remove(z)
            again = await c.add(2, seed=99)
            assert again.mesh.uid != old_uid
            await c.connect(again, b)
            await until(lambda: (s := a.mesh.table.get(z.name)) is not None
                        and s.uid == again.mesh.uid
                        and a.mesh.routes.unicast(z.name) == b.name)
    run(test)


def test_simultaneous_connections_leave_one() -> None:
    async def test() -> None:
        async with cluster() as c:
            a, b = await c.add(0), await c.add(1)
            await asyncio.gather(c.connect(a, b), c.connect(b, a))
            await until(lambda: len(a.mesh.connections) == 1 and len(b.mesh.connections) == 1
                        and not a.mesh.handshaking and not b.mesh.handshaking)
            await asyncio.sleep(0.3)
            assert a.mesh.connections[b.name].uid == b.mesh.connections[a.name].uid
            assert any("Multiple connections" in line[1] for n in (a, b)
                       for line in n.log.lines)
    run(test)


def test_a_name_collision_is_said_in_one_clear_line() -> None:
    """Two peers with the same name (cloned machines): refused, with a line naming the
    address, both UIDs and what to do."""
    async def test() -> None:
        async with cluster() as c:
            a = await c.add(0)
            twin = await c.add(1, name=int(a.name))
            await c.connect(twin, a)
            await until(lambda: any("peer name collision" in line[1]
                                    for line in a.log.lines + twin.log.lines))
            errors = [line for n in (a, twin) for line in n.log.lines
                      if "peer name collision" in line[1]]
            assert all(line[0] == "error" for line in errors)
            text = errors[0][1]
            assert str(a.mesh.uid) in text and str(twin.mesh.uid) in text
            assert "--name" in text and "machine-id" in text
            assert not a.mesh.connections and not twin.mesh.connections
    run(test)


@pytest.mark.parametrize("passwords", [(b"s3cret", b"s3cret"), (b"s3cret", b"other"),
                                       (b"s3cret", None)], ids=["same", "wrong", "one-sided"])
def test_passwords(passwords: tuple[bytes | None, bytes | None]) -> None:
    async def test() -> None:
        async with cluster() as c:
            a = await c.add(0, password=passwords[0])
            b = await c.add(1, password=passwords[1])
            await c.connect(a, b)
            if passwords[0] == passwords[1]:
                await until(lambda: b.name in a.mesh.connections
                            and a.mesh.connections[b.name].established)
                assert a.mesh.connections[b.name].session_key is not None
                return
            await until(lambda: sum("shutting down" in line[1] for n in (a, b)
                                    for line in n.log.lines) >= 2)
            for node in (a, b):
                reasons = [line[1] for line in node.log.lines if "shutting down" in line[1]]
                assert reasons and all("password" in r for r in reasons), reasons
            assert not a.mesh.connections and not b.mesh.connections
    run(test)


def test_a_peer_that_resets_the_connection_in_the_handshake_is_said_so_by_step() -> None:
    """Go refuses a connection by closing it with our bytes unread, a reset that often
    beats its own pending write: the log names the step the peer never finished, with
    the likely cause, not "Connection reset by peer"."""
    async def test() -> None:
        async with cluster() as c:
            a = await c.add(0, password=b"s3cret")

            async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                             ) -> None:
                await reader.readexactly(4)  # some of our header, the rest left unread
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()

            server = await asyncio.start_server(refuse, "127.0.0.1", 0)
            try:
                port = server.sockets[0].getsockname()[1]
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                a.mesh.serve(reader, writer, outbound=True, address=f"127.0.0.1:{port}")
                await until(lambda: any("shutting down" in msg for _, msg, _ in a.log.lines))
            finally:
                server.close()
            reasons = [msg for _, msg, _ in a.log.lines if "shutting down" in msg]
            assert len(reasons) == 1, reasons
            assert "the peer closed the connection during the protocol header" in reasons[0]
            assert "reset" not in reasons[0].lower()
    run(test)


def test_the_connection_limit_refuses_the_extra_connection() -> None:
    async def test() -> None:
        async with cluster() as c:
            hub = await c.add(0, conn_limit=1)
            a, b = await c.add(1), await c.add(2)
            await c.connect(a, hub)
            await until(lambda: len(hub.mesh.connections) == 1)
            await c.connect(b, hub)
            await until(lambda: any("Connection limit reached (1)" in line[1]
                                    for line in hub.log.lines + b.log.lines))
            assert set(hub.mesh.connections) == {a.name}
    run(test)


def test_incremental_topology_between_ours_and_the_original_format_with_others() -> None:
    """A and C speak incremental updates; B gossips as the original does.  Everybody ends
    with the same table; A-C's direct link uses deltas once the first summaries went."""
    async def test() -> None:
        async with cluster() as c:
            a, b, z = await c.add(0), await c.add(1, incremental=False), await c.add(2)
            d = await c.add(3)
            for x, y in ((a, b), (b, z), (a, z), (d, a)):
                await c.connect(x, y)
            nodes = (a, b, z, d)

            def tables() -> list[object]:
                return [sorted((s.name, s.uid, s.version, s.connections)
                               for s in n.mesh.table.summaries()) for n in nodes]

            await until(lambda: all(len(n.mesh.table.names()) == 4 for n in nodes)
                        and all(t == tables()[0] for t in tables()))
            assert a.mesh.connections[z.name].topology_encoder is not None
            assert a.mesh.connections[b.name].topology_encoder is None
            assert b.mesh.connections[a.name].topology_encoder is None
            # a change travels in both formats and the tables agree again
            e = await c.add(4)
            await c.connect(e, b)
            await until(lambda: all(len(n.mesh.table.names()) == 5 for n in nodes)
                        and all(t == tables()[0] for t in tables()))
    run(test)


async def full_mesh(c: Cluster, size: int, *, incremental: bool = True,
                    gossip_interval: float = 600) -> list[Node]:
    members = [await c.add(i, incremental=incremental, gossip_interval=gossip_interval)
               for i in range(size)]
    for i, a in enumerate(members):
        for b in members[i + 1:]:
            await c.connect(a, b)
    await until(lambda: agree(members, size), 20)
    return members


def agree(nodes: list[Node], peers: int) -> bool:
    """Every table the same, of ``peers`` peers, and every connection established."""
    tables = [sorted((s.name, s.version, s.connections) for s in n.mesh.table.summaries())
              for n in nodes]
    return all(len(t) == peers and t == tables[0] for t in tables) and all(
        sum(conn.established for conn in n.mesh.connections.values()) == peers - 1
        for n in nodes)


async def join_cost(incremental: bool, size: int = 6) -> tuple[int, int]:
    """A newcomer dials every member of a full mesh at once: the topology bytes it
    received until every table agrees, and the same in total over the members."""
    async with cluster() as c:
        members = await full_mesh(c, size, incremental=incremental, gossip_interval=1.0)
        before = [n.mesh.stats.copy() for n in members]
        newcomer = await c.add(size, incremental=incremental)
        await asyncio.gather(*(c.connect(newcomer, m) for m in members))
        await until(lambda: agree([*members, newcomer], size + 1), 20)

        def topology_bytes(counters: dict[str, GossipCounter]) -> int:
            return sum(v.bytes for k, v in counters.items() if k.startswith("topology"))

        mine = topology_bytes(newcomer.mesh.stats.received)
        total = sum(topology_bytes(n.mesh.stats.sent) - topology_bytes(b.sent)
                    for n, b in zip(members, before, strict=True))
        return mine, total + topology_bytes(newcomer.mesh.stats.sent)


def test_a_newcomer_gets_digests_not_every_neighbours_whole_topology() -> None:
    """weaveworks/mesh#108: Go sends the whole topology down every new connection, so a
    newcomer to an N-mesh receives it N times.  Between our agents each neighbour sends a
    digest and the newcomer asks for each summary about once."""
    async def test() -> None:
        ours_in, ours_total = await join_cost(incremental=True)
        go_in, go_total = await join_cost(incremental=False)
        print(f"newcomer received {ours_in} B (original format {go_in} B); "
              f"the mesh sent {ours_total} B (original format {go_total} B)")
        assert ours_in * 2 < go_in
        assert ours_total * 2 < go_total
    run(test)


@pytest.mark.parametrize("dialled", [1, 2])
def test_in_a_full_mesh_of_ours_each_update_reaches_each_peer_once(dialled: int) -> None:
    """Our own updates go to every neighbour and news is relayed only to neighbours the
    sender does not have: a newcomer connecting to one member of a full mesh, and that
    member's update, reach every other member exactly once (Go's random relaying
    delivers each about log N times).  Connected to two members, the newcomer's news
    about itself reaches both, and only the lower-named passes it on."""
    async def test() -> None:
        async with cluster() as c:
            members = [await c.add(i, gossip_interval=600) for i in range(6)]
            for i, a in enumerate(members):
                for b in members[i + 1:]:
                    await c.connect(a, b)

            def agreed(nodes: list[Node]) -> bool:
                tables = [sorted((s.name, s.version, s.connections)
                                 for s in n.mesh.table.summaries()) for n in nodes]
                return all(t == tables[0] for t in tables) and all(
                    all(conn.established for conn in n.mesh.connections.values())
                    for n in nodes)

            await until(lambda: agreed(members) and len(members[0].mesh.table.names()) == 6)
            await asyncio.sleep(1.5)  # nothing left in the batches
            seen: dict[PeerName, list[tuple[PeerName, int]]] = {m.name: [] for m in members}
            for member in members[1:]:
                gossiper = member.mesh.topology
                original = gossiper.apply

                def recording(summaries: Sequence[PeerSummary], *, at: PeerName = member.name,
                              apply: Callable[..., UpdateResult] = original) -> UpdateResult:
                    seen[at].extend((s.name, s.version) for s in summaries)
                    return apply(summaries)
                gossiper.apply = recording  # type: ignore[method-assign]
            newcomer = await c.add(6, gossip_interval=600)
            await asyncio.gather(*(c.connect(newcomer, m) for m in members[:dialled]))
            await until(lambda: agreed([*members, newcomer])
                        and len(members[-1].mesh.table.names()) == 7)
            await asyncio.sleep(1.5)
            for member in members[1:]:
                got = seen[member.name]
                assert {name for name, _ in got} >= {members[0].name, newcomer.name}
                assert len(got) == len(set(got)), f"{member.name} got an update twice: {got}"
    run(test)


def topology_messages(counters: dict[str, GossipCounter]) -> int:
    return sum(v.messages for k, v in counters.items() if k.startswith("topology"))


def test_members_news_of_a_join_goes_through_the_hub_in_a_few_messages() -> None:
    """A newcomer dials every member of a full mesh: each member's news (its connection
    to the newcomer) goes to the hub (the lowest-named member) alone, which passes it on
    with the others' in a few messages, not one from every member to every member.  The
    hub's own news goes through the next-lowest-named."""
    size = 12

    async def test() -> None:
        async with cluster() as c:
            members = await full_mesh(c, size)
            await asyncio.sleep(1.5)  # nothing left in the batches
            hub, second = sorted(members, key=lambda n: n.name)[:2]
            before = {n.name: (n.mesh.stats.copy()) for n in members}
            newcomer = await c.add(size, gossip_interval=600)
            await asyncio.gather(*(c.connect(newcomer, m) for m in members))
            await until(lambda: agree([*members, newcomer], size + 1), 20)
            await asyncio.sleep(1.5)
            sent = {n.name: topology_messages(n.mesh.stats.sent)
                    - topology_messages(before[n.name].sent) for n in members}
            received = {n.name: topology_messages(n.mesh.stats.received)
                        - topology_messages(before[n.name].received) for n in members}
            others = [n.name for n in members if n not in (hub, second)]
            # a digest, the summaries the newcomer asks for, and our news to the hub
            assert max(sent[name] for name in others) <= 5, sent
            assert min(sent[hub.name], sent[second.name]) >= size - 1, sent
            # members' news arrives batched: fewer messages than members
            assert max(received[name] for name in others) < size, received
    run(test)


def test_members_wait_for_news_rather_than_pull_a_newcomers_view() -> None:
    """A newcomer's digest is ahead of each member's table (by the news of its own
    arrival, on its way): members do not ask the newcomer for those summaries, and
    still agree on everything once the news came."""
    async def test() -> None:
        async with cluster() as c:
            members = await full_mesh(c, 8)
            await asyncio.sleep(1.5)
            newcomer = await c.add(8, gossip_interval=600)
            pulls: list[tuple[PeerName | None, frozenset[PeerName]]] = []
            for member in members:
                original = member.mesh._send_incremental

                def recording(conn: MeshConnection, message: object, *,
                              send: Callable[..., None] = original) -> None:
                    if isinstance(message, SummaryRequest):
                        pulls.append((conn.remote, message.names))
                    send(conn, message)
                member.mesh._send_incremental = recording  # type: ignore[method-assign]
            await asyncio.gather(*(c.connect(newcomer, m) for m in members))
            await until(lambda: agree([*members, newcomer], 9), 20)
            assert not [names for remote, names in pulls if remote == newcomer.name], pulls
    run(test)


def test_news_the_hub_cannot_read_yet_is_passed_on_once_asked_for_whole() -> None:
    """The hub lacks the base of a member's delta: it asks for the whole summary and
    passes that on when it comes."""
    async def test() -> None:
        async with cluster() as c:
            members = await full_mesh(c, 5)
            await asyncio.sleep(1.5)
            hub = min(members, key=lambda n: n.name)
            member = max(members, key=lambda n: n.name)
            for conn in hub.mesh.connections.values():
                assert conn.topology_encoder is not None
            hub.mesh.summary_history.forget_peers([member.name])
            newcomer = await c.add(9, gossip_interval=600)
            await c.connect(newcomer, member)
            await until(lambda: agree([*members, newcomer], 6)
                        or all(n.mesh.table.get(member.name)
                               == member.mesh.table.local_summary() for n in members), 20)
            ours = member.mesh.table.local_summary()
            assert all(n.mesh.table.get(member.name) == ours for n in members)
            assert not hub.mesh._passing_awaited
    run(test)


def test_pending_topology_data_keeps_the_strongest_reason_per_peer() -> None:
    table = fresh_table()
    a, b, z = PeerName(1), PeerName(2), PeerName(3)
    first = TopologyData(table, {a: Purpose.REPAIR, b: Purpose.NEWS})
    merged = first.merge(TopologyData(table, {a: Purpose.ANSWER, z: Purpose.NEWS}))
    assert isinstance(merged, TopologyData)
    assert merged.purposes == {a: Purpose.ANSWER, b: Purpose.NEWS, z: Purpose.NEWS}
    again = merged.merge(TopologyData(table, {a: Purpose.REPAIR}))
    assert isinstance(again, TopologyData) and again.purposes[a] is Purpose.ANSWER


def test_a_silent_peer_is_dropped_after_the_read_timeout(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing from the peer for TCP_READ_TIMEOUT (heartbeats every 30 s, here far
    apart): the connection ends with a read timeout, as Go's read deadline ends it."""
    monkeypatch.setattr("router.agent.connection.TCP_READ_TIMEOUT", 0.5)

    async def test() -> None:
        async with cluster() as c:
            a, b = await c.add(0, gossip_interval=600), await c.add(1, gossip_interval=600)
            await c.connect(a, b)
            await until(lambda: b.name in a.mesh.connections)
            await until(lambda: any("read timeout" in msg for _, msg, _ in a.log.lines), 5)
            assert b.name not in a.mesh.connections
    run(test)


def test_periodic_gossip_repairs_an_update_that_never_went() -> None:
    """A's own updates are swallowed: its neighbours learn of its new connection only
    from the periodic gossip (a digest between ours, from which they ask for it), and
    the original's whole topology to a peer speaking the original format."""
    async def test() -> None:
        async with cluster() as c:
            a = await c.add(0, gossip_interval=0.3)
            b = await c.add(1, gossip_interval=0.3)
            old = await c.add(2, gossip_interval=0.3, incremental=False)
            await c.connect(a, b)
            await c.connect(a, old)
            await until(lambda: all(len(n.mesh.table) == 3 for n in (a, b, old)))

            def swallow(names: frozenset[PeerName]) -> None:
                pass
            a.mesh.pending_updates.send = swallow
            d = await c.add(3, gossip_interval=600)
            await c.connect(d, a)
            await until(lambda: d.name in a.mesh.connections
                        and a.mesh.connections[d.name].established)
            ours = a.mesh.table.local_summary()
            await until(lambda: b.mesh.table.get(a.name) == ours, 10)
            await until(lambda: old.mesh.table.get(a.name) == ours, 10)
            assert any(k == "topology-incremental" for k in a.mesh.stats.sent)
    run(test)
