"""A minimal Python weave peer for interop checks: the mesh handshake and our sleeve overlay.

Not an agent: one mesh connection (dialled, or the first one accepted), the real
handshake (router/mesh), TCP heartbeats every 30 s, our topology gossip (one peer and
its connection, re-sent when the connection is established), and the overlay switch
with sleeve (router/datapath) on UDP 6783.  Everything else the Go peer sends is read
and ignored.  It prints weave-style log lines and, every ``--report`` seconds, one JSON
line ``{"event": "status", ...}`` with our side's view of the forwarder; it exits 1 if
the handshake or the overlay fails, 0 after ``--duration`` seconds.

    python -m tests.interop.sleeve_peer --name ce:00:00:00:00:02 --nickname py1 \\
        (--connect 192.168.77.1 | --listen) [--password SECRET] [--duration 240] [--mute]

Run it inside a lab node namespace (tests/interop/sleeve_interop.py does).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections.abc import Callable
from typing import Any

from common.service import logs
from router.agent.overlay import OverlayConnection, OverlayConnectionParams
from router.datapath.control import OVERLAYS_FEATURE, parse_overlays_feature
from router.datapath.sleeve import MESH_PORT, SleeveOverlay
from router.datapath.switch import OverlaySwitch
from router.mesh import messages
from router.mesh.features import LocalFeatures, format_peer_name, parse_peer_name
from router.mesh.handshake import Handshake, HandshakeConfig, HandshakeResult
from router.mesh.protocol import (
    TCP_HEARTBEAT_INTERVAL,
    ProtocolTag,
    encode_message,
    parse_message,
)
from router.mesh.session import Session

OVERLAY_TAGS = frozenset({ProtocolTag.RESERVED1, ProtocolTag.RESERVED2, ProtocolTag.RESERVED3,
                          ProtocolTag.OVERLAY_CONTROL})
GOSSIP_TAGS = frozenset({ProtocolTag.GOSSIP, ProtocolTag.GOSSIP_UNICAST,
                         ProtocolTag.GOSSIP_BROADCAST})


Sender = Callable[[bytes], None]


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, "time": round(time.time(), 1), **fields}), flush=True)


class Peer:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.log = logs.get()
        self.name = parse_peer_name(args.name)
        self.uid = random.getrandbits(64)
        self.short_id = random.getrandbits(12)
        self.sleeve = SleeveOverlay(self.name, self.log, port=MESH_PORT)
        self.overlay = OverlaySwitch([("sleeve", self.sleeve)], self.log)
        self.topology_version = 0
        self.gossip_seen: dict[str, int] = {}

    async def run(self) -> int:
        await self.overlay.start()
        if self.args.connect:
            reader, writer = await asyncio.open_connection(self.args.connect, MESH_PORT)
            return await self.serve(reader, writer, outbound=True)
        accepted: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue())
        server = await asyncio.start_server(
            lambda r, w: accepted.put_nowait((r, w)), "0.0.0.0", MESH_PORT)
        emit("listening", port=MESH_PORT)
        async with server:
            reader, writer = await accepted.get()
            return await self.serve(reader, writer, outbound=False)

    async def handshake(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        outbound: bool) -> HandshakeResult:
        features: dict[str, str] = {}
        self.overlay.add_features(features)
        local = LocalFeatures(
            name=self.name, nickname=self.args.nickname, uid=self.uid,
            conn_id=random.getrandbits(64), short_id=self.short_id, trusts_remote=False,
            overlays=parse_overlays_feature(features[OVERLAYS_FEATURE]))
        password = self.args.password.encode() if self.args.password else None
        handshake = Handshake(HandshakeConfig(local, outbound, password), messages)
        writer.write(handshake.start())
        while True:
            data = await reader.read(65536)
            if not data:
                handshake.eof()
            progress = handshake.receive(data)
            writer.write(progress.send)
            if progress.error is not None:
                raise progress.error
            if progress.result is not None:
                return progress.result

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    outbound: bool) -> int:
        result = await self.handshake(reader, writer, outbound)
        session = result.session
        remote = result.remote
        peer = f"{format_peer_name(remote.name)}({remote.nickname})"
        local_addr = writer.get_extra_info("sockname")
        remote_addr = writer.get_extra_info("peername")
        emit("handshake", peer=peer, version=result.version, encrypted=session.encrypted,
             conn_uid=result.connection_uid)

        def send(payload: bytes) -> None:
            writer.write(session.seal(payload))

        params = OverlayConnectionParams(
            remote_name=remote.name, remote_nickname=remote.nickname,
            local_addr=(local_addr[0], local_addr[1]), remote_addr=(remote_addr[0], remote_addr[1]),
            outbound=outbound, conn_uid=result.connection_uid,
            session_key=result.session_key,  # we trust nobody: every link is "untrusted"
            send_control=lambda tag, body: send(encode_message(tag, body)),
            features=result.features)
        conn = await self.overlay.prepare_connection(params)
        if not self.args.mute:
            conn.confirm()
        connection = (remote.name, f"{remote_addr[0]}:{remote_addr[1]}", outbound)
        self.send_topology(send, connection, established=False)
        for payload in result.pending:
            self.handle(payload, conn)
        tasks = [asyncio.create_task(self.read(reader, session, conn)),
                 asyncio.create_task(self.heartbeat(send)),
                 asyncio.create_task(self.watch(conn, send, connection))]
        try:
            done, _ = await asyncio.wait(tasks, timeout=self.args.duration,
                                         return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                return task.result()
            emit("done", established=conn.established.is_set(), attrs=conn.attrs())
            return 0
        finally:
            for task in tasks:
                task.cancel()
            await conn.stop()
            writer.close()

    def send_topology(self, send: Sender, connection: tuple[int, str, bool],
                      established: bool) -> None:
        self.topology_version += 1
        remote_name, address, outbound = connection
        ours = messages.TopologyPeer(
            messages.PeerSummary(self.name.to_bytes(6, "big"), self.args.nickname, self.uid,
                                 self.topology_version, self.short_id, True),
            (messages.ConnectionSummary(remote_name.to_bytes(6, "big"), address, outbound,
                                        established),))
        body = messages.encode_gossip(messages.GossipBody(
            "topology", self.name, messages.encode_topology([ours])))
        send(encode_message(ProtocolTag.GOSSIP, body))

    def handle(self, payload: bytes, conn: OverlayConnection) -> None:
        message = parse_message(payload)
        if message is None:
            return
        if message.tag in OVERLAY_TAGS:
            conn.control_message(message.tag, message.body)
        elif message.tag in GOSSIP_TAGS:
            body = messages.decode_gossip(message.body,
                                          unicast=message.tag == ProtocolTag.GOSSIP_UNICAST)
            self.gossip_seen[body.channel] = self.gossip_seen.get(body.channel, 0) + 1

    async def read(self, reader: asyncio.StreamReader, session: Session,
                   conn: OverlayConnection) -> int:
        while True:
            data = await reader.read(65536)
            if not data:
                emit("closed", reason="the Go peer closed the TCP connection")
                return 1
            for payload in session.feed(data):
                self.handle(payload, conn)

    async def heartbeat(self, send: Sender) -> int:
        while True:
            await asyncio.sleep(TCP_HEARTBEAT_INTERVAL)
            send(encode_message(ProtocolTag.HEARTBEAT))

    async def watch(self, conn: OverlayConnection, send: Sender,
                    connection: tuple[int, str, bool]) -> int:
        began = time.monotonic()
        announced = False
        last_report = -self.args.report
        while True:
            if conn.failed.done():
                emit("failed", reason=str(conn.failed.result()))
                return 1
            if conn.established.is_set() and not announced:
                announced = True
                emit("established", after=round(time.monotonic() - began, 2), attrs=conn.attrs())
                self.send_topology(send, connection, established=True)
            if time.monotonic() - last_report >= self.args.report:
                last_report = time.monotonic()
                emit("status", uptime=round(last_report - began, 1),
                     established=conn.established.is_set(), attrs=conn.attrs(),
                     gossip=self.gossip_seen, dropped=self.sleeve.counters.data_frames_dropped)
            await asyncio.sleep(0.1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--nickname", required=True)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--connect", metavar="IP")
    target.add_argument("--listen", action="store_true")
    parser.add_argument("--password")
    parser.add_argument("--duration", type=float, default=240.0)
    parser.add_argument("--report", type=float, default=10.0)
    parser.add_argument("--mute", action="store_true",
                        help="announce sleeve but never start its forwarder (a control "
                             "experiment: the Go peer must give up on the connection)")
    args = parser.parse_args()
    logs.configure("info")
    return asyncio.run(Peer(args).run())


if __name__ == "__main__":
    sys.exit(main())
