"""The topology channel's payload: peer summaries (:mod:`router.mesh.summary`) to and from
the gob stream Go's ``encodePeers`` writes (:mod:`router.mesh.messages`).

A summary names its peer by ``NameByte`` (the 6 bytes of the MAC-flavoured name) and each
connection by its remote's; anything a peer sends that does not fit (a name of another
length, an out-of-range number, a malformed stream) raises :class:`TopologyError` naming
the cause, and the update is dropped whole (Go drops the connection instead).
"""

from __future__ import annotations

from collections.abc import Iterable

from router.mesh import messages
from router.mesh.gob import GobError, TypeIds
from router.mesh.names import PeerName, PeerNameError
from router.mesh.summary import ConnectionSummary, PeerSummary, TopologyError


def _wire(summary: PeerSummary) -> messages.TopologyPeer:
    return messages.TopologyPeer(
        messages.PeerSummary(summary.name.to_bytes6(), summary.nickname, summary.uid,
                             summary.version, summary.short_id, summary.has_short_id),
        tuple(messages.ConnectionSummary(c.remote.to_bytes6(), c.remote_tcp_addr,
                                         c.outbound, c.established)
              for c in summary.connections))


def encode_update(summaries: Iterable[PeerSummary], *, type_ids: TypeIds | None = None
                  ) -> bytes:
    """The payload of a topology gossip message about ``summaries``."""
    return messages.encode_topology((_wire(s) for s in summaries), type_ids=type_ids)


def decode_update(data: bytes) -> list[PeerSummary]:
    """The peer summaries of a topology gossip payload."""
    try:
        peers = messages.decode_topology(data)
        return [PeerSummary(PeerName.from_bytes6(p.summary.name_byte), p.summary.nick_name,
                            p.summary.uid, p.summary.version, p.summary.short_id,
                            p.summary.has_short_id,
                            tuple(ConnectionSummary(PeerName.from_bytes6(c.name_byte),
                                                    c.remote_tcp_addr, c.outbound,
                                                    c.established)
                                  for c in p.connections))
                for p in peers]
    except (GobError, PeerNameError) as exc:
        raise TopologyError(f"malformed topology update: {exc}") from None
