"""Sleeve's I/O: the UDP socket on the mesh port, shared by every connection's forwarder.

Background (weave 2.8.1 ``router/sleeve.go``): sleeve listens on UDP at the mesh port
(6783) and sends from it, so a peer behind NAT is reached at the address its datagrams
come from.  A received datagram goes to the forwarder registered under its sender name
(the forwarders register when their connection is confirmed; the last one confirmed for
a peer wins); datagrams from peers without a forwarder, and frames that do not come from
that peer to us, are ignored.  Special frames drive the forwarder
(:mod:`.sleeve_forwarder`); other frames are pods' Ethernet frames.

DF: Go sends DF datagrams through a raw ``ip4:UDP`` socket set to IP_PMTUDISC_DO and the
rest through the UDP socket set to IP_PMTUDISC_DONT.  Here the UDP socket is switched to
IP_PMTUDISC_DO around each DF send: the kernel reads the setting when it builds the
datagram, and the event loop is single-threaded, so no other send sees it.  When the
kernel refuses a DF datagram with EMSGSIZE, the path MTU is read with IP_MTU from a
throwaway socket connected to the peer (connecting sends nothing; IP_MTU needs a
connected socket), which sees the same route and learned PMTU.

Not done yet: frames of pods are counted and dropped (with a debug line), and nothing
sends them; the data path (capture, MAC learning, forwarding) comes next.
"""

from __future__ import annotations

import asyncio
import errno
import math
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from common.kernel.sockets import set_buffer
from router.agent.overlay import Latch, OverlayConnectionParams, OverlayError
from router.datapath.sleeve_crypto import (
    DatagramOpener,
    DatagramSealer,
    NaClOpener,
    NaClSealer,
    PlainOpener,
    PlainSealer,
    dataplane_overhead,
)
from router.datapath.sleeve_forwarder import (
    Address,
    HeartbeatSchedule,
    SleeveForwarderState,
    SleeveSendError,
)
from router.datapath.sleeve_frames import (
    MAX_UDP_PACKET_SIZE,
    SleeveFormatError,
    SleeveFrame,
    decode_frames,
    encode_frame,
    is_special,
    split_sender,
)
from router.mesh.features import format_peer_name

if TYPE_CHECKING:
    from common.service.logs import Logger

MESH_PORT: Final = 6783
# <linux/in.h>; the socket module does not export them.
IP_MTU_DISCOVER: Final = 10
IP_PMTUDISC_DONT: Final = 0
IP_PMTUDISC_DO: Final = 2
IP_MTU: Final = 14
READS_PER_WAKEUP: Final = 64
"""Datagrams read per readiness callback before yielding to other work."""
EARLY_HOLD: Final = 2.0
"""How long the last datagram from a peer without a forwarder is kept for the forwarder
about to be registered: the dialling end heartbeats as soon as its side of the handshake
is done, and the first heartbeat often arrives before the accepting end has registered
the connection.  Dropped, it cost the retry (0.1 s, doubling); on an agent busy with a
hundred new connections at once, a second or more for the last of them."""
EARLY_KEPT: Final = 256
"""Peers whose early datagram is kept at most (the sender's name is not authenticated)."""
EARLY_MAX_SIZE: Final = 512
"""The largest early datagram kept: a heartbeat, sealed, is about a hundred bytes; the
rest (data, a fragmentation test) waits for nothing and would only cost memory."""
RECEIVE_BUFFER: Final = 8 << 20
"""The UDP socket's receive buffer (the kernel grants twice this).  Its default, about
200 KB, holds two fragmentation tests: every peer sends one (60001 bytes) as its
connection is established, so an agent joining a mesh of a hundred had most of its
peers' datagrams dropped while it was busy, heartbeats among them, and each lost
heartbeat held that connection up for a retry.  The pods' traffic through sleeve wants
the room too.  It is kernel memory, used only while datagrams wait."""
TIMER_GRAIN: Final = 0.5
"""A forwarder's deadline further off than :data:`COARSE_AFTER` (the slow heartbeat, the
silence timeout, the periodic fragmentation test) is put off to the next multiple of
this on the loop's clock, so that the forwarders of an agent with a hundred connections
wake it together, twice a second, rather than each on its own, ten times a second.  A
heartbeat goes at most this much later than Go's 10 s (a peer times out after 60 s)."""
COARSE_AFTER: Final = 2.0
"""Deadlines nearer than this (heartbeat retries, MTU tests) are kept to the moment."""
_DROPPED_SEND_ERRORS: Final = frozenset({errno.EAGAIN, errno.ENOBUFS})
"""A full send buffer loses the datagram, as a congested network would."""


@dataclass
class SleeveCounters:
    datagrams_received: int = 0
    datagrams_unknown_sender: int = 0
    datagrams_malformed: int = 0
    data_frames_dropped: int = 0


class SleeveOverlay:
    """The sleeve overlay of one agent: :class:`router.agent.overlay.Overlay`."""

    def __init__(self, local_name: int, log: Logger, host: str = "0.0.0.0",
                 port: int = MESH_PORT, schedule: HeartbeatSchedule | None = None) -> None:
        self.local_name = local_name
        self._log = log
        self._host = host
        self._port = port
        self.schedule = schedule or HeartbeatSchedule()
        self.counters = SleeveCounters()
        self._sock: socket.socket | None = None
        self._forwarders: dict[int, SleeveConnection] = {}
        self._early: dict[int, tuple[float, Address, bytes]] = {}
        """Peer name -> (when, sender, body) of its last datagram before a forwarder."""

    @property
    def address(self) -> Address:
        """The bound UDP address (after start)."""
        if self._sock is None:
            raise RuntimeError("the sleeve overlay is not started")
        host, port = self._sock.getsockname()
        return str(host), int(port)

    async def start(self) -> None:
        if self._sock is not None:
            raise RuntimeError("the sleeve overlay is already started")
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DONT)
            set_buffer(sock, socket.SO_RCVBUF, RECEIVE_BUFFER)
            sock.bind((self._host, self._port))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._read_datagrams)

    def add_features(self, features: dict[str, str]) -> None:
        """Sleeve adds none (the switch announces ``Overlays``)."""

    async def prepare_connection(self, params: OverlayConnectionParams) -> SleeveConnection:
        if self._sock is None:
            raise OverlayError("the sleeve overlay is not started")
        return SleeveConnection(self, params, self._log)

    def diagnostics(self) -> dict[str, Any] | None:
        return None

    async def stop(self) -> None:
        if self._sock is None:
            return
        asyncio.get_running_loop().remove_reader(self._sock.fileno())
        self._sock.close()
        self._sock = None
        for forwarder in list(self._forwarders.values()):
            await forwarder.stop()

    # ---- used by the connections ---------------------------------------------------
    def register(self, forwarder: SleeveConnection) -> tuple[Address, bytes] | None:
        """Route the peer's datagrams to ``forwarder``; the one that came just before,
        if any, for the forwarder to take once started."""
        self._forwarders[forwarder.remote_name] = forwarder
        early = self._early.pop(forwarder.remote_name, None)
        if early is None or asyncio.get_running_loop().time() - early[0] > EARLY_HOLD:
            return None
        return early[1], early[2]

    def unregister(self, forwarder: SleeveConnection) -> None:
        if self._forwarders.get(forwarder.remote_name) is forwarder:
            del self._forwarders[forwarder.remote_name]

    def transmit(self, datagram: bytes, address: Address, df: bool) -> int | None:
        """Send a datagram; returns the path MTU when a DF one is refused as too big."""
        sock = self._sock
        if sock is None:
            raise SleeveSendError("the sleeve overlay is stopped")
        try:
            if df:
                sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
            try:
                sock.sendto(datagram, address)
            finally:
                if df:
                    sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DONT)
        except OSError as error:
            if df and error.errno == errno.EMSGSIZE:
                return self._path_mtu(address)
            if error.errno in _DROPPED_SEND_ERRORS:
                self._log.debug("sleeve: send buffer full, datagram dropped",
                                address=f"{address[0]}:{address[1]}")
                return None
            raise SleeveSendError(
                f"sending {len(datagram)} bytes to {address[0]}:{address[1]}: "
                f"{error.strerror or error}") from error
        return None

    def _path_mtu(self, address: Address) -> int:
        try:
            return path_mtu(address)
        except OSError as error:
            raise SleeveSendError(
                f"reading the path MTU to {address[0]}:{address[1]}: "
                f"{error.strerror or error}") from error

    # ---- receiving -----------------------------------------------------------------
    def _read_datagrams(self) -> None:
        for _ in range(READS_PER_WAKEUP):
            sock = self._sock
            if sock is None:
                return
            try:
                datagram, sender = sock.recvfrom(MAX_UDP_PACKET_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                self._log.info("sleeve: ignoring UDP read error", error=str(error))
                continue
            self._dispatch(datagram, (str(sender[0]), int(sender[1])))

    def _dispatch(self, datagram: bytes, sender: Address) -> None:
        self.counters.datagrams_received += 1
        try:
            name, body = split_sender(datagram)
        except SleeveFormatError:
            self.counters.datagrams_malformed += 1
            self._log.info("sleeve: ignoring too short UDP packet",
                           sender=f"{sender[0]}:{sender[1]}")
            return
        forwarder = self._forwarders.get(name)
        if forwarder is None:
            self.counters.datagrams_unknown_sender += 1
            self._keep_early(name, sender, body)
            return
        forwarder.datagram_received(sender, body)

    def _keep_early(self, name: int, sender: Address, body: bytes) -> None:
        if len(body) > EARLY_MAX_SIZE:
            return
        now = asyncio.get_running_loop().time()
        if len(self._early) >= EARLY_KEPT and name not in self._early:
            self._early = {n: kept for n, kept in self._early.items()
                           if now - kept[0] <= EARLY_HOLD}
            if len(self._early) >= EARLY_KEPT:
                return
        self._early[name] = (now, sender, body)


def path_mtu(address: Address) -> int:
    """The kernel's path MTU towards ``address`` (route MTU or learned PMTU)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(address)
        return int(probe.getsockopt(socket.IPPROTO_IP, IP_MTU))


class SleeveConnection:
    """The sleeve forwarder of one mesh connection: an OverlayConnection, and the
    :class:`SleeveLink` its state machine sends through."""

    def __init__(self, overlay: SleeveOverlay, params: OverlayConnectionParams,
                 log: Logger) -> None:
        self._overlay = overlay
        self._params = params
        self.remote_name = params.remote_name
        self._log: Logger = PeerLogger(log, peer_label(params))
        self._loop = asyncio.get_running_loop()
        self.established = Latch()
        self.failed: asyncio.Future[Exception] = self._loop.create_future()
        self._sealer, self._sealer_df, self._opener = _crypto(overlay.local_name, params)
        self._state = SleeveForwarderState(
            conn_uid=params.conn_uid,
            remote_address=params.remote_addr if params.outbound else None,
            overhead=dataplane_overhead(self._sealer_df),
            link=self, log=self._log, schedule=overlay.schedule)
        self._timer: asyncio.TimerHandle | None = None
        self._stopped = False
        self.data_frames_dropped = 0

    # ---- OverlayConnection ---------------------------------------------------------
    def confirm(self) -> None:
        if self._stopped:
            return
        early = self._overlay.register(self)
        self._state.confirm(self._loop.time())
        self._settle()
        if early is not None:
            self.datagram_received(*early)

    def control_message(self, tag: int, body: bytes) -> None:
        if self._stopped:
            return
        self._state.control_message(self._loop.time(), tag, body)
        self._settle()

    def attrs(self) -> dict[str, Any]:
        return {"name": "sleeve", "mtu": self._state.mtu}

    async def stop(self) -> None:
        self._stopped = True
        self._overlay.unregister(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    @property
    def remote_address(self) -> Address | None:
        return self._state.remote_address

    # ---- SleeveLink ----------------------------------------------------------------
    def send_special(self, payload: bytes, df: bool, address: Address) -> int | None:
        sealer = self._sealer_df if df else self._sealer
        frame = SleeveFrame(self._overlay.local_name, self.remote_name, payload)
        return self._overlay.transmit(sealer.seal(encode_frame(frame)), address, df)

    def send_control(self, tag: int, body: bytes) -> None:
        self._params.send_control(tag, body)

    # ---- from the overlay ----------------------------------------------------------
    def datagram_received(self, sender: Address, body: bytes) -> None:
        if self._stopped:
            return
        try:
            frames = self._opener.open(body)
        except SleeveFormatError as error:
            # Stray datagrams of an earlier connection to this peer land here too; a real
            # problem shows up as missed heartbeats.
            self._overlay.counters.datagrams_malformed += 1
            self._log.info("sleeve: ignoring datagram", sender=f"{sender[0]}:{sender[1]}",
                           error=str(error))
            return
        if frames is None:
            return  # a replay
        try:
            decoded = decode_frames(frames)
        except SleeveFormatError as error:
            self._overlay.counters.datagrams_malformed += 1
            self._log.info("sleeve: malformed datagram", sender=f"{sender[0]}:{sender[1]}",
                           error=str(error))
            decoded = list(error.frames)
        now = self._loop.time()
        for frame in decoded:
            self._frame_received(now, sender, frame)
        self._settle()

    def _frame_received(self, now: float, sender: Address, frame: SleeveFrame) -> None:
        if is_special(frame.payload):
            if frame.src == self.remote_name and frame.dst == self._overlay.local_name:
                self._state.special_frame(now, sender, frame.payload)
            return
        self.data_frames_dropped += 1
        self._overlay.counters.data_frames_dropped += 1
        self._log.debug("sleeve: dropping a data frame (forwarding is not implemented yet)",
                        src=format_peer_name(frame.src), dst=format_peer_name(frame.dst),
                        length=len(frame.payload))

    # ---- driving the state machine -------------------------------------------------
    def _settle(self) -> None:
        state = self._state
        if state.established and not self.established.is_set():
            self.established.set()
        if state.failure is not None:
            if not self.failed.done():
                self.failed.set_result(OverlayError(state.failure))
            self._stopped = True
            self._overlay.unregister(self)
        deadline = None if self._stopped else state.next_deadline()
        if deadline is not None and deadline - self._loop.time() > COARSE_AFTER:
            deadline = math.ceil(deadline / TIMER_GRAIN) * TIMER_GRAIN
        if self._timer is not None:
            if self._timer.when() == deadline:
                return  # as it was (a heartbeat received moves only the silence deadline)
            self._timer.cancel()
            self._timer = None
        if deadline is not None:
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if not self._stopped:
            self._state.on_timer(self._loop.time())
            self._settle()


class PeerLogger:
    """A Logger that adds ``peer=<name(nickname)>`` to every line."""

    def __init__(self, log: Logger, peer: str) -> None:
        self._log = log
        self._peer = peer

    def debug(self, event: str, **fields: Any) -> Any:
        return self._log.debug(event, peer=self._peer, **fields)

    def info(self, event: str, **fields: Any) -> Any:
        return self._log.info(event, peer=self._peer, **fields)

    def warning(self, event: str, **fields: Any) -> Any:
        return self._log.warning(event, peer=self._peer, **fields)

    def error(self, event: str, **fields: Any) -> Any:
        return self._log.error(event, peer=self._peer, **fields)

    def critical(self, event: str, **fields: Any) -> Any:
        return self._log.critical(event, peer=self._peer, **fields)


def peer_label(params: OverlayConnectionParams) -> str:
    """The peer as Go's logs show it: ``name(nickname)``."""
    return f"{format_peer_name(params.remote_name)}({params.remote_nickname})"


def _crypto(local_name: int, params: OverlayConnectionParams
            ) -> tuple[DatagramSealer, DatagramSealer, DatagramOpener]:
    key = params.session_key
    if key is None:
        return PlainSealer(local_name), PlainSealer(local_name), PlainOpener()
    return (NaClSealer(local_name, key, params.outbound, df=False),
            NaClSealer(local_name, key, params.outbound, df=True),
            NaClOpener(key, params.outbound))
