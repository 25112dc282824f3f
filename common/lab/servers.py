"""One selector thread serving TCP, UDP and (raw) SCTP on every pod of the lab.

Each pod needs listeners on TCP/UDP/SCTP ports 80 and 81.  Rather than one process
per pod, sockets are created inside the pod's namespace by the creating thread
(see :func:`common.lab.netns.in_netns`) and then all of them are multiplexed by one
``selectors`` loop in this process: a socket stays in the namespace it was born
in, whichever thread later reads it.

* TCP: accept and close at once; the kernel completes the handshake from the
  listen backlog, so a probe's ``connect()`` succeeding is the signal.
* UDP: answer every datagram with the pod's name (lets probes check who replied).
* SCTP: one raw IPPROTO_SCTP socket per pod; an INIT to a served port gets an
  INIT-ACK (see :mod:`common.lab.sctp`).  Everything else (including INIT-ACKs that
  arrive for this pod's own outgoing probes) is ignored.
"""

from __future__ import annotations

import contextlib
import os
import random
import selectors
import socket
import struct
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from common.kernel.netns import in_netns
from common.lab.sctp import CHUNK_INIT, IPPROTO_SCTP, build_init_ack, parse_ipv4_sctp

DEFAULT_PORTS: tuple[int, ...] = (80, 81)


@dataclass
class _Handler:
    """What to do when a registered socket becomes readable."""

    pod: str
    sock: socket.socket
    on_readable: Callable[[_Handler], None]


class PodServers:
    """All pod listeners of a lab, served by a single background thread."""

    def __init__(self, ports: Iterable[int] = DEFAULT_PORTS) -> None:
        self.ports = tuple(ports)
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._handlers: list[_Handler] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.errors: list[str] = []

    def add_pod(self, pod: str, netns_fd: int) -> None:
        """Create the pod's listening sockets inside its namespace and register them."""
        socks: list[tuple[socket.socket, Callable[[_Handler], None]]] = []
        try:
            with in_netns(netns_fd):
                for port in self.ports:
                    socks.append((_listen(socket.SOCK_STREAM, port), self._on_tcp))
                    socks.append((_listen(socket.SOCK_DGRAM, port), self._on_udp))
                raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_SCTP)
                socks.append((raw, self._on_sctp))
        except BaseException:
            for sock, _ in socks:
                sock.close()
            raise
        for sock, func in socks:
            sock.setblocking(False)
            handler = _Handler(pod, sock, func)
            self._handlers.append(handler)
            self._sel.register(sock, selectors.EVENT_READ, handler)

    def start(self) -> None:
        """Start the serving thread (daemon, so a crashed test cannot hang exit)."""
        self._thread = threading.Thread(target=self._loop, name="lab-servers", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and close every socket (releasing the pod namespaces)."""
        self._stop.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        for handler in self._handlers:
            handler.sock.close()
        self._handlers.clear()
        self._sel.close()
        self._wake_r.close()
        self._wake_w.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._sel.select(timeout=1.0):
                handler = key.data
                if handler is None:
                    with contextlib.suppress(OSError):
                        self._wake_r.recv(64)
                    continue
                assert isinstance(handler, _Handler)
                try:
                    handler.on_readable(handler)
                except OSError as exc:  # keep serving the other pods
                    self._record(f"{handler.pod}: {exc!r}")

    def _record(self, msg: str) -> None:
        if len(self.errors) < 1000:
            self.errors.append(msg)

    @staticmethod
    def _on_tcp(handler: _Handler) -> None:
        while True:
            try:
                conn, _ = handler.sock.accept()
            except BlockingIOError:
                return
            conn.close()

    @staticmethod
    def _on_udp(handler: _Handler) -> None:
        reply = handler.pod.encode()
        while True:
            try:
                _, addr = handler.sock.recvfrom(2048)
            except BlockingIOError:
                return
            handler.sock.sendto(reply, addr)

    def _on_sctp(self, handler: _Handler) -> None:
        while True:
            try:
                data = handler.sock.recv(65535)
            except BlockingIOError:
                return
            pkt = parse_ipv4_sctp(data)
            if (
                pkt is None
                or pkt.chunk_type != CHUNK_INIT
                or pkt.dport not in self.ports
                or pkt.vtag != 0
                or not pkt.checksum_ok
            ):
                continue
            my_tag = random.getrandbits(32) or 1
            cookie = struct.pack("!II", pkt.init_tag, my_tag) + os.urandom(8)
            answer = build_init_ack(
                pkt.dport, pkt.sport, pkt.init_tag, my_tag, random.getrandbits(32), cookie
            )
            handler.sock.sendto(answer, (pkt.src, 0))


def _listen(kind: socket.SocketKind, port: int) -> socket.socket:
    """A TCP or UDP socket bound to ``0.0.0.0:port`` (listening if TCP)."""
    sock = socket.socket(socket.AF_INET, kind)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", port))
        if kind == socket.SOCK_STREAM:
            sock.listen(1024)
    except BaseException:
        sock.close()
        raise
    return sock
