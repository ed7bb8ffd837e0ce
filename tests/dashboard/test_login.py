"""Dashboard login (reference §7) against the OpenID provider double, over real HTTPS.

Upstream sent no PKCE and no nonce, did not verify TLS on the token POST and never checked
the tokens' signatures; every test below with "refused" in its name is a login upstream
would have let through (or could not tell apart).
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select
from starlette.testclient import TestClient

from justin_flows.adapters.calls import ExternalCallError
from justin_flows.adapters.http import HTTPAdapter
from justin_flows.dashboard import DashboardConfigError, create_app
from justin_flows.dashboard.app import safe_next
from justin_flows.dashboard.config import CILOGON_SCOPES
from justin_flows.db.engine import transaction
from justin_flows.db.models import ExternalCall
from justin_flows.testing.oidc_provider import OIDCProviderDouble, pkce_challenge
from tests.dashboard.conftest import (
    PUBLIC_URL,
    SECURE_PUBLIC_URL,
    log_in,
    make_config,
    seed_grid,
    start_login,
)

COOKIE = "justin_session"


def logged_in(client: TestClient) -> bool:
    response = client.get("/")
    return response.status_code == 200


def test_full_login_with_pkce_state_and_nonce_rotates_the_session(
    client: TestClient, browser: httpx.Client, idp: OIDCProviderDouble
) -> None:
    seed_grid(rse_name="DUNE_US_FNAL_DISK_STAGE")
    trip = start_login(client, browser, "/storages")
    params = trip.authorize_params
    assert trip.authorize_url.startswith(idp.url + "/authorize?")
    assert params["response_type"] == "code" and params["client_id"] == idp.client_id
    assert params["redirect_uri"] == PUBLIC_URL + "/login/cilogon/login"
    assert params["scope"] == CILOGON_SCOPES
    assert params["code_challenge_method"] == "S256" and len(params["code_challenge"]) == 43
    assert len(params["state"]) >= 43 and len(params["nonce"]) >= 43 and params["state"] != params["nonce"]
    assert trip.callback_params["state"] == params["state"]
    assert trip.pre_login_cookie

    response = client.get(trip.callback_path)
    assert response.status_code == 303 and response.headers["location"] == "/storages"
    new_cookie = response.cookies.get(COOKIE)
    assert new_cookie and new_cookie != trip.pre_login_cookie  # rotated at login

    [token_request] = idp.token_requests
    assert token_request["grant_type"] == "authorization_code"
    assert token_request["code"] == trip.callback_params["code"]
    assert token_request["redirect_uri"] == PUBLIC_URL + "/login/cilogon/login"
    assert pkce_challenge(token_request["code_verifier"]) == params["code_challenge"]

    page = client.get("/storages")
    assert page.status_code == 200
    assert "DUNE_US_FNAL_DISK_STAGE" in page.text and "Alice Tester" in page.text

    # the pre-login session id is worthless now
    with TestClient(client.app, base_url=PUBLIC_URL, follow_redirects=False, cookies={COOKIE: trip.pre_login_cookie}) as old:
        assert old.get("/storages").status_code == 302


def test_cookie_is_secure_httponly_samesite_lax_and_host_prefixed(idp: OIDCProviderDouble, browser: httpx.Client) -> None:
    config = make_config(idp, public_url=SECURE_PUBLIC_URL, insecure_loopback_http=False)
    with TestClient(create_app(config), base_url=SECURE_PUBLIC_URL, follow_redirects=False) as secure:
        before = secure.get("/login").headers["set-cookie"]
        trip = start_login(secure, browser, "/")
        after = secure.get(trip.callback_path)
        assert after.status_code == 303
        for header in (before, after.headers["set-cookie"]):
            assert header.startswith("__Host-justin_session=")
            attributes = {a.strip().split("=")[0].lower() for a in header.split(";")[1:]}
            assert {"secure", "httponly", "samesite", "path", "max-age"} <= attributes
            assert "samesite=lax" in header.lower() and "path=/" in header.lower() and "domain" not in header.lower()
        assert secure.get("/").status_code == 200
        assert after.headers["strict-transport-security"] == "max-age=31536000"


def test_insecure_cookies_only_for_loopback_http(idp: OIDCProviderDouble) -> None:
    with pytest.raises(DashboardConfigError, match="only for http://127.0.0.1"):
        make_config(idp, public_url="http://dashboard.example.org")
    with pytest.raises(DashboardConfigError, match="must be https://"):
        make_config(idp, public_url="http://127.0.0.1:8080", insecure_loopback_http=False)
    with pytest.raises(DashboardConfigError, match="client secret is not set"):
        make_config(idp, client_secret=SecretStr(""))
    config = make_config(idp)
    assert (config.secure_cookies, config.cookie_name) == (False, "justin_session")


def test_login_rejects_a_state_from_another_browser(client: TestClient, browser: httpx.Client, idp: OIDCProviderDouble) -> None:
    """state is bound to the session: a code+state started elsewhere (login CSRF) is refused."""
    with TestClient(client.app, base_url=PUBLIC_URL, follow_redirects=False) as attacker:
        trip = start_login(attacker, browser, "/")
    client.get("/login")  # the victim has a session of its own
    response = client.get(trip.callback_path)
    assert response.status_code == 400 and "not started by this browser" in response.text
    assert idp.token_requests == []  # refused before the code was spent
    assert not logged_in(client)


def test_wrong_state_is_refused_and_the_right_one_still_works(client: TestClient, browser: httpx.Client,
                                                              idp: OIDCProviderDouble) -> None:
    trip = start_login(client, browser, "/sites")
    forged = trip.callback_path.replace(trip.callback_params["state"], "forged-state-value")
    assert client.get(forged).status_code == 400
    no_state = f"/login/cilogon/login?code={trip.callback_params['code']}"
    assert client.get(no_state).status_code == 400
    assert not logged_in(client)
    assert client.get(trip.callback_path).headers["location"] == "/sites"


def test_a_callback_cannot_be_replayed(client: TestClient, browser: httpx.Client) -> None:
    trip = start_login(client, browser)
    assert client.get(trip.callback_path).status_code == 303
    assert client.get(trip.callback_path).status_code == 400  # the state was used up


def test_callback_without_any_session_is_refused(idp: OIDCProviderDouble, browser: httpx.Client, client: TestClient) -> None:
    trip = start_login(client, browser)
    with TestClient(client.app, base_url=PUBLIC_URL, follow_redirects=False) as cookieless:
        response = cookieless.get(trip.callback_path)
    assert response.status_code == 400 and "no login in progress" in response.text


@pytest.mark.parametrize(
    ("knob", "value", "page_says", "log_says"),
    [
        ("forge_id_token", True, "could not be verified", "ID token signature does not verify"),
        ("forge_access_token", True, "could not be verified", "access token signature does not verify"),
        ("id_token_alg", "none", "could not be verified", "signed with 'none'"),
        ("id_token_alg", "HS256", "could not be verified", "signed with 'HS256'"),
        ("kid", "rotated-away-key", "could not be verified", "not in jwt_keys"),
        ("issued_at_offset_seconds", -7200, "the login has expired", "ID token has expired"),
        ("nonce", "a-nonce-from-another-login", "could not be completed", "nonce does not match"),
        ("audience", "another-client", "could not be verified", "InvalidAudienceError"),
        ("issuer", "https://issuer.invalid/dune", "could not be verified", "InvalidIssuerError"),
    ],
)
def test_an_untrustworthy_token_is_refused(
    client: TestClient, browser: httpx.Client, idp: OIDCProviderDouble, caplog: pytest.LogCaptureFixture,
    knob: str, value: object, page_says: str, log_says: str,
) -> None:
    setattr(idp.behaviour, knob, value)
    before = start_login(client, browser).pre_login_cookie
    trip = start_login(client, browser)
    with caplog.at_level(logging.WARNING, logger="justin_flows.dashboard"):
        response = client.get(trip.callback_path)
    assert response.status_code == 403
    assert page_says in response.text
    assert any(log_says in r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]
    assert "set-cookie" not in response.headers and client.cookies.get(COOKIE) == before
    assert not logged_in(client)


def test_a_user_without_dune_is_refused(client: TestClient, browser: httpx.Client, idp: OIDCProviderDouble) -> None:
    idp.user.groups = ["/fermilab", "/dune-not-really"]
    response = log_in(client, browser)
    assert response.status_code == 403
    assert "not registered in /dune" in response.text
    assert not logged_in(client)


def test_groups_come_from_the_access_token_as_upstream_reads_them(
    client: TestClient, browser: httpx.Client, idp: OIDCProviderDouble
) -> None:
    idp.behaviour.access_token_groups = ["/fermilab"]  # the ID token still says /dune
    assert log_in(client, browser).status_code == 403


def test_opaque_access_token_takes_groups_from_the_verified_id_token(
    client: TestClient, browser: httpx.Client, idp: OIDCProviderDouble
) -> None:
    idp.behaviour.opaque_access_token = True
    assert log_in(client, browser).status_code == 303
    assert logged_in(client)
    client.cookies.clear()
    idp.behaviour.groups_in_id_token = False
    assert log_in(client, browser).status_code == 403


def test_provider_denial_is_shown_and_nothing_is_posted(client: TestClient, browser: httpx.Client,
                                                        idp: OIDCProviderDouble) -> None:
    idp.behaviour.deny = True
    response = log_in(client, browser)
    assert response.status_code == 403 and "CILogon did not log you in (access_denied)" in response.text
    assert idp.token_requests == []


@pytest.mark.parametrize(
    "target",
    ["https://evil.example/", "//evil.example/path", "/\\evil.example", "javascript:alert(1)",
     "/%0d%0aSet-Cookie:x=1", "/login", "/logout", "http:/evil.example"],
)
def test_open_redirect_after_login_is_refused(client: TestClient, browser: httpx.Client, target: str) -> None:
    response = log_in(client, browser, target)
    assert response.status_code == 303
    location = response.headers["location"]
    assert location == "/" or (location.startswith("/") and not location.startswith("//") and "evil" not in location
                               and "\r" not in location and "\n" not in location)


def test_safe_next_keeps_local_paths_only() -> None:
    assert safe_next("/sites?x=1") == "/sites?x=1"
    assert safe_next("/external-calls?hours=72") == "/external-calls?hours=72"
    for bad in ("https://evil.example", "//evil.example", "/\\evil.example", "evil", "", None, "/x\r\nSet-Cookie: a=b",
                "/" + "a" * 3000, "/login", "/login/cilogon/login"):
        assert safe_next(bad) == "/", bad


def test_next_path_survives_the_login(client: TestClient, browser: httpx.Client) -> None:
    assert client.get("/external-calls?hours=72").headers["location"] == "/login?next=%2Fexternal-calls%3Fhours%3D72"
    response = log_in(client, browser, "/external-calls?hours=72")
    assert response.headers["location"] == "/external-calls?hours=72"


def test_pages_redirect_to_login_when_logged_out(client: TestClient) -> None:
    for path in ("/", "/rucio-health", "/storages", "/sites", "/jobs", "/external-calls"):
        response = client.get(path)
        assert response.status_code == 302
        assert response.headers["location"] == "/login?next=" + path.replace("/", "%2F")
    assert client.get("/healthz").text == "ok"


def test_logout_is_a_post_with_the_sessions_csrf_token(client: TestClient, browser: httpx.Client) -> None:
    log_in(client, browser)
    page = client.get("/")
    token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
    assert client.get("/logout").status_code == 405
    assert client.post("/logout", data={"csrf_token": "wrong"}).status_code == 403
    assert client.post("/logout", data={}).status_code == 403
    assert client.post("/logout", data={"csrf_token": token}, headers={"Origin": "https://evil.example"}).status_code == 403
    assert logged_in(client)
    session_cookie = client.cookies.get(COOKIE)

    response = client.post("/logout", data={"csrf_token": token}, headers={"Origin": PUBLIC_URL})
    assert response.status_code == 303 and response.headers["location"] == "/logged-out"
    assert 'justin_session=""' in response.headers["set-cookie"] or "Max-Age=0" in response.headers["set-cookie"]
    assert not logged_in(client)
    with TestClient(client.app, base_url=PUBLIC_URL, follow_redirects=False, cookies={COOKIE: session_cookie}) as stale:
        assert stale.get("/").status_code == 302  # the session is gone server-side, not just the cookie


def test_login_calls_are_in_the_ledger_and_the_secret_is_not(idp: OIDCProviderDouble, browser: httpx.Client) -> None:
    config = make_config(idp, client_secret=SecretStr("a-wrong-client-secret-for-this-test"))
    with TestClient(create_app(config), base_url=PUBLIC_URL, follow_redirects=False) as client:
        response = log_in(client, browser)
    assert response.status_code == 403 and "CILogon did not complete the login" in response.text
    with transaction() as s:
        rows = s.execute(select(ExternalCall.flow_name, ExternalCall.service, ExternalCall.operation,
                                ExternalCall.attempt, ExternalCall.outcome, ExternalCall.error)
                         .order_by(ExternalCall.call_id)).all()
    assert [tuple(r[:5]) for r in rows] == [
        ("dashboard", "http", "GET 127.0.0.1", 1, "ok"),  # the OpenID configuration (then cached)
        ("dashboard", "http", "POST 127.0.0.1", 1, "error"),  # one token POST: a code is single-use
    ]
    assert "401: invalid_client" in rows[1].error
    assert all("a-wrong-client-secret" not in (r.error or "") for r in rows)


def test_provider_unreachable_gives_a_clear_503(idp: OIDCProviderDouble) -> None:
    config = make_config(idp, openid_configuration_url=idp.url + "/no/such/configuration")
    with TestClient(create_app(config), base_url=PUBLIC_URL, follow_redirects=False) as client:
        response = client.get("/login")
    assert response.status_code == 503 and "configuration could not be read" in response.text


def test_every_response_has_the_security_headers(client: TestClient, browser: httpx.Client) -> None:
    for response in (client.get("/storages"), log_in(client, browser), client.get("/storages"), client.get("/healthz")):
        headers = response.headers
        assert "script-src" not in headers["content-security-policy"]
        assert headers["content-security-policy"].startswith("default-src 'none'")
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "same-origin"
        assert headers["cache-control"] == "no-store"


def test_the_double_checks_pkce_and_the_code_is_single_use(idp: OIDCProviderDouble, browser: httpx.Client) -> None:
    """The provider double really enforces what the dashboard relies on (else the tests prove little)."""
    verifier = "v" * 64
    query = {
        "response_type": "code", "client_id": idp.client_id, "redirect_uri": PUBLIC_URL + "/login/cilogon/login",
        "scope": "openid", "state": "s" * 20, "nonce": "n" * 20, "code_challenge": pkce_challenge(verifier),
        "code_challenge_method": "S256",
    }
    code = parse_qs(urlsplit(browser.get(idp.url + "/authorize", params=query).headers["location"]).query)["code"][0]
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": query["redirect_uri"],
            "client_id": idp.client_id, "client_secret": idp.client_secret}
    with HTTPAdapter() as http:
        with pytest.raises(ExternalCallError, match="invalid_grant: PKCE verification failed"):
            http.post_form_json(idp.url + "/oauth2/token", {**form, "code_verifier": "w" * 64})
        with pytest.raises(ExternalCallError, match="invalid_grant: unknown, used or expired code"):
            http.post_form_json(idp.url + "/oauth2/token", {**form, "code_verifier": verifier})
    bad_redirect = browser.get(idp.url + "/authorize", params={**query, "redirect_uri": "https://evil.example/cb"})
    assert bad_redirect.status_code == 400 and "location" not in bad_redirect.headers
