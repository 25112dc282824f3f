"""The blocked-connection logger: NFLOG packets in, counter increments and log lines out.

Design
------
One thread owns the reader, the rate limiter and the log function.  It waits in
``poll(2)`` on the NFLOG socket and on a wake-up pipe, so :meth:`stop` interrupts it
at once rather than after a polling period; the poll also times out every ``tick``
seconds so that a pending "N more blocked connections not logged" summary is written
even when the flood has stopped.  Each ``read`` drains a bounded number of datagrams,
so a flood cannot keep the thread from noticing ``stop``.

Failure
-------
The Go original exited when its pcap reader failed (``log.Fatalf``), and the container
restarted.  Here a failure in the loop (a socket error other than ``ENOBUFS``, or an
exception from the log function or the resolver, which would be a bug) ends the
thread and is kept in :attr:`BlockedConnectionLogger.error` and passed to
``on_error``; the supervisor decides whether to exit.  It is never swallowed.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Protocol

from npc.observe.blocked import (
    BlockedConnection,
    BlockedConnectionCounter,
    LogRateLimiter,
    Resolver,
    format_blocked,
    parse_blocked,
)
from npc.observe.nflog import LoggedPacket

LogFunction = Callable[[str], None]
ErrorCallback = Callable[[BaseException], None]


class PacketSource(Protocol):
    """What the runner needs from :class:`~npc.observe.nflog.NflogReader`."""

    def fileno(self) -> int: ...

    def read(self, timeout: float | None = None) -> list[LoggedPacket]: ...


class BlockedConnectionLogger:
    """Count and log every blocked connection seen on ``source``.

    ``source`` is opened (in the right network namespace) and closed by the caller;
    the logger only reads it.  ``log`` receives each line (the original logged them
    at WARN).  ``resolver`` adds pod names; ``limiter`` bounds the lines written
    (default: :class:`LogRateLimiter` defaults); the counter counts every event.
    ``on_error`` is called, from the logger's thread, with the exception that ended
    the loop.
    """

    def __init__(
        self,
        source: PacketSource,
        counter: BlockedConnectionCounter,
        log: LogFunction,
        *,
        resolver: Resolver | None = None,
        limiter: LogRateLimiter | None = None,
        on_error: ErrorCallback | None = None,
        tick: float = 1.0,
    ) -> None:
        self._source = source
        self._counter = counter
        self._log = log
        self._resolver = resolver
        self._limiter = limiter if limiter is not None else LogRateLimiter()
        self._on_error = on_error
        self._tick = tick
        self._stopping = threading.Event()
        self._wake: tuple[int, int] | None = None  # pipe (read end, write end)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.events = 0
        """Blocked connections seen (each also counted in the metric)."""

    @property
    def error(self) -> BaseException | None:
        """The exception that ended the loop, if one did."""
        return self._error

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def handle(self, packets: Iterable[LoggedPacket]) -> list[BlockedConnection]:
        """Count, and log within the rate limit, the blocked connections in ``packets``."""
        found = []
        for packet in packets:
            event = parse_blocked(packet.payload)
            if event is None:
                continue
            found.append(event)
            self.events += 1
            self._counter.record(event)
            self._emit(self._limiter.summary())  # the summary precedes later lines
            if self._limiter.admit():
                self._log(format_blocked(event, self._resolver))
        return found

    def _emit(self, line: str | None) -> None:
        if line is not None:
            self._log(line)

    def _run(self) -> None:
        """The loop until :meth:`stop`; exceptions propagate to :meth:`_thread_main`."""
        poller = select.poll()
        source_fd = self._source.fileno()
        poller.register(source_fd, select.POLLIN)
        assert self._wake is not None
        poller.register(self._wake[0], select.POLLIN)
        try:
            while not self._stopping.is_set():
                ready = {fd for fd, _mask in poller.poll(round(self._tick * 1000))}
                if source_fd in ready:
                    self.handle(self._source.read(0))
                self._emit(self._limiter.summary())
        finally:
            self._emit(self._limiter.flush())

    def _thread_main(self) -> None:
        try:
            self._run()
        except Exception as exc:
            self._error = exc
            if self._on_error is not None:
                self._on_error(exc)

    def start(self) -> None:
        """Run the loop in a daemon thread named ``blocked-connection-logger``."""
        if self._thread is not None:
            raise RuntimeError("BlockedConnectionLogger already started")
        self._wake = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._thread = threading.Thread(
            target=self._thread_main, name="blocked-connection-logger", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> bool:
        """Stop the loop and join the thread; True if it ended within ``timeout`` seconds.

        Any suppressed-line summary is written before the thread ends.
        """
        self._stopping.set()
        if self._wake is None:
            return True  # never started, or already stopped
        # A full pipe already holds a wake-up for the loop.
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake[1], b"x")
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                return False
        os.close(self._wake[0])
        os.close(self._wake[1])
        self._wake = None
        return True

    def raise_if_failed(self) -> None:
        """Re-raise the exception that ended the loop, for a supervisor polling us."""
        if self._error is not None:
            raise self._error

    def __enter__(self) -> BlockedConnectionLogger:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
