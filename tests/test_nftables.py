"""The nftables backend: golden ``nft list table`` output, one transaction per sync with
element-level deltas, and lookup-based dispatch whose per-connection cost does not grow
with unrelated policies."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from common.kernel.exec import SubprocessRunner
from common.lab.netns import scratch_netns
from npc.compile.compiler import Options, compile_ruleset
from npc.dataplane.nft_runner import NftCli
from npc.dataplane.nftables import NftablesBackend
from npc.model.load import Loaded, add_object, load_files
from npc.render import nft
from tests.support.golden import INPUT, check
from tests.support.objects import ns, pod, policy

ROOT = Path(__file__).resolve().parents[1]
NPC = ROOT / ".venv" / "bin" / "npc"


class Recorder(SubprocessRunner):
    def __init__(self, prefix: Sequence[str]) -> None:
        super().__init__(prefix)
        self.batches: list[list[dict[str, Any]]] = []

    def __call__(self, argv: Sequence[str], input_text: str | None = None) -> str:
        if input_text is not None:
            self.batches.append(json.loads(input_text)["nftables"])
        return super().__call__(argv, input_text)


@pytest.fixture
def netns() -> Iterator[str]:
    with scratch_netns("npcnft") as name:
        yield name


def normalise(text: str) -> str:
    return re.sub(r"counter packets \d+ bytes \d+", "counter", text)


def test_golden_table_and_idempotence(netns: str) -> None:
    runner = Recorder(("ip", "netns", "exec", netns))
    backend = NftablesBackend(NftCli(runner), options=Options())
    loaded = load_files(INPUT)
    ruleset = compile_ruleset(loaded.state())
    assert backend.apply(ruleset).changed
    assert len(runner.batches) == 1  # one transaction
    listing = runner(["nft", "list", "table", "inet", "weave-npc"]) + runner(
        ["nft", "list", "table", "bridge", "weave-npc"])
    check("nft-list-table.txt", normalise(listing))
    fresh = NftablesBackend(NftCli(runner), options=Options())  # a restarted process
    report = fresh.apply(ruleset)
    assert not report.changed and len(runner.batches) == 1


def cluster(n_pods: int, extra_policies: int = 0) -> Loaded:
    loaded = Loaded()
    objs: list[dict[str, Any]] = [ns("x"), ns("y")]
    objs += [pod(f"x/p{i}", f"10.32.0.{i + 1}", {"app": "web" if i % 2 else "db"})
             for i in range(n_pods)]
    objs.append(policy("x/web", {"podSelector": {"matchLabels": {"app": "web"}},
                                 "ingress": [{"from": [{"podSelector": {}}]}]}))
    objs += [policy(f"y/unrelated-{i}", {"podSelector": {"matchLabels": {"n": str(i)}},
                                         "ingress": [{"ports": [{"port": 1000 + i}]}]})
             for i in range(extra_policies)]
    objs += [pod(f"y/q{i}", f"10.33.0.{i + 1}", {"n": str(i)}) for i in range(extra_policies)]
    for i, obj in enumerate(objs):
        add_object(loaded, obj, f"object {i}")
    return loaded


def test_pod_churn_is_element_deltas_in_one_transaction(netns: str) -> None:
    runner = Recorder(("ip", "netns", "exec", netns))
    backend = NftablesBackend(NftCli(runner), options=Options())
    backend.sync(compile_ruleset(cluster(10).state()), full_check=True)
    runner.batches.clear()
    backend.sync(compile_ruleset(cluster(11).state()))  # one more pod
    (batch,) = runner.batches
    kinds = sorted({next(iter(c)) + ":" + next(iter(next(iter(c.values())))) for c in batch})
    assert set(kinds) <= {"add:table", "add:element", "delete:element"}, kinds
    assert not any("rule" in c.get("add", {}) or "flush" in c for c in batch)


def test_dispatch_cost_does_not_grow_with_unrelated_policies() -> None:
    """The chain a connection to an x/web pod reaches through the dispatch map holds the
    rules of the policies selecting that pod, however many other policies exist."""
    def reached(extra: int) -> tuple[int, int]:
        rs = compile_ruleset(cluster(10, extra).state())
        table = nft.build_table(rs, allow_mcast=True)
        (dispatch,) = [m for m in table.maps if m.name == "ingress_dispatch"]
        chain_name = dict(dispatch.elements)["10.32.0.2"]  # x/p1, app=web
        chain = next(c for c in table.chains if c.name == chain_name)
        ingress = next(c for c in table.chains if c.name == "ingress")
        return len(chain.rules), len(ingress.rules)

    assert reached(0) == reached(300) == (1, 8)


def test_cli_apply_and_live_debug_with_nftables(netns: str) -> None:
    def npc(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", netns, str(NPC), *args],
                              capture_output=True, text=True, timeout=60, check=False)

    first = npc("apply", "--backend", "nftables", "-f", str(ROOT / "examples"))
    assert first.returncode == 0 and "applied (nftables)" in first.stdout, first.stderr
    again = npc("apply", "--backend", "nftables", "-f", str(ROOT / "examples"))
    assert "ipset lines written: 0; chains rewritten: none" in again.stdout
    live = npc("debug", "--backend", "nftables", "--live", "-f", str(ROOT / "examples"))
    assert live.returncode == 0, live.stdout + live.stderr
    assert "shop/web-from-frontend ingress[0] peer[0]" in live.stdout
    assert "# 0 difference(s) from the desired state" in live.stdout
    auto = npc("debug", "--live", "-f", str(ROOT / "examples"))
    assert "nftables (inet weave-npc)" in auto.stdout  # auto finds no iptables in use
    subprocess.run(["ip", "netns", "exec", netns, "nft", "flush", "chain", "inet", "weave-npc",
                    "ingress"], check=True)
    drifted = npc("debug", "--backend", "nftables", "--live", "-f", str(ROOT / "examples"))
    assert drifted.returncode == 3 and "chain ingress" in drifted.stdout




def test_an_empty_policy_chain_is_not_drift(netns: str) -> None:
    """A policy with no egress rules gets an empty chain; full checks must not see drift."""
    runner = Recorder(("ip", "netns", "exec", netns))
    backend = NftablesBackend(NftCli(runner), options=Options())
    loaded = Loaded()
    for i, obj in enumerate([ns("x"), pod("x/a", "10.32.0.1"), policy("x/no-egress", {
            "podSelector": {}, "policyTypes": ["Egress"]})]):
        add_object(loaded, obj, f"object {i}")
    ruleset = compile_ruleset(loaded.state())
    backend.sync(ruleset, full_check=True)
    report = backend.sync(ruleset, full_check=True)
    assert report.drift == [] and not report.changed
