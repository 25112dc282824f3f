"""Test helpers for the API server tests: a threaded watch collector using the official
client, and raw HTTP/1.1 exchanges for checking the wire format."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from typing import Any

from kubernetes import watch

Event = dict[str, Any]


class Collector:
    """Runs ``kubernetes.watch.Watch().stream(func, ...)`` in a thread and collects events
    (as ``(type, raw_object)``), or the exception that ended the stream."""

    def __init__(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.watch = watch.Watch()
        self.events: list[tuple[str, Event]] = []
        self.error: BaseException | None = None
        self.done = threading.Event()
        self._stopping = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, args=(func, args, kwargs),
                                        name="test-watch-collector", daemon=True)
        self._thread.start()

    def _run(self, func: Callable[..., Any], args: Any, kwargs: Any) -> None:
        try:
            for ev in self.watch.stream(func, *args, **kwargs):
                with self._cond:
                    self.events.append((ev["type"], ev["raw_object"]))
                    self._cond.notify_all()
        except BaseException as exc:
            if not self._stopping:  # Watch.stop() shuts the socket down under the reader
                self.error = exc
        finally:
            self.done.set()
            with self._cond:
                self._cond.notify_all()

    def wait(self, check: Callable[[list[tuple[str, Event]]], bool],
             timeout: float = 2.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: check(self.events) or self.done.is_set(),
                                       timeout) and check(self.events)

    def changes(self) -> list[tuple[str, str]]:
        """Non-bookmark events as ``(type, name)``."""
        with self._cond:
            return [(t, o["metadata"]["name"]) for t, o in self.events if t != "BOOKMARK"]

    def stop(self) -> None:
        self._stopping = True
        self.watch.stop()
        self._thread.join(2.0)
        assert not self._thread.is_alive(), "watch collector thread did not stop"


class RawResponse:
    def __init__(self, status: int, headers: dict[str, str], chunks: list[bytes] | None,
                 body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.chunks = chunks
        """Chunk payloads in order, the terminating empty chunk included (chunked only)."""
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


def raw_request(port: int, method: str, target: str, body: Any = None,
                content_type: str = "application/json", timeout: float = 3.0) -> RawResponse:
    """One HTTP/1.1 exchange over a fresh socket, parsing chunked framing by hand."""
    data = b"" if body is None else json.dumps(body).encode()
    head = (f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(data)}\r\n\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head.encode() + data)
        reader = sock.makefile("rb")
        status = int(reader.readline().split()[1])
        headers: dict[str, str] = {}
        while (line := reader.readline().decode("latin-1").strip()):
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        if headers.get("transfer-encoding") == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(reader.readline().strip(), 16)
                payload = reader.read(size)
                assert reader.read(2) == b"\r\n", "chunk not terminated by CRLF"
                chunks.append(payload)
                if size == 0:
                    return RawResponse(status, headers, chunks, b"".join(chunks))
        content = reader.read(int(headers.get("content-length", "0")))
        return RawResponse(status, headers, None, content)


def pod(name: str, namespace: str = "ns1", labels: dict[str, str] | None = None,
        ip: str | None = None, ports: list[dict[str, Any]] | None = None) -> Event:
    """A minimal valid pod manifest (with a status carrying ``ip`` if given)."""
    obj: Event = {"metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
                  "spec": {"containers": [{"name": "c", "image": "busybox",
                                           "ports": ports or []}]}}
    if ip:
        obj["status"] = {"podIP": ip, "podIPs": [{"ip": ip}], "phase": "Running"}
    return obj


def policy(name: str, namespace: str = "ns1", spec: dict[str, Any] | None = None) -> Event:
    return {"metadata": {"name": name, "namespace": namespace},
            "spec": spec if spec is not None else {"podSelector": {}}}
