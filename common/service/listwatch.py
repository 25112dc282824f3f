"""List-then-watch of one kind through the official ``kubernetes`` client.

The protocol (as client-go's reflector does it):

1. **List** the whole collection and replace the store's view of that kind.  The first
   list asks for ``resourceVersion=0``, which the API server's watch cache answers without
   a quorum read from etcd (it ignores ``limit`` then); a relist asks for the last version
   seen (any state at least that new, from the cache too); only when the server cannot
   serve that (410, or 504 "too large resource version" from a server whose cache is
   behind) does it fall back to a consistent list (``resourceVersion=""``, paginated).
2. **Watch** from the list's resourceVersion with bookmarks.  Each event carries the
   object's new resourceVersion and BOOKMARK events advance it without one; the watcher
   remembers the last version seen *as each event arrives*, so when a watch request ends
   (server timeout, broken stream, API server restart) the next one resumes exactly
   there: nothing is replayed, nothing lost.
3. If the server answers **410 Gone** (that version was compacted away), go back to 1,
   which also catches deletions missed in between.

Failures are retried with capped exponential backoff and jitter; a watch that ran healthy
for a while starts the backoff afresh, so a connection reset after minutes of streaming
is retried at once.  The store keeps its last known state meanwhile, so enforcement
continues unchanged while the API is away.  Objects are read as raw JSON
(``_preload_content=False``) and parsed straight into model values.

Lists and watch (re)starts are logged at info level with what they read and why they
started; failures carry the server's Status (see :mod:`.apierrors`).
"""

from __future__ import annotations

import contextlib
import json
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from common.service.apierrors import Gone, WatchError, describe, status_code
from common.service.logs import Logger

ListFunc = Callable[..., Any]
Items = list[Any]
"""The raw objects of a list."""
Parse = Callable[[dict[str, Any]], "tuple[str, Any] | None"]
"""An API object → (its key, what the sink keeps of it), or None to leave it out (the
parser reports why)."""
KeyOf = Callable[[dict[str, Any]], str]
"""The key of an API object (of a deletion's last state)."""
K = TypeVar("K")
K_contra = TypeVar("K_contra", contravariant=True)


class Sink(Protocol[K_contra]):
    """Where a watcher keeps what it reads: the cluster state of the kinds it watches,
    and how far each kind's watch is known to be current (see :mod:`.progress`)."""

    def replace(self, kind: K_contra, values: Iterable[tuple[str, Any]]) -> None:
        """A (re)list: the kind's objects are exactly ``values`` now."""

    def upsert(self, kind: K_contra, key: str, value: Any) -> None: ...

    def delete(self, kind: K_contra, key: str) -> None: ...

    def seen(self, kind: K_contra, resource_version: str) -> None:
        """An event of the kind at ``resource_version`` arrived."""

    def confirmed(self, kind: K_contra, resource_version: str) -> None:
        """A bookmark, or a complete list, at ``resource_version``."""

    def confirm_if_same(self, kind: K_contra, values: Iterable[tuple[str, Any]],
                        resource_version: str) -> bool:
        """A list taken to check how far the kind is current: if the sink holds exactly
        ``values``, record the kind current through ``resource_version``."""

RETRIED = (ApiException, HTTPError, OSError, ValueError, WatchError)
"""Failures of the API server or the network; anything else is a bug and propagates."""

CACHED = "0"
"""``resourceVersion=0``: any state, as the watch cache holds it."""
CONSISTENT = ""
"""``resourceVersion=""``: the latest state, read from etcd."""


@dataclass(frozen=True)
class Backoff:
    initial: float = 0.5
    maximum: float = 30.0
    factor: float = 2.0
    healthy_after: float = 10.0
    """A watch that streamed this long before it failed was healthy: the retry after
    its failure is a first retry again."""

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


class Watcher(Generic[K]):
    """Keeps one kind of a sink in step with the API server, in its own thread.

    ``kind`` is the sink's token for the kind (its name in logs is ``name``, by default
    ``kind``'s value); ``list_func`` the generated client's list function of the kind (a
    list, or a watch with ``watch=True``); ``parse`` and ``key_of`` read its objects."""

    def __init__(self, kind: K, list_func: ListFunc, store: Sink[K], *,
                 parse: Parse, key_of: KeyOf,
                 on_error: Callable[[str, BaseException], None],
                 stop: threading.Event, log: Logger, page_size: int = 500,
                 watch_timeout: int = 300, backoff: Backoff | None = None,
                 rng: random.Random | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.kind = kind
        self.name = str(getattr(kind, "value", kind))
        self.parse = parse
        self.key_of = key_of
        self.list_func = list_func
        self.store = store
        self.on_error = on_error
        self.stop = stop
        self.log = log
        self.page_size = page_size
        self.watch_timeout = watch_timeout
        self.backoff = backoff or Backoff()
        self.rng = rng or random.Random()
        self.clock = clock
        self.resource_version = ""
        """The last resourceVersion seen (list, event or bookmark); "" until listed."""
        self.lists = 0
        self.watches = 0
        self._response: Any = None
        self._response_lock = threading.Lock()

    # ---- list --------------------------------------------------------------------
    def list(self, resource_version: str = CACHED) -> str:
        """List everything at ``resource_version`` (see the module's docstring), replace
        the store's view, and return the list's resourceVersion."""
        started = self.clock()
        items, listed, pages = self._fetch(resource_version)
        self.store.replace(self.kind, self._values(items))
        self.lists += 1
        self.store.confirmed(self.kind, listed)
        self.resource_version = listed
        self.log.info("listed", kind=self.name, objects=len(items),
                      resource_version=listed, asked=resource_version or '""', pages=pages,
                      seconds=round(self.clock() - started, 3))
        return listed

    def confirm(self, at_least: int, timeout: float = 60.0) -> bool:
        """Whether the store holds the kind's state as of ``at_least`` or later, by one
        list that the watch cache serves once it has caught up with etcd that far; if so,
        the store records the kind current through the list's version.  This is how a
        quiet kind confirms it has nothing up to a write of another kind: a real API
        server sends a watch no bookmark while the kind's newest version is the one the
        watch started from."""
        try:
            items, listed, _ = self._fetch(str(at_least), timeout)
        except RETRIED as exc:
            self.log.debug("confirming failed", kind=self.name, error=describe(exc))
            return False
        return self.store.confirm_if_same(self.kind, self._values(items), listed)

    def _fetch(self, resource_version: str, timeout: float = 60.0
               ) -> tuple[Items, str, int]:
        """Every page of a list: (items, the list's resourceVersion, pages)."""
        items: Items = []
        token = None
        pages = 0
        while True:
            kwargs: dict[str, Any] = {"limit": self.page_size, "_preload_content": False,
                                      "_request_timeout": timeout}
            if token:
                kwargs["_continue"] = token  # a continuation carries its own version
            else:
                kwargs["resource_version"] = resource_version
            body = json.loads(self.list_func(**kwargs).data)
            pages += 1
            items += body.get("items") or []
            meta = body.get("metadata") or {}
            token = meta.get("continue")
            if not token:
                return items, str(meta.get("resourceVersion", "")), pages

    def _values(self, items: Items) -> Items:
        return [outcome for obj in items if (outcome := self.parse(obj)) is not None]

    # ---- watch -------------------------------------------------------------------
    def watch_once(self) -> None:
        """One watch request from :attr:`resource_version`, which moves on with every
        event and bookmark as it arrives (so it stays right if the stream breaks)."""
        resp = self.list_func(
            watch=True, resource_version=self.resource_version, allow_watch_bookmarks=True,
            timeout_seconds=self.watch_timeout, _preload_content=False,
            _request_timeout=(10, self.watch_timeout + 30))
        self.watches += 1
        with self._response_lock:
            self._response = resp
        if self.stop.is_set():  # close() ran before the response was known
            self._shut(resp)
        try:
            for line in _lines(resp):
                if self.stop.is_set():
                    break
                self._handle(json.loads(line))
        finally:
            with self._response_lock:
                self._response = None
            resp.release_conn()

    def _handle(self, event: dict[str, Any]) -> None:
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            raise (Gone if obj.get("code") == 410 else WatchError)(obj)
        new_rv = str((obj.get("metadata") or {}).get("resourceVersion") or "")
        if kind in ("ADDED", "MODIFIED"):
            outcome = self.parse(obj)
            if outcome is not None:
                self.store.upsert(self.kind, *outcome)
        elif kind == "DELETED":
            self.store.delete(self.kind, self.key_of(obj))
        if kind == "BOOKMARK":
            self.store.confirmed(self.kind, new_rv)
        else:
            self.store.seen(self.kind, new_rv)
        if new_rv:
            self.resource_version = new_rv

    def close(self) -> None:
        """Stop now: break the open watch stream (the thread's blocking read returns)."""
        with self._response_lock:
            resp = self._response
        if resp is not None:
            self._shut(resp)

    @staticmethod
    def _shut(resp: Any) -> None:
        with contextlib.suppress(Exception):
            resp.shutdown()  # urllib3 >= 2.3: unblocks a read in another thread

    # ---- the loop ------------------------------------------------------------------
    def run(self) -> None:
        delays = self.backoff.delays(self.rng)
        list_at = CACHED
        relisted_at, after_410 = "", False
        why = "start"
        while not self.stop.is_set():
            started = self.clock()
            try:
                if not self.resource_version:
                    listed = self.list(list_at)
                    relisted_at, after_410 = (listed if after_410 else ""), False
                    why = "after the list"
                self.log.info("watching", kind=self.name,
                              resource_version=self.resource_version, why=why)
                started = self.clock()
                self.watch_once()
                why = "the server ended the last watch"
                delays = self.backoff.delays(self.rng)
            except Gone as exc:
                self.on_error(f"{self.name}: watch expired, relisting", exc)
                # A relist at the last version seen is served from the watch cache.  If
                # the watch from that relist expires again at once, the server lists at a
                # version its cache cannot watch from (a restarted API server, whose cache
                # starts later): read etcd's latest instead, after a backoff delay.
                stuck = self.resource_version == relisted_at
                list_at = CONSISTENT if stuck else self.resource_version
                self.resource_version, after_410 = "", True
                why = "relisted after 410"
                if stuck:
                    self.stop.wait(next(delays))
            except RETRIED as exc:
                if self.stop.is_set():
                    return
                code = status_code(exc)
                if not self.resource_version and code in (410, 504) and list_at != CONSISTENT:
                    # The list was too old for the server, or newer than its cache
                    # (another API server's): read the latest state from etcd, now.
                    self.on_error(f"{self.name}: cannot list at {list_at}, "
                                  "listing the latest state", exc)
                    list_at = CONSISTENT
                    continue
                if self.resource_version and code == 410:  # the watch request itself
                    list_at, self.resource_version = self.resource_version, ""
                if self.clock() - started >= self.backoff.healthy_after:
                    delays = self.backoff.delays(self.rng)
                self.on_error(f"{self.name}: API request failed, retrying", exc)
                why = f"after an error ({describe(exc)[:120]})"
                self.stop.wait(next(delays))
