"""Read an OpenID configuration and its JSON Web Key Set into the ``jwt_keys`` rows to store.

Upstream: ``updateJwks()`` in agents/justin-info-collector (reference §2.2) takes
``jwks_uri`` from CILogon's OpenID configuration, fetches the key set and keeps each key
whose ``n, e, alg, kid, use, kty`` all match ``[A-Za-z0-9_-]*``; a key that does not is
skipped without a word.

Kept from upstream: the six stored members and the character rule (here non-empty:
upstream's ``*`` accepted an empty ``kid`` as a primary key).

Deliberate differences, so a stored key is one a verifier could actually use:

* A document that is not a JSON object, a configuration without an ``https://``
  ``jwks_uri``, a key set without a ``keys`` list: a ``JwksDocumentError`` naming the URL
  and the fault (upstream returned quietly, so a broken document went unnoticed).
* ``kty`` must be ``RSA`` and ``alg`` an RSA algorithm: ``jwt_keys`` has columns for the RSA
  modulus and exponent only, so an EC key (which has ``crv, x, y`` instead) cannot be kept.
* ``n`` and ``e`` must decode (base64url) to a public key that ``cryptography`` loads (odd
  modulus, odd exponent of 3 or more below it), of at least 2048 bits (RFC 7518 §3.3).
* Values must fit their columns, so one odd key can never fail the whole write.
* Two entries with one ``kid`` but different material: neither is trusted, both are
  skipped. Identical repeats collapse into one.

Every skipped key is a ``KeyProblem`` that names it (by ``kid`` where it has one).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import rsa

MEMBERS = ("kid", "kty", "alg", "use", "n", "e")
_TOKEN = re.compile(r"[A-Za-z0-9_-]+\Z")
# jwt_keys column sizes (jwks_n is TEXT)
_MAX_LENGTH = {"kid": 255, "e": 255, "alg": 32, "use": 32, "kty": 32}
RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "RSA1_5", "RSA-OAEP", "RSA-OAEP-256"})
MIN_RSA_BITS = 2048


class JwksDocumentError(ValueError):
    """A whole OpenID configuration or key set is unusable; the message names the URL."""


@dataclass(frozen=True)
class Jwk:
    """One usable RSA public key, as stored in ``jwt_keys``."""

    kid: str
    kty: str
    alg: str
    use: str
    n: str
    e: str
    bits: int

    def row(self) -> dict[str, str]:
        return {
            "jwks_kid": self.kid, "jwks_kty": self.kty, "jwks_alg": self.alg,
            "jwks_use": self.use, "jwks_n": self.n, "jwks_e": self.e,
        }


@dataclass(frozen=True)
class KeyProblem:
    """A key set entry that was skipped: its position, its ``kid`` if usable, and why."""

    index: int
    kid: str | None
    reason: str

    def describe(self) -> str:
        who = f"kid {self.kid!r}" if self.kid is not None else f"entry #{self.index} (no usable kid)"
        return f"JWKS key {who} skipped: {self.reason}"


@dataclass(frozen=True)
class ParsedJwks:
    keys: tuple[Jwk, ...]
    problems: tuple[KeyProblem, ...]


class _Rejected(ValueError):
    pass


def require_https(url: str, what: str) -> str:
    """``url`` if it is an ``https://`` URL with a host, else a JwksDocumentError."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise JwksDocumentError(f"{what} {url!r} is not an https:// URL")
    return url


def jwks_uri_from_configuration(document: Any, url: str) -> str:
    """The ``jwks_uri`` of the OpenID configuration ``document`` fetched from ``url``."""
    if not isinstance(document, Mapping):
        raise JwksDocumentError(f"OpenID configuration at {url} is not a JSON object (got {type(document).__name__})")
    uri = document.get("jwks_uri")
    if uri is None:
        raise JwksDocumentError(f"OpenID configuration at {url} has no jwks_uri")
    if not isinstance(uri, str):
        raise JwksDocumentError(f"OpenID configuration at {url}: jwks_uri is not a string (got {type(uri).__name__})")
    return require_https(uri, f"OpenID configuration at {url}: jwks_uri")


def _decode_uint(value: str, member: str) -> int:
    if len(value) % 4 == 1:
        raise _Rejected(f"{member} is not valid base64url (length {len(value)})")
    raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    return int.from_bytes(raw, "big")


def validate_key(entry: Any) -> Jwk:
    """The usable key in one ``keys`` entry; raises ValueError with the reason otherwise."""
    if not isinstance(entry, Mapping):
        raise _Rejected(f"not a JSON object (got {type(entry).__name__})")
    values: dict[str, str] = {}
    for member in MEMBERS:
        value = entry.get(member)
        if value is None:
            raise _Rejected(f"{member} is missing")
        if not isinstance(value, str):
            raise _Rejected(f"{member} is not a string (got {type(value).__name__})")
        if not _TOKEN.match(value):
            raise _Rejected(f"{member} {value[:40]!r} has characters other than A-Z a-z 0-9 _ -")
        limit = _MAX_LENGTH.get(member)
        if limit is not None and len(value) > limit:
            raise _Rejected(f"{member} is longer than {limit} characters")
        values[member] = value
        if member == "kty" and value != "RSA":
            raise _Rejected(f"kty {value!r} is not RSA (jwt_keys stores an RSA modulus and exponent only)")
    if values["alg"] not in RSA_ALGORITHMS:
        raise _Rejected(f"alg {values['alg']!r} is not an RSA algorithm")
    n = _decode_uint(values["n"], "n")
    e = _decode_uint(values["e"], "e")
    if n % 2 == 0:
        raise _Rejected("n is even, so not an RSA modulus")
    try:
        public_key = rsa.RSAPublicNumbers(e, n).public_key()
    except ValueError as exc:
        raise _Rejected(f"n and e do not form an RSA public key ({exc})") from None
    if public_key.key_size < MIN_RSA_BITS:
        raise _Rejected(f"RSA key has {public_key.key_size} bits, fewer than {MIN_RSA_BITS}")
    return Jwk(bits=public_key.key_size, **values)


def _kid_of(entry: Any) -> str | None:
    kid = entry.get("kid") if isinstance(entry, Mapping) else None
    if isinstance(kid, str) and _TOKEN.match(kid) and len(kid) <= _MAX_LENGTH["kid"]:
        return kid
    return None


def parse_jwks(document: Any, url: str) -> ParsedJwks:
    """The usable keys of the key set ``document`` fetched from ``url``, and the skipped ones."""
    if not isinstance(document, Mapping):
        raise JwksDocumentError(f"JWKS at {url} is not a JSON object (got {type(document).__name__})")
    if "keys" not in document:
        raise JwksDocumentError(f"JWKS at {url} has no keys member")
    entries = document["keys"]
    if not isinstance(entries, list):
        raise JwksDocumentError(f"JWKS at {url}: keys is not a list (got {type(entries).__name__})")
    problems: list[KeyProblem] = []
    by_kid: dict[str, list[tuple[int, Jwk]]] = {}
    for index, entry in enumerate(entries):
        try:
            key = validate_key(entry)
        except ValueError as exc:
            problems.append(KeyProblem(index, _kid_of(entry), str(exc)))
            continue
        by_kid.setdefault(key.kid, []).append((index, key))
    keys: list[Jwk] = []
    for kid, found in by_kid.items():
        if len({key for _, key in found}) == 1:
            keys.append(found[0][1])
            continue
        positions = ", ".join(f"#{i}" for i, _ in found)
        problems.append(KeyProblem(found[0][0], kid, f"entries {positions} share this kid with different key material"))
    problems.sort(key=lambda p: p.index)
    return ParsedJwks(tuple(keys), tuple(problems))
