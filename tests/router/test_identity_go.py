"""Peer names against weave 2.8.1's own code (fixtures/identity.json, written by
fixtures/gen/identity): ``net.MACfromUUID`` byte for byte, ``mesh.PeerNameFromUserInput``
on ``--name`` values, and ``net.GetSystemPeerName`` on host scenarios replayed on a fake
root, with the persisted name given through the extension point."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from router.agent.identity import IdentityError, mac_from_uuid, peer_name, system_peer_name
from router.mesh.names import PeerName, PeerNameError
from tests.router.identity_hosts import (
    DIRECTORY,
    HOST_ROOT,
    fake_host,
    persisted,
    unreadable_db,
    write_files,
)

FIXTURES = json.loads((Path(__file__).parent / "fixtures" / "identity.json").read_text())
MAC_CASES: list[dict[str, str]] = FIXTURES["mac_from_uuid"]
USER_INPUTS: list[dict[str, str]] = FIXTURES["peer_name_from_user_input"]
SCENARIOS: list[dict[str, Any]] = FIXTURES["system_peer_name"]


def test_the_fixtures_cover_what_they_claim() -> None:
    assert len(MAC_CASES) >= 15 and len(USER_INPUTS) >= 10 and len(SCENARIOS) >= 25
    assert {s["error"] == "" for s in SCENARIOS} == {True, False}
    assert any(s["db"] not in ("", "empty", "garbage") and s["result"] == s["db"]
               for s in SCENARIOS), "no scenario where the persisted name wins"


@pytest.mark.parametrize("case", MAC_CASES, ids=[c["note"] for c in MAC_CASES])
def test_mac_from_uuid_matches_go(case: dict[str, str]) -> None:
    mac = mac_from_uuid(bytes.fromhex(case["input_hex"]))
    assert mac.hex(":") == case["mac"]
    assert str(PeerName.from_bytes6(mac)) == case["peer_name"]


@pytest.mark.parametrize("case", USER_INPUTS, ids=[repr(c["input"]) for c in USER_INPUTS])
def test_name_flag_matches_go(case: dict[str, str], tmp_path: Path) -> None:
    if case["error"]:
        with pytest.raises(PeerNameError):
            PeerName.parse(case["input"])
        if case["input"]:  # an empty --name means "not given"
            with pytest.raises(IdentityError, match="--name"):
                peer_name(case["input"], "weave", HOST_ROOT, fake_host(tmp_path))
    else:
        name = peer_name(case["input"], "weave", HOST_ROOT, fake_host(tmp_path))
        assert str(name) == case["peer_name"]


def scenario_files(spec: dict[str, dict[str, str]]) -> dict[str, bytes | object]:
    return {path: DIRECTORY if entry["kind"] == "dir" else bytes.fromhex(entry.get("hex", ""))
            for path, entry in spec.items()}


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s["name"] for s in SCENARIOS])
def test_system_peer_name_matches_go(scenario: dict[str, Any], tmp_path: Path) -> None:
    write_files(tmp_path, scenario_files(scenario["files"]))
    db = scenario["db"]
    source = (unreadable_db if db == "garbage"
              else persisted(None if db in ("", "empty") else db))
    host = fake_host(tmp_path, persisted_name=source)
    if not scenario["error"]:
        assert str(system_peer_name(HOST_ROOT, host)) == scenario["result"]
        assert str(peer_name("", "weave", HOST_ROOT, host)) == scenario["result"]
        return
    with pytest.raises(IdentityError) as raised:
        system_peer_name(HOST_ROOT, host)
    go_error: str = scenario["error"]
    if go_error == "All system IDs are blank":
        assert "all system IDs are blank" in str(raised.value)
    elif go_error.startswith("[boltDB]"):
        assert "state DB" in str(raised.value)
    else:  # "read /sys/...: is a directory", "open /host/etc/machine-id: not a directory"
        go_path = go_error.split(" ")[1].rstrip(":")
        assert f"reading {tmp_path}{go_path}: " in str(raised.value)
        assert go_error.split(": ")[-1].lower() in str(raised.value).lower()
