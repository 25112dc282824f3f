"""How an IPAM request can fail, as the HTTP API answers it.

* :class:`Refused`: the request cannot be done as asked (an address owned by another
  container, nothing to free, a subnet out of range).  The API answers 400 with the text,
  as the original does.
* :class:`TimedOut`: the request waited as long as it may (the original waited forever:
  #1346, #3955) and says what it waited for, e.g. ``awaiting consensus (quorum: 2,
  known: 1)``.  The API answers 503, so a caller can tell "try again" from "wrong".
* :class:`Cancelled`: the agent is leaving (``DELETE /peer``) or the caller went away.
  The API answers 200 ``cancelled``, as the original.
"""

from __future__ import annotations


class IpamError(Exception):
    """Any failed IPAM request; ``str()`` is the text the API answers."""


class Refused(IpamError):
    pass


class TimedOut(IpamError):
    pass


class Cancelled(IpamError):
    def __init__(self, kind: str, ident: str) -> None:
        super().__init__(f"{kind} request for {ident} cancelled")


__all__ = ["Cancelled", "IpamError", "Refused", "TimedOut"]
