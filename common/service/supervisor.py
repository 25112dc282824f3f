"""Workers in threads, supervised: the first one that dies of an unexpected exception
stops the process (a bug: the DaemonSet restarts it), and stopping waits for all of them
within one deadline."""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable


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
