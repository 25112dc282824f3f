"""Interop check (not part of CI): router/mesh's sans-IO handshake against a real Go mesh.Router.

Builds tests/interop/mesh_peer (weaveworks/mesh as vendored by weave 2.8.1,
offline), then for each scenario starts that Go peer on 127.0.0.1 and runs
our Handshake over a plain blocking socket, dialling it or being dialled by
it. On success it reads the Go side's messages (topology gossip) for a few
seconds and sends heartbeats back, which Go must open without complaint.

    /work/main/.venv/bin/python -m tests.interop.mesh_handshake [--go-peer BINARY]

Needs Go (see tests/interop/mesh_peer/build.sh) unless --go-peer is given.
Prints one line per scenario and the Go peer's log lines about the connection;
exits non-zero if any scenario does not end as expected.
"""

from __future__ import annotations

import argparse
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from router.mesh.features import LocalFeatures
from router.mesh.handshake import Handshake, HandshakeConfig, HandshakeResult
from router.mesh.protocol import (
    EncryptionMismatchError,
    MeshProtocolError,
    PeerClosedError,
    ProtocolTag,
    WrongPasswordError,
    encode_message,
    parse_message,
)
from tests.router.mesh.gobmap import GobMapCodec

HERE = Path(__file__).resolve().parent
TIMEOUT = 10.0


@dataclass(frozen=True)
class Scenario:
    name: str
    go_password: str
    our_password: bytes | None
    we_dial: bool
    versions: tuple[int, int] = (1, 2)
    expected_errors: tuple[type[MeshProtocolError], ...] = ()
    """Empty: the handshake must succeed."""
    go_log_must_say: str = "connection ready; using protocol version 2"


SCENARIOS = (
    Scenario("encrypted, we dial", "s3cret", b"s3cret", we_dial=True),
    Scenario("encrypted, Go dials", "s3cret", b"s3cret", we_dial=False),
    Scenario("plain, we dial", "", None, we_dial=True),
    Scenario("plain, Go dials", "", None, we_dial=False),
    Scenario("version 1 encrypted, we dial", "s3cret", b"s3cret", we_dial=True,
             versions=(1, 1), go_log_must_say="connection ready; using protocol version 1"),
    Scenario("version 1 plain, Go dials", "", None, we_dial=False, versions=(1, 1),
             go_log_must_say="connection ready; using protocol version 1"),
    Scenario("wrong password", "s3cret", b"other", we_dial=True,
             expected_errors=(WrongPasswordError, PeerClosedError),
             go_log_must_say="Unable to decrypt TCP msg"),
    Scenario("password only here", "", b"s3cret", we_dial=True,
             expected_errors=(EncryptionMismatchError, PeerClosedError),
             go_log_must_say="no password specificed, but peer requested an encrypted connection"),
    Scenario("password only there", "s3cret", None, we_dial=False,
             expected_errors=(EncryptionMismatchError, PeerClosedError),
             go_log_must_say="password specified, but peer requested an unencrypted connection"),
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def go_peer(binary: Path, port: int, password: str, connect: str, log: Path) -> Iterator[None]:
    args = [str(binary), f"-port={port}", f"-password={password}", "-lifetime=30s"]
    if connect:
        args.append(f"-connect={connect}")
    with log.open("w") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + TIMEOUT
        while "listening on" not in log.read_text():
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"the Go peer did not start:\n{log.read_text()}")
            time.sleep(0.05)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def shake(sock: socket.socket, handshake: Handshake) -> HandshakeResult:
    """Run our handshake over a blocking socket (the I/O seam, at its simplest)."""
    sock.settimeout(TIMEOUT)
    sock.sendall(handshake.start())
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            # Go closes with SetLinger(0), so a refusal arrives as a reset.
            data = b""
        if not data:
            handshake.eof()
        progress = handshake.receive(data)
        if progress.send:
            sock.sendall(progress.send)
        if progress.error is not None:
            raise progress.error
        if progress.result is not None:
            return progress.result


def converse(sock: socket.socket, result: HandshakeResult) -> list[str]:
    """Read the Go side's messages for a while, sending heartbeats; returns a summary."""
    seen = [describe(payload) for payload in result.pending]
    sock.settimeout(0.2)
    deadline = time.monotonic() + 3.0
    sent = 0
    while time.monotonic() < deadline:
        if sent < 3:
            sock.sendall(result.session.seal(encode_message(ProtocolTag.HEARTBEAT)))
            sent += 1
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        if not data:
            seen.append("EOF from the Go peer")
            break
        seen += [describe(payload) for payload in result.session.feed(data)]
    seen.append(f"sent {sent} heartbeats")
    return seen


def describe(payload: bytes) -> str:
    message = parse_message(payload)
    if message is None:
        return "blank"
    tag = message.known_tag
    return f"{tag.name if tag is not None else message.tag}({len(message.body)} bytes)"


def run(binary: Path, scenario: Scenario, workdir: Path) -> bool:
    local = LocalFeatures(name=0x000000000002, nickname="py-peer", uid=random.getrandbits(64),
                          conn_id=random.getrandbits(64), short_id=random.getrandbits(12),
                          trusts_remote=False)
    config = HandshakeConfig(local, outbound=scenario.we_dial, password=scenario.our_password,
                             min_version=scenario.versions[0], max_version=scenario.versions[1])
    handshake = Handshake(config, GobMapCodec())
    go_port = free_port()
    log = workdir / f"go-{go_port}.log"
    outcome: list[str] = []
    error: MeshProtocolError | None = None
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(TIMEOUT)
        connect = "" if scenario.we_dial else f"127.0.0.1:{listener.getsockname()[1]}"
        with go_peer(binary, go_port, scenario.go_password, connect, log):
            if scenario.we_dial:
                sock = socket.create_connection(("127.0.0.1", go_port), timeout=TIMEOUT)
            else:
                sock, _ = listener.accept()
            with sock:
                try:
                    result = shake(sock, handshake)
                    outcome.append(f"handshake done: version {result.version}, encrypted="
                                   f"{result.session.encrypted}, remote={result.remote}")
                    outcome += converse(sock, result)
                except MeshProtocolError as failure:
                    error = failure
                    outcome.append(f"{type(failure).__name__}: {failure}")
            time.sleep(0.5)  # let the Go side log its view
    go_log = [line for line in log.read_text().splitlines() if "->[" in line]
    if error is None:
        expected_outcome = not scenario.expected_errors
    else:
        expected_outcome = type(error) in scenario.expected_errors
    ok = expected_outcome and any(scenario.go_log_must_say in line for line in go_log)
    if ok and error is None:
        ok = any(item.startswith("GOSSIP") for item in outcome) and not any(
            "EOF" in item for item in outcome)
    print(f"{'PASS' if ok else 'FAIL'}: {scenario.name}")
    for line in outcome:
        print(f"    ours: {line}")
    for line in go_log:
        print(f"    go:   {line}")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--go-peer", type=Path, help="a built mesh_peer binary")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mesh-interop-") as scratch:
        workdir = Path(scratch)
        binary = args.go_peer
        if binary is None:
            binary = workdir / "mesh_peer"
            subprocess.run([str(HERE / "mesh_peer" / "build.sh"), str(binary)], check=True)
        results = [run(binary, scenario, workdir) for scenario in SCENARIOS]
    print(f"{sum(results)}/{len(results)} scenarios as expected")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
