"""Plain HTTPS calls (CILogon discovery and JWKS, raw GitHub), TLS always verified."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx

from justin_flows.adapters.calls import ExternalService
from justin_flows.settings import Settings, get_settings

SERVICE = "http"


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code >= 500 or exc.response.status_code == 429
    return isinstance(exc, (httpx.TransportError, TimeoutError, ConnectionError))


class HTTPAdapter:
    """GET requests; the ledger operation is ``GET <host>`` so rates are per host."""

    def __init__(self, settings: Settings | None = None, service: ExternalService | None = None) -> None:
        self.settings = settings or get_settings()
        self.service = service or ExternalService(SERVICE, self.settings.retry, is_transient)
        ca = self.settings.cilogon.ca_file
        self._client = httpx.Client(
            verify=str(ca) if ca else True, timeout=self.settings.cilogon.timeout_seconds, follow_redirects=False
        )

    def close(self) -> None:
        self._client.close()

    def _get(self, url: str) -> httpx.Response:
        def run() -> httpx.Response:
            response = self._client.get(url)
            response.raise_for_status()
            return response

        return self.service.call(f"GET {urlsplit(url).hostname}", run)

    def get_json(self, url: str) -> Any:
        """The JSON body at ``url``; a non-2xx or non-JSON answer raises with the URL named."""
        response = self._get(url)
        try:
            return response.json()
        except ValueError as exc:
            raise ValueError(f"{url} did not return JSON: {exc}") from exc

    def get_text(self, url: str) -> str:
        return self._get(url).text
