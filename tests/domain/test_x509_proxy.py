"""inspect_proxy: what counts as a usable proxy (upstream accepted any non-empty file)."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from cryptography.hazmat.primitives import serialization

from justin_flows.domain.x509_proxy import ProxyValidationError, inspect_proxy, proxy_expiry, voms_group
from justin_flows.testing.x509 import GridCA, UserCredential, make_grid_ca, make_proxy, voms_fqan

PRODUCTION_FQAN = voms_fqan("dune:/dune/Role=Production")


@pytest.fixture(scope="module")
def ca() -> GridCA:
    return make_grid_ca()


@pytest.fixture(scope="module")
def user(ca: GridCA) -> UserCredential:
    return ca.issue_user("justin-jobs-production.dune.hep.ac.uk")


def refused(data: bytes, match: str, **kwargs: object) -> None:
    with pytest.raises(ProxyValidationError, match=match):
        inspect_proxy(data, **kwargs)  # type: ignore[arg-type]


def test_voms_group_of_a_voms_argument() -> None:
    assert voms_group("dune:/dune/Role=Production") == "/dune/Role=Production"
    assert voms_group("dune") == "/dune"
    assert voms_fqan("dune") == "/dune/Role=NULL/Capability=NULL"


def test_rfc_proxy_with_the_requested_group_is_accepted(user: UserCredential) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    info = inspect_proxy(make_proxy(user, hours=168, fqans=[PRODUCTION_FQAN]), voms_group="/dune/Role=Production")
    assert info.kind == "RFC 3820" and info.voms_extension
    assert info.subject.endswith("," + info.issuer) and info.subject.startswith("CN=")
    assert 167.5 < info.hours_left(now) <= 168


def test_legacy_globus_proxy_is_accepted(user: UserCredential) -> None:
    assert inspect_proxy(make_proxy(user, rfc=False, fqans=[PRODUCTION_FQAN])).kind == "legacy"


def test_group_must_match_whole_fqan_components(user: UserCredential) -> None:
    data = make_proxy(user, fqans=[PRODUCTION_FQAN])
    refused(data, "do not name /dune/Role=Prod$", voms_group="/dune/Role=Prod")
    refused(make_proxy(user, fqans=[voms_fqan("dune")]), "do not name /dune/Role=Production", voms_group="/dune/Role=Production")
    inspect_proxy(data, voms_group="/dune")  # a Production proxy is also a /dune member


def test_a_plain_certificate_and_key_is_not_a_proxy(user: UserCredential, ca: GridCA) -> None:
    refused(user.cert_pem + user.key_pem + ca.cert_pem, "is not a proxy of")


def test_a_proxy_signed_by_another_key_is_refused(user: UserCredential, ca: GridCA) -> None:
    other = ca.issue_user("intruder")
    refused(make_proxy(user, signer=other.key), "is not signed by")


def test_a_key_that_is_not_the_proxys_is_refused(user: UserCredential) -> None:
    one, two = make_proxy(user), make_proxy(user)
    key_of_two = re.search(rb"-----BEGIN RSA PRIVATE KEY-----.+?-----END RSA PRIVATE KEY-----\n", two, re.DOTALL)
    assert key_of_two
    swapped = re.sub(rb"-----BEGIN RSA PRIVATE KEY-----.+?-----END RSA PRIVATE KEY-----\n", key_of_two.group(0), one,
                     flags=re.DOTALL)
    refused(swapped, "does not belong to the proxy certificate")


def test_an_encrypted_key_is_refused(user: UserCredential) -> None:
    data = make_proxy(user)
    key = serialization.load_pem_private_key(
        re.search(rb"-----BEGIN RSA PRIVATE KEY-----.+?-----END RSA PRIVATE KEY-----\n", data, re.DOTALL).group(0),  # type: ignore[union-attr]
        None,
    )
    encrypted = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")
    )
    certs = data.split(b"-----BEGIN RSA PRIVATE KEY-----")[0]
    refused(certs + encrypted + user.cert_pem, "cannot be read")


def test_no_key_or_two_keys_are_refused(user: UserCredential) -> None:
    data = make_proxy(user)
    refused(data.replace(b"PRIVATE KEY", b"NOT A KEY"), "0 private keys")
    refused(data + user.key_pem, "2 private keys")


def test_a_proxy_without_its_issuer_is_refused(user: UserCredential) -> None:
    data = make_proxy(user)
    refused(data[: data.rindex(b"-----BEGIN CERTIFICATE-----")], "holds 1 certificate")


def test_validity_window(user: UserCredential, ca: GridCA) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    refused(make_proxy(user, hours=1, not_before=now - dt.timedelta(hours=2)), "expired at")
    refused(make_proxy(user, not_before=now + dt.timedelta(hours=1)), "not valid before")
    refused(make_proxy(user, hours=23), r"\(22\.9 h\), less than the required 24 h")
    inspect_proxy(make_proxy(user, hours=23), min_valid=dt.timedelta(hours=12))
    # a proxy cannot outlive its host certificate: the chain's earliest expiry counts
    expiring = ca.issue_user("expiring", days=0.5)
    refused(make_proxy(expiring, hours=168), "valid only until")


def test_expiry_of_a_kept_file(user: UserCredential) -> None:
    assert proxy_expiry(b"garbage") is None
    expiry = proxy_expiry(make_proxy(user, hours=10))
    assert expiry is not None and dt.timedelta(hours=9) < expiry - dt.datetime.now(dt.timezone.utc) < dt.timedelta(hours=10)


def test_error_messages_never_quote_the_file(user: UserCredential) -> None:
    data = make_proxy(user, hours=1)
    with pytest.raises(ProxyValidationError) as info:
        inspect_proxy(data)
    assert "BEGIN" not in str(info.value) and "MII" not in str(info.value)
