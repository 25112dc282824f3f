"""The command line: ``npc debug`` in every format on the examples, problems in the input,
and ``npc apply`` for real in a fresh network namespace per test (both iptables flavours)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from npc import cli
from npc.compile import names

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
NPC = ROOT / ".venv" / "bin" / "npc"


def _example_policies() -> list[dict[str, Any]]:
    policies = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "NetworkPolicy":
                policies.append(doc)
    return policies


POLICIES = _example_policies()


def _only_isolates(policy: dict[str, Any]) -> bool:
    spec = policy.get("spec") or {}
    return not spec.get("ingress") and not spec.get("egress")


def debug(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = cli.main(["debug", *args])
    out, err = capsys.readouterr()
    return status, out, err


GOOD_AND_BROKEN = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: good, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - ports: [{port: 8443}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: broken, namespace: shop}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - ports: [{port: 90, endPort: 80}]
"""
BROKEN_PATH = "spec.ingress[0].ports[0].endPort"


@pytest.fixture
def broken_file(tmp_path: Path) -> Path:
    path = tmp_path / "policies.yaml"
    path.write_text(GOOD_AND_BROKEN)
    return path


# ---- npc debug --------------------------------------------------------------------------
def test_examples_have_policies() -> None:
    assert len(POLICIES) >= 5


@pytest.mark.parametrize("policy", [pytest.param(p, id=p["metadata"]["name"])
                                    for p in POLICIES])
def test_debug_text_mentions_policy(capsys: pytest.CaptureFixture[str],
                                    policy: dict[str, Any]) -> None:
    status, out, err = debug(capsys, "-f", str(EXAMPLES))
    assert (status, err) == (0, "")
    assert f"{policy['metadata']['namespace']}/{policy['metadata']['name']}" in out


def test_debug_text_shows_every_chain(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = debug(capsys, "-f", str(EXAMPLES))
    assert status == 0
    headers = [line.split()[0] for line in out.splitlines() if line.startswith("WEAVE-NPC")]
    assert headers == list(names.ALL_CHAINS)
    assert "# ipsets (" in out
    assert "# problems" not in out


def test_debug_text_shows_default_deny_effect(capsys: pytest.CaptureFixture[str]) -> None:
    """default-deny selects every pod of shop: shop's ingress default-allow set is empty."""
    _, out, _ = debug(capsys, "-f", str(EXAMPLES))
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines)
                  if "[hashed from 'ingress-default-allow:shop']" in line)
    assert lines[header + 1].strip() == "(empty)"


def test_debug_json(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = debug(capsys, "-f", str(EXAMPLES), "--format", "json")
    assert (status, err) == (0, "")
    data = json.loads(out)
    assert data["problems"] == []
    assert [c["name"] for c in data["chains"]] == list(names.ALL_CHAINS)
    rules = [r for c in data["chains"] for r in c["rules"]]
    assert rules
    for rule in rules:
        assert rule["origins"], rule
        assert rule["args"]
        for origin in rule["origins"]:
            assert origin["policy"] or origin["what"], origin
    keys = {f"{p['metadata']['namespace']}/{p['metadata']['name']}"
            for p in POLICIES if not _only_isolates(p)}
    assert {o["policy"] for r in rules for o in r["origins"]} - {""} == keys
    set_names = [s["name"] for s in data["sets"]]
    assert set_names and all(n.startswith("weave-") and len(n) <= 31 for n in set_names)
    assert len(set(set_names)) == len(set_names)


def test_debug_restore(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = debug(capsys, "-f", str(EXAMPLES), "--format", "restore")
    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert any(line.startswith("create weave-") for line in lines)
    assert any(line.startswith("add weave-") for line in lines)
    start, end = lines.index("*filter"), lines.index("COMMIT")
    assert start < end == len(lines) - 1
    assert all(not line.startswith(("create ", "add ")) for line in lines[start:])
    for chain in names.ALL_CHAINS:
        assert f":{chain} - [0:0]" in lines[start:end]
    assert all(line.startswith(("-A WEAVE-NPC", ":WEAVE-NPC"))
               for line in lines[start + 1:end])


@pytest.mark.parametrize("fmt", ["text", "json", "restore"])
def test_debug_is_deterministic(capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    runs = [debug(capsys, "-f", str(EXAMPLES), "--format", fmt) for _ in range(2)]
    # The same objects given file by file in reverse order compile to the same output.
    files = sorted(EXAMPLES.glob("*.yaml"), reverse=True)
    runs.append(debug(capsys, *[a for f in files for a in ("-f", str(f))], "--format", fmt))
    assert runs[0][0] == 0
    assert runs[0] == runs[1] == runs[2]


def test_debug_broken_policy(capsys: pytest.CaptureFixture[str], broken_file: Path) -> None:
    status, out, err = debug(capsys, "-f", str(EXAMPLES / "cluster.yaml"),
                             "-f", str(broken_file))
    assert status == 1
    errors = [line for line in err.splitlines() if line.startswith("npc: error: ")]
    assert len(errors) == 1
    assert f"{broken_file} document 1: " in errors[0]
    assert "NetworkPolicy shop/broken" in errors[0]
    assert BROKEN_PATH in errors[0]
    # The valid policy is compiled ...
    assert "shop/good ingress[0]" in out
    assert "--dport 8443" in out
    # ... and the broken one isolates its pods, allowing nothing.
    problems = out[:out.index("# ipsets")]
    assert problems.startswith("# problems (1): enforced fail-closed")
    assert "shop/broken" in problems
    assert "isolated" in problems
    assert BROKEN_PATH in problems


def test_debug_broken_policy_json_isolates_its_pods(capsys: pytest.CaptureFixture[str],
                                                    broken_file: Path) -> None:
    status, out, _ = debug(capsys, "-f", str(EXAMPLES / "cluster.yaml"),
                           "-f", str(broken_file), "--format", "json")
    assert status == 1
    data = json.loads(out)
    assert [p["object"] for p in data["problems"]] == ["NetworkPolicy shop/broken"]
    origins = {o["policy"] for c in data["chains"] for r in c["rules"] for o in r["origins"]}
    assert "shop/good" in origins
    assert "shop/broken" not in origins
    (allow,) = [s for s in data["sets"] if s["source"] == "ingress-default-allow:shop"]
    # web is selected by the good policy, db by the broken one: neither is default-allowed.
    assert allow["members"] == []


def test_debug_unknown_kind_is_a_warning(capsys: pytest.CaptureFixture[str],
                                         tmp_path: Path) -> None:
    path = tmp_path / "svc.yaml"
    path.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: web}\n")
    status, _, err = debug(capsys, "-f", str(EXAMPLES), "-f", str(path))
    assert status == 0
    assert err.startswith(f"npc: warning: {path} document 0: kind 'Service' is ignored")


def test_debug_invalid_yaml(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("kind: [\n")
    status, out, err = debug(capsys, "-f", str(EXAMPLES), "-f", str(path))
    assert status == 1
    assert f"npc: error: {path}: invalid YAML" in err
    assert "shop/db-from-web" in out


def test_debug_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    status, _, err = debug(capsys, "-f", str(tmp_path / "nope.yaml"))
    assert status == 1
    assert f"npc: error: {tmp_path / 'nope.yaml'}: cannot read" in err


def test_no_arguments_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    out = capsys.readouterr().out
    assert out.startswith("usage: npc")
    for command in ("debug", "apply", "demo"):
        assert command in out


def test_console_script_without_arguments_prints_help() -> None:
    result = subprocess.run([str(NPC)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert result.stdout.startswith("usage: npc")


# ---- npc apply, for real, in a network namespace ----------------------------------------
APPLIED = re.compile(r"^npc: applied \((nft|legacy)\): (.*)$", re.MULTILINE)


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"npccli-{uuid.uuid4().hex[:10]}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=30)
    try:
        yield name
    finally:
        # The namespace's iptables rules and ipsets go with it.
        subprocess.run(["ip", "netns", "del", name], check=False, timeout=30)


def in_ns(ns: str, *argv: str, backend: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "IPTABLES_BACKEND"}
    if backend is not None:
        env["IPTABLES_BACKEND"] = backend
    return subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True,
                          env=env, timeout=120, check=False)


def apply(ns: str, *files: Path, backend: str | None = None,
          hooks: bool = True) -> tuple[subprocess.CompletedProcess[str], str, str]:
    """Run ``npc apply``; also return the mode it used and the rest of its summary line."""
    args = [a for f in files for a in ("-f", str(f))] + (["--install-hooks"] if hooks else [])
    result = in_ns(ns, str(NPC), "apply", *args, backend=backend)
    match = APPLIED.search(result.stdout)
    assert match, (result.stdout, result.stderr)
    return result, match.group(1), match.group(2)


def iptables_save(ns: str, mode: str) -> str:
    result = in_ns(ns, f"iptables-{mode}-save", "-t", "filter")
    assert result.returncode == 0, result.stderr
    return "\n".join(line for line in result.stdout.splitlines() if not line.startswith("#"))


def ipset_names(ns: str) -> set[str]:
    result = in_ns(ns, "ipset", "list", "-n")
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


def expected_set_names(capsys: pytest.CaptureFixture[str], *files: Path) -> set[str]:
    _, out, _ = debug(capsys, *[a for f in files for a in ("-f", str(f))], "--format", "json")
    return {s["name"] for s in json.loads(out)["sets"]}


@pytest.mark.parametrize("backend", [None, "nft", "legacy"], ids=["detected", "nft", "legacy"])
def test_apply_installs_chains_sets_and_hooks(capsys: pytest.CaptureFixture[str], netns: str,
                                              backend: str | None) -> None:
    result, mode, summary = apply(netns, EXAMPLES, backend=backend)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    if backend is not None:
        assert mode == backend
    assert "hooks installed: True" in summary
    assert "chains rewritten: " + ", ".join(names.ALL_CHAINS) in summary

    saved = iptables_save(netns, mode)
    for chain in names.ALL_CHAINS:
        assert f"\n:{chain} - [0:0]" in saved
    assert re.search(r"^-A FORWARD -i weave .*-j WEAVE-NPC-EGRESS$", saved, re.MULTILINE)
    assert re.search(r"^-A FORWARD -o weave .*-j WEAVE-NPC$", saved, re.MULTILINE)
    assert "\n-A FORWARD -o weave -j DROP" in saved
    assert "\n-A INPUT -i weave -j WEAVE-NPC-EGRESS" in saved
    assert "shop/db-from-web ingress[0]" in saved
    assert "ops/ops-egress egress[0]" in saved

    sets = ipset_names(netns)
    assert sets == expected_set_names(capsys, EXAMPLES)
    assert all(s.startswith("weave-") for s in sets)


@pytest.mark.parametrize("backend", ["nft", "legacy"])
def test_second_apply_changes_nothing(netns: str, backend: str) -> None:
    first, _, _ = apply(netns, EXAMPLES, backend=backend)
    assert first.returncode == 0, first.stderr
    before = iptables_save(netns, backend), ipset_names(netns)
    second, mode, summary = apply(netns, EXAMPLES, backend=backend)
    assert second.returncode == 0, second.stderr
    assert mode == backend
    assert "ipset lines written: 0; chains rewritten: none" in summary
    assert "sets destroyed: 0; hooks installed: False" in summary
    assert (iptables_save(netns, backend), ipset_names(netns)) == before


def test_apply_with_a_broken_policy_applies_the_rest(capsys: pytest.CaptureFixture[str],
                                                     netns: str, broken_file: Path) -> None:
    result, mode, summary = apply(netns, EXAMPLES, broken_file, backend="nft")
    assert result.returncode == 1
    assert mode == "nft"
    errors = [line for line in result.stderr.splitlines() if line.startswith("npc: error: ")]
    assert len(errors) == 1
    assert f"{broken_file} document 1: " in errors[0]
    assert BROKEN_PATH in errors[0]
    assert "npc: enforced fail-closed: NetworkPolicy shop/broken" in result.stderr
    assert "hooks installed: True" in summary

    saved = iptables_save(netns, mode)
    assert "shop/good ingress[0]" in saved
    assert "--dport 8443" in saved
    assert "shop/db-from-web ingress[0]" in saved
    assert "shop/broken" not in saved
    assert ipset_names(netns) == expected_set_names(capsys, EXAMPLES, broken_file)


def test_apply_then_remove_a_policy(capsys: pytest.CaptureFixture[str], netns: str,
                                    tmp_path: Path) -> None:
    """Applying fewer policies rewrites the kernel to match: the dropped policy's rules go."""
    first, mode, _ = apply(netns, EXAMPLES, backend="legacy")
    assert first.returncode == 0, first.stderr
    fewer = tmp_path / "examples"
    shutil.copytree(EXAMPLES, fewer)
    (fewer / "03-named-port.yaml").unlink()
    second, _, summary = apply(netns, fewer, backend="legacy")
    assert second.returncode == 0, second.stderr
    assert "chains rewritten: none" not in summary
    saved = iptables_save(netns, mode)
    assert "shop/db-from-web" not in saved
    assert "shop/web-from-frontend ingress[0]" in saved
    assert ipset_names(netns) == expected_set_names(capsys, fewer)


def test_live_debug_maps_the_kernel_to_policies_and_flags_drift(netns: str) -> None:
    """``npc debug --live -f FILES`` on a node: kernel rules with counters and the policy
    rule each came from; after an outside flush, the missing rules are flagged (exit 3)."""
    _, mode, _ = apply(netns, EXAMPLES)
    clean = in_ns(netns, str(NPC), "debug", "--live", "-f", str(EXAMPLES))
    assert clean.returncode == 0, clean.stderr
    assert "<- shop/web-from-frontend ingress[0] peer[0]" in clean.stdout
    assert "# 0 difference(s) from the desired state" in clean.stdout
    subprocess.run(["ip", "netns", "exec", netns, f"iptables-{mode}", "-F",
                    "WEAVE-NPC-INGRESS"], check=True)
    drifted = in_ns(netns, str(NPC), "debug", "--live", "-f", str(EXAMPLES))
    assert drifted.returncode == 3
    assert "!! MISSING rule" in drifted.stdout



@pytest.mark.parametrize(("src", "dst", "port", "verdict", "because"), [
    ("ops/monitor", "shop/web", "80", "ALLOWED", "shop/web-from-ops-network ingress[0]"),
    ("ops/intruder", "shop/web", "80/tcp", "DENIED", "ops/ops-egress"),
    ("frontend/ui", "shop/db", "81", "DENIED", "shop/default-deny"),
    ("10.32.1.10", "shop/db", "81", "ALLOWED", "shop/db-from-web ingress[0]"),
], ids=["allowed-by-ipblock", "denied-egress", "denied-default-deny", "by-ip-named-port"])
def test_debug_explain(capsys: pytest.CaptureFixture[str], src: str, dst: str, port: str,
                       verdict: str, because: str) -> None:
    status, out, err = debug(capsys, "-f", str(EXAMPLES), "explain", src, dst, port)
    assert (status, err) == (0, "")
    assert f"\n{verdict}:" in out
    assert because in out


def test_debug_explain_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert debug(capsys, "-f", str(EXAMPLES), "explain", "a/b")[0] == 2
    status, _, err = debug(capsys, "-f", str(EXAMPLES), "explain", "no/pod", "shop/web", "80")
    assert status == 2 and "no pod no/pod" in err
