"""Workers in threads, supervised: the first one that dies of an unexpected exception
stops the process (a bug: the DaemonSet restarts it), and stopping waits for all of them
within one deadline."""

from __future__ import annotations

import signal
import threading
import time
import traceback
from collections.abc import Callable

SIGNAL_CHECK = 0.5
"""How often the main thread wakes while it waits to be stopped (see :func:`run_until_stopped`)."""


class Supervisor:
    """Runs workers in threads; remembers the first one that crashed."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.threads: list[threading.Thread] = []
        self.crash: str | None = None

    def spawn(self, name: str, target: Callable[[], None]) -> None:
        def body() -> None:
            try:
                target()
            except BaseException:  # a bug: report it, stop everything, exit non-zero
                self.crash = f"{name}: {traceback.format_exc()}"
                self.stop.set()
        thread = threading.Thread(target=body, name=name, daemon=True)
        self.threads.append(thread)
        thread.start()

    def alive(self) -> bool:
        return not self.stop.is_set() and all(t.is_alive() for t in self.threads)

    def join(self, timeout: float) -> None:
        """Wait for the workers, ``timeout`` seconds in all."""
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))


def run_until_stopped(stop: threading.Event,
                      signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)) -> None:
    """Make ``signals`` set ``stop``, and wait in the main thread until it is set.

    The wait wakes every :data:`SIGNAL_CHECK` seconds.  Python runs signal handlers only
    in the main thread, and only when it runs bytecode.  The kernel may deliver a
    process's SIGTERM to any of its threads: when it picks a worker, the main thread's
    untimed ``stop.wait()`` is not interrupted and the handler never runs.  An npc in the
    test suite stayed up 18 minutes after its SIGTERM that way."""
    for sig in signals:
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(SIGNAL_CHECK):
        pass
