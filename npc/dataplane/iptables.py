"""The iptables + ipset backend: apply a :class:`Ruleset` in one transaction per tool.

A sync reads the kernel (``ipset save``, ``iptables-save -t filter``), then writes:

1. one ``ipset restore`` (new sets, member deltas, build-aside-and-swap for wholesale
   changes; see :mod:`npc.render.ipsets`);
2. one ``iptables-restore --noflush --wait`` rewriting only the chains whose rules differ
   (compared by the fingerprints kept in rule comments), plus the hooks if asked;
3. only when sets became garbage, one more ``ipset restore`` destroying them (a set can
   only go once no rule refers to it, i.e. after step 2).

When the kernel already matches, nothing is written: a second apply changes nothing,
not even packet counters.  Nothing is ever flushed in place, so a restart adopts what it
finds and converges without opening or closing anything in between.

Mode: iptables has two kernel back ends (legacy xtables and nf_tables) with separate rule
sets; npc must use the one kube-proxy and weaver use.  ``IPTABLES_BACKEND`` (``nft`` or
``legacy``) decides; otherwise it is detected as weave's launch script does.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from common import contract
from common.kernel.exec import CommandError, Runner, open_stream
from npc.compile import names
from npc.compile.compiler import SetListener, collector_paused
from npc.compile.incremental import SetDeltas
from npc.compile.ruleset import Chain, InSet, IpSet, Rule, Ruleset
from npc.dataplane.backend import ApplyReport, KernelView
from npc.dataplane.hooks import builtin_rules, forward_hooks, hook_restore_lines, input_hook
from npc.dataplane.ipset_netlink import MemberChange, MemberWriter
from npc.render import ipsets as ipset_render
from npc.render.iptables import FINGERPRINT, render_chains
from npc.render.live import parse_counted_save, render_live

_COMMENT = re.compile(r'--comment (?:"((?:[^"\\]|\\.)*)"|(\S+))')


def detect_mode(runner: Runner, forced: str | None = None) -> str:
    """``nft`` or ``legacy``: ``forced`` if given (the settings' ``IPTABLES_BACKEND``),
    else weave's heuristic — legacy when iptables-legacy-save shows 10 or more rules or at
    least as many as iptables-nft-save, nft otherwise."""
    if forced:
        if forced not in ("nft", "legacy"):
            raise ValueError(f"iptables flavour {forced!r}: must be 'nft' or 'legacy'")
        return forced

    def count(tool: str) -> int:
        try:
            out = runner([tool])
        except (CommandError, OSError):
            return 0
        return sum(1 for line in out.splitlines() if line.startswith("-"))

    legacy = count("iptables-legacy-save")
    if legacy >= 10:
        return "legacy"
    return "legacy" if legacy >= count("iptables-nft-save") else "nft"


@dataclass
class KernelState:
    sets: dict[str, ipset_render.KernelSet]
    chains: dict[str, tuple[str, ...]]  # our chain → fingerprints of its rules
    save_text: str


def chain_fingerprints(save_text: str) -> dict[str, tuple[str, ...]]:
    """Our chains in ``iptables-save`` output → the fingerprints in their rule comments.
    A rule without a fingerprint (not written by us) gets "?" so it never compares equal."""
    chains: dict[str, list[str]] = {}
    for line in save_text.splitlines():
        if line.startswith(":WEAVE-NPC"):
            chains.setdefault(line[1:].split()[0], [])
        elif line.startswith("-A WEAVE-NPC"):
            chain = line.split()[1]
            m = _COMMENT.search(line)
            comment = (m.group(1) or m.group(2)) if m else ""
            fp = FINGERPRINT.search(comment.replace('\\"', '"'))
            chains.setdefault(chain, []).append(fp.group(1) if fp else "?")
    return {k: tuple(v) for k, v in chains.items()}


def _differences(expected: KernelState, actual: KernelState) -> list[str]:
    """Our objects that are not in the kernel as we left them."""
    out = [f"set {name}" for name, want in expected.sets.items()
           if (have := actual.sets.get(name)) is None or set(have.members) != set(want.members)]
    out += [f"chain {name}" for name, fps in expected.chains.items()
            if actual.chains.get(name) != fps]
    return out


class IptablesBackend:
    def __init__(self, runner: Runner, *, mode: str, list_size: int = 1024,
                 bridge: str = contract.BRIDGE, member_writer: MemberWriter | None = None,
                 install_hooks: bool = False) -> None:
        self.run = runner
        self.install_hooks = install_hooks
        """Also install weaver's FORWARD/INPUT hooks into our chains (normally weaver
        does); re-asserted on every full check."""
        self.description = f"iptables-{mode}" + (", ipset changes over netlink"
                                                  if member_writer else "")
        self.member_writer = member_writer
        """Writes a pod event's member changes (netlink); None: ``ipset restore``."""
        self.mode = mode
        self.list_size = list_size
        self.bridge = bridge
        self._known: KernelState | None = None
        """What we believe the kernel holds: what the last successful sync wrote."""

    def _tool(self, what: str) -> str:
        return f"iptables-{self.mode}-{what}" if what else f"iptables-{self.mode}"

    def read_state(self) -> KernelState:
        sets = ipset_render.parse_ipset_save(self.run(["ipset", "save"]))
        save = self.run([self._tool("save"), "-t", "filter"])
        return KernelState(sets, chain_fingerprints(save), save)

    def prepare(self, empty: Ruleset) -> list[str]:
        """Before the first sync: create whichever of our chains is missing, empty.  With
        weaver's hooks in place, empty chains drop every new connection to a pod, so the
        node is fail-closed until the first sync; chains that exist (a restart) are left
        as they are and keep enforcing the last state.  Returns the chains created."""
        save = self.run([self._tool("save"), "-t", "filter"])
        missing = [c.name for c in empty.chains if f":{c.name} " not in save]
        hooks = hook_restore_lines(save, self.bridge) if self.install_hooks else []
        if missing or hooks:
            lines = ["*filter", *(f":{c} - [0:0]" for c in missing), *hooks, "COMMIT"]
            self.run([self._tool("restore"), "--noflush", "--wait"], "\n".join(lines) + "\n")
        return missing

    def expected_state(self, ruleset: Ruleset) -> KernelState:
        """The kernel as it is after ``ruleset`` was applied (our objects only)."""
        sets = {}
        for s in ruleset.sets:
            options = (("size", str(self.list_size), "comment") if s.kind.value == "list:set"
                       else ("comment",))
            sets[s.name] = ipset_render.KernelSet(
                s.name, s.kind.value, options,
                {ipset_render.canonical_member(m.value): m.comment for m in s.members})
        chains = {c.name: tuple(r.fingerprint for r in c.rules) for c in ruleset.chains}
        return KernelState(sets, chains, "")

    def apply(self, ruleset: Ruleset) -> ApplyReport:
        """Read the kernel and converge it to ``ruleset`` (``npc apply``; a full check)."""
        return self.sync(ruleset, full_check=True)

    def inspect(self, desired: Ruleset | None) -> KernelView:
        """``iptables-save -c`` and ``ipset save``, each rule mapped to its policy rule."""
        save = self.run([self._tool("save"), "-c", "-t", "filter"])
        sets = ipset_render.parse_ipset_save(self.run(["ipset", "save"]))
        text, count = render_live(parse_counted_save(save), sets, desired)
        return KernelView(text, count)

    def untidy(self) -> int:
        """Nothing is ever left to tidy: every sync leaves the final layout."""
        return 0

    def tidy(self) -> ApplyReport | None:
        return None

    def sync(self, ruleset: Ruleset, *, full_check: bool = False,
             changed_sets: SetDeltas | None = None) -> ApplyReport:
        """Converge the kernel to ``ruleset``.

        Between full checks the kernel is assumed to hold what the last successful sync
        wrote, so a sync costs only its writes (set deltas, changed chains).  A full check
        (or the first sync, or one after a failure) reads the kernel back, reports what
        differs from what we wrote as drift, and repairs it; it also re-asserts the hooks.

        ``changed_sets`` (from the incremental compiler: exactly these member changes, no
        set appeared or went, no rule changed) are written as they are, so a pod event
        costs what it changes, not the size of the cluster.
        """
        known = self._known
        if changed_sets is not None and known is not None and not full_check:
            return self._sync_sets(ruleset, known, changed_sets)
        self._known = None  # until this sync succeeds, trust nothing
        if full_check or known is None:
            state = self.read_state()
            drift = _differences(known, state) if known is not None else []
            report = self._converge(ruleset, state, install_hooks=self.install_hooks, reads=2)
        else:
            drift = []
            report = self._converge(ruleset, known, install_hooks=False, reads=0)
        report.drift = drift
        self._known = self.expected_state(ruleset)
        return report

    def _sync_sets(self, ruleset: Ruleset, known: KernelState,
                   deltas: SetDeltas) -> ApplyReport:
        del ruleset  # the deltas say everything that changed
        self._known = None  # until the write succeeded: a failure re-reads the kernel
        changes: list[MemberChange] = []
        for name, members in sorted(deltas.items()):
            kernel_set = known.sets[name]
            for ip, member in sorted(members.items()):
                if member is None:
                    changes.append(MemberChange(name, ip, delete=True))
                    kernel_set.members.pop(ip, None)
                else:
                    comment = (ipset_render.comment_text(member.comment)
                               if kernel_set.has_comment else None)
                    changes.append(MemberChange(name, member.value, comment))
                    kernel_set.members[ip] = member.comment
        report = ApplyReport(commands=0)
        if changes:
            if self.member_writer is not None and all("/" not in c.ip for c in changes):
                self.member_writer(changes)
            else:
                self.run(["ipset", "restore"],
                         "".join(c.as_restore_line() + "\n" for c in changes))
            report.ipset_lines, report.commands = len(changes), 1
        self._known = known
        return report

    @collector_paused()  # its allocations live on: see collector_paused
    def sync_compiling(self, compile: Callable[[SetListener | None], Ruleset], *,
                       full_check: bool = False
                       ) -> tuple[Ruleset, ApplyReport]:
        """A full sync that overlaps the compile with the kernel's work: ``compile`` is
        called with a listener that streams each set, as soon as the compiler completes
        it, into one running ``ipset restore``; the rules follow once the compile is done.
        The kernel ends as :meth:`sync` leaves it.  Returns the compiled ruleset too."""
        known = self._known
        self._known = None  # until this sync succeeds, trust nothing
        if full_check or known is None:
            state = self.read_state()
            drift_from = known
            reads = 2
        else:
            state, drift_from, reads = known, None, 0
        stream = open_stream(self.run, ["ipset", "restore"])
        streamed = 0
        deferred = False

        def on_set(ipset: IpSet) -> None:
            nonlocal streamed, deferred
            if deferred or ipset_render.conflicts(state.sets, [ipset]):
                # A Go-era set of another type holds the name: the ordinary path frees it.
                deferred = True
                return
            plan = ipset_render.plan_ipsets(state.sets, [ipset], list_size=self.list_size)
            if plan.lines:
                stream.write(plan.script)
                streamed += len(plan.lines)

        try:
            ruleset = compile(on_set)
        except BaseException:
            stream.abort()
            raise
        stream.close()  # CommandError: _known stays None, the next sync reads the kernel
        expected = self.expected_state(ruleset)
        if deferred:
            report = self._converge(ruleset, self.read_state(),
                                    install_hooks=self.install_hooks,
                                    reads=reads + 2)
        else:
            after = KernelState({**state.sets, **expected.sets}, state.chains, state.save_text)
            report = ApplyReport(commands=reads + 1, ipset_lines=streamed)
            self._write_rules(ruleset, after, self.install_hooks, report)
            self._collect_garbage(ruleset, state, report)
        if drift_from is not None:
            report.drift = _differences(drift_from, state)
        self._known = expected
        return ruleset, report

    def _converge(self, ruleset: Ruleset, state: KernelState, *, install_hooks: bool,
                  reads: int) -> ApplyReport:
        report = ApplyReport(commands=reads)
        doomed = ipset_render.conflicts(state.sets, ruleset.sets)
        if doomed:
            self._release(ruleset, state, doomed)
            report.sets_destroyed += doomed
            report.commands += 2
            state = self.read_state()
            report.commands += 2
        plan = ipset_render.plan_ipsets(state.sets, ruleset.sets, list_size=self.list_size)
        if plan.lines:
            self.run(["ipset", "restore"], plan.script)
            report.ipset_lines = len(plan.lines)
            report.commands += 1
        self._write_rules(ruleset, state, install_hooks, report)
        self._collect_garbage(ruleset, state, report)
        return report

    def _write_rules(self, ruleset: Ruleset, state: KernelState, install_hooks: bool,
                     report: ApplyReport) -> None:
        """Rewrite the chains whose rules differ (and the hooks, if asked)."""
        dirty = [chain for chain in ruleset.chains
                 if state.chains.get(chain.name) != tuple(r.fingerprint for r in chain.rules)]
        hooks = hook_restore_lines(state.save_text, self.bridge) if install_hooks else []
        if dirty or hooks:
            text = render_chains(dirty, hooks)
            self.run([self._tool("restore"), "--noflush", "--wait"], text)
            report.chains_rewritten = [c.name for c in dirty]
            report.hooks_installed = install_hooks and "FORWARD" in text
            report.commands += 1

    def _collect_garbage(self, ruleset: Ruleset, state: KernelState,
                         report: ApplyReport) -> None:
        """Destroy our sets nothing wants any more (no rule refers to them now)."""
        stale = ipset_render.garbage(state.sets, ruleset.sets)
        if stale:
            report.sets_destroyed += self._destroy(stale)
            report.commands += 1

    def _release(self, ruleset: Ruleset, state: KernelState, doomed: list[str]) -> None:
        """Free the names of sets that must be recreated with another type: rewrite our
        chains keeping only rules whose sets exist and stay (only allow rules go, so this
        interval is fail-closed), then destroy them.  The sync that follows restores the
        rules.
        """
        usable = set(state.sets) - set(doomed)

        def keeps(rule: Rule) -> bool:
            return all(m.set_name in usable for m in rule.matches if isinstance(m, InSet))

        interim = [Chain(c.name, tuple(r for r in c.rules if keeps(r))) for c in ruleset.chains]
        self.run([self._tool("restore"), "--noflush", "--wait"], render_chains(interim))
        self.run(["ipset", "restore"], ipset_render.release_script(state.sets, doomed))

    def _destroy(self, stale: list[str]) -> list[str]:
        """Destroy sets nothing wants; one still referenced elsewhere is left for the next
        sync (``ipset restore`` stops at the first failure, so retry without it)."""
        remaining = list(stale)
        destroyed: list[str] = []
        while remaining:
            try:
                self.run(["ipset", "restore"], ipset_render.destroy_script(remaining))
                return destroyed + remaining
            except CommandError as exc:
                line = exc.failing_line()
                if line is None or line > len(remaining):
                    raise
                destroyed += remaining[: line - 1]
                remaining = remaining[line:]
        return destroyed

    def remove_all(self) -> None:
        """Delete npc's chains, hooks and ``weave-`` sets (``weave reset``)."""
        save = self.run([self._tool("save"), "-t", "filter"])
        lines = ["*filter"]
        lines += [f"-D FORWARD {r}" for r in builtin_rules(save, "FORWARD")
                  if r in forward_hooks(self.bridge)]
        lines += [f"-D INPUT {r}" for r in builtin_rules(save, "INPUT")
                  if r == input_hook(self.bridge)]
        present = [c for c in names.ALL_CHAINS if f":{c} " in save]
        lines += [f"-F {c}" for c in present] + [f"-X {c}" for c in present]
        lines.append("COMMIT")
        self.run([self._tool("restore"), "--noflush", "--wait"], "\n".join(lines) + "\n")
        sets = ipset_render.parse_ipset_save(self.run(["ipset", "save"]))
        order = sorted(sets.values(), key=lambda s: (s.kind != "list:set", s.name))
        if order:
            self.run(["ipset", "restore"],
                     "".join(f"flush {s.name}\n" for s in order)
                     + ipset_render.destroy_script(s.name for s in order))
