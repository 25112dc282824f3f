"""One mesh connection (Go's ``LocalConnection``), driven by asyncio.

Its life: the handshake (:mod:`router.mesh.handshake`, sans-IO, fed from the socket; the
header within 10 s, the rest within 60 s); registration with the mesh, which may refuse it
(a name collision, ourselves, a duplicate that loses the tie-break, the connection limit);
the overlay's forwarder for it (:mod:`router.agent.overlay`), whose readiness makes the
connection *established*; then three tasks until the first of them fails: reading
(a message at least every 60 s, as the peer's heartbeats come every 30 s), writing
(control messages first, then what the gossip senders have merged), and heartbeats.  The
first error ends the connection, and the mesh forgets it.

Sending never blocks the caller: messages wait in the connection and go out as fast as
the socket takes them (``drain``), which is what lets gossip merge on a slow link.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from common.service.logs import Logger
from router.agent.gossip import GossipSender
from router.agent.overlay import OverlayConnection, OverlayConnectionParams
from router.mesh import messages
from router.mesh.features import LocalFeatures
from router.mesh.handshake import Handshake, HandshakeConfig, HandshakeResult
from router.mesh.names import PeerName
from router.mesh.protocol import (
    HEADER_TIMEOUT,
    TCP_HEARTBEAT_INTERVAL,
    TCP_READ_TIMEOUT,
    MeshProtocolError,
    ProtocolTag,
    encode_message,
    parse_message,
)
from router.mesh.session import Session
from router.mesh.topology_delta import (
    INCREMENTAL_TOPOLOGY_FEATURE,
    INCREMENTAL_TOPOLOGY_VERSION,
    IncrementalEncoder,
)

if TYPE_CHECKING:
    from router.agent.mesh import Mesh

READ_SIZE = 1 << 16
OVERLAY_TAGS = frozenset({ProtocolTag.RESERVED1, ProtocolTag.RESERVED2,
                          ProtocolTag.RESERVED3, ProtocolTag.OVERLAY_CONTROL})
GOSSIP_TAGS = frozenset({ProtocolTag.GOSSIP, ProtocolTag.GOSSIP_UNICAST,
                         ProtocolTag.GOSSIP_BROADCAST})


class ConnectionClosed(Exception):
    """Why a connection ended (the text is what the log and the status say)."""


class MeshConnection:
    def __init__(self, mesh: Mesh, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 *, outbound: bool, address: str, accept_new_peer: bool,
                 log: Logger, rng: random.Random) -> None:
        self.mesh = mesh
        self.reader = reader
        self.writer = writer
        self.outbound = outbound
        self.address = address
        """The remote's TCP address, ``ip:port`` (what status shows)."""
        self.accept_new_peer = accept_new_peer
        self.log = log
        self.conn_id = rng.getrandbits(64)
        self.uid = 0
        """Both ends' ConnIDs XORed, once the handshake is done."""
        self.remote: PeerName | None = None
        self.remote_nickname = ""
        self.remote_uid = 0
        self.referenced = False
        """The mesh holds a reference to the remote peer in its table for us."""
        self.topology_encoder: IncrementalEncoder | None = None
        """Set when both ends speak incremental topology updates (an extension of ours:
        see :mod:`router.mesh.topology_delta`); what the peer holds of each summary."""
        self.session: Session | None = None
        self.session_key: bytes | None = None
        self.features: dict[str, str] = {}
        self.established = False
        self.overlay: OverlayConnection | None = None
        self.senders: dict[str, GossipSender] = {}
        self.started = asyncio.get_running_loop().time()
        self._last_read = self.started
        self._urgent: list[bytes] = []
        self._wake = asyncio.Event()
        self._closing: asyncio.Future[Exception] = asyncio.get_running_loop().create_future()
        self._closed = asyncio.Event()

    def __str__(self) -> str:
        remote = f"{self.remote}({self.remote_nickname})" if self.remote is not None else ""
        return f"->[{self.address}|{remote}]" if remote else f"->[{self.address}]"

    # ---- the life of a connection -------------------------------------------------------
    async def run(self) -> None:
        """Handshake, register, serve until an error; always ends by tearing down."""
        error: Exception = ConnectionClosed("closed")
        try:
            result = await self._handshake()
            self._take(result)
            await self.mesh.register(self, result)
            for payload in result.pending:
                self._dispatch(payload)
            error = await self._serve()
        except (MeshProtocolError, ConnectionClosed, OSError, asyncio.IncompleteReadError,
                TimeoutError) as exc:
            error = exc
        finally:
            await self._teardown(error)

    async def _handshake(self) -> HandshakeResult:
        local = LocalFeatures(self.mesh.config.name, self.mesh.config.nickname, self.mesh.uid,
                              self.conn_id, self.mesh.short_id(),
                              self.mesh.trusts(self.address), self.mesh.overlay_names(),
                              extra=((INCREMENTAL_TOPOLOGY_FEATURE, INCREMENTAL_TOPOLOGY_VERSION),)
                              if self.mesh.config.incremental_topology else ())
        handshake = Handshake(HandshakeConfig(local, self.outbound, self.mesh.config.password),
                              messages)  # the module's functions are the features codec
        self.writer.write(handshake.start())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + HEADER_TIMEOUT
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError("handshake timed out")
            try:
                async with asyncio.timeout(left):
                    data = await self.reader.read(READ_SIZE)
            except ConnectionResetError:
                # Go resets a connection it refuses (it closes with our bytes unread),
                # often before its own pending write went out: as telling as a close,
                # whose message names the step the peer never finished.
                data = b""
            if not data:
                handshake.eof()
            progress = handshake.receive(data)
            if progress.send:
                self.writer.write(progress.send)
            if progress.error is not None:
                await self._flush_quietly()
                raise progress.error
            if progress.result is not None:
                await self.writer.drain()
                return progress.result
            deadline = max(deadline, loop.time() + TCP_READ_TIMEOUT - HEADER_TIMEOUT)

    def _take(self, result: HandshakeResult) -> None:
        self.session = result.session
        self.session_key = result.session_key
        self.uid = result.connection_uid
        self.features = result.features
        self.remote = PeerName(result.remote.name)
        self.remote_nickname = result.remote.nickname
        self.remote_uid = result.remote.uid
        if (self.mesh.config.incremental_topology
                and result.features.get(INCREMENTAL_TOPOLOGY_FEATURE)
                == INCREMENTAL_TOPOLOGY_VERSION):
            self.topology_encoder = IncrementalEncoder(self.mesh.summary_history)

    async def _serve(self) -> Exception:
        """Run the reader, writer and heartbeat until one of them (or a shutdown) ends
        the connection; the reason."""
        assert self.overlay is not None
        self._last_read = asyncio.get_running_loop().time()
        tasks = [asyncio.create_task(self._read_loop()), asyncio.create_task(self._write_loop()),
                 asyncio.create_task(self._heartbeat_loop()),
                 asyncio.create_task(self._read_deadline())]
        watched: list[asyncio.Future[Any]] = [*tasks, self._closing, self.overlay.failed]
        unwatch = self.overlay.established.watch(self._on_established)
        try:
            done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
            for future in done:
                if future in (self._closing, self.overlay.failed):
                    reason = future.result()
                    assert isinstance(reason, Exception)
                    return reason
                exc = future.exception()
                if exc is not None:
                    return exc if isinstance(exc, Exception) else ConnectionClosed(repr(exc))
            return ConnectionClosed("closed")
        finally:
            unwatch()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _on_established(self) -> None:
        """The overlay's data path works (called as it says so)."""
        if self._closing.done():
            return
        self.established = True
        self.mesh.connection_established(self)

    def shutdown(self, reason: Exception) -> None:
        """End the connection (from anywhere in the loop); the first reason wins."""
        if not self._closing.done():
            self._closing.set_result(reason)

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def _teardown(self, error: Exception) -> None:
        if self.remote is None:
            self.log.info(f"{self}: connection shutting down due to error during "
                          f"handshake: {describe(error)}")
        else:
            self.log.info(f"{self}: connection shutting down due to error: "
                          f"{describe(error)}")
        self.writer.close()
        if self.overlay is not None:
            await self.overlay.stop()
        self.mesh.connection_ended(self, error)
        self._closed.set()

    async def _flush_quietly(self) -> None:
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(1.0):
                await self.writer.drain()

    # ---- receiving ------------------------------------------------------------------------
    async def _read_loop(self) -> None:
        assert self.session is not None
        loop = asyncio.get_running_loop()
        while True:
            data = await self.reader.read(READ_SIZE)
            self._last_read = loop.time()
            if not data:
                self.session.check_clean_end()
                raise ConnectionClosed("EOF")
            for payload in self.session.feed(data):
                self._dispatch(payload)

    async def _read_deadline(self) -> None:
        """Go's read deadline: the connection ends when nothing came for
        TCP_READ_TIMEOUT.  One timer per connection, moved on as reads come, where a
        timeout around each read cost a timer per message."""
        loop = asyncio.get_running_loop()
        while (left := self._last_read + TCP_READ_TIMEOUT - loop.time()) > 0:
            await asyncio.sleep(left)
        raise TimeoutError

    def _dispatch(self, payload: bytes) -> None:
        message = parse_message(payload)
        if message is None:
            return  # a blank message: ignored, as Go does
        tag = message.known_tag
        if tag is ProtocolTag.HEARTBEAT:
            return
        if tag in OVERLAY_TAGS and self.overlay is not None:
            self.overlay.control_message(message.tag, message.body)
        elif tag in GOSSIP_TAGS:
            self.mesh.on_gossip_message(self, tag, message.body)
        else:
            self.log.debug(f"{self}: ignoring unknown protocol tag: {message.tag}")

    # ---- sending ----------------------------------------------------------------------------
    def send_message(self, tag: int, body: bytes = b"") -> None:
        """Queue a protocol message before any gossip (control messages, heartbeats)."""
        self._urgent.append(encode_message(tag, body))
        self._wake.set()

    def sender(self, channel: str) -> GossipSender:
        """The channel's pending data for this connection."""
        found = self.senders.get(channel)
        if found is None:
            found = self.senders[channel] = GossipSender(self._wake.set)
        return found

    async def _write_loop(self) -> None:
        assert self.session is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._urgent or any(not s.empty for s in self.senders.values()):
                while self._urgent:
                    self.writer.write(self.session.seal(self._urgent.pop(0)))
                for name, sender in list(self.senders.items()):
                    picked = sender.pick()
                    if picked is None:
                        continue
                    data, source = picked
                    for body in self.mesh.encode_gossip(self, name, data, source):
                        self.writer.write(self.session.seal(body))
                await self.writer.drain()

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(TCP_HEARTBEAT_INTERVAL)
            self.send_message(ProtocolTag.HEARTBEAT)

    # ---- what the overlay needs -----------------------------------------------------------
    def overlay_params(self, send_control: Callable[[int, bytes], None]
                       ) -> OverlayConnectionParams:
        assert self.remote is not None
        local = self.writer.get_extra_info("sockname")
        remote = self.writer.get_extra_info("peername")
        return OverlayConnectionParams(
            int(self.remote), self.remote_nickname, (str(local[0]), int(local[1])),
            (str(remote[0]), int(remote[1])), self.outbound, self.uid,
            self.session_key if self.untrusted() else None, send_control, self.features)

    def untrusted(self) -> bool:
        """Either end does not trust the other: the data path encrypts (with a password)."""
        trusted_by_remote = self.features.get("Trusted", "false").lower() in ("true", "1", "t")
        return not (self.mesh.trusts(self.address) and trusted_by_remote)

    def lived(self) -> float:
        return asyncio.get_running_loop().time() - self.started


def describe(error: BaseException) -> str:
    text = str(error)
    if isinstance(error, TimeoutError) and not text:
        return "read timeout"
    if isinstance(error, asyncio.IncompleteReadError):
        return "EOF"
    return text or type(error).__name__
