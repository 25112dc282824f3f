"""``weaver``: the agent process.

One asyncio event loop holds the agent (:mod:`.runtime`: the mesh, its listener, its
connection maker and, as they arrive, IPAM, the data path and the Kubernetes side).  The
HTTP servers (the API on 127.0.0.1:6784, metrics on 6782, status pages where asked) run
in threads of their own and reach the loop through :class:`LoopBridge`, so a slow client
never stalls the mesh.  SIGTERM and SIGINT stop everything and exit 0; a failure to start
(a port in use, no peer name) exits 1 with the reason.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from common.service import logs
from common.service.settings import SettingsError
from router.agent.identity import IdentityError, print_peer_name_output
from router.agent.runtime import Agent, peer_identity
from router.agent.servers import start_servers
from router.agent.settings import Settings, from_arguments

T = TypeVar("T")


class LoopBridge:
    """Runs work on the agent's loop from another thread (an HTTP handler's) and waits
    for the answer."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float = 10.0) -> None:
        self.loop = loop
        self.timeout = timeout

    def call(self, work: Callable[[], T]) -> T:
        async def run() -> T:
            return work()
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(self.timeout)

    def wait(self, work: Callable[[], Awaitable[T]]) -> T:
        async def run() -> T:
            return await work()
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(self.timeout)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        settings = from_arguments(list(sys.argv[1:] if argv is None else argv))
    except SettingsError as exc:
        print(f"weaver: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level, settings.log_format)
    try:
        identity = peer_identity(settings)
    except IdentityError as exc:
        print(f"weaver: cannot find this peer's name: {exc} (give one with --name)",
              file=sys.stderr)
        return 1
    if settings.print_peer_name:
        sys.stdout.write(print_peer_name_output(identity.name))
        return 0
    try:
        return asyncio.run(run(settings, Agent(settings, identity, logs.get())))
    except OSError as exc:
        print(f"weaver: {exc}", file=sys.stderr)
        return 1


async def run(settings: Settings, agent: Agent) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await agent.start()
    servers = start_servers(settings, agent, LoopBridge(loop))
    # What start-up made (modules, settings, servers) lives as long as the process: out
    # of the collector's sight, so that each full collection walks only the mesh's state.
    gc.freeze()
    try:
        await stop.wait()
    finally:
        for server in servers:
            server.stop()
        await agent.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
