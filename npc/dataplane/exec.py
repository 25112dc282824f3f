"""The one seam through which npc runs kernel tools.

Everything that changes the kernel goes through a :class:`Runner`: a callable taking an
argument vector and optional standard input and returning standard output.  Tests and the
lab inject a runner that prefixes ``ip netns exec <node>``; no production signature has a
test-only parameter.  Failures raise :class:`CommandError` with everything needed to
understand them, including, for restore files, the failing line and its neighbours.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from typing import Protocol


class CommandError(Exception):
    """A kernel tool failed.  ``retryable`` marks lock contention and commit races."""

    def __init__(self, argv: Sequence[str], returncode: int, stdout: str, stderr: str,
                 input_text: str | None) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.input_text = input_text
        super().__init__(self.describe())

    @property
    def retryable(self) -> bool:
        text = self.stderr.lower()
        return ("xtables lock" in text or "resource temporarily unavailable" in text
                or "another app is currently holding" in text)

    def failing_line(self) -> int | None:
        m = re.search(r"(?:line:?|line) (\d+)", self.stderr)
        return int(m.group(1)) if m else None

    def context(self, around: int = 2) -> str:
        """The failing line of the input (marked ``>``) with its neighbours."""
        line = self.failing_line()
        if line is None or not self.input_text:
            return ""
        lines = self.input_text.splitlines()
        lo, hi = max(1, line - around), min(len(lines), line + around)
        return "\n".join(f"{'>' if n == line else ' '} {n:5} {lines[n - 1]}"
                         for n in range(lo, hi + 1))

    def describe(self) -> str:
        msg = f"{' '.join(self.argv)} exited {self.returncode}: {self.stderr.strip()}"
        ctx = self.context()
        return f"{msg}\n{ctx}" if ctx else msg


class Runner(Protocol):
    def __call__(self, argv: Sequence[str], input_text: str | None = None) -> str: ...


class SubprocessRunner:
    """Runs commands with ``subprocess``, optionally under a prefix such as
    ``("ip", "netns", "exec", "node0")``."""

    def __init__(self, prefix: Sequence[str] = ()) -> None:
        self.prefix = tuple(prefix)

    def __call__(self, argv: Sequence[str], input_text: str | None = None) -> str:
        full = [*self.prefix, *argv]
        proc = subprocess.run(full, input=input_text, capture_output=True, text=True,
                              check=False)
        if proc.returncode != 0:
            raise CommandError(argv, proc.returncode, proc.stdout, proc.stderr, input_text)
        return proc.stdout
