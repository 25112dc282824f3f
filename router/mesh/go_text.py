"""How Go prints two things the agent's texts contain: quoted strings and points in time.

Background: several messages a user or script sees come straight from Go's ``fmt``:

* ``%q`` of a string (``strconv.Quote``): double quotes; ``\\a \\b \\f \\n \\r \\t \\v``,
  backslash and double quote escaped; other non-printable runes as ``\\xNN`` (below
  U+0080), ``\\uNNNN`` or ``\\UNNNNNNNN``; printable runes (letters, marks, numbers,
  punctuation, symbols, ASCII space) as they are. ``POST /connect`` answers
  ``invalid peer name "…", should be host[:port]`` with it, and the name-collision error
  quotes both peers.
* ``time.Time.String()``: ``2006-01-02 15:04:05.999999999 -0700 MST`` (the fraction
  without trailing zeros, no dot when it is zero; the zone's abbreviation, or the numeric
  offset when the zone has none), followed by `` m=±S.NNNNNNNNN`` when the value carries a
  monotonic clock reading. Go's monotonic readings count from the start of the process,
  so ``m=+4.364308607`` says "4.36 s after the weaver started". A retry time in
  ``/status/connections`` is printed this way (``failed …, retry: 2026-12-06
  20:23:02.273909489 +0000 UTC m=+4.364308607``), always with the monotonic part, because
  Go computes it from ``time.Now()``.

Design: the agent keeps time as integer monotonic nanoseconds (as Go's Durations are
integer nanoseconds). :class:`GoClock` pairs one reading of the monotonic clock with one
of the wall clock and with the reading taken when the agent started, so a monotonic
instant can be printed as Go would print the ``time.Time`` that stands for it, ``m=``
part included: counted from our own start, it means what Go's means, and scripts that
cut the text at ``retry: `` see the same shape. The zone defaults to UTC, which is what
the weave image runs in (no zone database, ``TZ`` unset).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

_NS_PER_SECOND = 1_000_000_000
_SHORT_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
                  "\t": "\\t", "\v": "\\v", "\\": "\\\\", '"': '\\"'}
_PRINTABLE_CATEGORIES = ("L", "M", "N", "P", "S")


def _go_is_print(char: str) -> bool:
    """Go's ``strconv.IsPrint``: letters, marks, numbers, punctuation, symbols, space."""
    return char == " " or unicodedata.category(char).startswith(_PRINTABLE_CATEGORIES)


def go_quote(text: str) -> str:
    """``strconv.Quote(text)`` (what ``%q`` prints for a string or a Stringer)."""
    out = ['"']
    for char in text:
        code = ord(char)
        if char in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[char])
        elif _go_is_print(char):
            out.append(char)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def _offset_text(moment: datetime) -> str:
    """Go's ``-0700``: whole minutes of the offset, truncated towards zero."""
    offset_seconds = int((moment.utcoffset() or timedelta(0)).total_seconds())
    minutes = abs(offset_seconds) // 60
    sign = "-" if offset_seconds < 0 and minutes else "+"
    return f"{sign}{minutes // 60:02d}{minutes % 60:02d}"


def _zone_text(moment: datetime) -> str:
    """Go's ``MST``: the zone's abbreviation, or the numeric offset if it has none."""
    return moment.tzname() or _offset_text(moment)


def _monotonic_text(reading_ns: int) -> str:
    sign = "-" if reading_ns < 0 else "+"
    magnitude = abs(reading_ns)
    seconds, nanos = divmod(magnitude, _NS_PER_SECOND)
    gigaseconds, seconds = divmod(seconds, _NS_PER_SECOND)
    whole = f"{gigaseconds}{seconds:09d}" if gigaseconds else str(seconds)
    return f" m={sign}{whole}.{nanos:09d}"


def go_time_string(wall_ns: int, monotonic_ns: int | None = None, zone: tzinfo = UTC) -> str:
    """``time.Time.String()`` of the instant ``wall_ns`` (Unix nanoseconds) in ``zone``.

    ``monotonic_ns`` is the monotonic reading Go would carry (nanoseconds since the
    process started); None prints no ``m=`` part, as for a time that has none.
    """
    seconds, nanos = divmod(wall_ns, _NS_PER_SECOND)
    moment = datetime.fromtimestamp(seconds, zone)
    fraction = f".{nanos:09d}".rstrip("0") if nanos else ""
    text = (f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d} "
            f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}{fraction} "
            f"{_offset_text(moment)} {_zone_text(moment)}")
    if monotonic_ns is not None:
        text += _monotonic_text(monotonic_ns)
    return text


@dataclass(frozen=True, slots=True)
class GoClock:
    """One simultaneous reading of both clocks, to print monotonic instants as Go does.

    ``started_ns`` is the monotonic reading taken when the agent started (Go's ``m=+0``).
    """

    wall_ns: int
    monotonic_ns: int
    started_ns: int
    zone: tzinfo = UTC

    def time_string(self, monotonic_ns: int) -> str:
        """What Go's ``time.Time.String()`` prints for the instant ``monotonic_ns``."""
        wall = self.wall_ns + (monotonic_ns - self.monotonic_ns)
        return go_time_string(wall, monotonic_ns - self.started_ns, self.zone)
