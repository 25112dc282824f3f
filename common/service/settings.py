"""Settings declared once: each :class:`Flag` names its command-line flag, environment
variable, default, parser and help; :func:`resolve` turns a command line and an
environment into one frozen settings value, reporting every problem at once with where
the offending value came from (flag, environment, default).

Weave's programs are Go programs, so flags parse as Go's do: ``--flag value`` or
``--flag=value``, booleans as ``strconv.ParseBool`` reads them (plus yes/no), and a
boolean flag given bare means true and takes no value from the next argument (``--flag
false`` is ``--flag`` and a positional ``false``, as in Go: write ``--flag=false``); run
the command line through :func:`go_booleans` before parsing it.  A flag on the command
line wins over its environment variable, which wins over the default.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from common.service.logs import LOG_LEVELS

T = TypeVar("T")
S = TypeVar("S")

_TRUE = {"1", "t", "T", "true", "TRUE", "True", "yes", "YES", "Yes", "y"}
_FALSE = {"0", "f", "F", "false", "FALSE", "False", "no", "NO", "No", "n"}


def parse_bool(text: str) -> bool:
    """Go's ``strconv.ParseBool`` (1, t, true, 0, f, false in their cases), and yes/no."""
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{text!r} is not a boolean (true or false)")


def parse_address(text: str) -> tuple[str, int]:
    """``host:port``, ``:port`` (every address) or ``[v6]:port``."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"{text!r} is not host:port (e.g. :6781 or 127.0.0.1:6781)")
    return host.strip("[]"), int(port)


def parse_positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(f"{value} must be positive")
    return value


def parse_positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise ValueError(f"{value} must be positive")
    return value


def one_of(*choices: str, lower: bool = False) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.lower() if lower else text
        if value not in choices:
            raise ValueError(f"{text!r} is not one of {', '.join(choices)}")
        return value
    return parse


@dataclass(frozen=True)
class Flag(Generic[T]):
    """One setting.  ``field`` is the settings value's attribute; the flag is
    ``--field-with-dashes`` unless ``flag`` says otherwise."""

    field: str
    default: T
    help: str
    parse: Callable[[str], T]
    env: str | None = None
    flag: str | None = None
    boolean: bool = False
    """A bare ``--flag`` means true (``--flag=false`` still works)."""
    metavar: str | None = None

    @property
    def option(self) -> str:
        return self.flag or "--" + self.field.replace("_", "-")

    def describe_default(self) -> str:
        return "" if self.default in (None, "") else f" (default {_text(self.default)})"


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], int):
        return f"{value[0]}:{value[1]}"
    return str(value)


def add_flags(parser: argparse.ArgumentParser, flags: Sequence[Flag[Any]]) -> None:
    """Declare ``flags`` on ``parser``; values stay text until :func:`resolve` parses
    them (so that every problem can be reported together), and flags not given are
    absent from the parsed namespace."""
    for f in flags:
        env = f" [${f.env}]" if f.env else ""
        kwargs: dict[str, Any] = {"dest": f.field, "default": argparse.SUPPRESS,
                                  "help": f.help + f.describe_default() + env,
                                  "metavar": f.metavar}
        if f.boolean:
            kwargs.update(metavar=f.metavar or "BOOL")
        parser.add_argument(f.option, **kwargs)


def go_booleans(argv: Sequence[str], flags: Sequence[Flag[Any]]) -> list[str]:
    """``argv`` with each bare boolean flag written ``--flag=true``, so that it never
    takes the next argument as its value (Go's rule)."""
    bare = {f.option for f in flags if f.boolean}
    return [f"{arg}=true" if arg in bare else arg for arg in argv]


@dataclass(frozen=True)
class Resolved:
    values: dict[str, Any]
    sources: dict[str, str]
    """Per field: "flag --x", "environment X" or "default"."""
    problems: list[str]


def resolve(flags: Sequence[Flag[Any]], given: argparse.Namespace,
            env: Mapping[str, str]) -> Resolved:
    """Each flag's value: from the command line, else its environment variable, else its
    default; parsed, with every failure described."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    problems: list[str] = []
    for f in flags:
        text: str | None = getattr(given, f.field, None)
        source = f"flag {f.option}"
        if text is None and f.env and env.get(f.env):
            text, source = env[f.env], f"environment {f.env}"
        if text is None:
            values[f.field], sources[f.field] = f.default, "default"
            continue
        try:
            values[f.field] = f.parse(text)
        except ValueError as exc:
            problems.append(f"{f.option} ({source}): {exc}")
            values[f.field] = f.default
        sources[f.field] = source
    return Resolved(values, sources, problems)


class SettingsError(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid settings:\n  " + "\n  ".join(problems))
        self.problems = problems


def build(cls: type[S], resolved: Resolved, **more: Any) -> S:
    """The frozen settings value of type ``cls`` (a dataclass whose fields are the flags'
    plus ``more``, and ``sources``); raises :class:`SettingsError` listing every
    problem."""
    if resolved.problems:
        raise SettingsError(resolved.problems)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values = {k: v for k, v in resolved.values.items() if k in names}
    construct: Callable[..., S] = cls
    return construct(**values, **more, sources=resolved.sources)


def log_flags(default_level: str) -> tuple[Flag[str], Flag[str]]:
    """``--log-level`` (with this program's default) and ``--log-format``, the same for
    every program."""
    return (Flag("log_level", default_level, "debug, info, warning or error",
                 one_of(*LOG_LEVELS, lower=True)),
            Flag("log_format", "text", "text: weave's line format; json: one object a line",
                 one_of("text", "json")))
