"""Is this file a usable X.509 proxy? Checked with ``cryptography`` before it replaces the old one.

Upstream (agents/justin-create-x509-proxies, reference §1) installed whatever
``voms-proxy-init`` wrote as long as it exited 0 and the file was not empty. Here the file
must be, in this order:

* PEM: a proxy certificate first, then its private key, then the certificate that issued it
  (the host's "user" certificate) and any further chain, as ``voms-proxy-init`` writes it;
* a proxy of that issuer (RFC 3820 §3.4): its subject is the issuer's subject plus one
  ``CN``, and it carries the ProxyCertInfo extension (RFC 3820, or the pre-RFC draft OID),
  or, for a legacy Globus proxy, that last ``CN`` is ``proxy`` ("limited proxy" is refused:
  it cannot be used to submit jobs);
* signed by the issuer's key, and holding the private key of its own public key;
* valid now, and for at least ``min_valid`` more, counting the whole chain (a proxy cannot
  outlive the certificate it came from);
* when a VOMS group is expected: carrying the VOMS attribute-certificate extension, and that
  extension names the group (e.g. ``/dune/Role=Production``). The attribute certificate's own
  signature is not checked here; the services that read it (Rucio, MetaCat) do that.

Nothing in the file is ever put into an error message: only names, dates and reasons.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID, ObjectIdentifier

PROXY_CERT_INFO_OID = ObjectIdentifier("1.3.6.1.5.5.7.1.14")  # RFC 3820 id-pe-proxyCertInfo
PROXY_CERT_INFO_DRAFT_OID = ObjectIdentifier("1.3.6.1.4.1.3536.1.222")  # GT3 draft proxies
VOMS_AC_OID = ObjectIdentifier("1.3.6.1.4.1.8005.100.100.5")  # VOMS attribute certificates
CLOCK_SKEW = dt.timedelta(minutes=5)

_KEY_BLOCK = re.compile(
    rb"-----BEGIN (RSA |EC |ENCRYPTED )?PRIVATE KEY-----.+?-----END \1?PRIVATE KEY-----", re.DOTALL
)


class ProxyValidationError(ValueError):
    """The file is not a usable proxy; the message says why (never what the file holds)."""


@dataclass(frozen=True)
class ProxyInfo:
    """What an operator needs to know about an accepted proxy."""

    subject: str
    issuer: str
    kind: str  # "RFC 3820", "draft", "legacy"
    not_before: dt.datetime
    not_after: dt.datetime  # the whole chain's: the earliest expiry among its certificates
    voms_extension: bool

    def hours_left(self, now: dt.datetime) -> float:
        return (self.not_after - now).total_seconds() / 3600


def voms_group(voms: str) -> str:
    """The group a ``-voms`` argument asks for: ``dune:/dune/Role=Production`` -> that FQAN,
    ``dune`` -> ``/dune`` (voms-proxy-init's own rule)."""
    vo, _, fqan = voms.partition(":")
    return fqan or f"/{vo}"


def _extension_value(cert: x509.Certificate, oid: ObjectIdentifier) -> bytes | None:
    try:
        ext = cert.extensions.get_extension_for_oid(oid)
    except x509.ExtensionNotFound:
        return None
    value = ext.value
    if isinstance(value, x509.UnrecognizedExtension):
        return value.value
    return b""


def _proxy_kind(proxy: x509.Certificate, issuer: x509.Certificate) -> str:
    proxy_rdns = list(proxy.subject.rdns)
    issuer_rdns = list(issuer.subject.rdns)
    if len(proxy_rdns) != len(issuer_rdns) + 1 or proxy_rdns[:-1] != issuer_rdns:
        raise ProxyValidationError(
            f"the first certificate ({proxy.subject.rfc4514_string()}) is not a proxy of "
            f"{issuer.subject.rfc4514_string()}: its subject is not the issuer's plus one CN"
        )
    last = list(proxy_rdns[-1])
    if len(last) != 1 or last[0].oid != NameOID.COMMON_NAME:
        raise ProxyValidationError("the proxy subject's last component is not a single CN")
    cn = str(last[0].value)
    if _extension_value(proxy, PROXY_CERT_INFO_OID) is not None:
        return "RFC 3820"
    if _extension_value(proxy, PROXY_CERT_INFO_DRAFT_OID) is not None:
        return "draft"
    if cn == "proxy":
        return "legacy"
    if cn == "limited proxy":
        raise ProxyValidationError("a limited proxy was written; it cannot be used to submit jobs")
    raise ProxyValidationError(
        f"the first certificate has no ProxyCertInfo extension and its last CN is {cn!r}, not 'proxy'"
    )


def _public_der(key: object) -> bytes:
    return key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def inspect_proxy(
    data: bytes,
    *,
    now: dt.datetime | None = None,
    min_valid: dt.timedelta = dt.timedelta(hours=24),
    voms_group: str | None = None,
) -> ProxyInfo:
    """The accepted proxy in ``data``, or a ProxyValidationError saying what is wrong."""
    now = now or dt.datetime.now(dt.timezone.utc)
    if not data.strip():
        raise ProxyValidationError("the file is empty")
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise ProxyValidationError("the file holds no readable PEM certificate") from None
    if len(certs) < 2:
        raise ProxyValidationError(
            f"the file holds {len(certs)} certificate(s); a proxy needs the proxy and its issuer"
        )
    proxy, issuer = certs[0], certs[1]

    key_blocks = _KEY_BLOCK.findall(data)
    if len(key_blocks) != 1:
        raise ProxyValidationError(f"the file holds {len(key_blocks)} private keys, not exactly one")
    match = _KEY_BLOCK.search(data)
    assert match is not None
    try:
        private_key = serialization.load_pem_private_key(match.group(0), password=None)
    except (ValueError, TypeError):
        raise ProxyValidationError("the private key cannot be read (malformed or encrypted)") from None
    if _public_der(private_key.public_key()) != _public_der(proxy.public_key()):
        raise ProxyValidationError("the private key does not belong to the proxy certificate")

    kind = _proxy_kind(proxy, issuer)
    try:
        proxy.verify_directly_issued_by(issuer)
    except Exception:  # InvalidSignature, ValueError (issuer name), TypeError (key type)
        raise ProxyValidationError(
            f"the proxy is not signed by {issuer.subject.rfc4514_string()}"
        ) from None

    not_before = max(c.not_valid_before_utc for c in certs)
    not_after = min(c.not_valid_after_utc for c in certs)
    if proxy.not_valid_before_utc > now + CLOCK_SKEW:
        raise ProxyValidationError(f"the proxy is not valid before {proxy.not_valid_before_utc:%Y-%m-%d %H:%M} UTC")
    if not_after <= now:
        raise ProxyValidationError(f"the proxy chain expired at {not_after:%Y-%m-%d %H:%M} UTC")
    if not_after < now + min_valid:
        hours = (not_after - now).total_seconds() / 3600
        raise ProxyValidationError(
            f"the proxy chain is valid only until {not_after:%Y-%m-%d %H:%M} UTC ({hours:.1f} h), "
            f"less than the required {min_valid.total_seconds() / 3600:g} h"
        )

    voms_value = _extension_value(proxy, VOMS_AC_OID)
    if voms_group is not None:
        if voms_value is None:
            raise ProxyValidationError(f"the proxy carries no VOMS attributes (expected {voms_group})")
        # FQANs are stored as "/dune/Role=Production/Capability=NULL": match whole components
        if (voms_group.rstrip("/") + "/").encode() not in voms_value:
            raise ProxyValidationError(f"the proxy's VOMS attributes do not name {voms_group}")
    return ProxyInfo(
        subject=proxy.subject.rfc4514_string(),
        issuer=issuer.subject.rfc4514_string(),
        kind=kind,
        not_before=not_before,
        not_after=not_after,
        voms_extension=voms_value is not None,
    )


def proxy_expiry(data: bytes) -> dt.datetime | None:
    """The earliest expiry among the certificates in ``data`` (None if none can be read)."""
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        return None
    return min(c.not_valid_after_utc for c in certs) if certs else None
