"""updateJwks (reference §2.2) against a local HTTPS identity provider and PostgreSQL.

The provider is a real TLS server whose certificate is signed by a CA made for the test; the
key set holds real RSA keys. The adapter trusts that CA through settings, as production
trusts the grid CAs.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import Engine, insert, select

from justin_flows.adapters.calls import ExternalCallError
from justin_flows.adapters.http import HTTPAdapter, InsecureURLError
from justin_flows.collector.jwks import update_jwks
from justin_flows.db.engine import transaction
from justin_flows.db.models import JwtKey
from justin_flows.domain.jwks import JwksDocumentError
from justin_flows.ledger import LEDGER
from justin_flows.testing.https_server import LocalHTTPSServer, make_test_ca
from justin_flows.testing.jwk import new_rsa_key, rsa_jwk
from tests.conftest import reset_caches

CONFIG_PATH = "/dune/.well-known/openid-configuration"
JWKS_PATH = "/oauth2/certs"
JSON = "application/json"


@pytest.fixture(scope="module")
def keys() -> list[rsa.RSAPrivateKey]:
    return [new_rsa_key() for _ in range(3)]


def serve_json(server: LocalHTTPSServer, path: str, document: Any) -> None:
    server.routes[path] = (200, JSON, json.dumps(document))


def point_settings_at(mp: pytest.MonkeyPatch, server: LocalHTTPSServer, ca_file: str | None = None) -> None:
    mp.setenv("JUSTIN_CILOGON__CA_FILE", ca_file or str(server.ca_file))
    mp.setenv("JUSTIN_CILOGON__OPENID_CONFIGURATION_URL", server.url_for(CONFIG_PATH))
    reset_caches()


@pytest.fixture
def idp(db: Engine, keys: list[rsa.RSAPrivateKey]) -> Iterator[LocalHTTPSServer]:
    """CILogon's two documents on https://127.0.0.1, trusted through JUSTIN_CILOGON__CA_FILE."""
    with LocalHTTPSServer() as server, pytest.MonkeyPatch.context() as mp:
        serve_json(server, CONFIG_PATH, {"issuer": server.url + "/dune", "jwks_uri": server.url_for(JWKS_PATH)})
        serve_json(server, JWKS_PATH, {"keys": [rsa_jwk(keys[0], "kid-a"), rsa_jwk(keys[1], "kid-b")]})
        point_settings_at(mp, server)
        yield server
    reset_caches()


@pytest.fixture
def http(idp: LocalHTTPSServer) -> Iterator[HTTPAdapter]:
    adapter = HTTPAdapter()
    yield adapter
    adapter.close()


def stored_keys() -> dict[str, dict[str, Any]]:
    with transaction() as s:
        return {
            r.jwks_kid: {
                "n": r.jwks_n, "e": r.jwks_e, "alg": r.jwks_alg, "use": r.jwks_use, "kty": r.jwks_kty,
                "last_seen_time": r.last_seen_time,
            }
            for r in s.scalars(select(JwtKey))
        }


def expected(key: rsa.RSAPrivateKey, kid: str) -> dict[str, str]:
    jwk = rsa_jwk(key, kid)
    return {"n": jwk["n"], "e": jwk["e"], "alg": "RS256", "use": "sig", "kty": "RSA"}


def material(rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {kid: {k: v for k, v in row.items() if k != "last_seen_time"} for kid, row in rows.items()}


def add_old_key(key: rsa.RSAPrivateKey) -> dict[str, dict[str, Any]]:
    jwk = rsa_jwk(key, "kid-old")
    seen = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
    with transaction() as s:
        s.execute(insert(JwtKey).values(
            jwks_kid="kid-old", jwks_n=jwk["n"], jwks_e=jwk["e"], jwks_alg="RS256", jwks_use="sig",
            jwks_kty="RSA", last_seen_time=seen,
        ))
    return stored_keys()


def test_keys_are_stored_exactly_with_two_gets(
    idp: LocalHTTPSServer, http: HTTPAdapter, keys: list[rsa.RSAPrivateKey]
) -> None:
    before = dt.datetime.now(dt.timezone.utc)
    report = update_jwks(http)
    after = dt.datetime.now(dt.timezone.utc)

    rows = stored_keys()
    assert material(rows) == {"kid-a": expected(keys[0], "kid-a"), "kid-b": expected(keys[1], "kid-b")}
    assert all(before <= r["last_seen_time"] <= after for r in rows.values())
    assert report.errors == []
    assert dict(report.counts) == {"new": 2, "stored": 2}
    assert report.rows == [
        {"kid": "kid-a", "status": "new", "detail": "RSA 2048 bits, alg RS256, use sig"},
        {"kid": "kid-b", "status": "new", "detail": "RSA 2048 bits, alg RS256, use sig"},
    ]
    assert idp.requests == [CONFIG_PATH, JWKS_PATH]
    assert [(r.operation, r.outcome) for r in LEDGER.snapshot()] == [("GET 127.0.0.1", "ok")] * 2


def test_bad_keys_are_skipped_by_kid_and_the_good_ones_stored(
    idp: LocalHTTPSServer, http: HTTPAdapter, keys: list[rsa.RSAPrivateKey]
) -> None:
    forged = rsa_jwk(keys[1], "kid-forged")
    forged["n"] = forged["n"][:-2] + "AA"  # an even modulus: not an RSA key any verifier could load
    ec_key = {"kty": "EC", "kid": "kid-ec", "alg": "ES256", "use": "sig", "crv": "P-256", "x": "AAAA", "y": "BBBB"}
    quoted = dict(rsa_jwk(keys[2], "kid-quoted"), alg='RS256"; DROP TABLE jwt_keys; --')
    serve_json(idp, JWKS_PATH, {"keys": [forged, rsa_jwk(keys[0], "kid-a"), ec_key, quoted]})

    report = update_jwks(http)

    assert material(stored_keys()) == {"kid-a": expected(keys[0], "kid-a")}
    assert report.errors == [
        "JWKS key kid 'kid-forged' skipped: n is even, so not an RSA modulus",
        "JWKS key kid 'kid-ec' skipped: kty 'EC' is not RSA (jwt_keys stores an RSA modulus and exponent only)",
        "JWKS key kid 'kid-quoted' skipped: alg 'RS256\"; DROP TABLE jwt_keys; --' has characters other than "
        "A-Z a-z 0-9 _ -",
    ]
    assert dict(report.counts) == {"new": 1, "stored": 1, "skipped": 3}
    assert [(r["kid"], r["status"]) for r in report.rows] == [
        ("kid-a", "new"), ("kid-forged", "skipped"), ("kid-ec", "skipped"), ("kid-quoted", "skipped"),
    ]


CONFIG_URL = "{url}" + CONFIG_PATH
JWKS_URL = "{url}" + JWKS_PATH


@pytest.mark.parametrize(
    ("path", "answer", "error", "message"),
    [
        (CONFIG_PATH, (200, "text/html", "<html>maintenance</html>"), ValueError,
         CONFIG_URL + " did not return JSON"),
        (CONFIG_PATH, (200, JSON, "[1, 2]"), JwksDocumentError,
         "OpenID configuration at " + CONFIG_URL + " is not a JSON object (got list)"),
        (CONFIG_PATH, (200, JSON, '{"issuer": "x"}'), JwksDocumentError,
         "OpenID configuration at " + CONFIG_URL + " has no jwks_uri"),
        (CONFIG_PATH, (200, JSON, '{"jwks_uri": ["https://x/certs"]}'), JwksDocumentError,
         "OpenID configuration at " + CONFIG_URL + ": jwks_uri is not a string (got list)"),
        (CONFIG_PATH, (200, JSON, '{"jwks_uri": "http://127.0.0.1/certs"}'), JwksDocumentError,
         "OpenID configuration at " + CONFIG_URL + ": jwks_uri 'http://127.0.0.1/certs' is not an https:// URL"),
        (CONFIG_PATH, (404, JSON, '{"error": "gone"}'), ExternalCallError,
         "http.GET 127.0.0.1 failed after 1 attempt(s): HTTPStatusError: Client error '404 Not Found' for url '"
         + CONFIG_URL),
        (JWKS_PATH, (200, JSON, '{"keys": [{"kid": "x"'), ValueError, JWKS_URL + " did not return JSON"),
        (JWKS_PATH, (200, JSON, '{"jwks": []}'), JwksDocumentError, "JWKS at " + JWKS_URL + " has no keys member"),
        (JWKS_PATH, (200, JSON, '{"keys": "kid-a"}'), JwksDocumentError,
         "JWKS at " + JWKS_URL + ": keys is not a list (got str)"),
        (JWKS_PATH, (200, JSON, "null"), JwksDocumentError,
         "JWKS at " + JWKS_URL + " is not a JSON object (got NoneType)"),
    ],
)
def test_malformed_document_raises_naming_the_url_and_leaves_stored_keys(
    idp: LocalHTTPSServer, http: HTTPAdapter, keys: list[rsa.RSAPrivateKey],
    path: str, answer: tuple[int, str, str], error: type[Exception], message: str,
) -> None:
    """Upstream returned quietly on a bad document; here the run fails loudly, writing nothing."""
    old = add_old_key(keys[2])
    idp.routes[path] = answer
    with pytest.raises(error) as err:
        update_jwks(http)
    assert str(err.value).startswith(message.format(url=idp.url))
    assert stored_keys() == old


def test_untrusted_certificate_is_refused_once_and_not_retried(
    idp: LocalHTTPSServer, keys: list[rsa.RSAPrivateKey], tmp_path: Path
) -> None:
    old = add_old_key(keys[2])
    other_ca = make_test_ca("some other CA").write(tmp_path / "other-ca.pem")
    with pytest.MonkeyPatch.context() as mp:
        point_settings_at(mp, idp, ca_file=str(other_ca))
        with HTTPAdapter() as http, pytest.raises(ExternalCallError) as err:
            update_jwks(http)
    reset_caches()
    assert "CERTIFICATE_VERIFY_FAILED" in str(err.value)
    assert err.value.attempts == 1  # a certificate that fails now fails a second later too
    assert idp.requests == []  # the handshake failed: nothing was asked of the server
    assert [(r.operation, r.outcome) for r in LEDGER.snapshot()] == [("GET 127.0.0.1", "error")]
    assert stored_keys() == old


def test_certificate_for_another_host_name_is_refused(db: Engine) -> None:
    with LocalHTTPSServer(hosts=["idp.example.org"]) as server, pytest.MonkeyPatch.context() as mp:
        serve_json(server, CONFIG_PATH, {"jwks_uri": server.url_for(JWKS_PATH)})
        point_settings_at(mp, server)
        with HTTPAdapter() as http, pytest.raises(ExternalCallError) as err:
            update_jwks(http)
    reset_caches()
    assert "certificate verify failed: IP address mismatch" in str(err.value)
    assert stored_keys() == {}


def test_plain_http_configuration_url_is_refused_before_any_call(http: HTTPAdapter) -> None:
    with pytest.raises(JwksDocumentError, match=r"^OpenID configuration URL 'http://127.0.0.1:1/x' is not an https"):
        update_jwks(http, configuration_url="http://127.0.0.1:1/x")
    with pytest.raises(InsecureURLError):
        http.get_json("http://127.0.0.1:1/x")
    assert LEDGER.snapshot() == []


def test_configuration_url_parameter_overrides_settings(
    idp: LocalHTTPSServer, http: HTTPAdapter, keys: list[rsa.RSAPrivateKey]
) -> None:
    serve_json(idp, "/other/.well-known/openid-configuration", {"jwks_uri": idp.url_for("/other/certs")})
    serve_json(idp, "/other/certs", {"keys": [rsa_jwk(keys[2], "kid-other")]})
    update_jwks(http, configuration_url=idp.url_for("/other/.well-known/openid-configuration"))
    assert material(stored_keys()) == {"kid-other": expected(keys[2], "kid-other")}
    assert idp.requests == ["/other/.well-known/openid-configuration", "/other/certs"]


def test_twice_gives_the_same_rows_and_a_rotation_keeps_old_keys(
    idp: LocalHTTPSServer, http: HTTPAdapter, keys: list[rsa.RSAPrivateKey]
) -> None:
    update_jwks(http)
    first = stored_keys()
    second_report = update_jwks(http)
    second = stored_keys()
    assert material(second) == material(first)
    assert all(second[k]["last_seen_time"] >= first[k]["last_seen_time"] for k in first)
    assert dict(second_report.counts) == {"unchanged": 2, "stored": 2}

    # CILogon rotates: kid-a disappears, kid-c appears. Upstream never deletes, nor do we.
    serve_json(idp, JWKS_PATH, {"keys": [rsa_jwk(keys[1], "kid-b"), rsa_jwk(keys[2], "kid-c")]})
    third_report = update_jwks(http)
    third = stored_keys()
    assert material(third) == {
        "kid-a": expected(keys[0], "kid-a"), "kid-b": expected(keys[1], "kid-b"), "kid-c": expected(keys[2], "kid-c"),
    }
    assert third["kid-a"]["last_seen_time"] == second["kid-a"]["last_seen_time"]  # last listed then
    assert third["kid-b"]["last_seen_time"] > second["kid-b"]["last_seen_time"]
    assert dict(third_report.counts) == {"unchanged": 1, "new": 1, "stored": 2}


def test_new_material_under_a_known_kid_replaces_it_and_is_shown_as_changed(
    idp: LocalHTTPSServer, http: HTTPAdapter, keys: list[rsa.RSAPrivateKey]
) -> None:
    update_jwks(http)
    serve_json(idp, JWKS_PATH, {"keys": [rsa_jwk(keys[2], "kid-a"), rsa_jwk(keys[1], "kid-b")]})
    report = update_jwks(http)
    assert material(stored_keys()) == {"kid-a": expected(keys[2], "kid-a"), "kid-b": expected(keys[1], "kid-b")}
    assert [(r["kid"], r["status"]) for r in report.rows] == [("kid-a", "changed"), ("kid-b", "unchanged")]


def test_an_empty_key_set_is_reported_and_keeps_stored_keys(
    idp: LocalHTTPSServer, http: HTTPAdapter, keys: list[rsa.RSAPrivateKey]
) -> None:
    old = add_old_key(keys[2])
    serve_json(idp, JWKS_PATH, {"keys": []})
    report = update_jwks(http)
    assert report.errors == [f"JWKS at {idp.url_for(JWKS_PATH)} lists no keys"]
    assert stored_keys() == old
