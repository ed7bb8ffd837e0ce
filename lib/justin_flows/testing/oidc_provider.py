"""A local OpenID provider playing CILogon for dashboard login tests, over real HTTPS.

It serves what the dashboard and the jwks flow read from CILogon (reference §2.2, §7):

* ``/dune/.well-known/openid-configuration`` (issuer ``<url>/dune``),
* ``/authorize``: checks the client, redirect URI, ``state``, ``nonce`` and an S256 PKCE
  challenge, auto-approves the configured ``user`` and redirects back with ``code`` and
  ``state`` (or ``error=access_denied`` when ``behaviour.deny``),
* ``/oauth2/token``: checks the code (single use, 60 s), the client secret (form or HTTP
  Basic), the redirect URI and the PKCE verifier; answers an RS256-signed ID token (``nonce``,
  ``eppn``, ``wlcg.groups``, ``at_hash``), a JWT access token with ``wlcg.groups`` as CILogon
  issues for WLCG scopes, and a refresh token,
* ``/oauth2/certs``: the public signing keys,
* ``/moved/oauth2/token``: a 307 redirect to the token endpoint (a client must not follow it).

``behaviour`` (a mutable ``Behaviour``) makes it misbehave on purpose: forged signatures,
expired tokens, a wrong nonce, audience, issuer or key id, groups without ``/dune``.

The TLS certificate comes from a test CA (``ca_file`` for a verifying client);
``spki_sha256_b64`` is the server key's hash, for Chromium's
``--ignore-certificate-errors-spki-list`` (trust exactly this server, nothing else).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import ssl
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from justin_flows.testing.https_server import LocalCA, TLSServer, make_test_ca, serve_tls, stop_tls
from justin_flows.testing.jwk import new_rsa_key, rsa_jwk

__all__ = ["Behaviour", "OIDCProviderDouble", "TestUser", "pkce_challenge"]

CONFIG_PATH = "/dune/.well-known/openid-configuration"
AUTHORIZE_PATH = "/authorize"
TOKEN_PATH = "/oauth2/token"
JWKS_PATH = "/oauth2/certs"
MOVED_TOKEN_PATH = "/moved/oauth2/token"  # answers 307 to the token endpoint
ACCESS_TOKEN_AUDIENCE = "https://wlcg.cern.ch/jwt/v1/any"
CODE_LIFETIME_SECONDS = 60


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def pkce_challenge(verifier: str) -> str:
    """RFC 7636 S256: base64url(SHA-256(verifier)), unpadded."""
    return _b64url(hashlib.sha256(verifier.encode("ascii")).digest())


def at_hash(access_token: str) -> str:
    """OpenID Connect Core §3.1.3.6: the left half of SHA-256 of the access token."""
    return _b64url(hashlib.sha256(access_token.encode("ascii")).digest()[:16])


@dataclass
class TestUser:
    """The identity the provider auto-approves."""

    __test__ = False  # not a pytest class

    sub: str = "http://cilogon.org/serverA/users/31415"
    eppn: str = "alice@fnal.gov"
    name: str = "Alice Tester"
    groups: list[str] = field(default_factory=lambda: ["/dune", "/dune/production"])


@dataclass
class Behaviour:
    """Knobs for tests of refused logins (defaults: a correct provider)."""

    deny: bool = False
    forge_id_token: bool = False  # signed by a key that is not published, same kid
    forge_access_token: bool = False
    id_token_lifetime_seconds: int = 900
    issued_at_offset_seconds: int = 0  # shifts iat/exp (e.g. -3600 for an hour-old token)
    nonce: str | None = None  # a different nonce in the ID token
    audience: str | None = None
    issuer: str | None = None
    kid: str | None = None
    id_token_alg: str = "RS256"
    groups_in_id_token: bool = True
    opaque_access_token: bool = False
    access_token_groups: list[str] | None = None  # None: the user's groups


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    challenge: str
    nonce: str
    scope: str
    user: TestUser
    expires: float
    used: bool = False


class _Handler(BaseHTTPRequestHandler):
    server: TLSServer

    def do_GET(self) -> None:  # noqa: N802
        self.server.owner._handle(self, "GET")

    def do_POST(self) -> None:  # noqa: N802
        self.server.owner._handle(self, "POST")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


class OIDCProviderDouble:
    """CILogon's OpenID endpoints on ``https://127.0.0.1:<free port>`` (see the module docstring)."""

    def __init__(
        self,
        *,
        client_id: str = "cilogon:/client_id/justin-dashboard-test",
        client_secret: str = "dashboard-client-secret-canary-7f3a",
        redirect_uris: Sequence[str] = (),
        user: TestUser | None = None,
        ca: LocalCA | None = None,
        kid: str = "test-signing-key-1",
        signing_key: rsa.RSAPrivateKey | None = None,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uris = list(redirect_uris)
        self.user = user or TestUser()
        self.behaviour = Behaviour()
        self.ca = ca or make_test_ca("justin-flows test OpenID provider CA")
        self.kid = kid
        self.signing_key = signing_key or new_rsa_key()
        self.forging_key = new_rsa_key()  # never published
        self.requests: list[tuple[str, str]] = []
        self.token_requests: list[dict[str, str]] = []  # form fields, client_secret removed
        self._codes: dict[str, _Code] = {}
        self._lock = threading.Lock()
        self._tmp = tempfile.TemporaryDirectory(prefix="justin-oidc-")
        self.work_dir = Path(self._tmp.name)
        self.ca_file = self.ca.write(self.work_dir / "ca.pem")
        self.spki_sha256_b64 = ""
        self._server: TLSServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> OIDCProviderDouble:
        if self._server is not None:
            return self
        hosts = ["127.0.0.1", "localhost"]
        self._server, self._thread, cert_pem = serve_tls(self, _Handler, self.ca, hosts, self.work_dir, "oidc-double")
        spki = x509.load_pem_x509_certificate(cert_pem).public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.spki_sha256_b64 = base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")
        return self

    def close(self) -> None:
        stop_tls(self._server, self._thread)
        self._server = self._thread = None
        self._tmp.cleanup()

    def __enter__(self) -> OIDCProviderDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- addresses and documents -------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the provider is not running")
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    @property
    def issuer(self) -> str:
        return self.url + "/dune"

    @property
    def configuration_url(self) -> str:
        return self.url + CONFIG_PATH

    def configuration(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": self.url + AUTHORIZE_PATH,
            "token_endpoint": self.url + TOKEN_PATH,
            "jwks_uri": self.url + JWKS_PATH,
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        }

    def jwks(self) -> dict[str, Any]:
        return {"keys": [rsa_jwk(self.signing_key, self.kid)]}

    def hits(self, method: str, path: str) -> int:
        with self._lock:
            return self.requests.count((method, path))

    # -- tokens ------------------------------------------------------------------------------

    def _sign(self, claims: dict[str, Any], *, forge: bool, alg: str = "RS256") -> str:
        headers = {"kid": self.behaviour.kid or self.kid, "typ": "JWT"}
        if alg == "none":
            return jwt.encode(claims, None, algorithm="none", headers=headers)
        if alg == "HS256":  # alg confusion: the public key (PEM) as an HMAC secret; PyJWT refuses to
            secret = self.signing_key.public_key().public_bytes(  # make one, so it is built by hand
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            head = _b64url(json.dumps({**headers, "alg": "HS256"}).encode())
            body = _b64url(json.dumps(claims).encode())
            mac = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
            return f"{head}.{body}.{_b64url(mac)}"
        key = self.forging_key if forge else self.signing_key
        return jwt.encode(claims, key, algorithm=alg, headers=headers)

    def tokens_for(self, code: _Code) -> dict[str, Any]:
        b = self.behaviour
        now = int(time.time()) + b.issued_at_offset_seconds
        user = code.user
        groups = list(user.groups)
        access_groups = groups if b.access_token_groups is None else list(b.access_token_groups)
        if b.opaque_access_token:
            access_token = secrets.token_urlsafe(32)
        else:
            access_token = self._sign({
                "iss": b.issuer or self.issuer, "sub": user.sub, "aud": ACCESS_TOKEN_AUDIENCE,
                "iat": now, "nbf": now, "exp": now + 3600, "jti": secrets.token_hex(8),
                "scope": code.scope, "wlcg.ver": "1.0", "wlcg.groups": access_groups,
            }, forge=b.forge_access_token)
        id_claims: dict[str, Any] = {
            "iss": b.issuer or self.issuer, "sub": user.sub, "aud": b.audience or code.client_id,
            "iat": now, "auth_time": now, "exp": now + b.id_token_lifetime_seconds,
            "nonce": b.nonce or code.nonce, "eppn": user.eppn, "name": user.name,
            "at_hash": at_hash(access_token),
        }
        if b.groups_in_id_token:
            id_claims["wlcg.groups"] = groups
        return {
            "access_token": access_token,
            "id_token": self._sign(id_claims, forge=b.forge_id_token, alg=b.id_token_alg),
            "refresh_token": "refresh-" + secrets.token_urlsafe(24),
            "token_type": "Bearer",
            "expires_in": 3600,
        }

    # -- HTTP --------------------------------------------------------------------------------

    def _send(self, handler: BaseHTTPRequestHandler, status: int, body: bytes | str, content_type: str,
              headers: dict[str, str] | None = None) -> None:
        data = body.encode() if isinstance(body, str) else body
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", content_type)
            handler.send_header("Content-Length", str(len(data)))
            handler.send_header("Cache-Control", "no-store")
            for name, value in (headers or {}).items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass

    def _json(self, handler: BaseHTTPRequestHandler, status: int, document: Any) -> None:
        self._send(handler, status, json.dumps(document), "application/json")

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(handler.path)
        with self._lock:
            self.requests.append((method, parts.path))
        # read the whole body first: closing with unread bytes resets the connection, which
        # can destroy the answer before the client reads it
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0)) if method == "POST" else b""
        if method == "GET" and parts.path == CONFIG_PATH:
            self._json(handler, 200, self.configuration())
        elif method == "GET" and parts.path == JWKS_PATH:
            self._json(handler, 200, self.jwks())
        elif method == "GET" and parts.path == AUTHORIZE_PATH:
            self._authorize(handler, {k: v[0] for k, v in parse_qs(parts.query).items()})
        elif parts.path == MOVED_TOKEN_PATH:  # for tests that a client never follows a redirected POST
            self._send(handler, 307, "", "text/plain", {"Location": self.url + TOKEN_PATH})
        elif method == "POST" and parts.path == TOKEN_PATH:
            form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
            self._token(handler, form, handler.headers.get("Authorization"))
        else:
            self._json(handler, 404, {"error": "not found"})

    def _authorize(self, handler: BaseHTTPRequestHandler, q: dict[str, str]) -> None:
        redirect_uri = q.get("redirect_uri", "")
        if q.get("client_id") != self.client_id or redirect_uri not in self.redirect_uris:
            # never redirect to an unregistered URI (RFC 6749 §4.1.2.1)
            self._send(handler, 400, "unknown client or unregistered redirect_uri", "text/plain")
            return

        def back(params: dict[str, str]) -> None:
            sep = "&" if "?" in redirect_uri else "?"
            self._send(handler, 302, "", "text/plain", {"Location": redirect_uri + sep + urlencode(params)})

        state = q.get("state", "")
        missing = [p for p in ("state", "nonce", "code_challenge") if not q.get(p)]
        if q.get("response_type") != "code" or "openid" not in q.get("scope", "").split() or missing \
                or q.get("code_challenge_method") != "S256":
            back({"error": "invalid_request", "error_description": f"missing or wrong: {missing}", "state": state})
            return
        if self.behaviour.deny:
            back({"error": "access_denied", "state": state})
            return
        code = secrets.token_urlsafe(32)
        with self._lock:
            self._codes[code] = _Code(
                self.client_id, redirect_uri, q["code_challenge"], q["nonce"], q.get("scope", ""),
                self.user, time.monotonic() + CODE_LIFETIME_SECONDS,
            )
        back({"code": code, "state": state})

    def _token(self, handler: BaseHTTPRequestHandler, form: dict[str, str], authorization: str | None) -> None:
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        if authorization and authorization.startswith("Basic "):
            decoded = base64.b64decode(authorization[6:]).decode()
            client_id, _, client_secret = decoded.partition(":")
        with self._lock:
            self.token_requests.append({k: v for k, v in form.items() if k != "client_secret"})
        if client_id != self.client_id or not secrets.compare_digest(client_secret or "", self.client_secret):
            self._json(handler, 401, {"error": "invalid_client"})
            return
        if form.get("grant_type") != "authorization_code":
            self._json(handler, 400, {"error": "unsupported_grant_type"})
            return
        with self._lock:
            code = self._codes.get(form.get("code", ""))
            valid = code is not None and not code.used and code.expires > time.monotonic()
            if code is not None:
                code.used = True
        if code is None or not valid:
            self._json(handler, 400, {"error": "invalid_grant", "error_description": "unknown, used or expired code"})
            return
        if form.get("redirect_uri") != code.redirect_uri or client_id != code.client_id:
            self._json(handler, 400, {"error": "invalid_grant", "error_description": "redirect_uri mismatch"})
            return
        verifier = form.get("code_verifier", "")
        if not verifier or not secrets.compare_digest(pkce_challenge(verifier), code.challenge):
            self._json(handler, 400, {"error": "invalid_grant", "error_description": "PKCE verification failed"})
            return
        self._json(handler, 200, self.tokens_for(code))
