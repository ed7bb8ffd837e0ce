"""MetaCat, through the real ``metacat.webapi.MetaCatClient``.

Upstream shells out to ``metacat auth login`` before *every* command; here one login is
made lazily per adapter (one adapter per flow run), by ``metacat_login`` (a timeout and
verified TLS, which the client's own login lacks), and its token handed to the client.
The client's token library is private, inside a 0700 temporary directory that ``close()``
removes, so no token lands in a shared ``$HOME`` or ``/tmp``.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import requests

from justin_flows.adapters import metacat_login
from justin_flows.adapters.calls import ExternalService
from justin_flows.secrets import register_secret
from justin_flows.settings import Settings, get_settings

SERVICE = "metacat"


def is_transient(exc: BaseException) -> bool:
    """Connection trouble and 5xx answers are retried; 4xx answers are final."""
    from metacat.webapi.webapi import WebAPIError

    if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout, ConnectionError, TimeoutError)):
        return True
    if isinstance(exc, metacat_login.MetaCatLoginError):
        return exc.status >= 500
    if type(exc) is WebAPIError:  # subclasses (NotFound, BadRequest, AlreadyExists...) are answers
        status = getattr(exc, "StatusCode", None)
        return status is None or status >= 500
    return False


class MetaCatAdapter:
    """The project's only door to MetaCat; ``inputs`` for queries, ``outputs`` for declarations."""

    def __init__(self, settings: Settings | None = None, service: ExternalService | None = None) -> None:
        self.settings = settings or get_settings()
        cfg = self.settings.metacat
        for secret in (cfg.password, cfg.token):
            if secret is not None:
                register_secret(secret.get_secret_value())
        self.service = service or ExternalService(
            SERVICE, self.settings.retry, is_transient, max_in_flight=cfg.max_in_flight
        )
        self._tmp = Path(tempfile.mkdtemp(prefix="justin-metacat-"))  # mkdtemp makes it 0700
        self._lock = threading.Lock()
        self._outputs: Any = None
        self._inputs: Any = None

    def close(self) -> None:
        """Forget the token and remove its private library."""
        self._outputs = self._inputs = None
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> MetaCatAdapter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ clients
    def _new_client(self, url: str, token: str | None = None) -> Any:
        from metacat.webapi import MetaCatClient

        cfg = self.settings.metacat
        client = MetaCatClient(
            url,
            auth_server_url=cfg.auth_server_url,
            token=token,
            token_library=str(self._tmp / ".token_library"),
            timeout=cfg.timeout_seconds,
        )
        # The client re-sends 5xx answers itself for up to 30 min, unseen by the ledger;
        # its documented "0 = try exactly once" leaves retrying to ExternalService.
        client.DefaultTimeout = 0
        return client

    def _login(self) -> str:
        """A token for the outputs server, through ``metacat_login`` (timeout, verified TLS)."""
        cfg = self.settings.metacat
        options = {"timeout": cfg.timeout_seconds, "verify": str(cfg.ca_path) if cfg.ca_path else True}
        if cfg.login_method == "password":
            if cfg.password is None:
                raise ValueError("metacat.login_method is 'password' but metacat.password is not set")
            password = cfg.password.get_secret_value()
            token = self.service.call(
                "login", lambda: metacat_login.password_login(cfg.auth_server_url, cfg.username, password, **options)
            )
        elif cfg.login_method == "token":
            if cfg.token is None:
                raise ValueError("metacat.login_method is 'token' but metacat.token is not set")
            bearer = cfg.token.get_secret_value()
            token = self.service.call(
                "login", lambda: metacat_login.token_login(cfg.auth_server_url, cfg.username, bearer, **options)
            )
        else:
            proxy = self.settings.proxies.production_proxy
            token = self.service.call(
                "login", lambda: metacat_login.x509_login(cfg.auth_server_url, cfg.username, proxy, **options)
            )
        register_secret(token)
        return token

    def outputs(self) -> Any:
        """The logged-in client of the outputs server (one login per adapter)."""
        with self._lock:
            if self._outputs is None:
                self._outputs = self._new_client(self.settings.metacat.server_outputs_url, self._login())
            return self._outputs

    def inputs(self) -> Any:
        """The inputs server's client. Queries need no login (upstream's finder sends none)."""
        with self._lock:
            if self._inputs is None:
                self._inputs = self._new_client(self.settings.metacat.server_inputs_url)
            return self._inputs

    # ------------------------------------------------------------------ operations
    def query(self, mql: str, with_metadata: bool = False) -> list[dict[str, Any]]:
        """Files matching ``mql`` on the inputs server, as dicts with namespace, name, size."""
        return self.service.call("query", lambda: list(self.inputs().query(mql, with_metadata=with_metadata)))

    def get_file(self, did: str, with_metadata: bool = True) -> dict[str, Any] | None:
        return self.service.call(
            "get_file", lambda: self.outputs().get_file(did=did, with_metadata=with_metadata, with_provenance=False)
        )

    def get_dataset(self, did: str) -> dict[str, Any] | None:
        return self.service.call("get_dataset", lambda: self.outputs().get_dataset(did=did))

    def create_dataset(self, did: str, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.service.call("create_dataset", lambda: self.outputs().create_dataset(did, metadata=metadata))

    def declare_file(
        self,
        did: str,
        dataset_did: str,
        size: int,
        metadata: dict[str, Any],
        checksums: dict[str, str] | None = None,
        parents: Sequence[str | Mapping[str, str]] = (),
    ) -> dict[str, Any]:
        """Declare one file into ``dataset_did``. A parent given as a string is a file id;
        give ``{"did": "ns:name"}`` (or ``namespace``+``name``) to name one by DID."""
        return self.service.call(
            "declare_file",
            lambda: self.outputs().declare_file(
                did=did,
                dataset_did=dataset_did,
                size=size,
                metadata=metadata,
                checksums=checksums or {},
                parents=list(parents),
            ),
        )

    def add_files(self, dataset_did: str, file_dids: Sequence[str]) -> Any:
        files = [{"did": did} for did in file_dids]
        return self.service.call("add_files", lambda: self.outputs().add_files(dataset_did, file_list=files))

    def update_file_metadata(self, did: str, metadata: dict[str, Any]) -> dict[str, Any]:
        return self.service.call("update_file", lambda: self.outputs().update_file(did=did, metadata=metadata))
