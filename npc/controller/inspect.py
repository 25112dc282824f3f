"""``npc debug`` against a live node: the kernel as it is, next to the desired state.

The desired state comes from ``-f`` files when given, otherwise from one list of each
kind from the API server (the same list code the controller uses); without API access
the kernel is shown alone.
"""

from __future__ import annotations

import sys

from common.kernel.exec import SubprocessRunner
from common.service.kube import kube_api_client
from common.service.listwatch import CONSISTENT
from npc.compile.compiler import Options, compile_ruleset
from npc.compile.ruleset import Ruleset
from npc.controller.store import ClusterStore
from npc.controller.watchers import watchers
from npc.dataplane.backend import BackendError
from npc.dataplane.select import in_use, make_backend
from npc.model.load import load_files
from npc.model.objects import ClusterState


def state_from_api(kubeconfig: str | None) -> ClusterState:
    """One complete, consistent list of each kind, parsed as the controller parses them."""
    store = ClusterStore()
    for w in watchers(kube_api_client(kubeconfig, "weave-npc"), store):
        w.list(CONSISTENT)
    return store.snapshot()[1]


def desired_state(files: list[str] | None, kubeconfig: str | None,
                  options: Options) -> tuple[Ruleset | None, ClusterState | None]:
    if files:
        loaded = load_files(files)
        for problem in loaded.problems:
            print(f"npc: {problem}", file=sys.stderr)
        state = loaded.state()
        return compile_ruleset(state, options), state
    try:
        state = state_from_api(kubeconfig)
    except Exception as exc:  # kubeconfig, network or API problem: show the kernel only
        print(f"npc: cannot read the desired state from the API server: {exc}",
              file=sys.stderr)
        return None, None
    return compile_ruleset(state, options), state


def live_debug(files: list[str] | None, kubeconfig: str | None, options: Options,
               backend_name: str = "auto") -> int:
    """Print the kernel state annotated with policy origins; exit 3 if it differs."""
    runner = SubprocessRunner()
    try:
        backend = make_backend(in_use(backend_name, runner), runner, options)
    except (BackendError, ValueError) as exc:
        print(f"npc: error: cannot read the kernel: {exc}", file=sys.stderr)
        return 2
    desired, _ = desired_state(files, kubeconfig, options)
    print(f"# {backend.description}, this network namespace")
    view = backend.inspect(desired)
    sys.stdout.write(view.text)
    return 3 if view.differences else 0
