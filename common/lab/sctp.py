"""Just enough SCTP (RFC 9260) to start an association: INIT and INIT-ACK over raw IP.

Why raw packets
---------------
This kernel tracks SCTP in conntrack (``nf_conntrack_proto_sctp``) but has no SCTP
socket implementation, so the lab cannot ``socket(AF_INET, SOCK_STREAM,
IPPROTO_SCTP)``.  A raw socket ``socket(AF_INET, SOCK_RAW, 132)`` still receives
every SCTP packet delivered to its namespace (raw delivery happens before the
protocol handler lookup; since a raw socket took the packet, the kernel also does
not answer with ICMP protocol-unreachable) and can send SCTP payloads for which the
kernel writes the IP header.  An INIT followed by an INIT-ACK carrying the INIT's
initiate tag as verification tag is exactly what conntrack needs to see to create
an SCTP entry (CLOSED -> COOKIE_WAIT) and mark it as having seen a reply, i.e. the
same NEW/ESTABLISHED transitions a policy controller's ``-m state`` rules see for a
real association.

Packet validity matters: conntrack's ``sctp_error`` verifies the CRC32c in
PREROUTING unless the skb is already marked checksum-valid, and
``do_basic_checks``/``sctp_new`` require an INIT to be the only chunk and to have
verification tag 0.  The raw socket does not compute the SCTP checksum for us.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

IPPROTO_SCTP = 132
CHUNK_INIT = 1
CHUNK_INIT_ACK = 2
PARAM_STATE_COOKIE = 7

_CRC32C_POLY_REFLECTED = 0x82F63B78  # Castagnoli polynomial 0x1EDC6F41, bit-reversed


def _make_table() -> tuple[int, ...]:
    """Byte-at-a-time lookup table for the reflected CRC32c."""
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ _CRC32C_POLY_REFLECTED if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_TABLE = _make_table()


def crc32c(data: bytes) -> int:
    """CRC32c (Castagnoli) as used by SCTP and iSCSI; ``crc32c(b"123456789") == 0xE3069283``."""
    crc = 0xFFFFFFFF
    table = _TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _finish(sport: int, dport: int, vtag: int, chunks: bytes) -> bytes:
    """Prepend the common header and fill in the checksum.

    The checksum is computed with the field zeroed and stored in little-endian
    byte order: that is how the reflected CRC comes out of the algorithm in RFC
    9260 Appendix A and what Linux's ``sctp_compute_cksum`` (``cpu_to_le32``) writes.
    """
    header = struct.pack("!HHII", sport, dport, vtag, 0)
    packet = header + chunks
    return packet[:8] + struct.pack("<I", crc32c(packet)) + packet[12:]


def _pad4(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def build_init(sport: int, dport: int, init_tag: int, tsn: int) -> bytes:
    """An INIT packet: verification tag 0 (mandatory for INIT), one chunk, no params."""
    body = struct.pack("!IIHHI", init_tag, 65535, 10, 10, tsn)
    chunk = struct.pack("!BBH", CHUNK_INIT, 0, 4 + len(body)) + body
    return _finish(sport, dport, 0, chunk)


def build_init_ack(
    sport: int, dport: int, peer_tag: int, my_tag: int, tsn: int, cookie: bytes
) -> bytes:
    """An INIT-ACK answering an INIT whose initiate tag was ``peer_tag``.

    The common header's verification tag must equal the peer's initiate tag
    (conntrack checks this against the tag it learned from the INIT), and the
    State Cookie parameter is mandatory in an INIT-ACK.
    """
    param = struct.pack("!HH", PARAM_STATE_COOKIE, 4 + len(cookie)) + cookie
    body = struct.pack("!IIHHI", my_tag, 65535, 10, 10, tsn) + _pad4(param)
    # Chunk length excludes the final parameter's padding (RFC 9260 3.2).
    length = 4 + 16 + len(param)
    chunk = struct.pack("!BBH", CHUNK_INIT_ACK, 0, length) + body
    return _finish(sport, dport, peer_tag, chunk)


@dataclass(frozen=True)
class SctpPacket:
    """The parts of a received SCTP/IPv4 packet that the lab cares about."""

    src: str
    dst: str
    sport: int
    dport: int
    vtag: int
    checksum_ok: bool
    chunk_type: int  # type of the first chunk
    init_tag: int  # initiate tag if the first chunk is INIT/INIT-ACK, else 0


def _ip4(raw: bytes) -> str:
    return ".".join(str(b) for b in raw)


def parse_ipv4_sctp(packet: bytes) -> SctpPacket | None:
    """Parse an IPv4 packet as delivered to an AF_INET raw socket (IP header included).

    Returns None for anything that is not a complete-enough SCTP packet.
    """
    if len(packet) < 20 or packet[0] >> 4 != 4 or packet[9] != IPPROTO_SCTP:
        return None
    ihl = (packet[0] & 0x0F) * 4
    total = min(struct.unpack("!H", packet[2:4])[0], len(packet))
    sctp = packet[ihl:total]
    if len(sctp) < 16:
        return None
    sport, dport, vtag = struct.unpack("!HHI", sctp[:8])
    (checksum,) = struct.unpack("<I", sctp[8:12])
    ok = crc32c(sctp[:8] + b"\0\0\0\0" + sctp[12:]) == checksum
    chunk_type = sctp[12]
    init_tag = 0
    if chunk_type in (CHUNK_INIT, CHUNK_INIT_ACK) and len(sctp) >= 20:
        (init_tag,) = struct.unpack("!I", sctp[16:20])
    return SctpPacket(
        src=_ip4(packet[12:16]),
        dst=_ip4(packet[16:20]),
        sport=sport,
        dport=dport,
        vtag=vtag,
        checksum_ok=ok,
        chunk_type=chunk_type,
        init_tag=init_tag,
    )
