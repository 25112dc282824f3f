"""common/service/supervisor.run_until_stopped: a SIGTERM the kernel hands to a worker
thread still stops the process (Python runs handlers only in the main thread, which an
untimed wait never wakes)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = """
import signal, threading, time
from common.service.supervisor import run_until_stopped

def worker() -> None:
    time.sleep(0.3)
    signal.pthread_kill(threading.get_ident(), signal.SIGTERM)  # delivered to this thread
    time.sleep(30)

threading.Thread(target=worker, daemon=True).start()
run_until_stopped(threading.Event())
print("stopped")
"""


def test_a_sigterm_delivered_to_a_worker_thread_stops_the_wait() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          cwd=ROOT, env={"PYTHONPATH": str(ROOT)}, timeout=20)
    assert (done.returncode, done.stdout) == (0, "stopped\n"), done.stderr
