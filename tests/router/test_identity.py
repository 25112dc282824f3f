"""How the agent picks its peer name, nickname, UID and short ID (router/agent/identity.py):
every precedence rule on fake host roots. Byte-exactness against Go is in
test_identity_go.py, the real bridge in test_identity_kernel.py."""

from __future__ import annotations

import errno
import hashlib
import os
import re
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.agent.identity import (
    HostView,
    IdentityError,
    local_identity,
    mac_from_uuid,
    nickname,
    peer_name,
    print_peer_name_output,
    random_peer_name,
    random_short_id,
    random_uid,
    system_peer_name,
)
from router.agent.identity_host import (
    go_hostname,
    link_hardware_address,
    parse_getlink_reply,
    read_host_file,
)
from router.mesh.names import PeerName
from tests.router.identity_hosts import (
    DBUS_MACHINE_ID,
    DIRECTORY,
    HOST_ROOT,
    HYPERVISOR_UUID,
    MACHINE_ID,
    PRODUCT_UUID,
    fake_host,
    persisted,
    unreadable_db,
    write_files,
)

MID = b"5b1f0c2e9d8a4f3b8e7c6d5a4b3c2d1e\n"
DBUS_MID = b"dbus0123456789abcdef0123456789ab\n"
UUID = b"EC2B5D6E-1F4A-4C1B-9D3E-0A1B2C3D4E5F\n"
HV_UUID = b"ec2f00d1-2345-6789-abcd-ef0123456789\n"
BRIDGE_MAC = bytes.fromhex("7e4c1a2b3c4d")


def name_of(system_id: bytes) -> PeerName:
    return PeerName.from_bytes6(mac_from_uuid(system_id))


def resolve(root: Path, host: HostView | None = None, name_flag: str = "",
            bridge: str = "weave") -> PeerName:
    return peer_name(name_flag, bridge, HOST_ROOT, host or fake_host(root))


# ---------------------------------------------------------------- the three sources

def test_name_flag_wins_over_bridge_and_system(tmp_path: Path) -> None:
    write_files(tmp_path, {MACHINE_ID: MID, PRODUCT_UUID: UUID})
    host = fake_host(tmp_path, links={"weave": BRIDGE_MAC})
    assert resolve(tmp_path, host, name_flag="ce::1") == PeerName(0xCE0000000001)


@pytest.mark.parametrize("flag, expected", [
    ("CE:00:00:00:00:01", "ce:00:00:00:00:01"), ("a:b:c:d:e:f", "0a:0b:0c:0d:0e:0f"),
    ("12::34", "12:00:00:00:00:34"), (" ce:00:00:00:00:01", "ce:00:00:00:00:01"),
], ids=["upper-case", "one-digit-groups", "double-colon", "leading-space"])
def test_name_flag_is_parsed_as_go_parses_user_input(tmp_path: Path, flag: str,
                                                      expected: str) -> None:
    assert str(resolve(tmp_path, name_flag=flag)) == expected


def test_an_invalid_name_flag_is_fatal_not_a_fallback(tmp_path: Path) -> None:
    host = fake_host(tmp_path, links={"weave": BRIDGE_MAC})
    with pytest.raises(IdentityError, match=r"--name.*invalid peer name format"):
        resolve(tmp_path, host, name_flag="weave-1")


def test_bridge_mac_wins_over_system_name(tmp_path: Path) -> None:
    write_files(tmp_path, {MACHINE_ID: MID, PRODUCT_UUID: UUID})
    host = fake_host(tmp_path, links={"weave": BRIDGE_MAC})
    assert resolve(tmp_path, host) == PeerName.from_bytes6(BRIDGE_MAC)


def test_the_bridge_looked_up_is_the_weave_bridge_flag(tmp_path: Path) -> None:
    write_files(tmp_path, {MACHINE_ID: MID})
    host = fake_host(tmp_path, links={"weave": BRIDGE_MAC, "br-x": bytes.fromhex("0a0000000099")})
    assert resolve(tmp_path, host, bridge="br-x") == PeerName(0x0A0000000099)
    assert resolve(tmp_path, host, bridge="nope") == name_of(MID)


def test_an_empty_bridge_flag_looks_up_no_link(tmp_path: Path) -> None:
    write_files(tmp_path, {MACHINE_ID: MID})
    host = fake_host(tmp_path, links={"": BRIDGE_MAC})
    assert resolve(tmp_path, host, bridge="") == name_of(MID)


@pytest.mark.parametrize("address", [b"", bytes(4), bytes(8), bytes(20)],
                         ids=["none", "ipip-4", "8-bytes", "infiniband-20"])
def test_a_bridge_without_a_six_byte_address_is_fatal(tmp_path: Path, address: bytes) -> None:
    write_files(tmp_path, {MACHINE_ID: MID})
    with pytest.raises(IdentityError, match="MAC of link 'weave'"):
        resolve(tmp_path, fake_host(tmp_path, links={"weave": address}))


def test_without_bridge_the_system_name(tmp_path: Path) -> None:
    write_files(tmp_path, {MACHINE_ID: MID, PRODUCT_UUID: UUID})
    assert resolve(tmp_path) == name_of(MID + UUID)


# ---------------------------------------------------------------- the system name

@pytest.mark.parametrize("files, system_id", [
    ({MACHINE_ID: MID}, MID),
    ({MACHINE_ID: MID, PRODUCT_UUID: UUID}, MID + UUID),
    ({MACHINE_ID: MID, HYPERVISOR_UUID: HV_UUID}, MID + HV_UUID),
    ({MACHINE_ID: MID, PRODUCT_UUID: UUID, HYPERVISOR_UUID: HV_UUID}, MID + UUID),
    ({MACHINE_ID: MID, PRODUCT_UUID: b"", HYPERVISOR_UUID: HV_UUID}, MID),
    ({DBUS_MACHINE_ID: DBUS_MID, PRODUCT_UUID: UUID}, DBUS_MID + UUID),
    ({MACHINE_ID: MID, DBUS_MACHINE_ID: DBUS_MID}, MID),
    ({MACHINE_ID: b"", DBUS_MACHINE_ID: DBUS_MID, PRODUCT_UUID: UUID}, UUID),
    ({PRODUCT_UUID: UUID}, UUID),
    ({HYPERVISOR_UUID: HV_UUID}, HV_UUID),
    ({MACHINE_ID: b"\n"}, b"\n"),
    ({MACHINE_ID: MID.rstrip()}, MID.rstrip()),
], ids=["machine-id", "machine-id+product", "machine-id+hypervisor",
        "product-before-hypervisor", "empty-product-stops-fallback", "dbus-when-no-etc",
        "etc-before-dbus", "empty-etc-stops-fallback", "product-only", "hypervisor-only",
        "newline-only", "no-newline"])
def test_system_name_sources(tmp_path: Path, files: dict[str, bytes], system_id: bytes) -> None:
    write_files(tmp_path, files)
    assert system_peer_name(HOST_ROOT, fake_host(tmp_path)) == name_of(system_id)


def test_machine_id_is_under_the_host_root_and_uuids_are_not(tmp_path: Path) -> None:
    write_files(tmp_path, {MACHINE_ID: MID, PRODUCT_UUID: UUID,
                           "/etc/machine-id": b"the container's own\n",
                           HOST_ROOT + PRODUCT_UUID: b"not read\n"})
    assert system_peer_name(HOST_ROOT, fake_host(tmp_path)) == name_of(MID + UUID)


def test_the_host_root_is_prefixed_as_a_string(tmp_path: Path) -> None:
    write_files(tmp_path, {MACHINE_ID: MID})
    assert system_peer_name(HOST_ROOT + "/", fake_host(tmp_path)) == name_of(MID)  # //etc


@pytest.mark.parametrize("files", [
    {}, {MACHINE_ID: b"", PRODUCT_UUID: b""}, {MACHINE_ID: b"", DBUS_MACHINE_ID: DBUS_MID},
], ids=["nothing", "all-empty", "empty-etc-hides-dbus"])
def test_blank_system_ids_are_fatal_and_never_random(tmp_path: Path,
                                                     files: dict[str, bytes]) -> None:
    write_files(tmp_path, files)
    with pytest.raises(IdentityError, match="all system IDs are blank"):
        resolve(tmp_path)


@pytest.mark.parametrize("files, culprit", [
    ({MACHINE_ID: MID, PRODUCT_UUID: DIRECTORY}, PRODUCT_UUID),
    ({MACHINE_ID: MID, HYPERVISOR_UUID: DIRECTORY}, HYPERVISOR_UUID),
    ({MACHINE_ID: DIRECTORY, PRODUCT_UUID: UUID}, MACHINE_ID),
    ({DBUS_MACHINE_ID: DIRECTORY, PRODUCT_UUID: UUID}, DBUS_MACHINE_ID),
    ({HOST_ROOT + "/etc": b"x", PRODUCT_UUID: UUID}, MACHINE_ID),
], ids=["product-dir", "hypervisor-dir", "machine-id-dir", "dbus-dir", "etc-is-a-file"])
def test_a_file_that_exists_but_cannot_be_read_is_fatal(tmp_path: Path, files: dict[str, bytes],
                                                        culprit: str) -> None:
    write_files(tmp_path, files)
    with pytest.raises(IdentityError, match=re.escape(f"reading {tmp_path}{culprit}: ")):
        resolve(tmp_path)


# ---------------------------------------------------------------- the persisted name

def test_a_persisted_old_style_name_wins(tmp_path: Path) -> None:
    write_files(tmp_path, {MACHINE_ID: MID, PRODUCT_UUID: UUID})
    old_style = str(name_of(UUID))
    host = fake_host(tmp_path, persisted_name=persisted(old_style))
    assert resolve(tmp_path, host) == name_of(UUID) != name_of(MID + UUID)


def test_a_persisted_name_matching_the_hypervisor_uuid_wins(tmp_path: Path) -> None:
    write_files(tmp_path, {MACHINE_ID: MID, HYPERVISOR_UUID: HV_UUID})
    host = fake_host(tmp_path, persisted_name=persisted(str(name_of(HV_UUID))))
    assert resolve(tmp_path, host) == name_of(HV_UUID)


@pytest.mark.parametrize("name", [None, "ce:00:00:00:00:01"], ids=["none", "other"])
def test_other_persisted_names_are_ignored(tmp_path: Path, name: str | None) -> None:
    write_files(tmp_path, {MACHINE_ID: MID, PRODUCT_UUID: UUID})
    host = fake_host(tmp_path, persisted_name=persisted(name))
    assert resolve(tmp_path, host) == name_of(MID + UUID)


def test_without_a_system_uuid_the_db_is_not_consulted(tmp_path: Path) -> None:
    write_files(tmp_path, {MACHINE_ID: MID})
    host = fake_host(tmp_path, persisted_name=unreadable_db)
    assert resolve(tmp_path, host) == name_of(MID)


def test_an_unreadable_db_with_a_system_uuid_is_fatal(tmp_path: Path) -> None:
    write_files(tmp_path, {MACHINE_ID: MID, PRODUCT_UUID: UUID})
    with pytest.raises(IdentityError, match="state DB"):
        resolve(tmp_path, fake_host(tmp_path, persisted_name=unreadable_db))


def test_a_persisted_name_matching_an_empty_uuid_beats_blank_ids(tmp_path: Path) -> None:
    write_files(tmp_path, {PRODUCT_UUID: b""})
    host = fake_host(tmp_path, persisted_name=persisted(str(name_of(b""))))
    assert resolve(tmp_path, host) == name_of(b"")


def test_the_bridge_wins_over_a_persisted_name(tmp_path: Path) -> None:
    write_files(tmp_path, {MACHINE_ID: MID, PRODUCT_UUID: UUID})
    host = fake_host(tmp_path, links={"weave": BRIDGE_MAC},
                     persisted_name=persisted(str(name_of(UUID))))
    assert resolve(tmp_path, host) == PeerName.from_bytes6(BRIDGE_MAC)


# ---------------------------------------------------------------- derivations

@settings(max_examples=200)
@given(st.binary(max_size=300))
def test_derived_macs_are_locally_administered_unicast(system_id: bytes) -> None:
    mac = mac_from_uuid(system_id)
    assert len(mac) == 6
    assert mac[0] & 0b11 == 0b10


def test_mac_from_uuid_hashes_the_salted_bytes() -> None:
    digest = hashlib.sha256(b"9oBJ0Jmip-" + MID).digest()
    mac = mac_from_uuid(MID)
    assert mac[1:] == digest[1:6] and mac[0] & 0xFC == digest[0] & 0xFC


@settings(max_examples=100)
@given(st.binary(min_size=6, max_size=6))
def test_random_names_are_locally_administered_unicast(drawn: bytes) -> None:
    name = random_peer_name(lambda n: drawn[:n]).to_bytes6()
    assert name[0] == (drawn[0] & 0xFC) | 0x02 and name[1:] == drawn[1:]


def draws(*chunks: bytes) -> Iterator[bytes]:
    yield from chunks


def test_uid_is_little_endian_and_never_zero() -> None:
    source = draws(bytes(8), bytes(8), bytes.fromhex("0100000000000080"))
    assert random_uid(lambda n: next(source)) == 0x8000000000000001


@pytest.mark.parametrize("drawn, short_id", [
    (b"\x34\x12", 0x234), (b"\xff\xff", 0xFFF), (b"\x00\xf0", 0), (b"\xff\x00", 0xFF),
])
def test_short_id_is_the_low_12_bits_little_endian(drawn: bytes, short_id: int) -> None:
    assert random_short_id(lambda n: drawn) == short_id


def test_a_random_source_giving_too_few_bytes_is_an_error() -> None:
    with pytest.raises(IdentityError, match="gave 2 bytes, 8 asked"):
        random_uid(lambda n: b"ab")


def test_nickname_is_the_flag_else_the_host_name(tmp_path: Path) -> None:
    host = fake_host(tmp_path, hostname="worker-7")
    assert nickname("", host) == "worker-7"
    assert nickname("edge", host) == "edge"


def test_local_identity_at_start(tmp_path: Path) -> None:
    write_files(tmp_path, {MACHINE_ID: MID})
    first = local_identity("", "", "weave", HOST_ROOT, fake_host(tmp_path, seed=1))
    again = local_identity("", "", "weave", HOST_ROOT, fake_host(tmp_path, seed=2))
    assert (first.name, first.nickname) == (again.name, again.nickname) == (name_of(MID), "node-a")
    assert first.uid != again.uid and 0 < first.uid < 1 << 64
    assert 0 <= first.short_id < 4096


def test_local_identity_stops_at_the_name(tmp_path: Path) -> None:
    with pytest.raises(IdentityError, match="blank"):
        local_identity("", "n", "weave", HOST_ROOT, fake_host(tmp_path))


def test_print_peer_name_output() -> None:
    assert print_peer_name_output(PeerName(0x0E1D121A1A88)) == "0e:1d:12:1a:1a:88\n"


# ---------------------------------------------------------------- the live host seam

def test_read_host_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"id\n")
    (tmp_path / "d").mkdir()
    assert read_host_file(f"{tmp_path}/f") == b"id\n"
    assert read_host_file(f"{tmp_path}/missing") is None
    with pytest.raises(IdentityError, match="Is a directory"):
        read_host_file(f"{tmp_path}/d")
    with pytest.raises(IdentityError, match="Not a directory"):
        read_host_file(f"{tmp_path}/f/x")


@pytest.mark.parametrize("name", ["", "x" * 16, "a\0b"], ids=["empty", "too-long", "nul"])
def test_names_no_link_can_have(name: str) -> None:
    assert link_hardware_address(name) is None


def test_go_hostname_is_the_node_name() -> None:
    node = os.uname().nodename
    if 0 < len(node) < 64:
        assert go_hostname() == node


def reply(*messages: tuple[int, bytes], seq: int = 1) -> bytes:
    out = b""
    for kind, body in messages:
        out += struct.pack("=IHHII", 16 + len(body), kind, 0, seq, 0) + body
        out += bytes(-len(body) % 4)
    return out


def link_body(name: bytes, address: bytes | None) -> bytes:
    def attr(kind: int, payload: bytes) -> bytes:
        return struct.pack("=HH", 4 + len(payload), kind) + payload + bytes(-len(payload) % 4)
    attrs = attr(3, name + b"\0") + (b"" if address is None else attr(1, address))
    return struct.pack("=BxHiII", 0, 1, 7, 0, 0) + attrs


def error_body(code: int) -> bytes:
    return struct.pack("=i", -code) + bytes(16)


def test_getlink_reply_parsing() -> None:
    mac = bytes.fromhex("7e4c1a2b3c4d")
    assert parse_getlink_reply("weave", reply((16, link_body(b"weave", mac)))) == mac
    assert parse_getlink_reply("weave", reply((16, link_body(b"weave", None)))) == b""
    assert parse_getlink_reply("weave", reply((16, link_body(b"dummy0", mac)))) is None
    assert parse_getlink_reply("weave", reply((2, error_body(errno.ENODEV)))) is None


@pytest.mark.parametrize("data, message", [
    (reply((2, error_body(errno.EPERM))), "Operation not permitted"),
    (b"", "no usable reply"), (b"\x01\x02\x03", "no usable reply"),
    (reply((16, link_body(b"weave", b"\x01" * 6)), seq=9), "no usable reply"),
    (reply((16, b"\x00" * 8)), "no usable reply"),
], ids=["refused", "empty", "short", "other-sequence", "truncated-body"])
def test_getlink_reply_problems(data: bytes, message: str) -> None:
    with pytest.raises(IdentityError, match=message):
        parse_getlink_reply("weave", data)
