"""common/service/http.py: the defaults npc relies on, and what the agent's API needs
(request headers, responses without a Content-Type, its own 404/405 answers)."""

from __future__ import annotations

import http.client
from collections.abc import Iterator

import pytest

from common.service.http import HttpServer, Request, Response


def ask(server: HttpServer, method: str, path: str,
        headers: dict[str, str] | None = None) -> tuple[int, str | None, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type"), response.read()
    finally:
        connection.close()


def echo_accept(request: Request) -> Response:
    return Response.text(",".join(request.header("ACCEPT")) + "\n")


@pytest.fixture
def servers() -> Iterator[tuple[HttpServer, HttpServer]]:
    plain = HttpServer(("127.0.0.1", 0))
    custom = HttpServer(("127.0.0.1", 0), not_found=Response(404, b"gone\n", "x/y"),
                        method_not_allowed=Response(405, b"", ""))
    for server in (plain, custom):
        server.route("GET", "/accept", echo_accept)
        server.route("GET", "/empty", lambda _: Response(200, b"", ""))
        server.start()
    try:
        yield plain, custom
    finally:
        plain.stop()
        custom.stop()


def test_defaults_unchanged(servers: tuple[HttpServer, HttpServer]) -> None:
    plain, _ = servers
    assert ask(plain, "GET", "/nothing") == (404, "text/plain; charset=utf-8", b"not found\n")
    assert ask(plain, "POST", "/accept") == (405, "text/plain; charset=utf-8",
                                             b"method not allowed\n")


def test_custom_answers_headers_and_no_content_type(
        servers: tuple[HttpServer, HttpServer]) -> None:
    _, custom = servers
    assert ask(custom, "GET", "/nothing") == (404, "x/y", b"gone\n")
    assert ask(custom, "POST", "/accept") == (405, None, b"")
    assert ask(custom, "GET", "/empty") == (200, None, b"")
    assert ask(custom, "GET", "/accept", {"Accept": "application/json"}) == (
        200, "text/plain; charset=utf-8", b"application/json\n")
