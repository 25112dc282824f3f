"""A recording TCP relay between two lab namespaces, to capture a mesh connection's bytes.

The listening socket is created inside one node's network namespace and each
upstream socket inside another's (a socket keeps the namespace of the thread
that created it, see :mod:`common.lab.netns`), so a weaver told to connect to the
relay's address is relayed to a real peer, and the peer sees the connection
coming from the relay's namespace.  Each chunk read is forwarded unchanged and
recorded with its direction and time, so the capture is exactly the byte
stream of each direction, however TCP happened to segment it.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass, field

from common.kernel.netns import in_netns


@dataclass(frozen=True)
class Chunk:
    """Bytes read from one side: ``direction`` is ``"c2s"`` (dialer to listener) or ``"s2c"``."""

    conn: int
    direction: str
    seconds: float
    data: bytes


@dataclass
class RelayCapture:
    """Everything relayed so far, in arrival order."""

    chunks: list[Chunk] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, chunk: Chunk) -> None:
        with self.lock:
            self.chunks.append(chunk)

    def stream(self, conn: int, direction: str) -> bytes:
        """The concatenated bytes of one direction of relayed connection ``conn``."""
        with self.lock:
            return b"".join(
                c.data for c in self.chunks if c.conn == conn and c.direction == direction
            )


class TcpRelay:
    """Listen on ``listen`` in namespace ``listen_fd``; relay each client to ``upstream``.

    ``upstream`` is dialled from namespace ``upstream_fd``, with ``SO_MARK`` set to
    ``upstream_mark`` if given (so that an iptables REDIRECT that sends the
    weaver's own connection to the relay can exempt the relay's).  :meth:`close` stops
    accepting and shuts every relayed connection down; it is idempotent.
    """

    def __init__(
        self,
        listen_fd: int,
        listen: tuple[str, int],
        upstream_fd: int,
        upstream: tuple[str, int],
        upstream_mark: int | None = None,
    ) -> None:
        self.capture = RelayCapture()
        self._upstream_mark = upstream_mark
        self._upstream_fd = upstream_fd
        self._upstream = upstream
        self._t0 = time.monotonic()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._closed = threading.Event()
        with in_netns(listen_fd):
            self._listener = socket.create_server(listen, reuse_port=False)
        self._listener.settimeout(0.2)
        self._spawn(self._accept_loop)

    def _spawn(self, target: object, *args: object) -> None:
        assert callable(target)
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        conn_no = 0
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                server = self._dial_upstream()
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            client.settimeout(None)
            self._sockets += [client, server]
            self._spawn(self._pump, conn_no, "c2s", client, server)
            self._spawn(self._pump, conn_no, "s2c", server, client)
            conn_no += 1

    def _dial_upstream(self) -> socket.socket:
        with in_netns(self._upstream_fd):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            if self._upstream_mark is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, self._upstream_mark)
            sock.settimeout(5.0)
            sock.connect(self._upstream)
        except OSError:
            sock.close()
            raise
        return sock

    def _pump(self, conn: int, direction: str, src: socket.socket, dst: socket.socket) -> None:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)
                return
            self.capture.add(Chunk(conn, direction, time.monotonic() - self._t0, data))
            try:
                dst.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._listener.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in self._threads:
            thread.join(timeout=2.0)

    def __enter__(self) -> TcpRelay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
