"""``npc debug`` against a live node: the kernel as it is, next to the desired state.

The desired state comes from ``-f`` files when given, otherwise from one list of each
kind from the API server (the same list code the controller uses); without API access
the kernel is shown alone.
"""

from __future__ import annotations

import sys

from common.kernel.exec import CommandError, SubprocessRunner
from common.service.kube import kube_api_client
from common.service.listwatch import CONSISTENT
from npc.compile.compiler import Options, compile_ruleset
from npc.compile.ruleset import Ruleset
from npc.controller.store import ClusterStore
from npc.controller.watchers import watchers
from npc.dataplane.iptables import IptablesBackend
from npc.dataplane.nftables import NftablesBackend
from npc.dataplane.select import make_backend
from npc.model.load import load_files
from npc.model.objects import ClusterState
from npc.render import ipsets as ipset_render
from npc.render.live import parse_counted_save, render_live


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
        backend, description = make_backend(backend_name, runner, options)
    except (CommandError, ValueError) as exc:
        print(f"npc: error: cannot read the kernel: {exc}", file=sys.stderr)
        return 2
    desired, _ = desired_state(files, kubeconfig, options)
    print(f"# {description}, this network namespace")
    if isinstance(backend, NftablesBackend):
        listing = runner(["nft", "list", "table", "inet", "weave-npc"])
        sys.stdout.write(listing)
        if desired is None:
            return 0
        differences = backend.differences(desired)
        for item in differences:
            print(f"!! differs from the desired state: {item}")
        print(f"# {len(differences)} difference(s) from the desired state")
        return 3 if differences else 0
    assert isinstance(backend, IptablesBackend)
    save = runner([f"iptables-{backend.mode}-save", "-c", "-t", "filter"])
    sets = ipset_render.parse_ipset_save(runner(["ipset", "save"]))
    text, count = render_live(parse_counted_save(save), sets, desired)
    sys.stdout.write(text)
    return 3 if count else 0
