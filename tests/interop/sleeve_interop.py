"""Interop check (not CI): our sleeve overlay against the Go weaver 2.8.1, in a lab.

Node 0 runs the Go weaver (``--no-fastdp``: this kernel has no Open vSwitch datapath, so
its only overlay is sleeve).  Nodes 1 and 2 run ``tests.interop.sleeve_peer``: the real
mesh handshake and our overlay switch with sleeve.  The Go weaver dials node 1 (Go's
forwarder knows our address; ours learns Go's from its first heartbeat) and node 2 dials
the Go weaver (the other way round).  Without, then with, a password:

* the Go weaver's ``/status/connections`` must list both connections ``established``
  over ``sleeve`` with ``mtu=1438`` (``encrypted ... mtu=1414`` with the password), and
  keep them so for ``--hold`` seconds (default 180: three times Go's 60 s heartbeat
  timeout), polled every ``--poll`` seconds;
* the Go log must never say "no working forwarders" nor "timed out waiting for UDP
  heartbeat", nor that a connection to our peers shut down;
* each of our peers must see its forwarder established, with the same MTU, and never fail.

A control experiment (``mute``) shows what these checks guard against: a peer that
announces sleeve but never runs its forwarder stays ``pending`` in Go's status and Go
closes the connection about a minute later with "no working forwarders".

Run as root after ``tests/interop/build-go-weave.sh``, from the repository root::

    .venv/bin/python -m tests.interop.sleeve_interop [--only plain|password|mute] [--hold 180]

Prints what it polled and the relevant log lines; exits non-zero if any check fails.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.interop.golab import GoLab, exit_on_sigterm, peer_name, wait_until

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "interop-secret"
GO_LOG_ALARMS = ("no working forwarders", "timed out waiting for UDP heartbeat")
PY_LABEL = "pypeer"


@dataclass(frozen=True)
class Expectation:
    encrypted: bool

    @property
    def mtu(self) -> int:
        return 1414 if self.encrypted else 1438

    def matches(self, line: str) -> bool:
        """A ``/status/connections`` line of an established sleeve connection as Go prints it."""
        if self.encrypted:
            return bool(re.search(r" established encrypted +sleeve .* encrypted=truemtu=1414$",
                                  line))
        return bool(re.search(r" established sleeve .* mtu=1438$", line))


def peer_argv(lab: GoLab, index: int, password: str | None, hold: float,
              mute: bool = False) -> list[str]:
    argv = [sys.executable, "-m", "tests.interop.sleeve_peer", "--name", peer_name(index),
            "--nickname", f"py{index}", "--duration", str(hold + 120), "--report", "10"]
    if mute:
        argv.append("--mute")
    argv += ["--listen"] if index == 1 else ["--connect", lab.node_ip(0)]
    if password is not None:
        argv += ["--password", password]
    return argv


def our_events(lab: GoLab, index: int) -> list[dict[str, Any]]:
    events = []
    for line in lab.process(index, PY_LABEL).log_text().splitlines():
        if line.startswith("{"):
            events.append(json.loads(line))
    return events


def connection_lines(lab: GoLab) -> dict[int, str]:
    """Go's ``/status/connections`` line for each of our peers (by node index)."""
    found: dict[int, str] = {}
    for line in lab.status(0, "connections").splitlines():
        for index in (1, 2):
            if f"{peer_name(index)}(py{index})" in line:
                found[index] = line
    return found


def scenario(password: str | None, hold: float, poll: float) -> bool:
    expect = Expectation(encrypted=password is not None)
    title = "with password" if password else "without password"
    print(f"=== {title}: Go weaver on node 0; our peers on node 1 (Go dials) and node 2 "
          f"(dials Go) ===", flush=True)
    failures: list[str] = []
    with GoLab(nodes=3) as lab:
        env = {"PYTHONPATH": str(REPO)}
        lab.spawn(1, peer_argv(lab, 1, password, hold), label=PY_LABEL, env=env)
        wait_until(lambda: any(e["event"] == "listening" for e in our_events(lab, 1)), 20,
                   "node 1's peer listening")
        lab.start_go_weaver(0, peers=[lab.node_ip(1)], password=password)
        lab.wait_ready([0])
        lab.spawn(2, peer_argv(lab, 2, password, hold), label=PY_LABEL, env=env)
        began = time.monotonic()

        def both_established() -> bool:
            lines = connection_lines(lab)
            return len(lines) == 2 and all(expect.matches(line) for line in lines.values())

        try:
            wait_until(both_established, 60, "both connections established in Go's status")
        except TimeoutError as error:
            failures.append(str(error))
        settled = time.monotonic()
        print(f"[{settled - began:6.1f}s] both established in Go's /status/connections",
              flush=True)
        while not failures and time.monotonic() - settled < hold:
            time.sleep(poll)
            lines = connection_lines(lab)
            stamp = f"[{time.monotonic() - began:6.1f}s]"
            for index in (1, 2):
                line = lines.get(index, "(missing)")
                print(f"{stamp} go: {line}", flush=True)
                if not expect.matches(line):
                    failures.append(f"{stamp} node {index}'s connection: {line}")
        failures += check_logs(lab, expect)
        report(lab)
    print(f"=== {title}: {'PASS' if not failures else 'FAIL'} ===")
    for failure in failures:
        print(f"    {failure}")
    return not failures


def control_experiment(poll: float) -> bool:
    """A peer that announces sleeve but never runs it: Go must drop the connection."""
    print("=== control: our peer on node 1 announces sleeve but never starts it ===",
          flush=True)
    alarm = f"no working forwarders to {peer_name(1)}(py1)"
    with GoLab(nodes=2) as lab:
        lab.spawn(1, peer_argv(lab, 1, None, 120, mute=True), label=PY_LABEL,
                  env={"PYTHONPATH": str(REPO)})
        wait_until(lambda: any(e["event"] == "listening" for e in our_events(lab, 1)), 20,
                   "node 1's peer listening")
        lab.start_go_weaver(0, peers=[lab.node_ip(1)])
        lab.wait_ready([0])
        began = time.monotonic()
        seen = ""
        while time.monotonic() - began < 100 and alarm not in lab.process(0).log_text():
            line = connection_lines(lab).get(1, "(no connection line)")
            if line != seen:
                print(f"[{time.monotonic() - began:6.1f}s] go: {line}", flush=True)
                seen = line
            time.sleep(min(poll, 2.0))
        said = [line for line in lab.process(0).log_text().splitlines()
                if peer_name(1) in line and ("forwarder" in line or "shutting down" in line)]
        for line in said:
            print(f"    {line}")
    ok = any(alarm in line for line in said)
    print(f"=== control: {'PASS' if ok else 'FAIL'} (Go gave up after about "
          f"{time.monotonic() - began:.0f}s) ===")
    return ok


def check_logs(lab: GoLab, expect: Expectation) -> list[str]:
    failures = []
    go_log = lab.process(0).log_text()
    for alarm in GO_LOG_ALARMS:
        if alarm in go_log:
            failures.append(f"the Go log says {alarm!r}")
    for index in (1, 2):
        if re.search(rf"{peer_name(index)}.*connection shutting down", go_log):
            failures.append(f"the Go log shows node {index}'s connection shutting down")
        events = our_events(lab, index)
        endings = [e for e in events if e["event"] in ("failed", "closed")]
        if endings:
            failures.append(f"node {index}'s peer: {endings}")
        statuses = [e for e in events if e["event"] == "status"]
        last = statuses[-1] if statuses else {}
        if not last.get("established") or last.get("attrs") != {"name": "sleeve",
                                                                  "mtu": expect.mtu}:
            failures.append(f"node {index}'s peer, last status: {last}")
        if not lab.process(index, PY_LABEL).running():
            failures.append(f"node {index}'s peer exited")
    return failures


def report(lab: GoLab) -> None:
    print("--- Go /status/connections ---")
    print(lab.status(0, "connections").rstrip())
    print("--- Go /status (head) ---")
    print("\n".join(lab.status(0).splitlines()[:14]))
    print("--- Go log, lines about our peers and the overlay ---")
    for line in lab.process(0).log_text().splitlines():
        if any(word in line for word in ("ce:00:00:00:00:02", "ce:00:00:00:00:03",
                                         "overlay_switch", "sleeve", "Effective MTU")):
            print(f"    {line}")
    for index in (1, 2):
        print(f"--- our peer on node {index} (events; log lines about sleeve) ---")
        for line in lab.process(index, PY_LABEL).log_text().splitlines():
            event = line.startswith("{") and '"event": "status"' not in line
            if event or " sleeve: " in line or " overlay_switch: " in line:
                print(f"    {line}")
        statuses = [e for e in our_events(lab, index) if e["event"] == "status"]
        if statuses:
            print(f"    last status: {json.dumps(statuses[-1])}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("plain", "password", "mute"))
    parser.add_argument("--hold", type=float, default=180.0)
    parser.add_argument("--poll", type=float, default=15.0)
    args = parser.parse_args()
    exit_on_sigterm()
    passwords = {"plain": None, "password": PASSWORD}
    chosen = [args.only] if args.only else ["plain", "password", "mute"]
    results = [control_experiment(args.poll) if name == "mute"
               else scenario(passwords[name], args.hold, args.poll) for name in chosen]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
