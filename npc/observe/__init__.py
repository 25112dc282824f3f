"""Observing the dataplane: blocked connections logged by ``-j NFLOG --nflog-group 86``.

:mod:`npc.observe.nflog` reads NFLOG natively over netlink (the Go original ran ulogd
and parsed its pcap output); :mod:`npc.observe.blocked` turns logged packets into
blocked-connection events, the original's log line, a rate limiter and the
``weavenpc_blocked_connections_total`` counter; :mod:`npc.observe.runner` ties them
together in a thread.
"""

from npc.observe.blocked import (
    BlockedConnection,
    BlockedConnectionCounter,
    LogRateLimiter,
    format_blocked,
    parse_blocked,
)
from npc.observe.nflog import LoggedPacket, NflogError, NflogReader
from npc.observe.runner import BlockedConnectionLogger, PacketSource

__all__ = [
    "BlockedConnection",
    "BlockedConnectionCounter",
    "BlockedConnectionLogger",
    "LogRateLimiter",
    "LoggedPacket",
    "NflogError",
    "NflogReader",
    "PacketSource",
    "format_blocked",
    "parse_blocked",
]
