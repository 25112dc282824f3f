"""The establishment latch: watchers run as it is set, a failing one does not stop the
others, and it can still be awaited."""

from __future__ import annotations

import asyncio
from typing import Any

from router.agent.overlay import Latch


def test_watchers_run_in_the_step_that_sets_the_latch_and_once() -> None:
    async def scenario() -> list[str]:
        latch, seen = Latch(), []
        latch.watch(lambda: seen.append("first"))
        stop = latch.watch(lambda: seen.append("stopped"))
        latch.watch(lambda: seen.append("second"))
        stop()
        stop()  # twice is harmless
        seen.append(f"set={latch.is_set()}")
        latch.set()
        seen.append(f"set={latch.is_set()}")
        latch.set()  # no watcher runs again
        latch.watch(lambda: seen.append("late"))  # already set: runs now
        return seen

    assert asyncio.run(scenario()) == ["set=False", "first", "second", "set=True", "late"]


def test_a_failing_watcher_is_reported_and_the_others_still_run() -> None:
    reported: list[dict[str, Any]] = []

    async def scenario() -> list[str]:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: reported.append(ctx))
        latch, seen = Latch(), []

        def broken() -> None:
            raise ValueError("watcher bug")
        latch.watch(broken)
        latch.watch(lambda: seen.append("ran"))
        latch.set()
        return seen

    assert asyncio.run(scenario()) == ["ran"]
    assert [str(ctx["exception"]) for ctx in reported] == ["watcher bug"]
    assert "establishment watcher" in reported[0]["message"]


def test_waiting_for_the_latch() -> None:
    async def scenario() -> tuple[bool, bool]:
        latch = Latch()
        waiter = asyncio.create_task(latch.wait())
        await asyncio.sleep(0)
        pending = not waiter.done()
        latch.set()
        await asyncio.wait_for(waiter, 5)
        await asyncio.wait_for(latch.wait(), 5)  # already set: returns at once
        return pending, waiter.done()

    assert asyncio.run(scenario()) == (True, True)
