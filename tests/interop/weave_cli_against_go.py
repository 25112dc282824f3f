"""Our ``weave`` command and the original ``weave`` script, side by side, against a live
Go weaver 2.8.1 (not CI: needs root and the Go build, see README.md).

Two Go weavers in lab namespaces; in node 0, each command runs through the original script
(``weave --local ARGS``) and through ours (``.venv/bin/weave ARGS``); stdout and the exit
code must be equal.  Pages whose lines Go orders from a map are compared again until two
runs agree (a few tries), since two requests may list peers in different orders.

    .venv/bin/python -m tests.interop.weave_cli_against_go
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.interop.capture_go_facts import converged
from tests.interop.golab import GO_WEAVER, GoLab, exit_on_sigterm, wait_until

ROOT = Path(__file__).resolve().parents[2]
OURS = ROOT / ".venv" / "bin" / "weave"
SCRIPT = GO_WEAVER.parent.parent / "src" / "weave"
COMMANDS = (["status"], ["status", "peers"], ["status", "connections"], ["status", "targets"],
            ["status", "ipam"], ["status", "dns"], ["report", "-f", "{{.Router.Name}}"],
            ["report", "-f", "{{range .Router.Peers}}{{.NickName}} {{end}}"],
            ["report", "-f", "{{.Router.Name"], ["version"], ["connect", "x:y:z"],
            ["connect", "192.168.77.2"], ["forget", "192.168.77.99"])


def run(lab: GoLab, argv: list[str]) -> subprocess.CompletedProcess[str]:
    env_path = f"PATH={GO_WEAVER.parent}:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    return lab.run_in_node(0, ["env", env_path, *argv], check=False)


def compare(lab: GoLab, args: list[str], tries: int = 5) -> bool:
    for _ in range(tries):
        theirs = run(lab, [str(SCRIPT), "--local", *args])
        ours = run(lab, [str(OURS), *args])
        if (theirs.stdout, theirs.returncode) == (ours.stdout, ours.returncode):
            print(f"same   weave {' '.join(args)} (exit {ours.returncode})")
            return True
    print(f"DIFFER weave {' '.join(args)}\n--- script (exit {theirs.returncode})\n"
          f"{theirs.stdout!r}\n{theirs.stderr!r}\n--- ours (exit {ours.returncode})\n"
          f"{ours.stdout!r}\n{ours.stderr!r}")
    return False


def main() -> int:
    exit_on_sigterm()
    with GoLab(nodes=2) as lab:
        for i in range(2):
            lab.start_go_weaver(i, ipalloc_init="consensus=2")
        lab.wait_ready(range(2))
        wait_until(lambda: converged(lab, 0, 2), 40.0, "a converged mesh")
        results = [compare(lab, args) for args in COMMANDS]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
