"""``weave``: the command line that asks the running agent over its HTTP API.

It replaces the original ``weave`` shell script's ``--local`` commands, which curl
``127.0.0.1:6784`` (or ``$WEAVE_HTTP_ADDR``) with a 3 s connect timeout; what each
command asks and prints is in :mod:`router.cli.commands`.  This module is the I/O seam:
one HTTP request per planned request (the connect attempt times out after 3 s, the answer
may take as long as the agent needs, as with curl), and the output written out.
"""

from __future__ import annotations

import http.client
import importlib.metadata
import os
import socket
import sys
from collections.abc import Sequence

from router.cli.commands import ApiAnswer, ApiRequest, Context, run

DEFAULT_ADDRESS = "127.0.0.1:6784"
CONNECT_TIMEOUT = 3.0
DISTRIBUTION = "weave-npc-py"


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` (ValueError naming the address otherwise)."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"WEAVE_HTTP_ADDR {address!r} is not host:port")
    return host.strip("[]"), int(port)


def _reason(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"no answer to the connection within {CONNECT_TIMEOUT:g} s"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host: {exc.strerror}"
    return exc.strerror or str(exc) or type(exc).__name__


class HttpAsker:
    """Asks the agent at ``address``; an agent that cannot be reached is an answer with
    ``unreachable`` set, not an exception."""

    def __init__(self, address: str) -> None:
        self.host, self.port = split_address(address)

    def __call__(self, request: ApiRequest) -> ApiAnswer:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=CONNECT_TIMEOUT)
        try:
            connection.connect()
            assert connection.sock is not None
            connection.sock.settimeout(None)  # the answer may take its time (curl: no limit)
            connection.request(request.method, request.target(), body=request.body(),
                               headers=request.headers())
            response = connection.getresponse()
            return ApiAnswer(response.status, response.read().decode(errors="replace"))
        except (OSError, http.client.HTTPException) as exc:
            reason = _reason(exc) if isinstance(exc, OSError) else f"bad answer: {exc!r}"
            return ApiAnswer(0, unreachable=reason)
        finally:
            connection.close()


def own_version() -> str:
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    address = os.environ.get("WEAVE_HTTP_ADDR") or DEFAULT_ADDRESS
    try:
        asker = HttpAsker(address)
    except ValueError as exc:
        print(f"weave: {exc}", file=sys.stderr)
        return 1
    output = run(sys.argv[1:] if argv is None else argv, asker,
                 Context(address, own_version()))
    sys.stdout.write(output.stdout)
    sys.stdout.flush()
    sys.stderr.write(output.stderr)
    return output.code


if __name__ == "__main__":
    sys.exit(main())
