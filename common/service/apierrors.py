"""What went wrong with an API request, in one line an operator can act on.

The API server explains a refusal in a ``Status`` object: HTTP code, reason (``Forbidden``,
``Expired``, ``Timeout``...) and a message that names the user, verb and resource, e.g.
``pods is forbidden: User "system:serviceaccount:kube-system:weave-net" cannot list
resource "pods" in API group "" at the cluster scope``.  The generated client's exception
keeps that body as text after a dump of the response headers; the first line of its
``str()`` is only ``(403)``.  :func:`describe` digs the Status out (of an ``ApiException``,
or of a watch stream's ``ERROR`` event) and falls back to the exception's own words for
network failures.
"""

from __future__ import annotations

import json
from typing import Any

from kubernetes.client.exceptions import ApiException


class WatchError(Exception):
    """The server ended a watch with an ``ERROR`` event carrying ``status``."""

    def __init__(self, status: dict[str, Any]) -> None:
        super().__init__(describe_status(status))
        self.status = status

    @property
    def code(self) -> int | None:
        code = self.status.get("code")
        return code if isinstance(code, int) else None


class Gone(WatchError):
    """The watch's resourceVersion is too old (410): relist."""


def describe_status(status: dict[str, Any], code: int | None = None) -> str:
    """``"403 Forbidden: pods is forbidden: ..."`` from a Status object."""
    parts = [str(status.get("code") or code or "").strip(),
             str(status.get("reason") or "").strip()]
    head = " ".join(p for p in parts if p)
    message = str(status.get("message") or "").strip()
    return f"{head}: {message}" if head and message else head or message or repr(status)


def status_code(exc: BaseException) -> int | None:
    """The HTTP status an API failure carries (None for network failures)."""
    if isinstance(exc, WatchError):
        return exc.code
    status = getattr(exc, "status", None)
    return status if isinstance(status, int) else None


def _status_body(exc: ApiException) -> dict[str, Any] | None:
    body = exc.body
    if isinstance(body, bytes):
        body = body.decode(errors="replace")
    if not isinstance(body, str) or not body.strip():
        return None
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def describe(exc: BaseException) -> str:
    """One line: HTTP status, reason and the server's message when there is a Status;
    otherwise the exception's type and text."""
    if isinstance(exc, WatchError):
        return str(exc)
    if isinstance(exc, ApiException):
        status = _status_body(exc)
        if status is not None:
            return describe_status(status, exc.status)
        body = exc.body.decode(errors="replace") if isinstance(exc.body, bytes) else exc.body
        text = " ".join(str(body or "").split())[:200]
        return " ".join(p for p in (str(exc.status or ""), str(exc.reason or ""), text) if p)
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
