"""Fixtures for the test API server's own tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from tests.apiserver import ApiServer

# The client imports its (large) API modules lazily; pay for that at collection time rather
# than inside whichever test happens to touch them first.
_PRELOADED = (client.CoreV1Api, client.NetworkingV1Api, client.VersionApi, client.ApisApi)


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Every thread a test starts (server, handlers, collectors) must be gone after it."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 2.0
    while True:
        extra = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not extra or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert not extra, f"leaked threads: {extra}"


@pytest.fixture
def api() -> Iterator[ApiServer]:
    with ApiServer(bookmark_interval=0.1, namespaces=["ns1"]) as server:
        yield server


@pytest.fixture
def api_client(api: ApiServer) -> Iterator[Any]:
    cfg = client.Configuration(host=api.url)
    with client.ApiClient(cfg) as ac:
        yield ac


@pytest.fixture
def core(api_client: Any) -> Any:
    return client.CoreV1Api(api_client)


@pytest.fixture
def net(api_client: Any) -> Any:
    return client.NetworkingV1Api(api_client)
