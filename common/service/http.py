"""``/metrics``, ``/healthz``, ``/readyz`` and ``/status`` on the metrics address (default
:6781).

``/status?wait=RV[&kind=pods][&timeout=S]`` answers once the kernel reflects resourceVersion
``RV`` (of that kind's watch, or of every kind) or after ``S`` seconds (default 10, at most
60), whichever comes first: scripts and tests wait for a write to be enforced without
polling.  The body is the status either way; ``applied`` in it says which.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


class HealthServer:
    """Serves metrics and probes in a daemon thread.  ``healthy`` says the process's
    workers are alive; ``ready`` that the first full sync has been applied."""

    def __init__(self, address: tuple[str, int], registry: CollectorRegistry, *,
                 healthy: Callable[[], bool], ready: Callable[[], bool],
                 status: Callable[[], dict[str, object]] = dict,
                 wait_applied: Callable[[int, str | None, float], bool] | None = None
                 ) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path, _, query = self.path.partition("?")
                if path == "/metrics":
                    outer._send(self, 200, generate_latest(registry), CONTENT_TYPE_LATEST)
                elif path in ("/healthz", "/livez"):
                    ok = healthy()
                    outer._send(self, 200 if ok else 503, b"ok\n" if ok else b"unhealthy\n")
                elif path == "/status":
                    body: dict[str, object] | None = None
                    params = parse_qs(query)
                    if wait_applied is not None and "wait" in params:
                        try:
                            rv = int(params["wait"][0])
                            timeout = min(60.0, float(params.get("timeout", ["10"])[0]))
                        except ValueError:
                            outer._send(self, 400, b"wait and timeout must be numbers\n")
                            return
                        kind = params.get("kind", [None])[0]
                        applied = wait_applied(rv, kind, timeout)
                        body = {**status(), "applied": applied}
                    if body is None:
                        body = status()
                    outer._send(self, 200, json.dumps(body, sort_keys=True).encode(),
                                "application/json")
                elif path == "/readyz":
                    ok = ready()
                    outer._send(self, 200 if ok else 503,
                                b"ok\n" if ok else b"not synced yet\n")
                else:
                    outer._send(self, 404, b"not found\n")

            def log_message(self, format: str, *args: object) -> None:
                return  # probes every few seconds would flood the log

        self.server = ThreadingHTTPServer(address, Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="http",
                                       daemon=True)

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, code: int, body: bytes,
              content_type: str = "text/plain; charset=utf-8") -> None:
        handler.send_response(code)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
