"""The one seam through which npc runs kernel tools.

Everything that changes the kernel goes through a :class:`Runner`: a callable taking an
argument vector and optional standard input and returning standard output.  Tests and the
lab inject a runner that prefixes ``ip netns exec <node>``; no production signature has a
test-only parameter.  Failures raise :class:`CommandError` with everything needed to
understand them, including, for restore files, the failing line and its neighbours.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import tempfile
from collections.abc import Sequence
from typing import IO, Protocol

from common.kernel.errors import KernelError


class CommandError(KernelError):
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


class InputStream(Protocol):
    """A command fed its standard input piece by piece while the caller works on."""

    def write(self, text: str) -> None: ...

    def close(self) -> str:
        """End the input, wait for the command; its output, or :class:`CommandError`."""
        ...

    def abort(self) -> None:
        """Give up: stop the command if it still runs."""
        ...


class _Buffered:
    """For runners that cannot stream: the input is collected and run at the end."""

    def __init__(self, runner: Runner, argv: Sequence[str]) -> None:
        self.runner, self.argv, self.parts = runner, list(argv), list[str]()

    def write(self, text: str) -> None:
        self.parts.append(text)

    def close(self) -> str:
        return self.runner(self.argv, "".join(self.parts))

    def abort(self) -> None:
        self.parts.clear()


class _ProcessStream:
    def __init__(self, full: Sequence[str], argv: Sequence[str]) -> None:
        self.argv = list(argv)
        self.parts: list[str] = []  # kept to show the failing line if the command fails
        # Output goes to files: a pipe the command filled while we write would deadlock.
        # Both are closed by close() or abort(), which every user calls (in a finally).
        self.out: IO[str] = tempfile.TemporaryFile("w+")  # noqa: SIM115
        self.err: IO[str] = tempfile.TemporaryFile("w+")  # noqa: SIM115
        self.proc = subprocess.Popen(full, stdin=subprocess.PIPE, stdout=self.out,
                                     stderr=self.err, text=True)
        self.broken = False

    def write(self, text: str) -> None:
        self.parts.append(text)
        if self.broken:
            return
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(text)
        except BrokenPipeError:
            self.broken = True  # the command stopped (a failing line): close() says why

    def close(self) -> str:
        assert self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.close()
        self.proc.wait()
        out, err = self._outputs()
        if self.proc.returncode != 0:
            raise CommandError(self.argv, self.proc.returncode, out, err, "".join(self.parts))
        return out

    def abort(self) -> None:
        """Stop the command without finishing its input (the caller failed)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._outputs()

    def _outputs(self) -> tuple[str, str]:
        texts = []
        for f in (self.out, self.err):
            if f.closed:
                texts.append("")
                continue
            f.seek(0)
            texts.append(f.read())
            f.close()
        return texts[0], texts[1]


def open_stream(runner: Runner, argv: Sequence[str]) -> InputStream:
    """``argv`` started now and fed as the caller goes, when ``runner`` can do that (a
    :class:`SubprocessRunner`); otherwise buffered and run by ``runner`` at the end."""
    if isinstance(runner, SubprocessRunner):
        return _ProcessStream([*runner.prefix, *argv], argv)
    return _Buffered(runner, argv)


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
