"""Logging through structlog: weave's line format by default, JSON on request.

weave's format (common/logging.go): ``INFO: 2006/01/02 15:04:05.000000 message``, with
the level abbreviated to four letters.  Extra key/values follow the message.
"""

from __future__ import annotations

import json
import sys
from collections.abc import MutableMapping
from datetime import UTC, datetime
from typing import Any, Protocol, TextIO

import structlog

_ABBREV = {"debug": "DEBU", "info": "INFO", "warning": "WARN", "warn": "WARN",
           "error": "ERRO", "critical": "FATA", "exception": "ERRO"}
_LEVELS = {"debug": 10, "info": 20, "warning": 30, "warn": 30, "error": 40}
LOG_LEVELS = tuple(_LEVELS)
"""The --log-level values every program accepts."""


def _now() -> datetime:
    return datetime.now(UTC)


def weave_line(_logger: Any, method: str, event: MutableMapping[str, Any]) -> str:
    message = str(event.pop("event", ""))
    extras = " ".join(f"{k}={v}" for k, v in event.items())
    stamp = _now().strftime("%Y/%m/%d %H:%M:%S.%f")
    return f"{_ABBREV.get(method, method[:4].upper())}: {stamp} {message}" + (
        f" {extras}" if extras else "")


def json_line(_logger: Any, method: str, event: MutableMapping[str, Any]) -> str:
    record = {"time": _now().isoformat(), "level": method, "msg": event.pop("event", "")}
    record.update(event)
    return json.dumps(record, default=str)


def configure(level: str = "info", fmt: str = "text", stream: TextIO | None = None) -> None:
    structlog.configure(
        processors=[structlog.processors.format_exc_info,
                    json_line if fmt == "json" else weave_line],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, 20)),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stdout),
        cache_logger_on_first_use=False,
    )


class Logger(Protocol):
    """What components log through: a message and key/value fields (structlog's bound
    logger is one)."""

    def debug(self, event: str, **fields: Any) -> Any: ...

    def info(self, event: str, **fields: Any) -> Any: ...

    def warning(self, event: str, **fields: Any) -> Any: ...

    def error(self, event: str, **fields: Any) -> Any: ...

    def critical(self, event: str, **fields: Any) -> Any: ...


def get() -> Logger:
    logger: Logger = structlog.get_logger()
    return logger


def silent() -> Logger:
    """A logger that drops everything (for one-shot commands whose stdout is their
    output)."""
    def drop(_logger: Any, _method: str, _event: MutableMapping[str, Any]) -> str:
        raise structlog.DropEvent

    logger: Logger = structlog.wrap_logger(structlog.ReturnLogger(), processors=[drop])
    return logger
