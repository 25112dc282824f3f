"""The incremental compiler is exact: after any sequence of pod changes, patching (or its
fallback to a full compile) gives exactly the full compile's ruleset."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from npc.compile.compiler import Options, compile_ruleset
from npc.compile.incremental import IncrementalCompiler, PodChange
from npc.model.objects import ClusterState, Pod
from tests.strategies import POD_LABELS, cluster_states, container_ports

KEYS = [f"{ns}/{p}" for ns in "xyz" for p in "abc"]
PODS = [(k, f"10.32.0.{10 + i}") for i, k in enumerate(KEYS)]


@st.composite
def pod_changes(draw: st.DrawFn, state: ClusterState) -> list[tuple[str, Pod | None]]:
    """A few changes: relabel, new IP (sometimes one in use), finish, delete, create."""
    from npc.model.parse import parse_pod

    out: list[tuple[str, Pod | None]] = []
    pods = {p.key: p for p in state.pods}
    for step in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["relabel", "ip", "finish", "delete", "create"]))
        key = draw(st.sampled_from(sorted(pods))) if pods and kind != "create" else None
        if key is None:
            ns = draw(st.sampled_from("xyz"))
            key = f"{ns}/new{step}"
            new_labels = {k: draw(st.sampled_from(v)) for k, v in POD_LABELS.items()
                          if draw(st.booleans())}
            obj = {"metadata": {"name": f"new{step}", "namespace": ns, "labels": new_labels},
                   "spec": {"containers": [{"name": "c", "ports": draw(container_ports())}]},
                   "status": {"phase": "Running",
                              "podIP": f"10.32.1.{draw(st.integers(1, 3))}"}}
            pods[key] = parse_pod(obj)
        elif kind == "relabel":
            labels = tuple(sorted((k, draw(st.sampled_from(v))) for k, v in POD_LABELS.items()
                                  if draw(st.booleans())))
            pods[key] = replace(pods[key], labels=labels)
        elif kind == "ip":
            ip = draw(st.sampled_from([ip for _, ip in PODS] + ["10.32.2.1", "10.32.2.2"]))
            pods[key] = replace(pods[key], ips=(ip,))
        elif kind == "finish":
            pods[key] = replace(pods[key], phase="Succeeded")
        else:
            out.append((key, None))
            del pods[key]
            continue
        out.append((key, pods[key]))
    return out


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_patching_equals_a_full_compile(data: st.DataObject) -> None:
    state = data.draw(cluster_states(PODS, max_policies=4, non_participants=True))
    options = Options()
    inc = IncrementalCompiler(options)
    inc.full(state)
    pods = {p.key: p for p in state.pods}
    for key, new in data.draw(pod_changes(state)):
        old = pods.get(key)
        if new is None:
            pods.pop(key, None)
        else:
            pods[key] = new
        current = ClusterState(state.namespaces, tuple(pods.values()), state.policies)
        patched = inc.patch([PodChange(old, new)])
        got = patched[0] if patched is not None else inc.full(current)
        assert got == compile_ruleset(current, options)


def test_a_relabel_is_patched_without_a_full_compile() -> None:
    from tests.support.objects import BASE, policy, state

    s = state(*BASE, policy("x/p", {"podSelector": {"matchLabels": {"app": "a"}},
                                    "ingress": [{"from": [{"podSelector": {}}]}]}))
    inc = IncrementalCompiler(Options())
    inc.full(s)
    old = next(p for p in s.pods if p.key == "x/b")
    new = replace(old, labels=(("app", "a"),))
    patched = inc.patch([PodChange(old, new)])
    assert patched is not None
    ruleset, touched = patched
    pods = tuple(new if p.key == "x/b" else p for p in s.pods)
    assert ruleset == compile_ruleset(ClusterState(s.namespaces, pods, s.policies))
    assert 0 < len(touched) < len(ruleset.sets)
