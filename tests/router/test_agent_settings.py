"""weaver's settings: one validated value from flags, environment and defaults."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from common.service.settings import SettingsError
from router.agent.settings import Settings, from_arguments


def test_the_defaults_are_the_originals() -> None:
    settings = from_arguments([], env={})
    assert (settings.port, settings.conn_limit) == (6783, 200)
    assert settings.http_addr == ("127.0.0.1", 6784)
    assert settings.metrics_addr == ("0.0.0.0", 6782)
    assert settings.status_addr is None and settings.trusted_subnets == ()
    assert not settings.no_discovery and settings.password_bytes() is None
    assert settings.db_prefix == "/weavedb/weave-net" and settings.log_level == "info"
    assert settings == Settings()


def test_flags_environment_and_peers() -> None:
    settings = from_arguments(
        ["--name", "ce:00:00:00:00:01", "--conn-limit", "30", "--no-discovery",
         "--trusted-subnets", "10.0.0.0/8,fd00::/8", "--status-addr", "0.0.0.0:6788",
         "10.0.0.2", "10.0.0.3:6783"],
        env={"WEAVE_PASSWORD": "s3cret", "WEAVE_HTTP_ADDR": "127.0.0.1:7000"})
    assert settings.name == "ce:00:00:00:00:01" and settings.conn_limit == 30
    assert settings.no_discovery  # a bare boolean flag is true, and takes no value
    assert settings.peers == ("10.0.0.2", "10.0.0.3:6783")
    assert settings.trusted_subnets == (ipaddress.ip_network("10.0.0.0/8"),
                                        ipaddress.ip_network("fd00::/8"))
    assert settings.status_addr == ("0.0.0.0", 6788)
    assert settings.http_addr == ("127.0.0.1", 7000)
    assert settings.password_bytes() == b"s3cret"
    assert settings.sources["password"] == "environment WEAVE_PASSWORD"


def test_extra_args_come_first_and_the_command_line_wins() -> None:
    settings = from_arguments(["--conn-limit", "5"],
                              env={"EXTRA_ARGS": "--conn-limit 9 --no-discovery=false"})
    assert settings.conn_limit == 5 and not settings.no_discovery


def test_a_password_file_holds_the_password(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("from a file\n")
    assert from_arguments(["--password-file", str(secret)], env={}).password_bytes() == (
        b"from a file")


@pytest.mark.parametrize(("argv", "cause"), [
    (["--port", "70000"], "70000 is not a port"),
    (["--conn-limit", "-1"], "--conn-limit: must be 0"),
    (["--gossip-interval", "0"], "--gossip-interval: must be positive"),
    (["--trusted-subnets", "10.0.0.0/33"], "trusted"),
    (["--log-level", "loud"], "log"),
    (["--password", "a", "--password-file", "/etc/hostname"], "give one of them"),
    (["--password-file", "/nonexistent/pw"], "not a readable file"),
    (["--metrics-addr", "nowhere"], "metrics"),
])
def test_bad_settings_are_refused_with_the_flag_named(argv: list[str], cause: str) -> None:
    with pytest.raises(SettingsError, match=cause):
        from_arguments(argv, env={})
