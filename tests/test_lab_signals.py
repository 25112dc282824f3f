"""common/lab/signals: a lab's teardown runs to its end however often it is interrupted
(a ``timeout`` passes its own SIGTERM on after the one that started the teardown), and
the signal still ends the process afterwards."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = """
import os, signal, sys
from common.lab.signals import exit_on_sigterm, signals_deferred
if sys.argv[1] == "exit":
    exit_on_sigterm()
try:
    with signals_deferred():
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)
        print("teardown finished", flush=True)
except SystemExit as stop:
    print("exit", stop.code, flush=True)
    raise
print("went on", flush=True)
"""


@pytest.mark.parametrize(("handler", "code", "out"), [
    ("exit", 143, "teardown finished\nexit 143\n"),
    ("default", -signal.SIGTERM, "teardown finished\n"),
])
def test_signals_during_a_teardown_wait_for_its_end(handler: str, code: int,
                                                    out: str) -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT, handler], capture_output=True,
                          text=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT)}, timeout=20)
    assert (done.returncode, done.stdout) == (code, out), done.stderr
