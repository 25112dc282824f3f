"""common/service/http.py: the defaults npc relies on, and what the agent's API needs
(request headers, responses without a Content-Type, its own 404/405 answers)."""

from __future__ import annotations

import http.client
import socket
import struct
import threading
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


def test_a_client_that_hangs_up_early_is_no_error(capfd: pytest.CaptureFixture[str]) -> None:
    """A probe that gave up (its timeout) before the answer: socketserver printed a
    BrokenPipeError traceback into the agent's log for each; now nothing, and the
    server goes on."""
    answered = threading.Event()
    big = b"x" * (8 << 20)  # more than the socket buffers hold

    def slow(_: Request) -> Response:
        answered.set()
        return Response(200, big, "application/octet-stream")

    server = HttpServer(("127.0.0.1", 0))
    server.route("GET", "/big", slow)
    server.route("GET", "/empty", lambda _: Response(200, b"", ""))
    server.start()
    try:
        client = socket.create_connection(("127.0.0.1", server.port))
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answered.wait(5)
        client.close()  # a reset, mid-answer
        assert ask(server, "GET", "/empty")[0] == 200
        assert ask(server, "GET", "/empty")[0] == 200
    finally:
        server.stop()
    captured = capfd.readouterr()
    assert "Traceback" not in captured.err + captured.out
