"""``npc run`` (``weave-npc``): wire the store, watchers, sync runner, blocked-connection
logger and HTTP endpoints together, and supervise them.

Every worker runs in a thread.  A worker that dies of an unexpected exception stops the
process with a non-zero exit (the DaemonSet restarts it); SIGTERM stops it cleanly with
exit 0.  Kernel state is left in place on exit, so a restart enforces without a gap.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from npc.compile.compiler import Options
from npc.controller import logs
from npc.controller.apierrors import describe
from npc.controller.http import HealthServer
from npc.controller.metrics import Metrics
from npc.controller.settings import Settings
from npc.controller.store import ClusterStore, Kind
from npc.controller.sync import SyncRunner
from npc.controller.watch import Watcher
from npc.dataplane.exec import SubprocessRunner
from npc.dataplane.select import make_backend
from npc.model.parse import FieldError


def kube_api_client(kubeconfig: str | None) -> Any:
    """``--kubeconfig``, else the in-cluster service account, else ``$KUBECONFIG``, else
    ``~/.kube/config``."""
    from kubernetes import client, config

    if kubeconfig:
        api = config.new_client_from_config(config_file=kubeconfig)
    elif os.environ.get("KUBERNETES_SERVICE_HOST"):
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)
        api = client.ApiClient(configuration)
    else:
        path = os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
        api = config.new_client_from_config(config_file=path)
    api.user_agent = user_agent()
    return api


def user_agent(program: str = "weave-npc") -> str:
    """``weave-npc/0.1.0 (linux/amd64) python/3.11.2``: who is asking, in the API server's
    audit log and metrics (client-go's form), instead of the generated client's name."""
    try:
        version = importlib.metadata.version("weave-npc-py")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)
    return f"{program}/{version} ({sys.platform}/{arch}) python/{platform.python_version()}"


class Supervisor:
    """Runs workers in threads; remembers the first one that crashed."""

    def __init__(self, stop: threading.Event, log: Any) -> None:
        self.stop = stop
        self.log = log
        self.threads: list[threading.Thread] = []
        self.crash: str | None = None

    def spawn(self, name: str, target: Callable[[], None]) -> None:
        def body() -> None:
            try:
                target()
            except BaseException:  # a bug: report it, stop everything, exit non-zero
                self.crash = f"{name}: {traceback.format_exc()}"
                self.stop.set()
        thread = threading.Thread(target=body, name=name, daemon=True)
        self.threads.append(thread)
        thread.start()

    def alive(self) -> bool:
        return not self.stop.is_set() and all(t.is_alive() for t in self.threads)

    def join(self, timeout: float) -> None:
        """Wait for the workers, ``timeout`` seconds in all."""
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))


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
    options = Options(settings.allow_mcast, settings.bridge_port_name, settings.max_list_size)
    backend, description = make_backend(settings.backend, runner, options)
    log.info("weave-npc starting", node=settings.node_name, backend=description,
             metrics_addr=f"{settings.metrics_addr[0]}:{settings.metrics_addr[1]}")
    created = backend.prepare(install_hooks=settings.install_hooks)
    if created:
        log.info("created empty chains: traffic to pods is blocked until the first sync",
                 chains=",".join(created))
    stop = threading.Event()
    sync_box: list[SyncRunner] = []
    store = ClusterStore(on_change=lambda: sync_box[0].mark_dirty() if sync_box else None,
                         on_seen=lambda: sync_box[0].notify_progress() if sync_box else None)
    watchers = {w.kind.value: w for w in _watchers(settings, store, metrics, log, stop)}
    sync = SyncRunner(store=store, backend=backend, metrics=metrics, log=log,
                      options=options,
                      install_hooks=settings.install_hooks,
                      min_interval=settings.min_sync_interval,
                      full_check_interval=settings.full_check_interval,
                      confirm=lambda kind, rv, timeout: watchers[kind].confirm(rv, timeout))
    sync_box.append(sync)
    supervisor = Supervisor(stop, log)
    for watcher in watchers.values():
        supervisor.spawn(f"watch-{watcher.kind.value}", watcher.run)
    supervisor.spawn("sync", lambda: sync.run(stop))
    _start_blocked_logger(store, registry, log, stop, supervisor)
    def status() -> dict[str, object]:
        return {"ready": sync.status.ready, "syncs": sync.status.syncs,
                "applied_resource_version": sync.applied_through(),
                "applied_resource_versions": sync.applied_by_kind(),
                "objects": store.counts(), "node": settings.node_name}

    http = HealthServer(settings.metrics_addr, registry, healthy=supervisor.alive,
                        ready=lambda: sync.status.ready, status=status,
                        wait_applied=sync.wait_applied)
    http.start()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    for watcher in watchers.values():
        watcher.close()  # their threads are blocked reading a watch stream
    http.stop()
    supervisor.join(timeout=2)
    if supervisor.crash:
        log.critical("worker crashed; exiting", error=supervisor.crash)
        return 1
    log.info("weave-npc stopped")
    return 0


def _watchers(settings: Settings, store: ClusterStore, metrics: Metrics, log: Any,
              stop: threading.Event) -> list[Watcher]:
    from kubernetes import client

    api = kube_api_client(settings.kubeconfig)
    core, net = client.CoreV1Api(api), client.NetworkingV1Api(api)

    def on_error(what: str, exc: BaseException) -> None:
        metrics.api_errors.labels(resource=what.split(":", 1)[0]).inc()
        log.warning(what, error=describe(exc))

    def on_invalid(err: FieldError) -> None:
        log.warning("invalid object", problem=str(err))

    return [
        Watcher(kind, list_func, store, on_error=on_error, on_invalid=on_invalid, stop=stop,
                log=log)
        for kind, list_func in ((Kind.NAMESPACE, core.list_namespace),
                                (Kind.POD, core.list_pod_for_all_namespaces),
                                (Kind.POLICY, net.list_network_policy_for_all_namespaces))
    ]


def _start_blocked_logger(store: ClusterStore, registry: CollectorRegistry, log: Any,
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
