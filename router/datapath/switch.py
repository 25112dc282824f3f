"""The overlay switch: one sub-forwarder per overlay both peers have; the best one carries.

Background (weave 2.8.1 ``router/overlay_switch.go``): the switch announces our
overlays in the ``Overlays`` handshake feature (space-separated, in preference order:
``fastdp sleeve`` on weave).  For each connection it prepares a sub-forwarder for every
overlay the peer has too (an overlay that refuses is logged and skipped), numbering them
in our order; their control messages travel as tag 7 with the index in front
(:mod:`.control`).  A peer without the ``Overlays`` feature gets the compat overlay
(sleeve) directly, without the switch.

The switch connection is established as soon as one sub-forwarder is.  The *best*
sub-forwarder is the first established one that still works, else the first working
one; a sub-forwarder that fails is stopped and dropped, and when none is left the
connection fails with "no working forwarders to <peer>" — which is how a Go peer ends a
connection whose sleeve heartbeats never arrive (after its 60 s timeout).  Attributes
(``/status``'s ``sleeve ... mtu=1438``) are the best sub-forwarder's.

Not done: Go's fastdp can put itself "on hold" (unhealthy) so sleeve carries until it
recovers; with sleeve alone there is no such signal, so none is modelled.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from router.agent.overlay import (
    Latch,
    Overlay,
    OverlayConnection,
    OverlayConnectionParams,
    OverlayError,
)
from router.datapath.control import (
    OVERLAY_CONTROL_TAG,
    OVERLAYS_FEATURE,
    ControlMessageError,
    common_overlays,
    encode_overlays_feature,
    parse_overlays_feature,
    unwrap_for_switch,
    wrap_for_switch,
)
from router.datapath.sleeve import peer_label

if TYPE_CHECKING:
    from common.service.logs import Logger


class OverlaySwitch:
    """An :class:`Overlay` over named overlays, in preference order."""

    def __init__(self, overlays: Sequence[tuple[str, Overlay]], log: Logger,
                 compat: str | None = "sleeve") -> None:
        names = [name for name, _ in overlays]
        if len(set(names)) != len(names):
            raise ValueError(f"overlay names repeat: {names}")
        if compat is not None and compat not in names:
            raise ValueError(f"the compat overlay {compat!r} is not among {names}")
        self._overlays = dict(overlays)
        self._names = names
        self._compat = compat
        self._log = log

    async def start(self) -> None:
        for name in self._names:
            await self._overlays[name].start()

    def add_features(self, features: dict[str, str]) -> None:
        features[OVERLAYS_FEATURE] = encode_overlays_feature(self._names)

    async def prepare_connection(self, params: OverlayConnectionParams) -> OverlayConnection:
        theirs = params.features.get(OVERLAYS_FEATURE)
        if theirs is None and self._compat is not None:
            return await self._overlays[self._compat].prepare_connection(params)
        names = common_overlays(self._names, parse_overlays_feature(theirs or ""))
        if not names:
            raise OverlayError("no overlays in common with peer")
        subs: list[SubForwarder] = []
        for index, name in enumerate(names):
            sub_params = dataclasses.replace(
                params, send_control=_indexed_sender(params.send_control, index))
            try:
                conn: OverlayConnection | None = (
                    await self._overlays[name].prepare_connection(sub_params))
            except OverlayError as error:
                self._log.info("overlay_switch: unable to use overlay", overlay=name,
                               peer=peer_label(params), error=str(error))
                conn = None
            subs.append(SubForwarder(name, conn))
        return SwitchConnection(peer_label(params), subs, self._log)

    def diagnostics(self) -> dict[str, Any] | None:
        return {name: overlay.diagnostics() for name, overlay in self._overlays.items()}

    async def stop(self) -> None:
        for name in self._names:
            await self._overlays[name].stop()


def _indexed_sender(send: Callable[[int, bytes], None], index: int
                    ) -> Callable[[int, bytes], None]:
    def send_indexed(tag: int, body: bytes) -> None:
        send(OVERLAY_CONTROL_TAG, wrap_for_switch(index, tag, body))
    return send_indexed


@dataclasses.dataclass
class SubForwarder:
    name: str
    conn: OverlayConnection | None
    """None once it failed (or when its overlay refused the connection)."""
    established: bool = False


class SwitchConnection:
    """The switch's forwarder for one connection: an :class:`OverlayConnection`."""

    def __init__(self, peer: str, subs: list[SubForwarder], log: Logger) -> None:
        self._peer = peer
        self._subs = subs
        self._log = log
        self.established = Latch()
        self.failed: asyncio.Future[Exception] = asyncio.get_running_loop().create_future()
        self.best = -1
        """Index of the sub-forwarder that carries frames (-1: none)."""
        self._unwatch: list[Callable[[], None]] = []
        self._watchers: list[asyncio.Task[None]] = []
        self._choose_best()
        for index, sub in enumerate(subs):
            if sub.conn is not None:
                self._unwatch.append(sub.conn.established.watch(
                    functools.partial(self._sub_established, index)))
                self._watchers.append(asyncio.create_task(self._watch(index)))

    def confirm(self) -> None:
        for sub in self._subs:
            if sub.conn is not None:
                sub.conn.confirm()

    def control_message(self, tag: int, body: bytes) -> None:
        try:
            index, sub_tag, sub_body = unwrap_for_switch(body)
        except ControlMessageError as error:
            self._log.info("overlay_switch: ignoring control message", peer=self._peer,
                           tag=tag, error=str(error))
            return
        conn = self._subs[index].conn if index < len(self._subs) else None
        if conn is None:
            self._log.debug("overlay_switch: control message for no working forwarder",
                            peer=self._peer, index=index)
            return
        conn.control_message(sub_tag, sub_body)

    def attrs(self) -> dict[str, Any]:
        if self.best >= 0 and (conn := self._subs[self.best].conn) is not None:
            return conn.attrs()
        return {}

    async def stop(self) -> None:
        for unwatch in self._unwatch:
            unwatch()
        for watcher in self._watchers:
            watcher.cancel()
        for sub in self._subs:
            if sub.conn is not None:
                conn, sub.conn = sub.conn, None
                await conn.stop()

    def _sub_established(self, index: int) -> None:
        conn = self._subs[index].conn
        if conn is None or conn.failed.done():
            return
        self._subs[index].established = True
        self.established.set()
        self._choose_best()

    async def _watch(self, index: int) -> None:
        """Until the sub-forwarder fails; then drop it."""
        conn = self._subs[index].conn
        assert conn is not None
        reason = await conn.failed
        self._subs[index].established = False
        self._log.info("overlay_switch: forwarder failed", peer=self._peer,
                       overlay=self._subs[index].name, error=str(reason))
        self._subs[index].conn = None
        await conn.stop()
        self._choose_best()

    def _choose_best(self) -> None:
        working = [i for i, sub in enumerate(self._subs) if sub.conn is not None]
        established = [i for i in working if self._subs[i].established]
        if not working:
            if not self.failed.done():
                self.failed.set_result(OverlayError(f"no working forwarders to {self._peer}"))
            return
        best = (established or working)[0]
        if best != self.best:
            self.best = best
            self._log.info("overlay_switch: using overlay", peer=self._peer,
                           overlay=self._subs[best].name)
