"""The one runner that turns the store into kernel state (level-triggered).

Events only mark the store dirty.  This runner wakes up and applies what changed: pod
changes are patched into the last ruleset (:mod:`npc.compile.incremental`) and written as
member deltas; anything else is compiled in full while the backend loads the sets.
Whatever arrives during a sync is batched into the next one.
When the backend left work that only speeds up packets (``Backend.tidy``: the nftables
backend's pending pods), the runner does it once no event has come for ``tidy_after``
seconds, so a burst of pod events never waits for it.
Every ``full_check_interval`` (jittered) it reads the kernel back instead of trusting its
cache, counts what changed from outside as drift, and repairs it.  A failed kernel
command is counted and retried with capped, jittered backoff; any other exception is a
bug and propagates (the process exits and the DaemonSet restarts it).

Nothing is applied before the store has listed every kind once: until then the kernel
keeps what it had (a restarted npc's last state, or empty chains behind weaver's hooks,
which drop traffic to pods): fail closed, never open.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from common.service.logs import Logger
from common.service.progress import Progress, caught_up, overall
from npc.compile.compiler import Options
from npc.compile.incremental import IncrementalCompiler
from npc.compile.ruleset import Ruleset
from npc.controller.metrics import Metrics
from npc.controller.store import ClusterStore, Kind
from npc.dataplane.backend import ApplyReport, Backend, BackendError


@dataclass
class SyncStatus:
    ready: bool = False
    last_ruleset: Ruleset | None = None
    last_version: int = -1
    applied: dict[str, Progress] = field(default_factory=dict)
    """Per kind, how far its watch was current when the last sync took the store (see
    :mod:`common.service.progress`): the kernel reflects that much."""
    syncs: int = 0
    failures_in_a_row: int = 0
    reported: set[str] = field(default_factory=set)


class SyncRunner:
    def __init__(self, *, store: ClusterStore, backend: Backend, options: Options,
                 metrics: Metrics, log: Logger,
                 min_interval: float = 0.05, full_check_interval: float = 60.0,
                 max_backoff: float = 30.0, tidy_after: float = 0.1,
                 clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None,
                 confirm: Callable[[str, int, float], bool] | None = None,
                 confirm_after: float = 0.05, confirm_interval: float = 1.0) -> None:
        self.store = store
        self.backend = backend
        self.options = options
        self.metrics = metrics
        self.log = log
        self.min_interval = min_interval
        self.full_check_interval = full_check_interval
        self.max_backoff = max_backoff
        self.tidy_after = tidy_after
        self.clock = clock
        self.rng = rng or random.Random()
        self.confirm = confirm
        """``confirm(kind, rv, timeout)``: check by a list that the store holds ``kind``
        as of ``rv`` or later (see :meth:`common.service.listwatch.Watcher.confirm`)."""
        self.confirm_after = confirm_after
        self.confirm_interval = confirm_interval
        self.status = SyncStatus()
        self.compiler = IncrementalCompiler(options)
        self._dirty = threading.Event()
        self._progress = threading.Condition()
        self._next_full = 0.0  # the first sync is a full check
        # The size of the applied ruleset, counted when scraped: counting it on every
        # sync would make a pod event cost O(sets), not O(its change).
        metrics.rules.set_function(lambda: self._size(
            lambda r: sum(len(c.rules) for c in r.chains)))
        metrics.sets.set_function(lambda: self._size(lambda r: len(r.sets)))
        metrics.set_members.set_function(lambda: self._size(
            lambda r: sum(len(s.members) for s in r.sets)))
        store.subscribe(on_change=self.mark_dirty, on_seen=self.notify_progress)

    def _size(self, count: Callable[[Ruleset], int]) -> float:
        ruleset = self.status.last_ruleset
        return float(count(ruleset)) if ruleset is not None else 0.0

    def mark_dirty(self) -> None:
        self._dirty.set()

    def notify_progress(self) -> None:
        """Wake :meth:`wait_applied` callers: a sync finished or a watch moved on."""
        with self._progress:
            self._progress.notify_all()

    def wait_applied(self, resource_version: int, kind: str | None, timeout: float) -> bool:
        """Block until the kernel reflects every write up to ``resource_version`` of
        ``kind`` (or of every kind), at most ``timeout`` seconds; whether it does.  A kind
        with no write after ``resource_version`` is caught up once its watch confirms it
        has nothing more to deliver (see :func:`common.service.progress.caught_up`): by a
        bookmark, or, when ``confirm`` was given, by a list that shows the store holds its
        state at that version, asked for once events already on their way had a moment
        to land, and again every ``confirm_interval`` while the kind still lags."""
        deadline = self.clock() + timeout
        kinds = [kind] if kind is not None else [k.value for k in Kind]
        _, asked = self.store.progress()
        next_confirm = self.clock() + self.confirm_after

        def lagging() -> list[str]:
            if not self.status.ready:
                return kinds
            applied = self.applied_progress()
            return [k for k in kinds if not caught_up(resource_version, applied, asked, [k])]

        confirm = self.confirm
        while True:
            with self._progress:
                while True:
                    pending = lagging()
                    if not pending:
                        return True
                    now = self.clock()
                    if now >= deadline:
                        return False
                    if confirm is not None and now >= next_confirm and self.status.ready:
                        break
                    wake = min(deadline, next_confirm) if confirm is not None else deadline
                    self._progress.wait(max(0.0, wake - now) or 0.01)
            assert confirm is not None
            for lagging_kind in pending:  # outside the lock: a list takes a while
                confirm(lagging_kind, resource_version, max(0.5, deadline - self.clock()))
            next_confirm = self.clock() + self.confirm_interval

    def applied_progress(self) -> dict[str, Progress]:
        """Per kind, how far the kernel reflects its watch.  Bookmarks advance the store's
        progress without changing it: when nothing changed since the last sync, the
        kernel reflects everything seen so far."""
        version, seen = self.store.progress()
        if self.status.ready and version == self.status.last_version:
            return seen
        return dict(self.status.applied)

    def applied_by_kind(self) -> dict[str, int]:
        """Per kind: the kernel reflects every write of it up to this resourceVersion."""
        return {kind: p.through for kind, p in self.applied_progress().items()}

    def applied_through(self) -> int:
        """The resourceVersion up to which the kernel reflects every kind (0 before each
        has been listed)."""
        return overall(self.applied_progress(), [k.value for k in Kind])

    def full_check_due(self) -> bool:
        """Whether the next sync is to read the kernel back (periodically, and after a
        failure)."""
        return self.clock() >= self._next_full

    def _jittered(self, seconds: float) -> float:
        return seconds * self.rng.uniform(0.8, 1.2)

    def run(self, stop: threading.Event) -> None:
        backoff = 0.0
        last_sync = -1e9
        while not stop.is_set():
            if backoff:
                if stop.wait(backoff):
                    return
            else:
                timeout = min(max(0.0, self._next_full - self.clock()), 1.0)
                untidy = self.status.ready and self.backend.untidy() > 0
                if untidy:
                    timeout = min(timeout, self.tidy_after)
                if not self._dirty.wait(timeout=timeout) and untidy and not stop.is_set() \
                        and self.clock() < self._next_full:
                    backoff = self._backoff(self.tidy(), backoff)
                    continue
            if stop.is_set():
                return
            if not self.store.synced:
                self._dirty.clear()  # fail closed until every kind has been listed
                continue
            full = self.full_check_due()
            if not (self._dirty.is_set() or full or backoff):
                continue
            # Coalesce: let a burst of events land before compiling.
            wait = self.min_interval - (self.clock() - last_sync)
            if wait > 0 and stop.wait(wait):
                return
            self._dirty.clear()
            last_sync = self.clock()
            backoff = self._backoff(self.sync_once(full_check=full), backoff)

    def _backoff(self, ok: bool, backoff: float) -> float:
        """The wait before the next try: none after a success, else capped and jittered."""
        if ok:
            return 0.0
        return min(self.max_backoff, max(0.1, backoff * 2)) * self.rng.uniform(0.5, 1)

    def tidy(self) -> bool:
        """Let the backend tidy (see the module's docstring); False after a kernel
        failure (the next sync reads the kernel back)."""
        try:
            report = self.backend.tidy()
        except BackendError as exc:
            self._failed(exc)
            return False
        if report is not None:
            self.metrics.folds.inc()
            self.log.debug("tidied", ipset_lines=report.ipset_lines,
                           chains=",".join(report.chains_rewritten) or "-")
        return True

    def _failed(self, exc: BackendError) -> None:
        self.status.failures_in_a_row += 1
        self.metrics.kernel_failures.inc()
        self.metrics.syncs.labels(result="failed").inc()
        self.log.error("applying to the kernel failed; will retry", error=exc.describe(),
                       attempt=self.status.failures_in_a_row)
        self._next_full = self.clock()  # re-read the kernel on the retry

    def sync_once(self, *, full_check: bool) -> bool:
        """Compile the current snapshot and apply it; False after a kernel failure."""
        started = self.clock()
        _, progress = self.store.progress()
        version, changes, state = self.store.take(full=full_check or self.compiler.ruleset
                                                  is None)
        patched = self.compiler.patch(changes) if changes is not None else None
        try:
            if patched is not None:
                ruleset, touched = patched
                report = self.backend.sync(ruleset,
                                           full_check=full_check, changed_sets=touched)
            else:
                if state is None:
                    version, state = self.store.snapshot()
                snapshot = state
                # The backend loads sets while the compile goes on (see sync_compiling).
                ruleset, report = self.backend.sync_compiling(
                    lambda on_set: self.compiler.full(snapshot, on_set),
                    full_check=full_check)
                self._report_problems(ruleset)
        except BackendError as exc:
            self._failed(exc)
            return False
        if full_check:
            self._next_full = self.clock() + self._jittered(self.full_check_interval)
        for item in report.drift:
            self.metrics.drift.labels(kind=item.split(" ", 1)[0]).inc()
        if report.drift:
            self.log.error("kernel state was changed from outside; repaired",
                           drift=", ".join(report.drift))
        self._record(ruleset, version, started, report)
        self.status.applied = progress
        self.status.syncs += 1
        self.notify_progress()
        return True

    def _record(self, ruleset: Ruleset, version: int, started: float,
                report: ApplyReport) -> None:
        elapsed = self.clock() - started
        m = self.metrics
        m.sync_seconds.observe(elapsed)
        m.syncs.labels(result="ok").inc()
        m.last_success.set(time.time())
        if not self.status.ready:
            self.log.info("first full sync applied; ready", seconds=round(elapsed, 4),
                          sets=len(ruleset.sets))
            m.ready.set(1)
        self.status.ready = True
        self.status.last_ruleset = ruleset
        self.status.last_version = version
        self.status.failures_in_a_row = 0
        if report.changed:
            self.log.debug("synced", seconds=round(elapsed, 4),
                           chains=",".join(report.chains_rewritten) or "-",
                           ipset_lines=report.ipset_lines)

    def _report_problems(self, ruleset: Ruleset) -> None:
        """Log and count each problem once (not on every sync); forget fixed ones."""
        current = {str(p) for p in ruleset.problems}
        for problem in sorted(current - self.status.reported):
            self.metrics.policy_errors.inc()
            self.log.error("policy enforced fail-closed", problem=problem)
        self.status.reported = current
