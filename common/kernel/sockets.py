"""Socket options both halves set the same way."""

from __future__ import annotations

import socket
from typing import Final

FORCED: Final = {socket.SO_SNDBUF: 32, socket.SO_RCVBUF: 33}
"""SO_SNDBUFFORCE and SO_RCVBUFFORCE (<asm-generic/socket.h>; the socket module does not
export them), by the option they force."""


def set_buffer(sock: socket.socket, option: int, size: int) -> None:
    """Ask for a send (``SO_SNDBUF``) or receive (``SO_RCVBUF``) buffer of ``size`` bytes:
    forced past ``net.core.[wr]mem_max`` when the process has CAP_NET_ADMIN, else capped
    by it (the kernel doubles what it grants, for its own bookkeeping)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, FORCED[option], size)
    except PermissionError:
        sock.setsockopt(socket.SOL_SOCKET, option, size)
