"""The MetaCat adapter's own login (metacat_login) against the protocol double, over HTTP.

The double is contract-tested against captured traffic of the real client, so a login it
accepts is one the real server accepts; the data calls after it go through the real
metacat-client with the token the login returned.
"""

from __future__ import annotations

import pytest

from justin_flows.adapters.calls import ExternalCallError
from justin_flows.adapters.metacat import MetaCatAdapter
from justin_flows.adapters.metacat_login import MetaCatLoginError
from justin_flows.testing.metacat_double import MetaCatDouble
from tests.conftest import METACAT_USER, reset_caches

WRONG_PASSWORD = "not-the-password-7f3a"  # noqa: S105 - a test value


def auth_requests(double: MetaCatDouble) -> list[str]:
    """Method, path and status of each login request (the double records paths without queries)."""
    return [f"{r.method} {r.path} {r.status}" for r in double.requests if r.path.endswith("/auth/auth")]


def test_a_password_login_digest_then_data_calls_with_its_token(metacat_env: MetaCatDouble) -> None:
    metacat_env.clear_requests()
    with MetaCatAdapter() as adapter:
        adapter.create_dataset("justin-logs:login-check")
    assert metacat_env.get_dataset_record("justin-logs:login-check") is not None, "the token was accepted"
    assert auth_requests(metacat_env) == [
        "POST /auth/auth 401",  # LDAP first, as the client does (the double has no LDAP)
        "GET /auth/auth 401",  # the digest challenge
        "GET /auth/auth 200",  # the digest answer: the token
    ]


def test_a_wrong_password_is_final_and_never_echoed(metacat_env: MetaCatDouble, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUSTIN_METACAT__PASSWORD", WRONG_PASSWORD)
    reset_caches()
    with MetaCatAdapter() as adapter, pytest.raises(ExternalCallError) as caught:
        adapter.outputs()
    assert isinstance(caught.value.cause, MetaCatLoginError) and caught.value.cause.status == 401
    assert caught.value.attempts == 1, "a refused login is not retried"
    assert WRONG_PASSWORD not in str(caught.value)


def test_a_503_from_the_auth_server_is_retried(metacat_env: MetaCatDouble) -> None:
    metacat_env.fail_next("auth", 503, count=2)  # the LDAP request, then the retry's LDAP request
    with MetaCatAdapter() as adapter:
        adapter.create_dataset("justin-logs:login-retry")
    assert metacat_env.get_dataset_record("justin-logs:login-retry") is not None


def test_a_token_login_exchanges_the_token_for_a_fresh_one(
    metacat_env: MetaCatDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JUSTIN_METACAT__LOGIN_METHOD", "token")
    monkeypatch.setenv("JUSTIN_METACAT__TOKEN", metacat_env.mint_token(METACAT_USER))
    reset_caches()
    metacat_env.clear_requests()
    with MetaCatAdapter() as adapter:
        adapter.create_dataset("justin-logs:token-login")
    assert auth_requests(metacat_env) == ["POST /auth/auth 200"]
    assert metacat_env.get_dataset_record("justin-logs:token-login") is not None
