"""HTTPAdapter.post_form (the dashboard's token request) against the OpenID provider double."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from justin_flows.adapters.calls import ExternalCallError, ExternalService
from justin_flows.adapters.http import SERVICE, HTTPAdapter, InsecureURLError, is_transient
from justin_flows.ledger import Ledger
from justin_flows.secrets import register_secret
from justin_flows.settings import CILogonSettings, RetryPolicy, Settings
from justin_flows.testing.oidc_provider import MOVED_TOKEN_PATH, TOKEN_PATH, OIDCProviderDouble

FAST = RetryPolicy(attempts=3, backoff_seconds=0.01, max_backoff_seconds=0.02, jitter=0)


@pytest.fixture(scope="module")
def provider() -> Iterator[OIDCProviderDouble]:
    with OIDCProviderDouble() as double:
        yield double


def adapter(provider: OIDCProviderDouble | None) -> tuple[HTTPAdapter, Ledger]:
    ledger = Ledger()
    settings = Settings(cilogon=CILogonSettings(ca_file=provider.ca_file if provider else None), retry=FAST)
    return HTTPAdapter(settings, ExternalService(SERVICE, FAST, is_transient, ledger=ledger)), ledger


def test_error_answer_is_one_attempt_shows_the_oauth_error_and_hides_the_secret(provider: OIDCProviderDouble) -> None:
    secret = "posted-secret-value-canary-19ab"
    register_secret(secret)
    http, ledger = adapter(provider)
    provider.token_requests.clear()
    with pytest.raises(ExternalCallError) as info:
        http.post_form(provider.url + TOKEN_PATH, {"client_id": "someone", "client_secret": secret, "grant_type": "x"})
    assert "answered 401: invalid_client" in str(info.value)
    assert [(r.operation, r.attempt, r.outcome) for r in ledger.snapshot()] == [("POST 127.0.0.1", 1, "error")]
    assert all(secret not in (r.error or "") for r in ledger.snapshot())
    assert provider.token_requests == [{"client_id": "someone", "grant_type": "x"}]  # form-encoded, as sent


def test_a_redirected_post_is_not_followed(provider: OIDCProviderDouble) -> None:
    http, _ = adapter(provider)
    provider.requests.clear()
    with pytest.raises(ExternalCallError, match="answered 307"):
        http.post_form(provider.url + MOVED_TOKEN_PATH, {"client_secret": "s3cr3t-not-forwarded"})
    assert provider.requests == [("POST", MOVED_TOKEN_PATH)]


def test_plain_http_is_refused_before_any_call() -> None:
    http, ledger = adapter(None)
    with pytest.raises(InsecureURLError):
        http.post_form("http://127.0.0.1:1/oauth2/token", {"a": "b"})
    assert ledger.snapshot() == []


def test_an_untrusted_certificate_is_refused(provider: OIDCProviderDouble) -> None:
    http, ledger = adapter(None)  # the system store does not know the test CA
    with pytest.raises(ExternalCallError, match="CERTIFICATE_VERIFY_FAILED"):
        http.post_form(provider.url + TOKEN_PATH, {"a": "b"})
    assert [r.attempt for r in ledger.snapshot()] == [1]
