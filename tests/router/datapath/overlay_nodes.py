"""Two agents' overlays on real UDP sockets, for the sleeve I/O tests.

Each agent runs its own event loop on its own thread, inside a network namespace when
one is given (a socket belongs to the namespace of the thread that creates it, and the
sleeve overlay creates sockets when it starts and when it asks the kernel for a path
MTU).  A stand-in for the mesh connection carries control messages between the two
loops, in order, as the TCP connection does.  Side ``a`` dials ``b`` (its forwarder
knows where to send; ``b``'s learns it from ``a``'s first heartbeat).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from common.kernel.netns import in_netns
from router.agent.overlay import Overlay, OverlayConnection, OverlayConnectionParams
from router.datapath.sleeve import SleeveOverlay
from router.datapath.sleeve_forwarder import HeartbeatSchedule
from router.datapath.switch import OverlaySwitch
from tests.support.doubles import RecordingLog

T = TypeVar("T")
UID = 0x5EE5E5EE5E5EE5E5
FAST = HeartbeatSchedule(fast=0.05, slow=0.2, timeout=1.0)
"""Go's schedule, shortened so that a silent peer times out within a test."""


class NodeLoop:
    """An event loop running on its own thread (inside ``netns_fd`` if given)."""

    def __init__(self, netns_fd: int | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        self._netns_fd = netns_fd
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self._thread.start()
        ready.wait()

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(ready.set)
        if self._netns_fd is None:
            self.loop.run_forever()
            return
        with in_netns(self._netns_fd):
            self.loop.run_forever()

    def call(self, make: Callable[[], Coroutine[Any, Any, T]], timeout: float = 10.0) -> T:
        """Run a coroutine on this loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(make(), self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@dataclass
class Agent:
    name: int
    nickname: str
    node: NodeLoop
    sleeve: SleeveOverlay
    overlay: Overlay
    log: RecordingLog
    conn: OverlayConnection | None = None
    controls: list[tuple[int, bytes]] = field(default_factory=list)
    """Control messages received, in order."""

    def deliver(self, tag: int, body: bytes) -> None:
        """A control message arrives over the mesh connection (on this agent's loop)."""
        self.controls.append((tag, body))
        if self.conn is not None:
            self.conn.control_message(tag, body)


def make_agent(name: int, nickname: str, host: str, port: int, node: NodeLoop,
               schedule: HeartbeatSchedule, switch: bool) -> Agent:
    log = RecordingLog()

    async def build() -> tuple[SleeveOverlay, Overlay]:
        sleeve = SleeveOverlay(name, log, host=host, port=port, schedule=schedule)
        overlay: Overlay = OverlaySwitch([("sleeve", sleeve)], log) if switch else sleeve
        await overlay.start()
        return sleeve, overlay

    sleeve, overlay = node.call(build)
    return Agent(name, nickname, node, sleeve, overlay, log)


class OverlayPair:
    """Agents ``a`` and ``b`` and one connection between them (``a`` dials)."""

    def __init__(self, hosts: tuple[str, str], port: int = 0,
                 netns_fds: tuple[int | None, int | None] = (None, None),
                 schedule: HeartbeatSchedule = FAST, switch: bool = True) -> None:
        self.nodes = (NodeLoop(netns_fds[0]), NodeLoop(netns_fds[1]))
        self.switch = switch
        try:
            self.a = make_agent(0xCE0000000001, "a", hosts[0], port, self.nodes[0], schedule,
                                switch)
            self.b = make_agent(0xCE0000000002, "b", hosts[1], port, self.nodes[1], schedule,
                                switch)
        except BaseException:
            self.close()
            raise

    def connect(self, keys: tuple[bytes | None, bytes | None] = (None, None),
                confirm: tuple[bool, bool] = (True, True)) -> None:
        """Prepare both ends (as the mesh does after its handshake), then confirm them."""
        for agent, other, key, outbound in ((self.a, self.b, keys[0], True),
                                            (self.b, self.a, keys[1], False)):
            params = self._params(agent, other, key, outbound)

            async def prepare(agent: Agent = agent, params: OverlayConnectionParams = params
                              ) -> None:
                agent.conn = await agent.overlay.prepare_connection(params)

            agent.node.call(prepare)
        for agent, wanted in ((self.a, confirm[0]), (self.b, confirm[1])):
            if wanted:
                self.on(agent, lambda conn: conn.confirm())

    def _params(self, agent: Agent, other: Agent, key: bytes | None,
                outbound: bool) -> OverlayConnectionParams:
        features: dict[str, str] = {}
        other.overlay.add_features(features)

        def send_control(tag: int, body: bytes) -> None:
            other.node.loop.call_soon_threadsafe(other.deliver, tag, body)

        return OverlayConnectionParams(
            remote_name=other.name, remote_nickname=other.nickname,
            local_addr=agent.sleeve.address, remote_addr=other.sleeve.address,
            outbound=outbound, conn_uid=UID, session_key=key,
            send_control=send_control, features=features)

    def on(self, agent: Agent, act: Callable[[OverlayConnection], T]) -> T:
        """Run ``act`` on the agent's connection, on its loop."""
        async def run() -> T:
            assert agent.conn is not None
            return act(agent.conn)
        return agent.node.call(run)

    def established(self, agent: Agent) -> bool:
        return self.on(agent, lambda conn: conn.established.is_set())

    def failure(self, agent: Agent) -> str | None:
        def read(conn: OverlayConnection) -> str | None:
            return str(conn.failed.result()) if conn.failed.done() else None
        return self.on(agent, read)

    def attrs(self, agent: Agent) -> dict[str, Any]:
        return self.on(agent, lambda conn: conn.attrs())

    def wait_for(self, probe: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not probe():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            time.sleep(0.02)

    def close(self) -> None:
        for agent in (getattr(self, "a", None), getattr(self, "b", None)):
            if agent is not None:
                async def stop(agent: Agent = agent) -> None:
                    if agent.conn is not None:
                        await agent.conn.stop()
                    await agent.overlay.stop()
                agent.node.call(stop)
        for node in self.nodes:
            node.close()

    def __enter__(self) -> OverlayPair:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
