"""Plain HTTPS calls (CILogon discovery, JWKS and token endpoint, raw GitHub), TLS always verified.

Upstream's ``getJsonURL()`` (agents/justin-info-collector, reference §2.2) used urllib with
certificate and host-name checks against ``/etc/grid-security/certificates``. Here:

* Only ``https://`` URLs are fetched, on every hop: a redirect is followed (at most
  ``MAX_REDIRECTS``, like urllib) but never to plain http.
* TLS is verified against ``cilogon.ca_file``, a CA bundle file or a hashed CA directory
  (the grid's ``/etc/grid-security/certificates``); unset means the certifi store. A
  certificate that fails verification is not retried: it will not verify a second later.
* ``cilogon.timeout_seconds`` bounds each connect/read and, as a deadline, the whole body,
  so a server that trickles bytes cannot hold a flow; bodies over ``max_body_bytes`` are
  refused.
* ``post_form`` (the dashboard's OAuth2 token request, reference §7.2, where upstream's
  context verified nothing) is HTTPS and verified like a GET, follows **no** redirect (a
  redirected POST would carry the client secret elsewhere) and is tried **once** by default:
  an authorization code can be spent only once, so a repeat after a lost answer would fail
  anyway and hide the real error.
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from justin_flows.adapters.calls import ExternalService
from justin_flows.settings import Settings, get_settings

SERVICE = "http"
MAX_REDIRECTS = 5
MAX_BODY_BYTES = 16 * 1024 * 1024
ERROR_EXCERPT_CHARS = 300


class InsecureURLError(ValueError):
    """A URL (given, or a redirect target) that is not https:// was refused."""


class ResponseTooLarge(ValueError):
    pass


class DeadlineExceeded(TimeoutError):
    """The whole response took longer than the timeout (each read alone was in time)."""


def is_certificate_failure(exc: BaseException) -> bool:
    """Whether a TLS certificate verification error is anywhere in ``exc``'s cause chain."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLCertVerificationError):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code >= 500 or exc.response.status_code == 429
    if is_certificate_failure(exc):
        return False
    return isinstance(exc, (httpx.TransportError, TimeoutError, ConnectionError))


def ssl_context(ca_file: Path | None) -> ssl.SSLContext:
    """Verification context: ``ca_file`` as a bundle or a hashed directory, else certifi."""
    if ca_file is None:
        return httpx.create_ssl_context()
    path = Path(ca_file)
    if path.is_dir():
        return ssl.create_default_context(capath=str(path))
    if path.is_file():
        return ssl.create_default_context(cafile=str(path))
    raise FileNotFoundError(f"cilogon.ca_file {path} is neither a CA bundle file nor a CA directory")


def require_https(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise InsecureURLError(f"refusing {url!r}: only https:// URLs are fetched")
    return url


def _refuse_insecure(request: httpx.Request) -> None:
    require_https(str(request.url))


@dataclass(frozen=True)
class Fetched:
    """A fully read 2xx response."""

    url: str  # the final URL, after redirects
    status_code: int
    content_type: str
    body: bytes
    encoding: str

    @property
    def text(self) -> str:
        return self.body.decode(self.encoding, errors="replace")


def _error_excerpt(body: bytes) -> str:
    """The part of an error answer worth showing: OAuth2's ``error``/``error_description``."""
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    if isinstance(document, dict) and "error" in document:
        parts = [str(document.get("error")), str(document.get("error_description") or "")]
        return ": ".join(p for p in parts if p)[:ERROR_EXCERPT_CHARS]
    return body[:ERROR_EXCERPT_CHARS].decode("utf-8", errors="replace")


class HTTPAdapter:
    """GET and form POST requests; the ledger operation is ``GET <host>`` / ``POST <host>``."""

    def __init__(
        self,
        settings: Settings | None = None,
        service: ExternalService | None = None,
        *,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self.settings = settings or get_settings()
        self.service = service or ExternalService(SERVICE, self.settings.retry, is_transient)
        self.timeout_seconds = self.settings.cilogon.timeout_seconds
        self.max_body_bytes = max_body_bytes
        self._client = httpx.Client(
            verify=ssl_context(self.settings.cilogon.ca_file),
            timeout=self.timeout_seconds,
            follow_redirects=True,
            max_redirects=MAX_REDIRECTS,
            event_hooks={"request": [_refuse_insecure]},
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HTTPAdapter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _body(self, response: httpx.Response, url: str, deadline: float) -> bytes:
        """The whole body, refused past ``max_body_bytes`` or past the whole-response deadline."""
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > self.max_body_bytes:
                raise ResponseTooLarge(f"{url}: response is larger than {self.max_body_bytes} bytes")
            if time.monotonic() > deadline:
                raise DeadlineExceeded(f"{url}: response not complete after {self.timeout_seconds} s")
            chunks.append(chunk)
        return b"".join(chunks)

    def _read(self, url: str) -> Fetched:
        deadline = time.monotonic() + self.timeout_seconds
        with self._client.stream("GET", url) as response:
            response.raise_for_status()
            body = self._body(response, url, deadline)
            return Fetched(
                str(response.url), response.status_code, response.headers.get("content-type", ""),
                body, response.encoding or "utf-8",
            )

    def _post(self, url: str, data: Mapping[str, str], headers: Mapping[str, str] | None) -> Fetched:
        deadline = time.monotonic() + self.timeout_seconds
        with self._client.stream("POST", url, data=dict(data), headers=dict(headers or {}), follow_redirects=False) as response:
            body = self._body(response, url, deadline)
            if not response.is_success:
                raise httpx.HTTPStatusError(
                    f"POST {url} answered {response.status_code}: {_error_excerpt(body)}",
                    request=response.request, response=response,
                )
            return Fetched(
                str(response.url), response.status_code, response.headers.get("content-type", ""),
                body, response.encoding or "utf-8",
            )

    def post_form(
        self, url: str, data: Mapping[str, str], *, headers: Mapping[str, str] | None = None, attempts: int = 1
    ) -> Fetched:
        """POST ``data`` form-encoded to ``url``; the 2xx response, else ``ExternalCallError``.

        No redirect is followed (a 3xx is an error). One attempt unless ``attempts`` says
        otherwise (see the module docstring). The form values never reach the ledger.
        """
        require_https(url)
        return self.service.call(
            f"POST {urlsplit(url).hostname}", lambda: self._post(url, data, headers), attempts=attempts
        )

    def post_form_json(
        self, url: str, data: Mapping[str, str], *, headers: Mapping[str, str] | None = None, attempts: int = 1
    ) -> Any:
        """The JSON body of ``post_form``; a non-JSON answer raises with the URL named."""
        fetched = self.post_form(url, data, headers=headers, attempts=attempts)
        try:
            return json.loads(fetched.body)
        except ValueError as exc:
            raise ValueError(f"{url} did not return JSON: {exc}") from exc

    def get(self, url: str) -> Fetched:
        """The whole 2xx response at ``url``; anything else raises ``ExternalCallError``."""
        require_https(url)
        return self.service.call(f"GET {urlsplit(url).hostname}", lambda: self._read(url))

    def get_json(self, url: str) -> Any:
        """The JSON body at ``url``; a non-2xx or non-JSON answer raises with the URL named."""
        fetched = self.get(url)
        try:
            return json.loads(fetched.body)
        except ValueError as exc:
            raise ValueError(f"{url} did not return JSON: {exc}") from exc

    def get_text(self, url: str) -> str:
        return self.get(url).text
