"""``npc run`` (``weave-npc``): wire the store, watchers, sync runner, blocked-connection
logger and HTTP endpoints together, and supervise them.

Every worker runs in a thread.  A worker that dies of an unexpected exception stops the
process with a non-zero exit (the DaemonSet restarts it); SIGTERM stops it cleanly with
exit 0.  Kernel state is left in place on exit, so a restart enforces without a gap.
"""

from __future__ import annotations

import sys
import threading

from prometheus_client import CollectorRegistry

from common.kernel.exec import SubprocessRunner
from common.service import logs
from common.service.apierrors import describe
from common.service.http import HttpServer, metrics_handler, probe_handler
from common.service.kube import kube_api_client
from common.service.listwatch import Watcher
from common.service.logs import Logger
from common.service.supervisor import Supervisor, run_until_stopped
from npc.compile.compiler import compile_ruleset
from npc.controller.metrics import Metrics
from npc.controller.settings import Settings
from npc.controller.status import status_handler
from npc.controller.store import ClusterStore, Kind
from npc.controller.sync import SyncRunner
from npc.controller.watchers import watchers
from npc.dataplane.select import make_backend
from npc.model.objects import ClusterState
from npc.model.parse import FieldError


def run(settings: Settings) -> int:
    # A thread waiting for the interpreter lock gets it within 1 ms instead of 5 ms when
    # another thread is busy (a /metrics scrape, a watch relist): pod events are applied
    # in a few milliseconds, so the default hand-off period would dominate them.
    sys.setswitchinterval(0.001)
    logs.configure(settings.log_level, settings.log_format)
    log = logs.get()
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    runner = SubprocessRunner()
    options = settings.options
    backend = make_backend(settings.backend, runner, options,
                           install_hooks=settings.install_hooks,
                           iptables_mode=settings.iptables_mode)
    log.info("weave-npc starting", node=settings.node_name, backend=backend.description,
             metrics_addr=f"{settings.metrics_addr[0]}:{settings.metrics_addr[1]}")
    created = backend.prepare(compile_ruleset(ClusterState(), options))
    if created:
        log.info("created empty chains: traffic to pods is blocked until the first sync",
                 chains=",".join(created))
    stop = threading.Event()
    store = ClusterStore()
    watchers = {w.kind.value: w for w in _watchers(settings, store, metrics, log, stop)}
    sync = SyncRunner(store=store, backend=backend, metrics=metrics, log=log,
                      options=options,
                      min_interval=settings.min_sync_interval,
                      full_check_interval=settings.full_check_interval,
                      confirm=lambda kind, rv, timeout: watchers[kind].confirm(rv, timeout))
    supervisor = Supervisor(stop)
    for watcher in watchers.values():
        supervisor.spawn(f"watch-{watcher.kind.value}", watcher.run)
    supervisor.spawn("sync", lambda: sync.run(stop))
    _start_blocked_logger(store, registry, log, stop, supervisor)
    def status() -> dict[str, object]:
        return {"ready": sync.status.ready, "syncs": sync.status.syncs,
                "applied_resource_version": sync.applied_through(),
                "applied_resource_versions": sync.applied_by_kind(),
                "objects": store.counts(), "node": settings.node_name}

    http = HttpServer(settings.metrics_addr)
    http.route("GET", "/metrics", metrics_handler(registry))
    for path in ("/healthz", "/livez"):
        http.route("GET", path, probe_handler(supervisor.alive))
    http.route("GET", "/readyz", probe_handler(lambda: sync.status.ready,
                                                failing="not synced yet"))
    http.route("GET", "/status", status_handler(status, sync.wait_applied))
    http.start()
    run_until_stopped(stop)
    for watcher in watchers.values():
        watcher.close()  # their threads are blocked reading a watch stream
    http.stop()
    supervisor.join(timeout=2)
    if supervisor.crash:
        log.critical("worker crashed; exiting", error=supervisor.crash)
        return 1
    log.info("weave-npc stopped")
    return 0


def _watchers(settings: Settings, store: ClusterStore, metrics: Metrics, log: Logger,
              stop: threading.Event) -> list[Watcher[Kind]]:
    def on_error(what: str, exc: BaseException) -> None:
        metrics.api_errors.labels(resource=what.split(":", 1)[0]).inc()
        log.warning(what, error=describe(exc))

    def on_invalid(err: FieldError) -> None:
        log.warning("invalid object", problem=str(err))

    return watchers(kube_api_client(settings.kubeconfig, "weave-npc"), store,
                    on_error=on_error, on_invalid=on_invalid, stop=stop, log=log)


def _start_blocked_logger(store: ClusterStore, registry: CollectorRegistry, log: Logger,
                          stop: threading.Event, supervisor: Supervisor) -> None:
    """Blocked connections from NFLOG group 86, read natively (no ulogd), counted and
    logged as the original did, with pod names added; a reader failure stops npc."""
    from npc.observe import BlockedConnectionCounter, BlockedConnectionLogger, NflogReader

    reader = NflogReader()

    def failed(exc: BaseException) -> None:
        supervisor.crash = f"NFLOG reader: {exc!r}"
        stop.set()

    logger = BlockedConnectionLogger(reader, BlockedConnectionCounter(registry), log.warning,
                                     resolver=store.pod_name_for_ip, on_error=failed)
    logger.start()

    def close_when_stopped() -> None:
        stop.wait()
        logger.stop()
        reader.close()

    supervisor.spawn("nflog", close_when_stopped)
