"""Capture reference data from a running Go mesh into ``tests/interop/data/``.

Run as root after ``tests/interop/build-go-weave.sh``::

    /work/main/.venv/bin/python -m tests.interop.capture_go_facts [--only http|wire|cli]

* ``go-http-{password,plain}.json`` (+ ``.txt``, the same rendered for reading):
  status code, content type and exact body of the HTTP API of a 3-peer mesh, in
  phases: before IPAM consensus, the first allocation, after consensus (IPAM
  calls, ``/connect``, ``/forget``), a peer stopped, ``rmpeer``, ``DELETE /peer``.
  ``/metrics`` bodies keep only the ``weave_*`` lines.
* ``go-wire-plain.json``: the first ~35 s of both directions of one TCP
  connection between two Go peers without password, relayed by
  :class:`tests.interop.tcprelay.TcpRelay` (an iptables REDIRECT in the dialling
  node sends the weaver's connection to the relay; the relay's own upstream
  socket carries a mark that the rule exempts), as hex chunks with timings and
  annotated by :mod:`tests.interop.wiredump`.  An IPAM allocation at ~3 s adds
  the consensus traffic.
* ``go-wire-password.json``: the same for 5 s with ``--password``: header, flag 1,
  public key, then sealed frames (lengths only; the session keys are not known).
* ``go-weave-cli.txt``: ``weave --local status`` (the shell script) in a node.

Values that change per run (UIDs, ConnIDs, ephemeral ports, timestamps, gob
type ids) are whatever this run produced; see ``data/README.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.interop.golab import GO_WEAVER, GoLab, exit_on_sigterm, peer_name, wait_until
from tests.interop.tcprelay import TcpRelay
from tests.interop.wiredump import annotate

DATA_DIR = Path(__file__).resolve().parent / "data"
PASSWORD = "interop-secret"
JSON_HEADERS = {"Accept": "application/json"}
RELAY_PORT = 16783
RELAY_MARK = 0x77


@dataclass
class Step:
    """One request: node index, method, path, optional form pairs and headers."""

    node: int
    method: str
    path: str
    form: Sequence[tuple[str, str]] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float = 10.0


def get(path: str, node: int = 0, **headers: str) -> Step:
    return Step(node, "GET", path, headers=dict(headers))


def status_steps(node: int = 0) -> list[Step]:
    paths = ["/status", "/status/peers", "/status/connections", "/status/targets",
             "/status/ipam", "/status/dns"]
    return [get(p, node) for p in paths]


def read_only_steps() -> list[Step]:
    return [
        *status_steps(),
        Step(0, "GET", "/report", headers=JSON_HEADERS),
        get("/report?format=%7B%7B.Router.Name%7D%7D%20%7B%7B.IPAM.Paxos%7D%7D"),
        get("/report"),
        get("/metrics"),
        get("/peers"),
        get("/ip"),
        get("/ip/cid-none"),
        get("/ipinfo/defaultsubnet"),
        get("/ipinfo/tracker"),
        get("/status/nonsense"),
    ]


class Recorder:
    """Runs steps against a lab and keeps every exchange (timeouts recorded as such)."""

    def __init__(self, lab: GoLab) -> None:
        self.lab = lab
        self.exchanges: list[dict[str, object]] = []

    def run(self, phase: str, steps: Sequence[Step]) -> None:
        for step in steps:
            self.exchanges.append(self.one(phase, step))

    def one(self, phase: str, step: Step) -> dict[str, object]:
        entry: dict[str, object] = {
            "phase": phase,
            "node": step.node,
            "method": step.method,
            "path": step.path,
            "form": [list(p) for p in step.form] if step.form is not None else None,
            "request_headers": step.headers,
        }
        try:
            reply = self.lab.http(
                step.node, step.method, step.path, step.form, step.headers, timeout=step.timeout
            )
        except TimeoutError:
            entry["status"] = None
            entry["error"] = f"no response within {step.timeout}s"
            return entry
        body = reply.text
        if step.path == "/metrics":
            body = "".join(line + "\n" for line in body.splitlines() if "weave_" in line)
            entry["body_filter"] = "lines containing weave_ only"
        entry.update(
            status=reply.status, content_type=reply.headers.get("content-type"), body=body
        )
        return entry

    def last_body(self) -> str:
        body = self.exchanges[-1].get("body")
        return body if isinstance(body, str) else ""


def converged(lab: GoLab, index: int, nodes: int) -> bool:
    router = lab.report(index)["Router"]
    assert isinstance(router, dict)
    peers = router.get("Peers") or []
    return len(peers) == nodes and all(
        sum(1 for c in (p.get("Connections") or []) if c.get("Established")) == nodes - 1
        for p in peers
    )


def capture_http(password: str | None) -> dict[str, object]:
    """The phased HTTP exchange log of a 3-peer mesh (see the module docstring)."""
    nodes = 3
    with GoLab(nodes=nodes) as lab:
        for i in range(nodes):
            lab.start_go_weaver(i, password=password, ipalloc_init=f"consensus={nodes}")
        lab.wait_ready(range(nodes))
        wait_until(lambda: converged(lab, 0, nodes), 40.0, "a converged mesh")
        rec = Recorder(lab)
        rec.run("before-consensus", read_only_steps())
        rec.run("first-allocation", [Step(0, "POST", "/ip/cid-a")])
        addr_a = rec.last_body().strip()
        rec.run("after-consensus", [*read_only_steps(), get("/ring"), *ipam_steps(addr_a)])
        rec.run("connect-forget", connect_steps(lab))
        stop_and_remove(lab, rec)
        return {
            "scenario": f"3 Go weavers 2.8.1, {'--password' if password else 'no password'},"
            f" --ipalloc-init consensus=3, --no-fastdp, fabric {lab.fabric}",
            "nodes": {peer_name(i): lab.node_ip(i) for i in range(nodes)},
            "exchanges": rec.exchanges,
        }


def ipam_steps(addr_a: str) -> list[Step]:
    ip_a = addr_a.split("/")[0] if addr_a else "10.32.0.1"
    return [
        get("/ip/cid-a"),
        Step(0, "POST", "/ip/cid-a"),
        Step(0, "POST", "/ip/cid-b/10.33.0.0/16"),
        get("/ip/cid-b/10.33.0.0/16"),
        Step(0, "PUT", "/ip/cid-c/10.32.0.77/12"),
        Step(0, "PUT", "/ip/cid-c/10.32.0.77/12"),
        Step(0, "PUT", "/ip/cid-d/10.32.0.77/12"),
        Step(1, "POST", "/ip/cid-n1"),
        Step(2, "POST", "/ip/cid-n2"),
        get("/ip"),
        get("/status/ipam"),
        Step(0, "DELETE", f"/ip/cid-a/{ip_a}"),
        Step(0, "DELETE", "/ip/cid-a"),
        Step(0, "DELETE", "/ip/cid-b"),
        Step(0, "DELETE", "/ip/cid-none"),
        Step(0, "DELETE", "/ip/cid-c/not-an-ip"),
        Step(0, "POST", "/ip/cid-e/10.32.0.0/33"),
        get("/ip"),
    ]


def connect_steps(lab: GoLab) -> list[Step]:
    ip1, ip2 = lab.node_ip(1), lab.node_ip(2)
    return [
        Step(0, "POST", "/connect", form=[("peer", ip2)]),
        Step(0, "POST", "/connect", form=[("peer", "192.168.77.99:6783")]),
        Step(0, "POST", "/connect", form=[("peer", "not an address")]),
        Step(0, "POST", "/connect", form=[("peer", "1.2.3.4:99999"), ("peer", "x:y:z")]),
        Step(0, "POST", "/connect", form=[]),
        get("/status/targets"),
        Step(0, "POST", "/forget", form=[("peer", "192.168.77.99:6783")]),
        Step(0, "POST", "/forget", form=[("peer", "nothing-here")]),
        Step(0, "POST", "/connect", form=[("replace", "true"), ("peer", ip1), ("peer", ip2)]),
        get("/status/targets"),
        Step(0, "POST", "/forget", form=[("peer", ip2)]),
        get("/status/targets"),
        get("/status/connections"),
        Step(0, "POST", "/connect", form=[("peer", ip2)]),
    ]


def stop_and_remove(lab: GoLab, rec: Recorder) -> None:
    """Stop node 2, show it unreachable, rmpeer it on node 0, then node 1 leaves."""
    lab.stop(2)
    wait_until(lambda: "unreachable" in lab.status(0, "ipam"), 40.0, "node 2 unreachable")
    rec.run("peer-stopped", [*status_steps(), get("/metrics"),
                             Step(0, "GET", "/report", headers=JSON_HEADERS)])
    name2 = peer_name(2)
    rmpeer = Step(0, "DELETE", f"/peer/{name2}")
    by_nickname = Step(0, "DELETE", "/peer/node2")
    rec.run("rmpeer", [rmpeer, rmpeer, by_nickname, get("/status/ipam"), get("/metrics")])
    rec.run("leave", [Step(1, "DELETE", "/peer"), get("/status/ipam", node=1)])
    time.sleep(2)
    rec.run("after-leave", [get("/status/ipam"), get("/status/peers")])


def render_text(capture: dict[str, object]) -> str:
    lines = [f"# {capture['scenario']}", f"# nodes: {capture['nodes']}", ""]
    exchanges = capture["exchanges"]
    assert isinstance(exchanges, list)
    for ex in exchanges:
        form = f" form={ex['form']}" if ex.get("form") is not None else ""
        hdrs = f" headers={ex['request_headers']}" if ex.get("request_headers") else ""
        result = ex.get("error") or f"{ex['status']} ({ex.get('content_type')})"
        lines.append(f"### [{ex['phase']}] node{ex['node']} {ex['method']} {ex['path']}"
                     f"{form}{hdrs} -> {result}")
        body = ex.get("body")
        if isinstance(body, str) and body:
            lines.append(body.rstrip("\n"))
            if not body.endswith("\n"):
                lines.append("(no trailing newline)")
        lines.append("")
    return "\n".join(lines)


def capture_wire(seconds: float, password: str | None = None) -> dict[str, object]:
    """Relay node 0's connection to node 1 and annotate both directions."""
    with GoLab(nodes=2) as lab:
        ip1 = lab.node_ip(1)
        lab.run_in_node(0, ["iptables", "-w", "-t", "nat", "-I", "OUTPUT", "-p", "tcp", "-d", ip1,
                            "--dport", "6783", "-m", "mark", "!", "--mark", hex(RELAY_MARK),
                            "-j", "REDIRECT", "--to-ports", str(RELAY_PORT)])
        listen = ("0.0.0.0", RELAY_PORT)
        with TcpRelay(lab.netns_fd(0), listen, lab.netns_fd(0), (ip1, 6783), RELAY_MARK) as relay:
            extra = ["--no-discovery"]
            init = "consensus=2"
            lab.start_go_weaver(1, [], password, ipalloc_init=init, extra=extra)
            lab.wait_ready([1])
            lab.start_go_weaver(0, [ip1], password, ipalloc_init=init, extra=extra)
            lab.wait_ready([0])
            time.sleep(min(3.0, seconds))
            allocation = lab.http(0, "POST", "/ip/cid-wire").text.strip()
            time.sleep(max(0.0, seconds - 3.0))
            connections = lab.status(0, "connections")
            chunks = list(relay.capture.chunks)
        streams = {
            d: b"".join(c.data for c in chunks if c.conn == 0 and c.direction == d)
            for d in ("c2s", "s2c")
        }
        pw_text = f"--password {password!r}" if password else "no password"
        return {
            "scenario": f"2 Go weavers 2.8.1, {pw_text}, --no-discovery, consensus=2; node0 "
            f"({peer_name(0)}, {lab.node_ip(0)}) dials node1 ({peer_name(1)}, {ip1}) via relay",
            "directions": {"c2s": "node0 (dialler) -> node1", "s2c": "node1 -> node0"},
            "allocation_at_3s": allocation,
            "node0_connections_at_end": connections,
            "chunks": [
                {"conn": c.conn, "dir": c.direction, "t": round(c.seconds, 4), "hex": c.data.hex()}
                for c in chunks
            ],
            "c2s": annotate(streams["c2s"]),
            "s2c": annotate(streams["s2c"]),
        }


def capture_cli() -> str:
    """``weave --local status`` and ``weave --local status peers`` run inside a node."""
    script = GO_WEAVER.parent.parent / "src" / "weave"
    out = [f"# {script} run with `ip netns exec <node0> env PATH=<weaveutil dir>:$PATH`", ""]
    with GoLab(nodes=2) as lab:
        for i in range(2):
            lab.start_go_weaver(i, ipalloc_init="consensus=2")
        lab.wait_ready(range(2))
        wait_until(lambda: converged(lab, 0, 2), 40.0, "a converged mesh")
        env_path = f"PATH={GO_WEAVER.parent}:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        for args in (["--local", "status"], ["--local", "status", "peers"],
                     ["--local", "status", "connections"], ["--local", "status", "ipam"],
                     ["--local", "report", "-f", "{{.Router.Name}}"], ["--local", "version"],
                     ["status"]):
            done = lab.run_in_node(0, ["env", env_path, str(script), *args], check=False)
            out += [f"$ weave {' '.join(args)}   (exit {done.returncode})", done.stdout.rstrip()]
            if done.stderr.strip():
                out += ["[stderr]", done.stderr.rstrip()]
            out.append("")
    return "\n".join(out) + "\n"


def write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["http", "wire", "cli"])
    parser.add_argument("--out", type=Path, default=DATA_DIR)
    parser.add_argument("--wire-seconds", type=float, default=35.0)
    args = parser.parse_args(argv)
    exit_on_sigterm()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.only in (None, "http"):
        for label, password in (("password", PASSWORD), ("plain", None)):
            capture = capture_http(password)
            write_json(args.out / f"go-http-{label}.json", capture)
            (args.out / f"go-http-{label}.txt").write_text(render_text(capture))
    if args.only in (None, "wire"):
        write_json(args.out / "go-wire-plain.json", capture_wire(args.wire_seconds))
        write_json(args.out / "go-wire-password.json", capture_wire(5.0, PASSWORD))
    if args.only in (None, "cli"):
        (args.out / "go-weave-cli.txt").write_text(capture_cli())
        print(f"wrote {args.out / 'go-weave-cli.txt'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
