"""CILogon login (reference §7) done properly: PKCE, a nonce, verified TLS and verified tokens.

Upstream's ``loginPage``/``cilogonCallback`` sent ``state`` only, POSTed to the token
endpoint without verifying TLS, and base64-decoded the tokens without checking their
signatures. Here:

* the authorization request carries ``state`` (bound to the browser's session), a
  ``nonce`` and an S256 PKCE challenge (RFC 7636);
* the token request goes through ``HTTPAdapter.post_form`` (TLS verified, no redirects,
  one attempt, recorded in the external-call ledger) with the PKCE verifier;
* the ID token must be RS256, signed by a key in ``jwt_keys`` (stored by the jwks flow)
  found by its ``kid``, with our issuer, our client id as audience, unexpired (60 s leeway),
  and the nonce of this login; ``at_hash``, when present, must match the access token;
* ``wlcg.groups`` come, as upstream takes them, from the access token when it is a JWT, which
  must then verify the same way (issuer, signature, expiry; its audience is the resource
  servers', so not ours) and name the same ``sub``; for an opaque access token, from the ID
  token. ``/dune`` must be among them.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select

from justin_flows.adapters.calls import ExternalCallError
from justin_flows.adapters.http import HTTPAdapter
from justin_flows.dashboard.config import DashboardConfig
from justin_flows.db.engine import transaction
from justin_flows.db.models import JwtKey

ALGORITHM = "RS256"


class LoginRefused(Exception):
    """A login that must not succeed. ``reason`` is shown to the user; ``detail`` is logged."""

    def __init__(self, reason: str, detail: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail or reason


class ProviderUnavailable(Exception):
    """The OpenID configuration could not be read or is unusable."""


# --------------------------------------------------------------------------- provider metadata


@dataclass(frozen=True)
class ProviderMetadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str

    @classmethod
    def from_document(cls, document: Any, url: str) -> ProviderMetadata:
        if not isinstance(document, Mapping):
            raise ProviderUnavailable(f"OpenID configuration at {url} is not a JSON object")
        values: dict[str, str] = {}
        for name in ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri"):
            value = document.get(name)
            if not isinstance(value, str) or urlsplit(value).scheme != "https" or not urlsplit(value).hostname:
                raise ProviderUnavailable(f"OpenID configuration at {url}: {name} is missing or not an https:// URL")
            values[name] = value
        methods = document.get("code_challenge_methods_supported")
        if isinstance(methods, list) and "S256" not in methods:
            raise ProviderUnavailable(f"OpenID configuration at {url} does not offer PKCE S256")
        return cls(**values)


class MetadataCache:
    """The provider's OpenID configuration, fetched at the first login and kept ``ttl`` seconds."""

    def __init__(self, http: HTTPAdapter, url: str, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.http = http
        self.url = url
        self.ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._value: ProviderMetadata | None = None
        self._fetched = 0.0

    def get(self) -> ProviderMetadata:
        with self._lock:
            if self._value is None or self._clock() - self._fetched > self.ttl:
                try:
                    document = self.http.get_json(self.url)
                except (ExternalCallError, ValueError) as exc:
                    raise ProviderUnavailable(f"could not read the OpenID configuration at {self.url}: {exc}") from exc
                self._value = ProviderMetadata.from_document(document, self.url)
                self._fetched = self._clock()
            return self._value


# --------------------------------------------------------------------------- authorization request


def new_pkce() -> tuple[str, str]:
    """A PKCE (verifier, S256 challenge) pair; the verifier has 86 characters (RFC 7636 §4.1)."""
    verifier = secrets.token_urlsafe(64)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()
    return verifier, challenge


def authorization_url(
    metadata: ProviderMetadata, config: DashboardConfig, *, state: str, nonce: str, challenge: str
) -> str:
    query = urlencode({
        "response_type": "code",
        "client_id": config.client_id,
        "redirect_uri": config.redirect_uri,
        "scope": config.scope,
        "state": state,
        "nonce": nonce,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    })
    sep = "&" if urlsplit(metadata.authorization_endpoint).query else "?"
    return metadata.authorization_endpoint + sep + query


# --------------------------------------------------------------------------- token request


def exchange_code(
    http: HTTPAdapter, metadata: ProviderMetadata, config: DashboardConfig, *, code: str, verifier: str
) -> dict[str, Any]:
    """POST the code and PKCE verifier to the token endpoint (client_secret_post, as upstream)."""
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": config.redirect_uri,
        "client_id": config.client_id,
        "client_secret": config.client_secret.get_secret_value(),
        "code_verifier": verifier,
    }
    try:
        answer = http.post_form_json(metadata.token_endpoint, form)
    except (ExternalCallError, ValueError) as exc:
        raise LoginRefused("CILogon did not complete the login; please try again", f"token request failed: {exc}") from exc
    if not isinstance(answer, Mapping):
        raise LoginRefused("CILogon's answer was not understood", "token response is not a JSON object")
    for name in ("id_token", "access_token"):
        if not isinstance(answer.get(name), str) or not answer[name]:
            raise LoginRefused("CILogon's answer was not understood", f"token response has no {name}")
    if str(answer.get("token_type", "")).lower() != "bearer":
        raise LoginRefused("CILogon's answer was not understood", f"token_type {answer.get('token_type')!r}")
    return dict(answer)


# --------------------------------------------------------------------------- token verification


@dataclass(frozen=True)
class StoredKey:
    public_key: rsa.RSAPublicKey
    alg: str
    use: str


KeyLookup = Callable[[str], "StoredKey | None"]


def _b64url_uint(value: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)), "big")


def stored_key(kid: str) -> StoredKey | None:
    """The key ``kid`` from ``jwt_keys`` (written by the jwks flow), or None."""
    with transaction() as session:
        row = session.execute(
            select(JwtKey.jwks_n, JwtKey.jwks_e, JwtKey.jwks_alg, JwtKey.jwks_use, JwtKey.jwks_kty)
            .where(JwtKey.jwks_kid == kid)
        ).first()
    if row is None or row.jwks_kty != "RSA":
        return None
    public_key = rsa.RSAPublicNumbers(_b64url_uint(row.jwks_e), _b64url_uint(row.jwks_n)).public_key()
    return StoredKey(public_key, row.jwks_alg, row.jwks_use)


def _verify(
    token: str, what: str, *, keys: KeyLookup, issuer: str, audience: str | None, leeway: int, required: list[str]
) -> dict[str, Any]:
    refused = f"the {what} from CILogon could not be verified"
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise LoginRefused(refused, f"{what} is not a JWT: {exc}") from None
    alg, kid = header.get("alg"), header.get("kid")
    if alg != ALGORITHM:
        raise LoginRefused(refused, f"{what} is signed with {alg!r}; only {ALGORITHM} is accepted")
    if not isinstance(kid, str) or not kid:
        raise LoginRefused(refused, f"{what} names no signing key (kid)")
    key = keys(kid)
    if key is None:
        raise LoginRefused(
            refused,
            f"{what} is signed by key {kid!r}, which is not in jwt_keys "
            "(the info-collector-jwks deployment stores CILogon's keys daily; run it after a key rotation)",
        )
    if key.alg != ALGORITHM or key.use != "sig":
        raise LoginRefused(refused, f"stored key {kid!r} is for alg {key.alg!r}, use {key.use!r}, not RS256 signatures")
    try:
        return jwt.decode(
            token, key.public_key, algorithms=[ALGORITHM], audience=audience, issuer=issuer, leeway=leeway,
            options={"require": required, "verify_aud": audience is not None},
        )
    except jwt.ExpiredSignatureError:
        raise LoginRefused("the login has expired; please log in again", f"{what} has expired") from None
    except jwt.InvalidSignatureError:
        raise LoginRefused(refused, f"{what} signature does not verify with stored key {kid!r}") from None
    except jwt.PyJWTError as exc:
        raise LoginRefused(refused, f"{what} refused: {type(exc).__name__}: {exc}") from None


def _groups(claims: Mapping[str, Any]) -> tuple[str, ...]:
    value = claims.get("wlcg.groups")
    if isinstance(value, str):
        value = value.replace(",", " ").split()
    if not isinstance(value, list):
        return ()
    return tuple(g for g in value if isinstance(g, str))


def _at_hash(access_token: str) -> str:
    digest = hashlib.sha256(access_token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode()


@dataclass(frozen=True)
class VerifiedLogin:
    subject: str
    eppn: str
    name: str
    groups: tuple[str, ...]
    id_token_expires: int


def verify_login(
    tokens: Mapping[str, Any],
    *,
    keys: KeyLookup,
    issuer: str,
    client_id: str,
    nonce: str,
    required_group: str,
    leeway: int = 60,
) -> VerifiedLogin:
    """The verified identity and groups of a token response, or LoginRefused (module docstring)."""
    id_token, access_token = str(tokens["id_token"]), str(tokens["access_token"])
    claims = _verify(
        id_token, "ID token", keys=keys, issuer=issuer, audience=client_id, leeway=leeway,
        required=["iss", "sub", "aud", "exp", "iat", "nonce"],
    )
    if not isinstance(claims.get("nonce"), str) or not secrets.compare_digest(claims["nonce"], nonce):
        raise LoginRefused("the login could not be completed; please log in again", "ID token nonce does not match")
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if len(audiences) > 1 and claims.get("azp") != client_id:
        raise LoginRefused("the ID token from CILogon could not be verified", "ID token azp is not our client id")
    if "at_hash" in claims and not secrets.compare_digest(str(claims["at_hash"]), _at_hash(access_token)):
        raise LoginRefused("the ID token from CILogon could not be verified", "ID token at_hash does not match")

    if access_token.count(".") == 2:  # a JWT access token, upstream's source of wlcg.groups
        access = _verify(
            access_token, "access token", keys=keys, issuer=issuer, audience=None, leeway=leeway,
            required=["iss", "sub", "exp"],
        )
        if access["sub"] != claims["sub"]:
            raise LoginRefused("the tokens from CILogon do not match", "access token sub differs from ID token sub")
        groups = _groups(access)
    else:
        groups = _groups(claims)
    if required_group not in groups:
        raise LoginRefused(
            f"you are not registered in {required_group}: the dashboard is for {required_group} members",
            f"{claims['sub']} has groups {list(groups)}, not {required_group}",
        )
    return VerifiedLogin(
        subject=str(claims["sub"]),
        eppn=str(claims.get("eppn") or ""),
        name=str(claims.get("name") or ""),
        groups=groups,
        id_token_expires=int(claims["exp"]),
    )
