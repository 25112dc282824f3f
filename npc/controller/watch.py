"""List-then-watch of one kind through the official ``kubernetes`` client.

The protocol (as client-go's reflector does it):

1. **List** the whole collection (paginated with ``limit``/``continue``) and replace the
   store's view of that kind; remember the list's ``resourceVersion``.
2. **Watch** from that resourceVersion with bookmarks: each event carries the object's
   new resourceVersion; BOOKMARK events advance it without an object.  When a watch
   request ends (server timeout, broken stream, API server restart), watch again from the
   last resourceVersion seen — no event is lost, because the server replays from there.
3. If the server answers **410 Gone** (that resourceVersion was compacted away), go back
   to 1: relist and replace, which also catches deletions missed in between.

Errors are retried with capped exponential backoff and jitter; the store keeps its last
known state meanwhile, so enforcement continues unchanged while the API is away.
Objects are read as raw JSON (``_preload_content=False``) and parsed straight into model
values: the client's model classes are never built.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from npc.controller.store import ClusterStore, Kind, parse_object
from npc.model.parse import FieldError

ListFunc = Callable[..., Any]


class Gone(Exception):
    """The watch's resourceVersion is too old (HTTP 410): relist."""


class WatchError(Exception):
    """The server ended a watch with an error other than 410."""


RETRIED = (ApiException, HTTPError, OSError, ValueError, WatchError)
"""Failures of the API server or the network; anything else is a bug and propagates."""


@dataclass(frozen=True)
class Backoff:
    initial: float = 0.5
    maximum: float = 30.0
    factor: float = 2.0

    def delays(self, rng: random.Random) -> Iterator[float]:
        delay = self.initial
        while True:
            # Full jitter: many nodes reconnecting to a restarted API server spread out.
            yield rng.uniform(delay / 2, delay)
            delay = min(self.maximum, delay * self.factor)


def _lines(resp: Any) -> Iterator[str]:
    """Newline-delimited JSON events of a streaming response."""
    pending = b""
    for chunk in resp.stream(amt=65536, decode_content=False):
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            if line.strip():
                yield line.decode()
    if pending.strip():
        yield pending.decode()


class Watcher:
    """Keeps one kind of the store in step with the API server, in its own thread."""

    def __init__(self, kind: Kind, list_func: ListFunc, store: ClusterStore, *,
                 on_error: Callable[[str, BaseException], None],
                 on_invalid: Callable[[FieldError], None],
                 stop: threading.Event, page_size: int = 500,
                 watch_timeout: int = 300, backoff: Backoff | None = None,
                 rng: random.Random | None = None) -> None:
        self.kind = kind
        self.list_func = list_func
        self.store = store
        self.on_error = on_error
        self.on_invalid = on_invalid
        self.stop = stop
        self.page_size = page_size
        self.watch_timeout = watch_timeout
        self.backoff = backoff or Backoff()
        self.rng = rng or random.Random()
        self.lists = 0
        self.watches = 0

    # ---- list --------------------------------------------------------------------
    def list(self) -> str:
        """List everything, replace the store's view, return the resourceVersion."""
        items: list[Any] = []
        token = None
        while True:
            kwargs: dict[str, Any] = {"limit": self.page_size, "_preload_content": False,
                                      "_request_timeout": 60}
            if token:
                kwargs["_continue"] = token
            resp = self.list_func(**kwargs)
            body = json.loads(resp.data)
            items += body.get("items") or []
            meta = body.get("metadata") or {}
            token = meta.get("continue")
            if not token:
                break
        values = []
        for obj in items:
            outcome = self._parse(obj)
            if outcome is not None:
                values.append(outcome)
        self.store.replace(self.kind, values)
        self.lists += 1
        resource_version = str(meta.get("resourceVersion", ""))
        self.store.seen(self.kind, resource_version)
        return resource_version

    def _parse(self, obj: dict[str, Any]) -> Any:
        outcome = parse_object(self.kind, obj)
        for err in outcome.errors:
            self.on_invalid(err)
        return None if outcome.value is None else (outcome.key, outcome.value)

    # ---- watch -------------------------------------------------------------------
    def watch_once(self, resource_version: str) -> str:
        """One watch request; returns the last resourceVersion seen when it ends."""
        resp = self.list_func(
            watch=True, resource_version=resource_version, allow_watch_bookmarks=True,
            timeout_seconds=self.watch_timeout, _preload_content=False,
            _request_timeout=(10, self.watch_timeout + 30))
        self.watches += 1
        try:
            for line in _lines(resp):
                if self.stop.is_set():
                    break
                resource_version = self._handle(json.loads(line), resource_version)
        finally:
            resp.release_conn()
        return resource_version

    def _handle(self, event: dict[str, Any], resource_version: str) -> str:
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise Gone(obj.get("message", "resource version too old"))
            raise WatchError(f"watch error: {obj.get('message', obj)}")
        new_rv = str((obj.get("metadata") or {}).get("resourceVersion") or resource_version)
        if kind in ("ADDED", "MODIFIED"):
            outcome = self._parse(obj)
            if outcome is not None:
                self.store.upsert(self.kind, *outcome)
        elif kind == "DELETED":
            self.store.delete(self.kind, parse_object(self.kind, obj).key)
        self.store.seen(self.kind, new_rv)
        return new_rv

    # ---- the loop ------------------------------------------------------------------
    def run(self) -> None:
        delays = self.backoff.delays(self.rng)
        resource_version = ""
        while not self.stop.is_set():
            try:
                if not resource_version:
                    resource_version = self.list()
                    delays = self.backoff.delays(self.rng)
                resource_version = self.watch_once(resource_version)
                delays = self.backoff.delays(self.rng)
            except Gone as exc:
                self.on_error(f"{self.kind.value}: watch expired, relisting", exc)
                resource_version = ""
            except RETRIED as exc:
                if _status(exc) == 410:
                    resource_version = ""
                self.on_error(f"{self.kind.value}: API request failed, retrying", exc)
                self.stop.wait(next(delays))


def _status(exc: BaseException) -> int | None:
    status = getattr(exc, "status", None)
    return status if isinstance(status, int) else None
