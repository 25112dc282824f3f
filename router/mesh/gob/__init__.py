"""Go's ``encoding/gob`` wire format, byte for byte, for talking to weave's Go ``weaver``.

The mesh handshake, gossip bodies, topology updates and IPAM state all travel
as gob. This package is a pure codec (no I/O): describe the Go type with a
schema (``schema``), then write values with an :class:`Encoder` (one per
stream, sending each type's definition once, numbering types as Go does) and
read them with a :class:`Decoder` (one per stream, checking the sender's types
against the schema as Go does, refusing malformed input with
:class:`GobError`). ``encode``/``decode`` handle a stream of one value.

Layout: ``wire`` (integers, framing, type definitions), ``schema`` (Go types
in Python), ``typeids`` (Go's type numbering and naming), ``encoder``,
``plans`` (readers compiled per schema and received type, shared between
streams of the same shape), ``codegen`` (struct readers generated as Python
source, the hot path), ``decoder``.
"""

from .decoder import MAX_MESSAGE_SIZE, Decoder, decode
from .encoder import Encoder, encode
from .errors import GobError, GobTruncated
from .schema import (
    BOOL,
    BYTES,
    FLOAT64,
    INT,
    INT8,
    INT16,
    INT32,
    INT64,
    STRING,
    UINT,
    UINT8,
    UINT16,
    UINT32,
    UINT64,
    ArrayOf,
    Field,
    GobType,
    MapOf,
    Ptr,
    Scalar,
    SliceOf,
    Struct,
)
from .typeids import WEAVE_FIRST_ID, TypeIds

__all__ = [
    "BOOL",
    "BYTES",
    "FLOAT64",
    "INT",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "MAX_MESSAGE_SIZE",
    "STRING",
    "UINT",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "WEAVE_FIRST_ID",
    "ArrayOf",
    "Decoder",
    "Encoder",
    "Field",
    "GobError",
    "GobTruncated",
    "GobType",
    "MapOf",
    "Ptr",
    "Scalar",
    "SliceOf",
    "Struct",
    "TypeIds",
    "decode",
    "encode",
]
