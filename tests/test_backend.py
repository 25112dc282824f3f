"""The iptables+ipset backend against the real kernel in a fresh network namespace:
deltas, build-aside-and-swap, adoption of what an earlier process (ours or the Go
original) left behind, and garbage collection of sets."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator, Sequence

import pytest

from common.kernel.exec import CommandError, SubprocessRunner
from common.lab.netns import scratch_netns
from npc.compile import names
from npc.compile.compiler import compile_ruleset
from npc.compile.ruleset import IpSet, Ruleset
from npc.dataplane.iptables import IptablesBackend
from npc.model.load import Loaded, add_object
from npc.model.objects import ClusterState
from npc.render.ipsets import parse_ipset_save
from tests.support.objects import ns, pod, policy

pytestmark = pytest.mark.kernel  # network namespaces, netfilter, real traffic


class Recorder(SubprocessRunner):
    """Runs commands for real and remembers them (to assert on what was written)."""

    def __init__(self, prefix: Sequence[str]) -> None:
        super().__init__(prefix)
        self.calls: list[tuple[list[str], str | None]] = []

    def __call__(self, argv: Sequence[str], input_text: str | None = None) -> str:
        self.calls.append((list(argv), input_text))
        return super().__call__(argv, input_text)

    def writes(self) -> list[tuple[list[str], str | None]]:
        return [c for c in self.calls if c[0][-1] != "save" and "-save" not in c[0][0]
                and c[0][:2] != ["ipset", "save"] and "save" not in c[0]]


@pytest.fixture
def runner() -> Iterator[Recorder]:
    with scratch_netns("npcbe") as name:
        yield Recorder(("ip", "netns", "exec", name))


def ruleset(n_pods: int, first: int = 1) -> Ruleset:
    return compile_ruleset(cluster(n_pods, first))


def cluster(n_pods: int, first: int = 1) -> ClusterState:
    loaded = Loaded()
    objs = [ns("x"), policy("x/p", {"podSelector": {}, "ingress": [
        {"from": [{"podSelector": {"matchLabels": {"role": "client"}}}]}]})]
    objs += [pod(f"x/p{i}", f"10.32.{i // 250}.{i % 250 + 1}", {"role": "client"})
             for i in range(first, first + n_pods)]
    for i, o in enumerate(objs):
        add_object(loaded, o, f"object {i}")
    return loaded.state()


def kernel_sets(runner: Recorder) -> dict[str, set[str]]:
    return {n: set(s.members) for n, s in parse_ipset_save(runner(["ipset", "save"])).items()}


@pytest.mark.parametrize("mode", ["nft", "legacy"])
def test_small_change_is_a_delta_and_wholesale_change_is_swapped(runner: Recorder,
                                                                 mode: str) -> None:
    backend = IptablesBackend(runner, mode=mode)
    backend.apply(ruleset(40))
    runner.calls.clear()
    report = backend.apply(ruleset(41))  # one more pod
    restore = [c for c in runner.calls if c[0] == ["ipset", "restore"]]
    assert len(restore) == 1 and restore[0][1] is not None
    assert all(line.startswith("add ") for line in restore[0][1].splitlines())
    assert report.chains_rewritten == []  # membership changed, rules did not
    runner.calls.clear()
    backend.apply(ruleset(40, first=100))  # every client replaced
    (script,) = [c[1] for c in runner.calls if c[0] == ["ipset", "restore"]]
    assert script is not None
    assert "swap " in script and "flush" not in script
    client_set = names.set_name("x:role=client")
    assert kernel_sets(runner)[client_set] == {f"10.32.0.{i % 250 + 1}" for i in range(100, 140)}
    assert not any(n.startswith(names.set_name("tmp+")[:8]) and n not in
                   {s.name for s in ruleset(40, first=100).sets} for n in kernel_sets(runner)
                   if n == names.temporary_set_name(client_set))


@pytest.mark.parametrize("mode", ["nft", "legacy"])
def test_adopts_the_go_original_state(runner: Recorder, mode: str) -> None:
    """Chains with rules that carry no fingerprint, the legacy weave-local-pods set, a set
    of the wrong type under a name we want, and sets only the old rules referred to."""
    want = ruleset(3)
    client_set = names.set_name("x:role=client")
    runner(["ipset", "restore"], "\n".join([
        "create weave-local-pods hash:ip",
        "create weave-oldpeer hash:ip",
        f"create {client_set} hash:net",  # wrong type: we want hash:ip
        "add weave-oldpeer 10.32.9.9", ""]))
    runner([f"iptables-{mode}-restore", "--noflush"], "\n".join([
        "*filter", f":{names.INGRESS_CHAIN} - [0:0]", f":{names.MAIN_CHAIN} - [0:0]",
        f"-A {names.INGRESS_CHAIN} -m set --match-set weave-oldpeer src -j ACCEPT",
        f"-A {names.INGRESS_CHAIN} -m set --match-set {client_set} src -j ACCEPT",
        f"-A {names.MAIN_CHAIN} -j {names.INGRESS_CHAIN}", "COMMIT", ""]))
    backend = IptablesBackend(runner, mode=mode, install_hooks=True)
    report = backend.apply(want)
    assert set(report.sets_destroyed) == {"weave-local-pods", "weave-oldpeer", client_set}
    sets = parse_ipset_save(runner(["ipset", "save"]))
    assert set(sets) == {s.name for s in want.sets}
    assert sets[client_set].kind == "hash:ip"
    assert not backend.apply(want).changed


@pytest.mark.parametrize("mode", ["nft", "legacy"])
def test_remove_all_leaves_nothing(runner: Recorder, mode: str) -> None:
    backend = IptablesBackend(runner, mode=mode)
    backend.apply(ruleset(3))
    backend.remove_all()
    assert "WEAVE" not in runner([f"iptables-{mode}-save"])
    assert parse_ipset_save(runner(["ipset", "save"])) == {}


def kernel_matches(backend: IptablesBackend, want: Ruleset) -> None:
    actual, expected = backend.read_state(), backend.expected_state(want)
    assert {n: s.members for n, s in actual.sets.items()} == \
        {n: s.members for n, s in expected.sets.items()}
    assert {n: fps for n, fps in actual.chains.items() if n in expected.chains} == \
        expected.chains


@pytest.mark.parametrize("mode", ["nft", "legacy"])
def test_a_streamed_full_sync_ends_where_apply_does(runner: Recorder, mode: str) -> None:
    """Sets stream into ``ipset restore`` while the compile runs; the kernel ends as the
    compiled ruleset says, a repeat writes nothing, and a change writes only deltas."""
    backend = IptablesBackend(runner, mode=mode)
    first = cluster(300)
    collecting: list[bool] = []

    def compile_first(on_set: Callable[[IpSet], None] | None) -> Ruleset:
        collecting.append(gc.isenabled())
        return compile_ruleset(first, None, on_set)
    want, report = backend.sync_compiling(compile_first, full_check=True)
    # The cyclic collector waits for the end of the sync (its objects mostly live on).
    assert collecting == [False] and gc.isenabled()
    assert want == compile_ruleset(first)
    assert report.ipset_lines > 300 and report.chains_rewritten
    kernel_matches(backend, want)
    _, again = backend.sync_compiling(lambda on_set: compile_ruleset(first, None, on_set),
                                      full_check=True)
    assert not again.changed and again.drift == []
    moved = cluster(300, first=200)  # 100 clients go, 100 come
    want, report = backend.sync_compiling(lambda on_set: compile_ruleset(moved, None, on_set))
    assert report.ipset_lines > 0 and report.chains_rewritten == []
    kernel_matches(backend, want)


def test_a_streamed_sync_frees_a_go_era_name_the_ordinary_way(runner: Recorder) -> None:
    client_set = names.set_name("x:role=client")
    runner(["ipset", "restore"], f"create {client_set} hash:net\n")  # we want hash:ip
    backend = IptablesBackend(runner, mode="nft")
    state = cluster(3)
    want, report = backend.sync_compiling(lambda on_set: compile_ruleset(state, None, on_set))
    assert client_set in report.sets_destroyed
    assert parse_ipset_save(runner(["ipset", "save"]))[client_set].kind == "hash:ip"
    kernel_matches(backend, want)


def test_a_failing_stream_is_reported_and_trusts_nothing_after(runner: Recorder) -> None:
    """A line the kernel refuses stops ``ipset restore``: the sync fails with that line
    shown, and the next sync reads the kernel back and converges."""
    from npc.compile.ruleset import Member, SetKind

    backend = IptablesBackend(runner, mode="nft")
    state = cluster(3)

    def broken(on_set: Callable[[IpSet], None] | None) -> Ruleset:
        assert on_set is not None
        on_set(IpSet("weave-broken", SetKind.HASH_IP, "test", "test",
                     (Member("10.32.0.300"),)))
        return compile_ruleset(state, None, on_set)

    with pytest.raises(CommandError) as caught:
        backend.sync_compiling(broken)
    assert "10.32.0.300" in caught.value.describe()
    with pytest.raises(RuntimeError):  # a compile that fails leaves no command running
        backend.sync_compiling(lambda on_set: (_ for _ in ()).throw(RuntimeError("bug")))
    assert gc.isenabled()  # the collector, paused over each full sync, runs again
    want, report = backend.sync_compiling(lambda on_set: compile_ruleset(state, None, on_set))
    assert report.commands >= 3  # read the kernel back (2) before writing
    kernel_matches(backend, want)
    assert "weave-broken" in report.sets_destroyed
