"""The one error type of the gob codec.

Everything the decoder meets on the network that it cannot accept (a malformed,
truncated or oversized message, a type definition that makes no sense, a value
whose type the schema does not accept) raises :class:`GobError`, a
``ValueError`` whose message names the cause and, when known, the byte offset in
the stream. The encoder raises it too, for values the schema cannot carry (an
out-of-range integer, a missing pointer target). :class:`GobTruncated` is the
one refinement: the input ended inside a message, so a streaming reader may
feed more bytes and try again.
"""

from __future__ import annotations


class GobError(ValueError):
    """Gob data or a value that the codec cannot accept; the message says why and where."""


class GobTruncated(GobError):
    """The input ended inside a message: more bytes may complete it.

    A :class:`~router.mesh.gob.Decoder` that raises this has rolled back to
    where the value began, so :meth:`~router.mesh.gob.Decoder.feed` followed by
    the same ``decode`` call resumes cleanly.
    """
