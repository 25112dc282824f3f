"""Signals around a lab's life: cleanup must not be cut short.

A lab holds namespaces, links and processes on the host; a Ctrl-C in the middle of
tearing it down, or a SIGTERM that ends the process without unwinding, would leave them
behind.  :func:`sigint_deferred` holds SIGINT back during a teardown and delivers it
after; :func:`exit_on_sigterm` turns SIGTERM into ``SystemExit`` so that ``with`` blocks
run their cleanup.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


@contextmanager
def sigint_deferred() -> Iterator[None]:
    """Hold back SIGINT (main thread only) during the body and re-deliver it afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []

    def remember(signum: int, _frame: FrameType | None) -> None:
        caught.append(signum)

    old = signal.signal(signal.SIGINT, remember)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
        if caught and callable(old):
            old(signal.SIGINT, None)


def exit_on_sigterm() -> None:
    """Turn SIGTERM into ``SystemExit(143)`` so that ``with`` blocks clean up."""

    def raise_exit(_signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(143)

    signal.signal(signal.SIGTERM, raise_exit)
