"""HTTP/1.1 requests to a loopback address inside another network namespace.

A socket stays in the network namespace of the thread that created it, so the
connection is opened inside :func:`common.lab.netns.in_netns` (which moves only
the calling thread, and always moves it back) and the request is then sent
over that socket by :mod:`http.client` as usual.  The weaver's API takes
form-encoded bodies (``peer=a&peer=b``), so ``form`` is a list of pairs.
"""

from __future__ import annotations

import http.client
import json
import socket
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from common.kernel.netns import in_netns
from common.lab.netns import LabError


@dataclass(frozen=True)
class HttpReply:
    """Status, headers (lower-case names) and raw body of one response."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> object:
        return json.loads(self.body)

    def expect(self, status: int) -> HttpReply:
        """Return self if the status is ``status``, else raise :class:`LabError` with the body."""
        if self.status != status:
            raise LabError(f"HTTP {self.status} (wanted {status}): {self.text.strip()[:500]}")
        return self


class _NetnsConnection(http.client.HTTPConnection):
    """An HTTPConnection whose socket is created inside namespace ``netns_fd``."""

    def __init__(self, netns_fd: int, host: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._netns_fd = netns_fd

    def connect(self) -> None:
        with in_netns(self._netns_fd):
            self.sock = socket.create_connection((self.host, self.port), self.timeout)


def http_request(
    netns_fd: int,
    port: int,
    method: str,
    path: str,
    form: Sequence[tuple[str, str]] | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 5.0,
    host: str = "127.0.0.1",
) -> HttpReply:
    """Send one request to ``host:port`` in namespace ``netns_fd`` and read the whole reply."""
    all_headers = dict(headers or {})
    body: bytes | None = None
    if form is not None:
        body = urllib.parse.urlencode(list(form)).encode()
        all_headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
    conn = _NetnsConnection(netns_fd, host, port, timeout)
    try:
        conn.request(method, path, body=body, headers=all_headers)
        resp = conn.getresponse()
        data = resp.read()
        return HttpReply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
    finally:
        conn.close()
