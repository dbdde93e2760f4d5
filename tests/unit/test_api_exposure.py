"""Customer auth off means anyone who reaches the API sees and cancels every order: the API may
run so only where nobody else reaches it (loopback), or where the operator says a proxy in front
checks callers (CLOUDMART_ALLOW_OPEN_API). tests/system/test_startup_refusals.py runs the real
entry point."""

from __future__ import annotations

import pytest

from api.auth import AuthConfigError, check_auth_settings, is_loopback
from cloudmart.settings import Settings

LOOPBACK = ["127.0.0.1", "127.0.0.53", "::1", "[::1]", "localhost", "LOCALHOST"]
EXPOSED = [
    "0.0.0.0",  # every interface
    "::",
    "",  # uvicorn: every interface too
    "192.168.1.20",
    "10.0.0.7",
    "2001:db8::1",
    "::ffff:127.0.0.1",  # mapped: not taken on trust
    "api.example.com",  # a name may resolve to anything
    "localhost.example.com",
]


@pytest.mark.parametrize("host", LOOPBACK)
def test_loopback_hosts_may_serve_without_customer_auth(host: str) -> None:
    assert is_loopback(host)
    check_auth_settings(Settings(api_host=host))


@pytest.mark.parametrize("host", EXPOSED)
def test_an_exposed_host_needs_customer_auth_or_the_explicit_override(host: str) -> None:
    assert not is_loopback(host)
    with pytest.raises(AuthConfigError, match="CLOUDMART_ALLOW_OPEN_API=true") as refused:
        check_auth_settings(Settings(api_host=host))
    assert f"CLOUDMART_API_HOST={host!r} listens beyond this machine" in str(refused.value)
    assert "CLOUDMART_REQUIRE_AUTH=true" in str(refused.value)
    check_auth_settings(Settings(api_host=host, require_auth=True, auth_secret="s" * 32))
    check_auth_settings(Settings(api_host=host, allow_open_api=True))
