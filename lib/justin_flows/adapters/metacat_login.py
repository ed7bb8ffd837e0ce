"""MetaCat logins with a deadline and TLS verification, for the MetaCat adapter.

metacat-client 4.1's ``login_password``/``login_token``/``login_x509`` send their requests
with ``verify=False`` and no timeout: an auth server that never answers holds the flow until
its run timeout, and anyone on the path could hand out tokens. These functions make the
client's own requests (LDAP then RFC 2617 digest for a password, a bearer header for a
token, the proxy as client certificate for X.509), with the adapter's timeout and verified
TLS, and return the token the server puts in ``X-Authentication-Token``; the adapter gives
it to ``MetaCatClient(token=...)``, which then uses it for every data request.
"""

from __future__ import annotations

from pathlib import Path

import requests
from requests.auth import HTTPDigestAuth

TOKEN_HEADER = "X-Authentication-Token"


class MetaCatLoginError(Exception):
    """The auth server refused or failed a login; ``status`` is its HTTP status."""

    def __init__(self, method: str, status: int, text: str) -> None:
        self.status = status
        super().__init__(f"MetaCat {method} login answered HTTP {status}: {text.strip()[:200]}")


def _token(method: str, response: requests.Response) -> str:
    token = response.headers.get(TOKEN_HEADER)
    if response.status_code != 200 or not token:
        raise MetaCatLoginError(method, response.status_code, response.text if response.status_code != 200 else
                                f"no {TOKEN_HEADER} header")  # fmt: skip
    return token


def password_login(auth_url: str, username: str, password: str, *, timeout: float, verify: bool | str) -> str:
    """LDAP first, then digest, as the client does; a non-200 LDAP answer falls through to digest."""
    url = f"{auth_url}/auth"
    ldap = requests.post(url, params={"method": "ldap"}, data=f"{username}:{password}".encode(),
                         timeout=timeout, verify=verify)  # fmt: skip
    if ldap.status_code == 200 and ldap.headers.get(TOKEN_HEADER):
        return ldap.headers[TOKEN_HEADER]
    if ldap.status_code >= 500:
        raise MetaCatLoginError("password (LDAP)", ldap.status_code, ldap.text)
    digest = requests.get(url, params={"method": "digest"}, auth=HTTPDigestAuth(username, password),
                          timeout=timeout, verify=verify)  # fmt: skip
    return _token("password (digest)", digest)


def token_login(auth_url: str, username: str, token: str, *, timeout: float, verify: bool | str) -> str:
    response = requests.post(f"{auth_url}/auth", params={"method": "token", "username": username},
                             headers={"Authorization": f"bearer {token}"}, timeout=timeout, verify=verify)  # fmt: skip
    return _token("token", response)


def x509_login(auth_url: str, username: str, proxy: Path, *, timeout: float, verify: bool | str) -> str:
    """The proxy file holds certificate and key, so it is both halves of ``cert``."""
    response = requests.get(f"{auth_url}/auth", params={"method": "x509", "username": username},
                            cert=(str(proxy), str(proxy)), timeout=timeout, verify=verify)  # fmt: skip
    return _token("x509", response)
