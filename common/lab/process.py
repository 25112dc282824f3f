"""Long-running processes inside a lab node's network namespace (and their own PID namespace).

Background
----------
``ip netns exec NS CMD`` enters the network namespace, unshares a mount
namespace (to remount ``/sys`` for NS) and *execs* CMD, so the pid we get from
``Popen`` is CMD's.  The Go weaver additionally wants its own PID namespace: at
start it opens ``/proc/1/ns/net`` (the namespace of "the host's" init), which
this VM refuses for the real init.  ``unshare --pid --fork --mount-proc`` gives
it one: ``unshare`` forks, the child becomes pid 1 of a fresh PID namespace with
its own ``/proc``, and execs the program.  Two kernel rules shape stopping it:

* pid 1 of a PID namespace only receives signals it has a handler for (Go
  installs handlers, so SIGTERM works); SIGKILL from an ancestor namespace is
  always delivered;
* when pid 1 of a PID namespace dies, the kernel SIGKILLs every other process
  in it, so killing the child of ``unshare`` ends the whole process tree.

Design
------
:class:`LabProcess` keeps the argv, working directory and environment so that
``restart()`` is a stop plus an identical start (the Go weaver then comes back
with the same name and a new UID).  Output goes to a log file in the working
directory, appended across restarts with a header per start.  Nothing here is
specific to weaver: our Python agent is started the same way.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

START_MARK = "=== golab start #"
"""Begins the header line written to the log at each start."""
PID_NAMESPACE_PREFIX = ("unshare", "--pid", "--fork", "--kill-child", "--mount-proc")
"""Wraps a command so it runs as pid 1 of its own PID namespace with a matching ``/proc``.
``--kill-child`` makes the kernel SIGKILL the child if ``unshare`` itself dies."""


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid`` (``/proc/PID/task/*/children``); empty if it is gone."""
    children: list[int] = []
    task_dir = Path(f"/proc/{pid}/task")
    try:
        tasks = list(task_dir.iterdir())
    except FileNotFoundError:
        return []
    for task in tasks:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            children += [int(p) for p in (task / "children").read_text().split()]
    return children


def signal_pid(pid: int, signum: int) -> bool:
    """Send a signal; False if the process no longer exists."""
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        return False
    return True


class LabProcess:
    """One command run in network namespace ``netns`` (optionally in its own PID namespace).

    Contract: :meth:`start` may be called again only after the previous run has
    ended (:meth:`stop`, :meth:`kill` or the process exiting on its own);
    :meth:`stop` and :meth:`kill` are idempotent and never raise for a process
    that is already gone.
    """

    def __init__(
        self,
        label: str,
        netns: str,
        argv: Sequence[str],
        cwd: Path,
        env: Mapping[str, str] | None = None,
        pid_namespace: bool = True,
    ) -> None:
        if not argv:
            raise ValueError("empty command line")
        self.label = label
        self.netns = netns
        self.argv = list(argv)
        self.cwd = cwd
        self.env = dict(env or {})
        self.pid_namespace = pid_namespace
        self.log_path = cwd / f"{label}.log"
        self.starts = 0
        self._proc: subprocess.Popen[bytes] | None = None

    # ---- lifecycle -----------------------------------------------------------
    def full_argv(self) -> list[str]:
        """The command actually run (``ip netns exec`` and, if asked, ``unshare``)."""
        wrapper = list(PID_NAMESPACE_PREFIX) if self.pid_namespace else []
        return ["ip", "netns", "exec", self.netns, *wrapper, *self.argv]

    def start(self) -> None:
        if self.running():
            raise RuntimeError(f"{self.label} is already running")
        self.cwd.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env}
        with open(self.log_path, "ab") as log:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            log.write(f"{START_MARK}{self.starts + 1} {stamp}: {self.argv}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                self.full_argv(),
                cwd=self.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C on our terminal is ours to handle
            )
        self.starts += 1

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """Pid of ``ip netns exec``/``unshare`` (see :meth:`target_pid` for the program)."""
        return None if self._proc is None else self._proc.pid

    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def target_pid(self) -> int | None:
        """Pid (in our namespace) of the program itself: the child of ``unshare``."""
        if not self.running() or self.pid is None:
            return None
        if not self.pid_namespace:
            return self.pid
        children = child_pids(self.pid)
        return children[0] if children else None

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM the program, SIGKILL it after ``timeout``; returns the exit status."""
        self.terminate()
        return self.wait_or_kill(timeout)

    def terminate(self) -> None:
        """SIGTERM the program, not waiting (:meth:`wait_or_kill` waits)."""
        if self._proc is not None and self._proc.poll() is None:
            self._signal_program(signal.SIGTERM)

    def wait_or_kill(self, timeout: float) -> int | None:
        """Wait ``timeout`` seconds for the program to end, then SIGKILL it; the status."""
        if self._proc is None:
            return None
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return self.kill()
        return self._proc.returncode

    def kill(self) -> int | None:
        """SIGKILL the program (and with it its PID namespace); returns the exit status."""
        if self._proc is None:
            return None
        if self._proc.poll() is None:
            self._signal_program(signal.SIGKILL)
            signal_pid(self._proc.pid, signal.SIGKILL)
            self._proc.wait(10)
        return self._proc.returncode

    def restart(self, timeout: float = 5.0) -> None:
        self.stop(timeout)
        self.start()

    def _signal_program(self, signum: int) -> None:
        target = self.target_pid()
        if target is None:  # unshare has not forked yet, or no PID namespace
            assert self._proc is not None
            signal_pid(self._proc.pid, signum)
        else:
            signal_pid(target, signum)

    # ---- output --------------------------------------------------------------
    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def current_log(self) -> str:
        """The output of the last start only."""
        return self.log_text().rsplit(START_MARK, 1)[-1]

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])
