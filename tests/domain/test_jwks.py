"""Validating OpenID configurations and key sets (updateJwks, reference §2.2), with real RSA keys."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from justin_flows.domain.jwks import (
    Jwk,
    JwksDocumentError,
    jwks_uri_from_configuration,
    parse_jwks,
    validate_key,
)
from justin_flows.testing.jwk import b64url_uint, new_rsa_key, rsa_jwk

URL = "https://idp.example/.well-known/openid-configuration"
JWKS_URL = "https://idp.example/oauth2/certs"


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return new_rsa_key()


def test_a_real_rsa_key_is_accepted_with_its_size(key: rsa.RSAPrivateKey) -> None:
    jwk = rsa_jwk(key, "k1")
    assert validate_key(jwk) == Jwk("k1", "RSA", "RS256", "sig", jwk["n"], "AQAB", 2048)
    assert validate_key(jwk).row() == {
        "jwks_kid": "k1", "jwks_kty": "RSA", "jwks_alg": "RS256", "jwks_use": "sig",
        "jwks_n": jwk["n"], "jwks_e": "AQAB",
    }


def _with(key: rsa.RSAPrivateKey, **changes: Any) -> dict[str, Any]:
    jwk: dict[str, Any] = rsa_jwk(key, "k1")
    for name, value in changes.items():
        if value is None:
            del jwk[name]
        else:
            jwk[name] = value
    return jwk


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"kid": None}, "kid is missing"),
        ({"use": None}, "use is missing"),
        ({"kid": ""}, "kid '' has characters other than"),
        ({"kid": "a b"}, "kid 'a b' has characters other than"),
        ({"alg": 'RS256"'}, "alg 'RS256\"' has characters other than"),
        ({"e": 65537}, "e is not a string (got int)"),
        ({"kid": "k" * 256}, "kid is longer than 255 characters"),
        ({"use": "s" * 33}, "use is longer than 32 characters"),
        ({"alg": "ES256"}, "alg 'ES256' is not an RSA algorithm"),
        ({"kty": "oct"}, "kty 'oct' is not RSA"),
        ({"n": "A"}, "n is not valid base64url (length 1)"),
    ],
)
def test_bad_member_rejects_the_key_with_the_reason(
    key: rsa.RSAPrivateKey, changes: dict[str, Any], reason: str
) -> None:
    with pytest.raises(ValueError) as err:
        validate_key(_with(key, **changes))
    assert str(err.value).startswith(reason)


def test_ec_key_is_refused_because_jwt_keys_holds_rsa_numbers_only() -> None:
    ec_jwk = {"kty": "EC", "kid": "ec1", "alg": "ES256", "use": "sig", "crv": "P-256", "x": "abc", "y": "def"}
    with pytest.raises(ValueError, match=r"^kty 'EC' is not RSA \(jwt_keys stores an RSA modulus and exponent only\)"):
        validate_key(ec_jwk)


def test_numbers_that_are_not_an_rsa_key_are_refused(key: rsa.RSAPrivateKey) -> None:
    """Upstream kept any string of the right characters; a verifier could not load it."""
    n = key.public_key().public_numbers().n
    with pytest.raises(ValueError, match=r"^n and e do not form an RSA public key"):
        validate_key(_with(key, e=b64url_uint(65536)))  # even exponent
    with pytest.raises(ValueError, match=r"^n and e do not form an RSA public key"):
        validate_key(_with(key, e=b64url_uint(1)))
    with pytest.raises(ValueError, match=r"^n is even, so not an RSA modulus"):
        validate_key(_with(key, n=b64url_uint(n + 1)))


def test_short_rsa_key_is_refused() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(ValueError, match=r"^RSA key has 1024 bits, fewer than 2048"):
        validate_key(rsa_jwk(small, "small"))


def test_jwks_uri_must_be_present_a_string_and_https() -> None:
    assert jwks_uri_from_configuration({"jwks_uri": JWKS_URL, "issuer": "x"}, URL) == JWKS_URL
    cases: list[tuple[Any, str]] = [
        ([], f"OpenID configuration at {URL} is not a JSON object (got list)"),
        ({"issuer": "x"}, f"OpenID configuration at {URL} has no jwks_uri"),
        ({"jwks_uri": 7}, f"OpenID configuration at {URL}: jwks_uri is not a string (got int)"),
        ({"jwks_uri": "http://idp.example/certs"},
         f"OpenID configuration at {URL}: jwks_uri 'http://idp.example/certs' is not an https:// URL"),
        ({"jwks_uri": "https:///certs"},
         f"OpenID configuration at {URL}: jwks_uri 'https:///certs' is not an https:// URL"),
    ]
    for document, message in cases:
        with pytest.raises(JwksDocumentError) as err:
            jwks_uri_from_configuration(document, URL)
        assert str(err.value) == message


def test_key_set_must_be_an_object_with_a_keys_list() -> None:
    cases: list[tuple[Any, str]] = [
        ("keys", f"JWKS at {JWKS_URL} is not a JSON object (got str)"),
        ({"jwks": []}, f"JWKS at {JWKS_URL} has no keys member"),
        ({"keys": {"kid": "k1"}}, f"JWKS at {JWKS_URL}: keys is not a list (got dict)"),
    ]
    for document, message in cases:
        with pytest.raises(JwksDocumentError) as err:
            parse_jwks(document, JWKS_URL)
        assert str(err.value) == message


def test_bad_keys_are_named_and_good_keys_kept(key: rsa.RSAPrivateKey) -> None:
    other = new_rsa_key()
    document = {"keys": [rsa_jwk(key, "good1"), _with(key, kid="bad", alg="none"), "junk", rsa_jwk(other, "good2")]}
    parsed = parse_jwks(document, JWKS_URL)
    assert [k.kid for k in parsed.keys] == ["good1", "good2"]
    assert [p.describe() for p in parsed.problems] == [
        "JWKS key kid 'bad' skipped: alg 'none' is not an RSA algorithm",
        "JWKS key entry #2 (no usable kid) skipped: not a JSON object (got str)",
    ]


def test_one_kid_with_two_different_keys_is_trusted_for_neither(key: rsa.RSAPrivateKey) -> None:
    other = new_rsa_key()
    document = {"keys": [rsa_jwk(key, "same"), rsa_jwk(other, "same"), rsa_jwk(key, "twice"), rsa_jwk(key, "twice")]}
    parsed = parse_jwks(document, JWKS_URL)
    assert [k.kid for k in parsed.keys] == ["twice"]  # an identical repeat collapses into one
    assert [p.describe() for p in parsed.problems] == [
        "JWKS key kid 'same' skipped: entries #0, #1 share this kid with different key material"
    ]
