"""IPAM across our weaver and the Go weaver 2.8.1 in one mesh (issue 16 point 7; not run
in CI: the Go binary is built from sources CI cannot download, by
tests/interop/build-go-weave.sh).

Every agent runs with ``--ipalloc-range 10.40.0.0/20``.

Run A, five lab nodes: ours on 0 and 2, Go on 1 (the seeds, ``consensus=3``), then Go on 3
and ours on 4 started after consensus.

1. consensus: allocations started on all three at once (``POST /ip/{id}``, the same on
   both kinds) all succeed; seconds to the answers;
2. no address twice: every allocation from every node (``GET /ip``); the ring views
   (``/report`` ``IPAM.Entries``: token, size, owner, version) agree on every node once
   periodic gossip has carried the free counts (up to a gossip interval, 30 s);
3. ``/status/ipam`` and the ipam section of ``/status`` agree between Go and ours (owners,
   nicknames, counts; a line about a peer remote to both nodes is byte-identical), and
   ``/report`` ``IPAM`` has the same fields and entries;
4. donation across kinds: the late Go node allocates in a subnet where only ours has
   space, the late node of ours in one where only Go has; each gets a range of the other
   kind (SpaceRequest, then a RingUpdate);
5. claims across kinds: ``PUT /ip/{id}/{ip}/20`` on ours of a free address in the Go
   peer's range and vice versa (the owner hands it over); of an address the other kind
   has given out (SpaceRequestDenied: refused at once, in the same words);
   then a crash of one of each kind (SIGKILL, restart): nothing forgotten or given twice;
6. rmpeer across kinds: the Go seed killed for good, ``DELETE /peer/<its name>`` on one of
   ours; the ring (Go's late node included) converges with nothing left to the dead peer,
   and allocations go on with no address twice; then one of ours killed and rmpeer'd on
   the Go peer, the same;
7. the late Go node leaves (``DELETE /peer``, as ``weave reset``): its ranges go to ours.

Run B, three nodes: Go on 0 and 2, ours on 1. Go on 0 and ours on 1 first wait alone
(both say ``awaiting consensus (quorum: 2, known: 1)``, alike in ``/report``), then reach
consensus with node 2; allocations, one ring, the same ``/status/ipam``; then ours leaves
and its ranges go to a Go peer.

Run C, four nodes: electors ours (0) and Go (1) with ``consensus=2``, observers Go (2) and
ours (3) with ``--ipalloc-init observer``: the observers' first requests make the electors
agree; allocations everywhere, one ring.

Run D, four nodes: ours on 0 and 2, Go on 1 and 3 (``consensus=4``), with 0-2 and 1-3
blocked: a claim, a denied claim and a donation between two of a kind that are not
neighbours, their unicasts relayed by the other kind.

Run E, four nodes: ours on 0 and 2, Go on 1, ours on 3 (``consensus=4``); node 3 dies and
is rmpeer'd on all three survivors at once (the original forbids that among its own
peers): one ring, nothing left to the dead peer, no address twice, every weaver alive.
Before our takeovers lost every tie to a Go peer's, the Go weaver panicked here
("Assertion failure" in its allocator's invariant check).

Throughout: no Go log line of an IPAM error (Go closes the connection on a merge error),
no ring conflict, refusal, malformed message or traceback in our logs.

Prints PASS/FAIL lines with figures and exits non-zero on any failure. Run as root from
the repository root: ``.venv/bin/python -m tests.interop.ipam_interop [--only A|B|C|D|E]
[--logs DIR]`` (about 9 minutes).
"""

from __future__ import annotations

import argparse
import ipaddress
import re
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from router.ipam.allocator import TAKEOVER_SETTLE
from tests.interop.golab import GoLab, exit_on_sigterm, peer_name, wait_until
from tests.router.agents import report, start

RANGE = ipaddress.IPv4Network("10.40.0.0/20")
IPAM_FLAGS = ("--ipalloc-range", str(RANGE))
SEED_INIT = "consensus=3"
HTTP_TIMEOUT = 60.0

GO_IPAM_ERRORS = (
    "Inconsistent entries", "says it owns the IP range", "Received update for IP range",
    "reporting too much free space", "Merge of incoming", "seeded by different peers",
    "Incompatible IP allocation ranges", "gob:", "Ring not sorted", "Token appears twice",
    "Token is out of range", "[allocator")
"""What Go's allocator returns as errors (they close the connection) or logs as errors."""

Ring = list[tuple[str, int, str, int]]
OWNER_LINE = re.compile(r"^(?P<name>\S+)\((?P<nick>[^)]*)\)\s+(?P<ips>\d+) IPs "
                        r"\((?P<share>[ \d.]+)% of total\) ?(?P<note>.*)$")


class Failed(Exception):
    """A step failed; the run cannot go on."""


class Checks:
    """PASS/FAIL lines and the verdict."""

    def __init__(self) -> None:
        self.failures: list[str] = []
        self.passes = 0
        self.started = time.monotonic()

    def stamp(self) -> str:
        return f"[{time.monotonic() - self.started:6.1f}s]"

    def ok(self, what: str) -> None:
        self.passes += 1
        print(f"{self.stamp()} PASS {what}", flush=True)

    def fail(self, what: str) -> None:
        self.failures.append(what)
        print(f"{self.stamp()} FAIL {what}", flush=True)

    def check(self, condition: bool, what: str) -> bool:
        (self.ok if condition else self.fail)(what)
        return condition

    def info(self, text: str) -> None:
        print(f"{self.stamp()}      {text}", flush=True)


class Mesh:
    """A lab with some Go weavers and some of ours, all with the same IPAM range."""

    def __init__(self, lab: GoLab, go: Iterable[int], checks: Checks,
                 logs: Path | None) -> None:
        self.lab = lab
        self.logs = logs
        self.go = set(go)
        self.checks = checks

    def kind(self, i: int) -> str:
        return "Go" if i in self.go else "ours"

    def label(self, i: int) -> str:
        return f"node{i} ({self.kind(i)})"

    def start(self, i: int, peers: Sequence[int], init: str | None) -> None:
        if i in self.go:
            self.lab.start_go_weaver(i, peers=[self.lab.node_ip(p) for p in peers],
                                     ipalloc_init=init, ipalloc_range=str(RANGE))
        else:
            extra = [*IPAM_FLAGS, "--ipalloc-timeout", "60"]
            if init is not None:
                extra += ["--ipalloc-init", init]
            start(self.lab, i, peers=peers, extra=extra)

    def crashes(self) -> None:
        """Say which weavers panicked or raised, with the first lines of it."""
        for (i, _), proc in self.lab.processes.items():
            lines = proc.log_text().splitlines()
            at = next((n for n, line in enumerate(lines)
                       if line.startswith("panic") or line.startswith("Traceback")), None)
            if at is not None:
                self.checks.fail(f"{self.label(i)} crashed: " + " | ".join(
                    line.strip() for line in lines[at:at + 8]))

    def save_logs(self, run: str) -> None:
        if self.logs is None:
            return
        self.logs.mkdir(parents=True, exist_ok=True)
        for (i, label), proc in self.lab.processes.items():
            target = self.logs / f"{run}-node{i}-{self.kind(i)}-{label}.log"
            target.write_text(proc.log_text())

    # ---- reading ----------------------------------------------------------------------
    def report(self, i: int) -> dict[str, Any]:
        return report(self.lab, i)

    def ring(self, i: int) -> Ring:
        entries = (self.report(i).get("IPAM") or {}).get("Entries") or []
        return [(e["Token"], e["Size"], e["Peer"], e["Version"]) for e in entries]

    def owners(self, i: int) -> list[tuple[str, int, str]]:
        return [(token, size, peer) for token, size, peer, _ in self.ring(i)]

    def owned(self, i: int) -> dict[str, list[str]]:
        body: Any = self.lab.http(i, "GET", "/ip").expect(200).json()
        return {m["containerid"]: m["addrs"] for m in body.get("owned") or []}

    def peers_seen(self, i: int) -> set[str]:
        return {p["Name"] for p in self.report(i)["Router"]["Peers"] or []}

    def established(self, i: int) -> int:
        conns = self.report(i)["Router"]["Connections"] or []
        return sum(1 for c in conns if c["State"] == "established")

    def full_mesh(self, nodes: Sequence[int]) -> bool:
        names = {peer_name(i) for i in nodes}
        return all(self.peers_seen(i) == names and self.established(i) == len(nodes) - 1
                   for i in nodes)

    def rings_agree(self, nodes: Sequence[int], versions: bool = True) -> Ring | None:
        views = [self.ring(i) if versions else
                 [(t, s, p, 0) for t, s, p in self.owners(i)] for i in nodes]
        return views[0] if views[0] and all(v == views[0] for v in views) else None

    # ---- requests ---------------------------------------------------------------------
    def allocate(self, i: int, ident: str, subnet: str | None = None) -> tuple[int, str, float]:
        started = time.monotonic()
        path = f"/ip/{ident}" + (f"/{subnet}" if subnet else "")
        reply = self.lab.http(i, "POST", path, timeout=HTTP_TIMEOUT)
        return reply.status, reply.text.strip(), time.monotonic() - started

    def allocate_many(self, jobs: Sequence[tuple[int, str]]) -> tuple[dict[str, str],
                                                                      list[str], float]:
        """Every (node, ID) at once; (ID → address, failures, seconds of the slowest)."""
        with ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(lambda job: self.allocate(*job), jobs))
        got: dict[str, str] = {}
        failures: list[str] = []
        for (i, ident), (status, text, _) in zip(jobs, answers, strict=True):
            if status == 200:
                got[ident] = text
            else:
                failures.append(f"{self.label(i)} {ident}: {status} {text}")
        return got, failures, max((a[2] for a in answers), default=0.0)

    def everything_owned(self, nodes: Sequence[int]) -> tuple[dict[str, str], list[str]]:
        """Every allocation held by ``nodes`` (ID → address), and IDs held twice."""
        found: dict[str, str] = {}
        problems: list[str] = []
        for i in nodes:
            for ident, addrs in self.owned(i).items():
                if ident in found or len(addrs) != 1:
                    problems.append(f"{ident} on {self.label(i)}: {addrs}")
                found[ident] = addrs[0] if addrs else ""
        return found, problems

    # ---- logs -------------------------------------------------------------------------
    def go_ipam_drops(self, i: int) -> list[str]:
        """Lines of a Go log where a connection was closed for an IPAM reason, or an
        IPAM error was logged."""
        found = []
        for line in self.lab.process(i).log_text().splitlines():
            if line.startswith("panic") or (
                    ("shutting down due to error" in line or line.startswith("ERRO"))
                    and any(k in line for k in GO_IPAM_ERRORS)):
                found.append(line)
        return found

    def our_problems(self, i: int) -> list[str]:
        keys = ("Traceback", "ring conflict", "refused the ring", "] ignored ", "ERROR")
        lines = self.lab.process(i).log_text().splitlines()
        return [line for line in lines if any(k in line for k in keys)]


def unique(addresses: dict[str, str]) -> list[str]:
    """Problems: an address given twice, or outside the range."""
    seen: dict[str, str] = {}
    problems = []
    for ident, cidr in addresses.items():
        address = cidr.split("/")[0]
        if ipaddress.IPv4Address(address) not in RANGE:
            problems.append(f"{ident}: {cidr} is outside {RANGE}")
        if address in seen:
            problems.append(f"{address} given to {seen[address]} and {ident}")
        seen[address] = ident
    return problems


def owner_lines(text: str) -> dict[str, tuple[str, int, str, str]]:
    """``/status/ipam`` by peer: (nickname, IPs, share, note); raises on a line in another
    format."""
    out = {}
    for line in text.splitlines():
        m = OWNER_LINE.match(line)
        if not m:
            raise ValueError(f"not a /status/ipam line: {line!r}")
        out[m["name"]] = (m["nick"], int(m["ips"]), m["share"], m["note"])
    return out


def ipam_section(status: str) -> list[str]:
    lines = status.splitlines()
    at = next((n for n, line in enumerate(lines) if line.strip() == "Service: ipam"), None)
    return [] if at is None else [line for line in lines[at:at + 4]]


def check_quiet_logs(mesh: Mesh, checks: Checks, nodes: Iterable[int], when: str) -> None:
    nodes = list(nodes)
    running = [i for i in nodes if mesh.lab.process(i).running()]
    checks.check(running == nodes, f"{when}: the weavers of nodes {nodes} are running"
                 + ("" if running == nodes else f" (only {running})"))
    go_bad = {i: mesh.go_ipam_drops(i) for i in nodes if i in mesh.go}
    ours_bad = {i: mesh.our_problems(i) for i in nodes if i not in mesh.go}
    for i, lines in {**go_bad, **ours_bad}.items():
        for line in lines[:5]:
            checks.info(f"{mesh.label(i)} log: {line}")
    checks.check(not any(go_bad.values()),
                 f"{when}: no Go log line of an IPAM error or connection dropped for IPAM "
                 f"(Go nodes {sorted(go_bad)})")
    checks.check(not any(ours_bad.values()),
                 f"{when}: no ring conflict, refusal, malformed message or traceback in our "
                 f"logs (nodes {sorted(ours_bad)})")


def check_logs_only(mesh: Mesh, checks: Checks, nodes: Iterable[int], when: str) -> None:
    """:func:`check_quiet_logs` without the check that the weavers still run."""
    nodes = list(nodes)
    bad = {i: mesh.go_ipam_drops(i) if i in mesh.go else mesh.our_problems(i) for i in nodes}
    for i, lines in bad.items():
        for line in lines[:5]:
            checks.info(f"{mesh.label(i)} log: {line}")
    checks.check(not any(bad.values()), f"{when}: no IPAM error, panic, ring conflict or "
                 f"traceback in the logs of nodes {nodes}")


def check_allocations(mesh: Mesh, checks: Checks, nodes: Sequence[int],
                      expected: dict[str, str], when: str) -> None:
    problems = unique(expected)
    held, twice = mesh.everything_owned(nodes)
    checks.check(not problems and not twice,
                 f"{when}: {len(expected)} allocations, no address given twice"
                 + (f" ({'; '.join((problems + twice)[:5])})" if problems or twice else ""))
    missing = {k: v for k, v in expected.items() if held.get(k) != v}
    extra = sorted(set(held) - set(expected))
    checks.check(not missing and not extra,
                 f"{when}: GET /ip on {len(nodes)} nodes lists exactly the {len(expected)} "
                 f"allocations" + (f" (missing or other: {list(missing.items())[:3]}, "
                                   f"unexpected: {extra[:3]})" if missing or extra else ""))
    problems = unique(held)
    checks.check(not problems, f"{when}: GET /ip of every node, {len(held)} addresses, none "
                 "twice" + (f" ({'; '.join(problems[:5])})" if problems else ""))


def wait_rings(mesh: Mesh, checks: Checks, nodes: Sequence[int], when: str,
               timeout: float = 120.0) -> Ring | None:
    """Ownership first, then the full entries (versions included), which can take one
    periodic gossip (30 s) since free-count updates are not broadcast."""
    started = time.monotonic()
    try:
        wait_until(lambda: mesh.rings_agree(nodes, versions=False), timeout,
                   "ring owners to agree", 0.5)
    except TimeoutError:
        for i in nodes:
            checks.info(f"{mesh.label(i)} ring: {mesh.owners(i)}")
        checks.fail(f"{when}: ring owners agree on nodes {list(nodes)} (not in {timeout:g}s)")
        return None
    owners_at = time.monotonic() - started
    try:
        ring = wait_until(lambda: mesh.rings_agree(nodes), timeout, "rings to agree", 0.5)
    except TimeoutError:
        for i in nodes:
            checks.info(f"{mesh.label(i)} ring: {mesh.ring(i)}")
        checks.fail(f"{when}: ring entries with versions agree on nodes {list(nodes)} (owners "
                    f"after {owners_at:.1f}s, versions not in {timeout:g}s)")
        return None
    kinds = ", ".join(f"{i}:{mesh.kind(i)}" for i in nodes)
    checks.ok(f"{when}: one ring on nodes [{kinds}]: {len(ring)} entries, owners agree "
              f"after {owners_at:.1f}s, versions too after {time.monotonic() - started:.1f}s")
    counts: dict[str, int] = {}
    for _, size, peer, _ in ring:
        counts[peer] = counts.get(peer, 0) + size
    checks.info("owners: " + ", ".join(f"{p}={n}" for p, n in sorted(counts.items())))
    return ring


def compare_status(mesh: Mesh, checks: Checks, nodes: Sequence[int], when: str) -> None:
    """``/status/ipam`` and the ipam section of ``/status`` of every node, side by side."""
    pages: dict[int, dict[str, tuple[str, int, str, str]]] = {}
    texts: dict[int, str] = {}
    ok = True
    for i in nodes:
        texts[i] = mesh.lab.status(i, "ipam")
        try:
            pages[i] = owner_lines(texts[i])
        except ValueError as exc:
            checks.fail(f"{when}: /status/ipam of {mesh.label(i)} in Go's format: {exc}")
            ok = False
    for i in nodes:
        print(f"--- {mesh.label(i)} /status/ipam\n{texts[i].rstrip()}")
    if not ok:
        return
    counts = {i: {p: (nick, ips) for p, (nick, ips, _, _) in page.items()}
              for i, page in pages.items()}
    first = counts[nodes[0]]
    checks.check(all(c == first for c in counts.values()),
                 f"{when}: /status/ipam owners, nicknames and counts agree on "
                 f"{len(nodes)} nodes ({len(first)} owners, "
                 f"{sum(n for _, n in first.values())} IPs)")
    # The local peer's line carries "(N active)"; a peer remote to both nodes of a Go/ours
    # pair must print the very same line.
    lines = {i: {m["name"]: line for line in texts[i].splitlines()
                 if (m := OWNER_LINE.match(line))} for i in nodes}
    compared = differ = 0
    for g in (i for i in nodes if i in mesh.go):
        for o in (i for i in nodes if i not in mesh.go):
            for peer, line in lines[g].items():
                if peer in (peer_name(g), peer_name(o)) or peer not in lines[o]:
                    continue
                compared += 1
                if lines[o][peer] != line:
                    differ += 1
                    checks.info(f"Go  {mesh.label(g)}: {line!r}")
                    checks.info(f"ours {mesh.label(o)}: {lines[o][peer]!r}")
    checks.check(differ == 0, f"{when}: {compared} /status/ipam lines of a third peer "
                 f"compared Go vs ours, {differ} differ")
    locals_ok = all(pages[i].get(peer_name(i), ("", 0, "", ""))[3].endswith(" active)")
                    for i in nodes if peer_name(i) in pages[i])
    checks.check(locals_ok, f"{when}: each node's own line says '(N active)'")
    shapes = {}
    entries = {}
    for i in nodes:
        ipam = mesh.report(i)["IPAM"]
        shapes[i] = (tuple(ipam), tuple(sorted({k for e in ipam["Entries"] or [] for k in e})))
        entries[i] = ipam["Entries"]
    checks.check(all(s == shapes[nodes[0]] for s in shapes.values()),
                 f"{when}: /report IPAM has the same fields on every node: "
                 f"{', '.join(shapes[nodes[0]][0])}; entries: {', '.join(shapes[nodes[0]][1])}")
    checks.check(all(e == entries[nodes[0]] for e in entries.values()),
                 f"{when}: /report IPAM.Entries identical on every node, all fields "
                 f"({len(entries[nodes[0]] or [])} entries)")
    sections = {i: ipam_section(mesh.lab.status(i)) for i in nodes}
    same = all(s == sections[nodes[0]] and s for s in sections.values())
    checks.check(same, f"{when}: /status ipam section identical on every node: "
                 + " | ".join(line.strip() for line in sections[nodes[0]]))
    if not same:
        for i in nodes:
            checks.info(f"{mesh.label(i)}: {sections[i]}")


def range_of(ring: Ring, peer: str) -> list[ipaddress.IPv4Network]:
    """The aligned blocks ``peer`` owns in ``ring``."""
    blocks: list[ipaddress.IPv4Network] = []
    for token, size, owner, _ in ring:
        if owner == peer and size:
            first = ipaddress.IPv4Address(token)
            blocks += ipaddress.summarize_address_range(first, first + size - 1)
    return blocks


def owner_of(ring: Ring, address: ipaddress.IPv4Address) -> str | None:
    for token, size, owner, _ in ring:
        first = ipaddress.IPv4Address(token)
        if first <= address < first + size:
            return owner
    return None


def free_subnet(ring: Ring, peer: str, taken: Iterable[str], prefix: int
                ) -> ipaddress.IPv4Network | None:
    """A subnet of ``peer``'s, /prefix or else as large as there is (down to /28), with
    nothing allocated in it."""
    used = {ipaddress.IPv4Address(c.split("/")[0]) for c in taken}
    blocks = sorted(range_of(ring, peer), key=lambda b: -b.num_addresses)
    for length in range(prefix, 29):
        for block in blocks:
            if block.prefixlen > length:
                continue
            for subnet in reversed(list(block.subnets(new_prefix=length))):
                if not any(a in subnet for a in used):
                    return subnet
    return None


def free_address(ring: Ring, peer: str, taken: Iterable[str]) -> ipaddress.IPv4Address:
    used = {c.split("/")[0] for c in taken}
    for block in range_of(ring, peer):
        for address in reversed(list(block.hosts())):
            if str(address) not in used:
                return address
    raise Failed(f"no free address in {peer}'s range")


def claimed_everywhere(mesh: Mesh, nodes: Sequence[int], address: ipaddress.IPv4Address,
                       owner: str) -> bool:
    return all(owner_of(mesh.ring(i), address) == owner for i in nodes)


def timed(probe: Callable[[], Any], timeout: float, what: str) -> float:
    started = time.monotonic()
    wait_until(probe, timeout, what, 0.2)
    return time.monotonic() - started


# ---- run A ------------------------------------------------------------------------------

def run_a(checks: Checks, logs: Path | None) -> None:
    print("===== run A: ours on nodes 0 and 2, Go on node 1 (seeds, consensus=3); "
          "Go on 3 and ours on 4 join later")
    with GoLab(nodes=5) as lab:
        mesh = Mesh(lab, go=(1, 3), checks=checks, logs=logs)
        try:
            steps_a(mesh)
        finally:
            mesh.crashes()
            mesh.save_logs("A")
    print("===== run A done")


def steps_a(mesh: Mesh) -> None:
    lab, checks = mesh.lab, mesh.checks
    seeds = [0, 1, 2]
    for i in seeds:
        mesh.start(i, [j for j in seeds if j != i], SEED_INIT)
    lab.wait_ready(seeds)
    took = timed(lambda: mesh.full_mesh(seeds), 60, "a full mesh of the seeds")
    checks.info(f"mesh of the seeds established in {took:.1f}s")
    for i in seeds:
        checks.check("Status: idle" in lab.status(i),
                     f"{mesh.label(i)}: ipam 'Status: idle' before any request")

    # 1. consensus with requests on both kinds at once
    jobs = [(i, f"c{i}-{n}") for n in range(30) for i in seeds]
    started = time.monotonic()
    with ThreadPoolExecutor(len(seeds)) as pool:
        firsts = list(pool.map(lambda i: mesh.allocate(i, f"first-{i}"), seeds))
    first_done = time.monotonic() - started
    allocated = {f"first-{i}": text for i, (status, text, _) in zip(seeds, firsts, strict=True)
                 if status == 200}
    for i, (status, text, secs) in zip(seeds, firsts, strict=True):
        checks.check(status == 200, f"consensus: first allocation on {mesh.label(i)} "
                     f"answered {status} {text!r} after {secs:.2f}s")
    if len(allocated) != len(seeds):
        raise Failed("no consensus")
    checks.ok(f"consensus: all three first allocations done in {first_done:.2f}s "
              f"(fastest {min(f[2] for f in firsts):.2f}s)")
    for i in seeds:
        checks.info(f"{mesh.label(i)} ring right after consensus: {mesh.ring(i)}")
    more, failures, slowest = mesh.allocate_many(jobs)
    allocated |= more
    checks.check(not failures, f"allocations: {len(more)}/{len(jobs)} more on the three "
                 f"at once (30 each), slowest {slowest:.2f}s"
                 + (f"; failures: {failures[:3]}" if failures else ""))

    # 2. no address twice, one ring
    check_allocations(mesh, checks, seeds, allocated, "after consensus")
    ring = wait_rings(mesh, checks, seeds, "after consensus")
    for i in seeds:
        checks.check("Status: ready" in lab.status(i), f"{mesh.label(i)}: 'Status: ready'")

    # 3. status side by side
    compare_status(mesh, checks, seeds, "after consensus")
    check_quiet_logs(mesh, checks, seeds, "after consensus")
    if ring is None:
        raise Failed("no common ring")

    # 4. donations across kinds: late nodes with no space, each asks in a subnet that
    # only the other kind owns space in
    for i in (3, 4):
        mesh.start(i, seeds, None)
    lab.wait_ready([3, 4])
    took = timed(lambda: mesh.full_mesh([*seeds, 3, 4]), 60, "a full mesh of five")
    checks.info(f"late nodes 3 (Go) and 4 (ours) joined; full mesh in {took:.1f}s")
    took = timed(lambda: mesh.rings_agree([*seeds, 3, 4], versions=False), 60,
                 "the late nodes to learn the ring")
    checks.ok(f"late nodes learnt the ring by gossip in {took:.1f}s; they own nothing: "
              f"{all(peer_name(i) not in {p for _, _, p in mesh.owners(0)} for i in (3, 4))}")
    ring = mesh.ring(0)
    for late, donor in ((3, 0), (4, 1)):
        subnet = free_subnet(ring, peer_name(donor), allocated.values(), 24)
        if subnet is None:
            checks.fail(f"donation: no free subnet of {mesh.label(donor)} for node{late}")
            continue
        ident = f"late-{late}"
        status, text, secs = mesh.allocate(late, ident, str(subnet))
        got = ipaddress.IPv4Interface(text).ip if status == 200 else None
        after = mesh.ring(late)
        gained = range_of(after, peer_name(late))
        ok = (got is not None and got in subnet and bool(gained)
              and owner_of(after, got) == peer_name(late))
        if ok:
            allocated[ident] = text
        checks.check(ok, f"donation: {mesh.label(late)} allocated {text!r} in {subnet} "
                     f"(only {mesh.label(donor)} had space there) in {secs:.2f}s; it now "
                     f"owns {', '.join(map(str, gained))}")
        status, text, secs = mesh.allocate(late, f"{ident}-default")
        if status == 200:
            allocated[f"{ident}-default"] = text
        checks.check(status == 200, f"donation: {mesh.label(late)} default-subnet "
                     f"allocation {status} {text!r} in {secs:.2f}s")
    nodes = [*seeds, 3, 4]
    more, failures, slowest = mesh.allocate_many(
        [(i, f"d{i}-{n}") for n in range(20) for i in nodes])
    allocated |= more
    checks.check(not failures, f"allocations: {len(more)} more on all five at once, "
                 f"slowest {slowest:.2f}s" + (f"; {failures[:3]}" if failures else ""))
    check_allocations(mesh, checks, nodes, allocated, "after donations")
    ring = wait_rings(mesh, checks, nodes, "after donations") or mesh.ring(0)

    # 5. claims across kinds
    for claimer, owner in ((0, 1), (1, 0)):
        wanted = free_address(ring, peer_name(owner), allocated.values())
        ident = f"claim-{claimer}"
        started = time.monotonic()
        reply = lab.http(claimer, "PUT", f"/ip/{ident}/{wanted}/{RANGE.prefixlen}",
                         timeout=HTTP_TIMEOUT)
        secs = time.monotonic() - started
        holds = mesh.owned(claimer).get(ident)
        cidr = f"{wanted}/{RANGE.prefixlen}"
        if reply.status == 204:
            allocated[ident] = cidr
        try:
            wait_until(partial(claimed_everywhere, mesh, nodes, wanted, peer_name(claimer)),
                       30, "the claim in the rings")
            moved = True
        except TimeoutError:
            moved = False
        checks.check(reply.status == 204 and holds == [cidr] and moved,
                     f"claim: PUT on {mesh.label(claimer)} of {wanted} in "
                     f"{mesh.label(owner)}'s range: {reply.status} in {secs:.2f}s, "
                     f"GET /ip holds {holds}, every ring says {peer_name(claimer)} owns "
                     f"it: {moved}")
        other = 4 if claimer == 0 else 3
        reply = lab.http(other, "PUT", f"/ip/again-{other}/{wanted}/{RANGE.prefixlen}",
                         timeout=HTTP_TIMEOUT)
        checks.check(reply.status == 400, f"claim: the same address claimed on "
                     f"{mesh.label(other)} is refused: {reply.status} {reply.text.strip()!r}")
    # a claim of an address the other kind has given out: the owner denies it
    # (SpaceRequestDenied), so the claim fails at once rather than at its deadline
    for claimer, owner in ((0, 1), (1, 0)):
        taken = allocated[f"first-{owner}"].split("/")[0]
        started = time.monotonic()
        reply = lab.http(claimer, "PUT", f"/ip/denied-{claimer}/{taken}/{RANGE.prefixlen}",
                         timeout=HTTP_TIMEOUT)
        secs = time.monotonic() - started
        text = reply.text.strip()
        expected = (f"Unable to claim: address {taken}/{RANGE.prefixlen} is owned by other "
                    f"peer {peer_name(owner)} (node{owner})")
        checks.check(reply.status == 400 and text == expected and secs < 4,
                     f"claim denied: PUT on {mesh.label(claimer)} of {taken}, given out by "
                     f"{mesh.label(owner)}: {reply.status} {text!r} in {secs:.2f}s")
    check_allocations(mesh, checks, nodes, allocated, "after claims")
    ring = wait_rings(mesh, checks, nodes, "after claims") or mesh.ring(0)
    compare_status(mesh, checks, nodes, "five nodes")
    check_quiet_logs(mesh, checks, nodes, "after donations and claims")

    # a crash of one of each kind: both come back with their persisted ring and addresses
    crashed = [1, 2]
    for i in crashed:
        lab.kill(i)
    time.sleep(1)
    for i in crashed:
        lab.process(i).start()
    lab.wait_ready(crashed)
    took = timed(lambda: mesh.full_mesh(nodes), 90, "the mesh after the restarts")
    checks.info(f"node1 (Go) and node2 (ours) killed and restarted; full mesh in {took:.1f}s")
    check_allocations(mesh, checks, nodes, allocated, "after the crash and restart")
    more, failures, slowest = mesh.allocate_many(
        [(i, f"k{i}-{n}") for n in range(20) for i in nodes])
    allocated |= more
    checks.check(not failures, f"after the crash and restart: {len(more)} more allocations, "
                 f"slowest {slowest:.2f}s" + (f"; {failures[:3]}" if failures else ""))
    check_allocations(mesh, checks, nodes, allocated, "after the crash and restart")
    wait_rings(mesh, checks, nodes, "after the crash and restart")
    check_quiet_logs(mesh, checks, nodes, "after the crash and restart")

    # 6. rmpeer across kinds: the Go seed dies for good; ours takes its ranges
    rmpeer_step(mesh, checks, allocated, dead=1, remover=0, nodes=nodes)
    nodes = [0, 2, 3, 4]
    # ... and one of ours dies; the late Go node takes its ranges
    rmpeer_step(mesh, checks, allocated, dead=2, remover=3, nodes=nodes)
    nodes = [0, 3, 4]
    compare_status(mesh, checks, nodes, "after both rmpeers")
    check_quiet_logs(mesh, checks, nodes, "after both rmpeers")

    # 7. the late Go node leaves (``weave reset``'s DELETE /peer): its heir is one of ours
    leave_step(mesh, checks, allocated, leaver=3, nodes=nodes)
    check_quiet_logs(mesh, checks, nodes, "end of run A")
    check_logs_only(mesh, checks, range(5), "run A, every node that ran")


def rmpeer_step(mesh: Mesh, checks: Checks, allocated: dict[str, str], dead: int,
                remover: int, nodes: list[int]) -> None:
    lab = mesh.lab
    lost = set(mesh.owned(dead))
    dead_name = peer_name(dead)
    survivors = [i for i in nodes if i != dead]
    lab.kill(dead)
    took = timed(lambda: all(dead_name not in mesh.peers_seen(i) for i in survivors), 90,
                 f"{dead_name} to be forgotten")
    checks.info(f"{mesh.label(dead)} killed; forgotten by the survivors in {took:.1f}s")
    started = time.monotonic()
    reply = lab.http(remover, "DELETE", f"/peer/{dead_name}", timeout=30)
    text = reply.text.strip()
    m = re.fullmatch(rf"(\d+) IPs taken over from {re.escape(dead_name)}", text)
    checks.check(reply.status == 200 and m is not None and int(m[1]) > 0,
                 f"rmpeer: DELETE /peer/{dead_name} on {mesh.label(remover)}: "
                 f"{reply.status} {text!r}")
    when = f"after rmpeer of {mesh.label(dead)} on {mesh.label(remover)}"
    ring = wait_rings(mesh, checks, survivors, when)
    if ring is not None:
        left = [e for e in ring if e[2] == dead_name and e[1]]
        checks.check(not left, f"{when}: no range left to {dead_name} "
                     f"({time.monotonic() - started:.1f}s after the rmpeer)")
    for ident in lost:
        allocated.pop(ident, None)
    time.sleep(TAKEOVER_SETTLE + 1)  # ours use the ranges taken over only then
    more, failures, slowest = mesh.allocate_many(
        [(i, f"r{dead}-{i}-{n}") for n in range(40) for i in survivors])
    allocated |= more
    checks.check(not failures, f"{when}: {len(more)} more allocations on the survivors, "
                 f"slowest {slowest:.2f}s" + (f"; {failures[:3]}" if failures else ""))
    check_allocations(mesh, checks, survivors, allocated, when)
    ring = mesh.ring(remover)
    taken_over = [b for b in range_of(ring, peer_name(remover))]
    used = sum(1 for a in more.values() if any(ipaddress.IPv4Interface(a).ip in b
                                                 for b in taken_over))
    checks.info(f"{used} of the new allocations are in {mesh.label(remover)}'s ranges now")
    wait_rings(mesh, checks, survivors, f"{when}, after allocations")
    nodes[:] = survivors


def leave_step(mesh: Mesh, checks: Checks, allocated: dict[str, str], leaver: int,
               nodes: list[int]) -> None:
    lab = mesh.lab
    name = peer_name(leaver)
    before = {peer: sum(size for _, size, p, _ in mesh.ring(nodes[0]) if p == peer)
              for peer in map(peer_name, nodes)}
    lost = set(mesh.owned(leaver))
    reply = lab.http(leaver, "DELETE", "/peer", timeout=30)
    checks.check(reply.status == 204, f"leave: DELETE /peer on {mesh.label(leaver)}: "
                 f"{reply.status}")
    survivors = [i for i in nodes if i != leaver]
    when = f"after {mesh.label(leaver)} left"
    try:
        took = timed(lambda: all(name not in {p for _, size, p in mesh.owners(i) if size}
                                 for i in nodes), 30, "the leaver's ranges to move")
    except TimeoutError:
        checks.fail(f"{when}: its ranges moved to an heir on every node (not in 30s)")
        return
    after = {peer: sum(size for _, size, p, _ in mesh.ring(survivors[0]) if p == peer)
             for peer in map(peer_name, survivors)}
    heirs = [mesh.label(i) for i in survivors if after[peer_name(i)] > before[peer_name(i)]]
    checks.ok(f"{when}: its {before[name]} addresses went to {', '.join(heirs)} on every node "
              f"in {took:.1f}s")
    lab.stop(leaver)
    for ident in lost:
        allocated.pop(ident, None)
    wait_rings(mesh, checks, survivors, when)
    more, failures, slowest = mesh.allocate_many(
        [(i, f"l{leaver}-{i}-{n}") for n in range(40) for i in survivors])
    allocated |= more
    checks.check(not failures, f"{when}: {len(more)} more allocations on the survivors, "
                 f"slowest {slowest:.2f}s" + (f"; {failures[:3]}" if failures else ""))
    check_allocations(mesh, checks, survivors, allocated, when)
    nodes[:] = survivors


# ---- run B ------------------------------------------------------------------------------

def run_b(checks: Checks, logs: Path | None) -> None:
    print("===== run B: Go on nodes 0 and 2, ours on node 1 (consensus=3)")
    with GoLab(nodes=3) as lab:
        mesh = Mesh(lab, go=(0, 2), checks=checks, logs=logs)
        try:
            steps_b(mesh)
        finally:
            mesh.crashes()
            mesh.save_logs("B")
    print("===== run B done")


def steps_b(mesh: Mesh) -> None:
    lab, checks = mesh.lab, mesh.checks
    nodes = [0, 1, 2]
    # Go on 0 and ours on 1 know only node 2, which is not there yet: each waits alone
    early = [0, 1]
    for i in early:
        mesh.start(i, [2], SEED_INIT)
    lab.wait_ready(early)
    pool = ThreadPoolExecutor(len(early))
    waiting = [pool.submit(mesh.allocate, i, f"early-{i}") for i in early]
    awaiting = "Status: awaiting consensus (quorum: 2, known: 1)"
    try:
        wait_until(lambda: all(awaiting in lab.status(i) for i in early), 20, "awaiting")
        checks.ok(f"run B: alone, Go and ours both say '{awaiting}'")
    except TimeoutError:
        checks.fail(f"run B: alone, Go and ours both say '{awaiting}'")
    ipams = {i: mesh.report(i)["IPAM"] for i in early}
    paxos = {i: ipam["Paxos"] for i, ipam in ipams.items()}
    checks.check(paxos[0] == paxos[1], f"run B: /report IPAM.Paxos alike: Go {paxos[0]}, "
                 f"ours {paxos[1]}")
    pending = {i: ipam["PendingAllocates"] for i, ipam in ipams.items()}
    checks.check(all(pending[i] == [f"early-{i} {RANGE}"] for i in early),
                 f"run B: /report IPAM.PendingAllocates alike: Go {pending[0]}, ours "
                 f"{pending[1]}")
    sections = {i: ipam_section(lab.status(i)) for i in early}
    checks.check(sections[0] == sections[1], "run B: /status ipam sections identical while "
                 "awaiting consensus")
    checks.check(all(lab.status(i, "ipam") == "" for i in early),
                 "run B: /status/ipam empty on both before the ring exists")
    started = time.monotonic()
    mesh.start(2, early, SEED_INIT)
    lab.wait_ready([2])
    allocated: dict[str, str] = {}
    for i, future in zip(early, waiting, strict=True):
        status, text, _ = future.result()
        if status == 200:
            allocated[f"early-{i}"] = text
        checks.check(status == 200, f"run B: the waiting request on {mesh.label(i)} answered "
                     f"{status} {text!r} {time.monotonic() - started:.2f}s after node2 (Go) "
                     "started")
    pool.shutdown()
    timed(lambda: mesh.full_mesh(nodes), 60, "a full mesh")
    started = time.monotonic()
    more, failures, slowest = mesh.allocate_many(
        [(i, f"b{i}-{n}") for n in range(40) for i in nodes])
    allocated |= more
    checks.check(not failures, f"run B: {len(more)} allocations on all three at once in "
                 f"{time.monotonic() - started:.2f}s, slowest {slowest:.2f}s"
                 + (f"; {failures[:3]}" if failures else ""))
    check_allocations(mesh, checks, nodes, allocated, "run B")
    wait_rings(mesh, checks, nodes, "run B")
    compare_status(mesh, checks, nodes, "run B")
    check_quiet_logs(mesh, checks, nodes, "run B")
    # ours leaves: both possible heirs are Go
    leave_step(mesh, checks, allocated, leaver=1, nodes=nodes)
    check_quiet_logs(mesh, checks, nodes, "end of run B")
    check_logs_only(mesh, checks, [0, 1, 2], "run B, every node that ran")


# ---- run C ------------------------------------------------------------------------------

def run_c(checks: Checks, logs: Path | None) -> None:
    print("===== run C: electors ours (node 0) and Go (node 1), consensus=2; observers Go "
          "(node 2) and ours (node 3) ask for the ring")
    with GoLab(nodes=4) as lab:
        mesh = Mesh(lab, go=(1, 2), checks=checks, logs=logs)
        try:
            steps_c(mesh)
        finally:
            mesh.crashes()
            mesh.save_logs("C")
    print("===== run C done")


def steps_c(mesh: Mesh) -> None:
    lab, checks = mesh.lab, mesh.checks
    nodes = [0, 1, 2, 3]
    for i in nodes:
        mesh.start(i, [j for j in nodes if j != i],
                   "consensus=2" if i in (0, 1) else "observer")
    lab.wait_ready(nodes)
    timed(lambda: mesh.full_mesh(nodes), 60, "a full mesh")
    observers = [2, 3]
    started = time.monotonic()
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda i: mesh.allocate(i, f"obs-{i}"), observers))
    allocated = {}
    for i, (status, text, secs) in zip(observers, answers, strict=True):
        if status == 200:
            allocated[f"obs-{i}"] = text
        checks.check(status == 200, f"run C: the first request, on observer "
                     f"{mesh.label(i)}, made the electors agree: {status} {text!r} in "
                     f"{secs:.2f}s")
    seeds = sorted({p for _, size, p in mesh.owners(0) if size})
    checks.info(f"ring after {time.monotonic() - started:.2f}s: owners {seeds}")
    more, failures, slowest = mesh.allocate_many(
        [(i, f"c{i}-{n}") for n in range(25) for i in nodes])
    allocated |= more
    checks.check(not failures, f"run C: {len(more)} allocations on all four at once, slowest "
                 f"{slowest:.2f}s" + (f"; {failures[:3]}" if failures else ""))
    check_allocations(mesh, checks, nodes, allocated, "run C")
    wait_rings(mesh, checks, nodes, "run C")
    compare_status(mesh, checks, nodes, "run C")
    check_quiet_logs(mesh, checks, nodes, "run C")


# ---- run D ------------------------------------------------------------------------------

def run_d(checks: Checks, logs: Path | None) -> None:
    print("===== run D: ours on 0 and 2, Go on 1 and 3 (consensus=4), 0-2 and 1-3 blocked: "
          "unicasts between two of a kind go through the other kind")
    with GoLab(nodes=4) as lab:
        mesh = Mesh(lab, go=(1, 3), checks=checks, logs=logs)
        try:
            steps_d(mesh)
        finally:
            mesh.crashes()
            mesh.save_logs("D")
    print("===== run D done")


def steps_d(mesh: Mesh) -> None:
    lab, checks = mesh.lab, mesh.checks
    nodes = [0, 1, 2, 3]
    lab.block(0, 2)
    lab.block(1, 3)
    for i in nodes:
        mesh.start(i, [j for j in nodes if j != i], "consensus=4")
    lab.wait_ready(nodes)
    far = {0: 2, 1: 3, 2: 0, 3: 1}

    def routes(i: int) -> dict[str, str]:
        return {r["Dest"]: r["Via"] for r in mesh.report(i)["Router"]["UnicastRoutes"] or []}

    took = timed(lambda: all(mesh.established(i) == 2 for i in nodes)
                 and all(routes(i).get(peer_name(far[i])) not in (None, peer_name(far[i]))
                         for i in nodes), 60, "the mesh and its routes")
    checks.info(f"mesh of four with 0-2 and 1-3 blocked in {took:.1f}s; unicast routes: "
                + ", ".join(f"node{i} -> node{far[i]} via {routes(i)[peer_name(far[i])]}"
                            for i in nodes))
    allocated, failures, slowest = mesh.allocate_many(
        [(i, f"d{i}-{n}") for n in range(30) for i in nodes])
    checks.check(not failures, f"run D: {len(allocated)} allocations on all four at once "
                 f"(consensus on the way), slowest {slowest:.2f}s"
                 + (f"; {failures[:3]}" if failures else ""))
    check_allocations(mesh, checks, nodes, allocated, "run D")
    ring = mesh.ring(0)
    # a claim, a denied claim and a donation between the two of a kind that are not
    # neighbours: SpaceRequest, SpaceRequestDenied and RingUpdate relayed by the other kind
    for asker, owner in ((0, 2), (1, 3)):
        wanted = free_address(ring, peer_name(owner), allocated.values())
        started = time.monotonic()
        reply = lab.http(asker, "PUT", f"/ip/relay-claim-{asker}/{wanted}/{RANGE.prefixlen}",
                         timeout=HTTP_TIMEOUT)
        secs = time.monotonic() - started
        if reply.status == 204:
            allocated[f"relay-claim-{asker}"] = f"{wanted}/{RANGE.prefixlen}"
        checks.check(reply.status == 204, f"run D: claim on {mesh.label(asker)} of {wanted} "
                     f"in non-neighbour {mesh.label(owner)}'s range: {reply.status} "
                     f"{reply.text.strip()!r} in {secs:.2f}s")
        given = next(a for ident, a in allocated.items() if ident.startswith(f"d{owner}-"))
        taken = given.split("/")[0]
        started = time.monotonic()
        reply = lab.http(asker, "PUT", f"/ip/relay-denied-{asker}/{taken}/{RANGE.prefixlen}",
                         timeout=HTTP_TIMEOUT)
        secs = time.monotonic() - started
        checks.check(reply.status == 400 and secs < 4,
                     f"run D: claim on {mesh.label(asker)} of {taken}, given out by "
                     f"{mesh.label(owner)}: denied, {reply.status} {reply.text.strip()!r} in "
                     f"{secs:.2f}s")
        subnet = free_subnet(mesh.ring(asker), peer_name(owner), allocated.values(), 24)
        if subnet is None:
            checks.fail(f"run D: no free subnet of {mesh.label(owner)}")
            continue
        status, text, secs = mesh.allocate(asker, f"relay-donation-{asker}", str(subnet))
        if status == 200:
            allocated[f"relay-donation-{asker}"] = text
        checks.check(status == 200 and ipaddress.IPv4Interface(text).ip in subnet,
                     f"run D: {mesh.label(asker)} allocated in {subnet}, where only "
                     f"non-neighbour {mesh.label(owner)} had space: {status} {text!r} in "
                     f"{secs:.2f}s")
    check_allocations(mesh, checks, nodes, allocated, "run D, after relayed requests")
    wait_rings(mesh, checks, nodes, "run D")
    check_quiet_logs(mesh, checks, nodes, "run D")


# ---- run E ------------------------------------------------------------------------------

def run_e(checks: Checks, logs: Path | None) -> None:
    print("===== run E: ours on 0 and 2, Go on 1, ours on 3 (consensus=4); node 3 dies and "
          "is rmpeer'd on all three survivors at once")
    with GoLab(nodes=4) as lab:
        mesh = Mesh(lab, go=(1,), checks=checks, logs=logs)
        try:
            steps_e(mesh)
        finally:
            mesh.crashes()
            mesh.save_logs("E")
    print("===== run E done")


def steps_e(mesh: Mesh) -> None:
    """The original forbids rmpeer of one peer on two survivors at once (each keeps its own
    takeover on the tie). Ours settle it among themselves by peer name, and report no free
    space in ranges still settling, so a Go survivor's takeover (which reports its free
    space) wins everywhere: one ring, no address twice, whatever the names' order (the Go
    peer's name lies between the two of ours)."""
    lab, checks = mesh.lab, mesh.checks
    nodes = [0, 1, 2, 3]
    for i in nodes:
        mesh.start(i, [j for j in nodes if j != i], "consensus=4")
    lab.wait_ready(nodes)
    timed(lambda: mesh.full_mesh(nodes), 60, "a full mesh")
    allocated, failures, _ = mesh.allocate_many(
        [(i, f"e{i}-{n}") for n in range(20) for i in nodes])
    checks.check(not failures, f"run E: {len(allocated)} allocations on all four"
                 + (f"; {failures[:3]}" if failures else ""))
    dead, survivors = 3, [0, 1, 2]
    lost = set(mesh.owned(dead))
    lab.kill(dead)
    timed(lambda: all(peer_name(dead) not in mesh.peers_seen(i) for i in survivors), 90,
          "the dead peer to be forgotten")
    # each takes over before it hears of the others' takeovers: their traffic is held up
    # for a moment (TCP retransmits it after the heal; the connections survive)
    pairs = [(a, b) for a in survivors for b in survivors if a < b]
    for a, b in pairs:
        lab.block(a, b)
    with ThreadPoolExecutor(len(survivors)) as pool:
        replies = list(pool.map(lambda i: lab.http(i, "DELETE", f"/peer/{peer_name(dead)}",
                                                   timeout=30), survivors))
    time.sleep(1)
    for a, b in pairs:
        lab.heal(a, b)
    checks.check(all(r.status == 200 and r.text.split()[0] not in ("", "0") for r in replies),
                 "run E: rmpeer on all three survivors at once, each taking the ranges: "
                 + "; ".join(f"{mesh.label(i)} {r.text.strip()!r}"
                             for i, r in zip(survivors, replies, strict=True)))
    for ident in lost:
        allocated.pop(ident, None)
    ring = wait_rings(mesh, checks, survivors, "run E, after the rmpeers")
    if ring is not None:
        left = sum(size for _, size, peer, _ in ring if peer == peer_name(dead))
        checks.check(left == 0, f"run E: nothing left to the dead peer ({left} addresses)")
    time.sleep(TAKEOVER_SETTLE + 1)  # ours use the ranges taken over only then
    more, failures, slowest = mesh.allocate_many(
        [(i, f"e-after-{i}-{n}") for n in range(60) for i in survivors])
    allocated |= more
    checks.check(not failures, f"run E: {len(more)} more allocations on the survivors, "
                 f"slowest {slowest:.2f}s" + (f"; {failures[:3]}" if failures else ""))
    check_allocations(mesh, checks, survivors, allocated, "run E, after the rmpeers")
    wait_rings(mesh, checks, survivors, "run E, after allocations")
    check_quiet_logs(mesh, checks, survivors, "run E")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("A", "B", "C", "D", "E"))
    parser.add_argument("--logs", type=Path, help="copy every agent's log to this directory")
    args = parser.parse_args(argv)
    exit_on_sigterm()
    checks = Checks()
    for name, run in (("A", run_a), ("B", run_b), ("C", run_c), ("D", run_d),
                      ("E", run_e)):
        if args.only in (None, name):
            try:
                run(checks, args.logs)
            except (Failed, TimeoutError) as exc:
                checks.fail(f"run {name} stopped: {exc}")
            except Exception as exc:  # e.g. a weaver that died: its API resets
                traceback.print_exc()
                checks.fail(f"run {name} stopped: {type(exc).__name__}: {exc}")
    verdict = "FAIL" if checks.failures else "PASS"
    print(f"===== {verdict}: {checks.passes} checks passed, {len(checks.failures)} failed")
    for line in checks.failures:
        print(f"  FAIL {line}")
    return 1 if checks.failures else 0


if __name__ == "__main__":
    sys.exit(main())
