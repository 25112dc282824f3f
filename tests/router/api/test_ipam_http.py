"""router/api/ipam_http.py: IPAM's routes answer with the original's paths, verbs, bodies
and status codes (``ipam/http.go``), over a real server on loopback, in front of a
recording stand-in for the allocator."""

from __future__ import annotations

import http.client
import ipaddress
import json
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from router.api.http import api_server
from router.api.ipam_http import register_ipam
from router.ipam.errors import Cancelled, IpamError, Refused, TimedOut

Net = ipaddress.IPv4Network


@dataclass
class FakeIpam:
    calls: list[tuple[object, ...]] = field(default_factory=list)
    fail: IpamError | None = None
    addresses: dict[str, list[str]] = field(default_factory=dict)

    @property
    def default_subnet(self) -> str:
        return "10.32.0.0/12"

    @property
    def tracker(self) -> str:
        return ""

    def _maybe_fail(self) -> None:
        if self.fail is not None:
            raise self.fail

    def allocate(self, ident: str, subnet: Net | None) -> str:
        self.calls.append(("allocate", ident, subnet))
        self._maybe_fail()
        return f"10.32.0.1/{subnet.prefixlen if subnet else 12}"

    def claim(self, ident: str, address: ipaddress.IPv4Interface,
              no_error_on_unknown: bool) -> None:
        self.calls.append(("claim", ident, address, no_error_on_unknown))
        self._maybe_fail()

    def lookup(self, ident: str, subnet: Net | None) -> list[str]:
        self.calls.append(("lookup", ident, subnet))
        return self.addresses.get(ident, [])

    def owned(self) -> dict[str, list[str]]:
        return self.addresses

    def free(self, ident: str, address: ipaddress.IPv4Address) -> None:
        self.calls.append(("free", ident, address))
        self._maybe_fail()

    def delete(self, ident: str) -> None:
        self.calls.append(("delete", ident))
        self._maybe_fail()

    def prime(self) -> None:
        self.calls.append(("prime",))
        self._maybe_fail()

    def leave(self) -> None:
        self.calls.append(("leave",))

    def rmpeer(self, peer: str) -> int:
        self.calls.append(("rmpeer", peer))
        return 1024


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[FakeIpam, int]]:
    fake = FakeIpam()
    server = api_server(("127.0.0.1", 0))
    register_ipam(server, fake)
    server.start()
    try:
        yield fake, server.port
    finally:
        server.stop()


@pytest.fixture
def served(server: tuple[FakeIpam, int]) -> tuple[FakeIpam, int]:
    """The module's server, its stand-in reset."""
    fake, port = server
    fake.calls.clear()
    fake.fail = None
    fake.addresses = {}
    return fake, port


def ask(port: int, method: str, path: str,
        body: str | None = None) -> tuple[int, str | None, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        headers = {"Content-Type": "application/x-www-form-urlencoded"} if body else {}
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type"), response.read().decode()
    finally:
        connection.close()


TEXT = "text/plain; charset=utf-8"


def test_allocate_in_the_default_subnet_and_in_a_given_one(served: tuple[FakeIpam, int]) -> None:
    fake, port = served
    assert ask(port, "POST", "/ip/abc") == (200, TEXT, "10.32.0.1/12")
    assert ask(port, "POST", "/ip/abc/10.32.4.0/24") == (200, TEXT, "10.32.0.1/24")
    assert fake.calls == [("allocate", "abc", None), ("allocate", "abc", Net("10.32.4.0/24"))]


def test_a_subnet_with_host_bits_or_too_small_is_400_with_gos_words(
        served: tuple[FakeIpam, int]) -> None:
    fake, port = served
    status, kind, body = ask(port, "POST", "/ip/abc/10.32.4.1/24")
    assert (status, body) == (400, "invalid subnet - bits after network prefix are not all "
                                   "zero: 10.32.4.1/24\n")
    assert kind == TEXT
    assert ask(port, "POST", "/ip/abc/10.32.4.0/31")[2] == (
        "invalid subnet - smaller than minimum size 4: 10.32.4.0/31\n")
    assert ask(port, "GET", "/ip/abc/nonsense/24")[:3:2] == (
        400, "invalid CIDR address: nonsense/24\n")
    assert fake.calls == []


def test_errors_map_to_400_503_and_cancelled(served: tuple[FakeIpam, int]) -> None:
    fake, port = served
    fake.fail = Refused("range 11.0.0.0/24 out of bounds: 10.32.0.0/12")
    assert ask(port, "POST", "/ip/x")[::2] == (400, "range 11.0.0.0/24 out of bounds: "
                                                    "10.32.0.0/12\n")
    fake.fail = TimedOut("Allocate for x timed out after 30s: awaiting consensus "
                         "(quorum: 2, known: 1)")
    assert ask(port, "POST", "/ip/x") == (503, TEXT, str(fake.fail) + "\n")
    fake.fail = Cancelled("Allocate", "x")
    assert ask(port, "POST", "/ip/x") == (200, TEXT, "cancelled")


def test_claim_is_204_and_its_refusal_is_prefixed(served: tuple[FakeIpam, int]) -> None:
    fake, port = served
    assert ask(port, "PUT", "/ip/abc/10.32.0.7/12?noErrorOnUnknown=true") == (204, None, "")
    assert fake.calls == [("claim", "abc", ipaddress.IPv4Interface("10.32.0.7/12"), True)]
    fake.fail = Refused("address 10.32.0.7/12 is already owned by def")
    assert ask(port, "PUT", "/ip/abc/10.32.0.7/12")[::2] == (
        400, "Unable to claim: address 10.32.0.7/12 is already owned by def\n")


def test_lookup_is_space_separated_and_empty_without_addresses(
        served: tuple[FakeIpam, int]) -> None:
    fake, port = served
    fake.addresses = {"abc": ["10.32.0.1/12", "10.32.0.9/12"]}
    assert ask(port, "GET", "/ip/abc") == (200, TEXT, "10.32.0.1/12 10.32.0.9/12")
    assert ask(port, "GET", "/ip/none") == (200, None, "")
    ask(port, "GET", "/ip/abc/10.32.0.0/16")
    assert fake.calls[-1] == ("lookup", "abc", Net("10.32.0.0/16"))


def test_owned_is_gos_json(served: tuple[FakeIpam, int]) -> None:
    fake, port = served
    assert ask(port, "GET", "/ip") == (200, "application/json", '{"owned":null}\n')
    fake.addresses = {"b": ["10.32.0.2/12"], "a": ["10.32.0.1/12"]}
    _, _, body = ask(port, "GET", "/ip")
    assert json.loads(body) == {"owned": [{"containerid": "a", "addrs": ["10.32.0.1/12"]},
                                          {"containerid": "b", "addrs": ["10.32.0.2/12"]}]}


def test_free_and_delete(served: tuple[FakeIpam, int]) -> None:
    fake, port = served
    assert ask(port, "DELETE", "/ip/abc/10.32.0.1") == (204, None, "")
    assert ask(port, "DELETE", "/ip/abc") == (204, None, "")
    assert ask(port, "DELETE", "/ip/abc/nope")[::2] == (400, "invalid IP Address: nope\n")
    fake.fail = Refused("Delete: no addresses for abc")
    assert ask(port, "DELETE", "/ip/abc")[::2] == (400, "Delete: no addresses for abc\n")
    fake.fail = Refused("Free: address 10.32.0.1 not found for abc")
    assert ask(port, "DELETE", "/ip/abc/10.32.0.1")[::2] == (
        400, "Unable to free: Free: address 10.32.0.1 not found for abc\n")
    assert fake.calls[:2] == [("free", "abc", ipaddress.IPv4Address("10.32.0.1")),
                              ("delete", "abc")]


def test_other_routes(served: tuple[FakeIpam, int]) -> None:
    fake, port = served
    assert ask(port, "GET", "/ipinfo/defaultsubnet") == (200, TEXT, "10.32.0.0/12")
    assert ask(port, "GET", "/ipinfo/tracker") == (200, TEXT, "\n")
    assert ask(port, "GET", "/ring") == (200, None, "")
    assert ask(port, "DELETE", "/peer") == (204, None, "")
    assert ask(port, "DELETE", "/peer/node2") == (200, TEXT, "1024 IPs taken over from node2\n")
    assert fake.calls == [("prime",), ("leave",), ("rmpeer", "node2")]


def test_unknown_paths_are_404_and_other_methods_405(served: tuple[FakeIpam, int]) -> None:
    _, port = served
    assert ask(port, "GET", "/ip/a/b/c/d")[::2] == (404, "404 page not found\n")
    assert ask(port, "PUT", "/ip/abc")[::2] == (405, "")
    assert ask(port, "GET", "/ip/abc/10.32.0.1")[::2] == (405, "")
    assert ask(port, "POST", "/ring")[::2] == (405, "")
