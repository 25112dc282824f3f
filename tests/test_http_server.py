"""common/service/http.py: the defaults npc relies on, and what the agent's API needs
(request headers, responses without a Content-Type, its own 404/405 answers)."""

from __future__ import annotations

import http.client
import socket
import struct
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from common.service.http import HttpServer, Request, Response, split_target


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


def raw_request(server: HttpServer, request: bytes) -> bytes:
    """Send ``request`` as it is (a header may repeat) and read the answer to the end."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as client:
        client.sendall(request)
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
    return answer


def test_body_form_fields_and_repeated_headers() -> None:
    """The body is read by its Content-Length; a form body's fields join the query's
    (after them), any other body is left alone; a header sent twice keeps both values,
    in order, under any case of its name."""
    seen: list[Request] = []

    def record(request: Request) -> Response:
        seen.append(request)
        return Response(200, b"", "")

    server = HttpServer(("127.0.0.1", 0))
    server.route("POST", "/form", record)
    server.start()
    try:
        form = b"a=2&b=&c=3"
        answer = raw_request(server, (
            b"POST /form?a=1&d HTTP/1.1\r\nHost: x\r\nX-Tag: one\r\nx-tag: two\r\n"
            b"Content-Type: application/x-www-form-urlencoded; charset=utf-8\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(form), form)))
        assert answer.startswith(b"HTTP/1.0 200 ")
        json_body = b'{"a": "9"}'
        raw_request(server, (
            b"POST /form?a=1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(json_body), json_body)))
        raw_request(server, b"POST /form HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    finally:
        server.stop()
    with_form, with_json, without_body = seen
    assert with_form.query == {"a": ["1", "2"], "d": [""], "b": [""], "c": ["3"]}
    assert with_form.body == form
    assert with_form.header("X-TAG") == ["one", "two"]
    assert with_form.header("content-length") == [str(len(form))]
    assert with_json.query == {"a": ["1"]} and with_json.body == json_body
    assert without_body.query == {} and without_body.body == b""
    assert without_body.header("Content-Type") == []


def _urlsplit_outcome(target: str) -> tuple[str, str] | str:
    try:
        url = urlsplit(target)
    except ValueError as exc:
        return f"ValueError: {exc}"
    return url.path, url.query


@given(st.one_of(st.text(alphabet="/?#:[]@%&=ab1 \t\r\n\x00\x1f"),
                 st.text(alphabet="/?#:[]@%&=ab1 \t\r\n").map(lambda t: "/" + t)))
@example("/status?wait=12&kind=pods&timeout=60")
@example("/status")
@example("/a?b?c#d")
@example("//host/x?y")
@example("//[::1/x")
@example(" /x?y")
@example("/x\t?y")
@example("http://h/p?q")
@example("/a:b?c")
def test_split_target_is_urlsplit(target: str) -> None:
    """The request target is split as urlsplit() splits it, whatever it holds."""
    try:
        outcome: tuple[str, str] | str = split_target(target)
    except ValueError as exc:
        outcome = f"ValueError: {exc}"
    assert outcome == _urlsplit_outcome(target)
