"""Signals around a lab's life: cleanup must not be cut short.

A lab holds namespaces, links and processes on the host; a Ctrl-C in the middle of
tearing it down, or a SIGTERM that ends the process without unwinding, would leave them
behind.  :func:`signals_deferred` holds SIGINT and SIGTERM back during a teardown and
delivers the first after; :func:`exit_on_sigterm` turns SIGTERM into ``SystemExit`` so
that ``with`` blocks run their cleanup.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold back SIGINT and SIGTERM (main thread only) during the body and re-deliver the
    first one afterwards: a teardown runs to its end however often it is interrupted (a
    ``timeout`` passes its own SIGTERM on after the one that started the teardown)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[signal.Signals] = []

    def remember(signum: int, _frame: FrameType | None) -> None:
        caught.append(signal.Signals(signum))

    held = (signal.SIGINT, signal.SIGTERM)
    old = {signum: signal.signal(signum, remember) for signum in held}
    try:
        yield
    finally:
        for signum in held:
            signal.signal(signum, old[signum])
        if caught:
            handler = old[caught[0]]
            if callable(handler):
                handler(caught[0], None)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(caught[0])


def exit_on_sigterm() -> None:
    """Turn SIGTERM into ``SystemExit(143)`` so that ``with`` blocks clean up."""

    def raise_exit(_signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(143)

    signal.signal(signal.SIGTERM, raise_exit)
