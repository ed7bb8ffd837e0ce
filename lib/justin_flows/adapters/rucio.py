"""Rucio, through the real ``rucio.client`` classes. Every call the flows make is a method here.

Generators returned by the client are materialised inside the call, so the ledger times
the whole exchange and a failure mid-stream is caught and retried in one place. Clients
are per thread (the flows call Rucio from a small thread pool).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import requests

from justin_flows.adapters.calls import ExternalService
from justin_flows.settings import Settings, get_settings

SERVICE = "rucio"


def is_transient(exc: BaseException) -> bool:
    """Network trouble and server-side failures are worth another try; answers are not."""
    from rucio.common import exception as rex

    if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout, ConnectionError, TimeoutError)):
        return True
    # NoFilesUploaded/NotAllFilesUploaded: UploadClient swallows the transfer error itself and
    # raises these instead; a failed transfer is worth another try (upstream: 3 tries).
    return isinstance(
        exc,
        (
            rex.ServiceUnavailable, rex.DatabaseException, rex.ServerConnectionException,
            rex.NoFilesUploaded, rex.NotAllFilesUploaded,
        ),
    ) or (type(exc) is rex.RucioException)


class _UploadLogger:
    """What ``UploadClient(tracing=False)`` needs in 41.5.1: an object with ``.log`` that is
    also callable (it uses both), forwarding to Python logging at the client's levels."""

    def __init__(self) -> None:
        self._logger = logging.getLogger("justin_flows.rucio.upload")

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        self._logger.log(level, msg, *args, **kwargs)

    __call__ = log


UploadResult = Literal["uploaded", "already-present"]


class RucioAdapter:
    """The project's only door to Rucio."""

    def __init__(self, settings: Settings | None = None, service: ExternalService | None = None) -> None:
        self.settings = settings or get_settings()
        rucio = self.settings.rucio
        if rucio.config_file is not None:
            # rucio.client reads RUCIO_CONFIG once per process; set it before the first client
            os.environ["RUCIO_CONFIG"] = str(rucio.config_file)
        self.service = service or ExternalService(
            SERVICE, self.settings.retry, is_transient, max_in_flight=rucio.max_in_flight
        )
        self._local = threading.local()

    # ------------------------------------------------------------------ clients
    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            from rucio.client import Client

            client = Client(account=self.settings.rucio.account, timeout=self.settings.rucio.timeout_seconds)
            self._local.client = client
        return client

    def _ping_client(self) -> Any:
        client = getattr(self._local, "ping", None)
        if client is None:
            from rucio.client.pingclient import PingClient

            client = PingClient(timeout=self.settings.rucio.timeout_seconds)
            self._local.ping = client
        return client

    def _call(self, operation: str, *args: Any, attempts: int | None = None, **kwargs: Any) -> Any:
        def run() -> Any:
            result = getattr(self._client(), operation)(*args, **kwargs)
            if hasattr(result, "__next__"):
                return list(result)
            return result

        return self.service.call(operation, run, attempts=attempts)

    # ------------------------------------------------------------------ health
    def ping_milliseconds(self, pings: int = 3) -> int:
        """Average round trip of ``pings`` pings in ms (upstream pingRucioMilliseconds).

        Each ping is tried once: a retried ping would hide the latency being measured; the
        caller retries the whole measurement instead. Any failed ping raises.
        """
        total = 0.0
        for _ in range(pings):
            start = time.perf_counter()
            self.service.call("ping", lambda: self._ping_client().ping(), attempts=1)
            total += time.perf_counter() - start
        return int(total * 1000 / pings)

    # ------------------------------------------------------------------ RSEs
    def list_rses(self, rse_expression: str | None = None) -> list[dict[str, Any]]:
        return self._call("list_rses", rse_expression) if rse_expression else self._call("list_rses")

    def get_rse(self, rse: str) -> dict[str, Any]:
        return self._call("get_rse", rse)

    def list_rse_attributes(self, rse: str) -> dict[str, Any]:
        return self._call("list_rse_attributes", rse)

    def get_protocols(self, rse: str) -> list[dict[str, Any]]:
        return self._call("get_protocols", rse)

    def get_rse_usage(self, rse: str, source: str = "rucio") -> list[dict[str, Any]]:
        return self._call("get_rse_usage", rse, filters={"source": source})

    # ------------------------------------------------------------------ accounts
    def get_local_account_limits(self, account: str) -> dict[str, Any]:
        return self._call("get_local_account_limits", account)

    def get_local_account_usage(self, account: str) -> list[dict[str, Any]]:
        return self._call("get_local_account_usage", account)

    def list_accounts(self, identity: str | None = None) -> list[dict[str, Any]]:
        """Active accounts; with ``identity``, only those holding an identity of that name (any type)."""
        return self._call("list_accounts", identity=identity) if identity else self._call("list_accounts")

    def list_identities(self, account: str) -> list[dict[str, Any]]:
        return self._call("list_identities", account)

    def list_scopes_for_account(self, account: str) -> list[str]:
        return self._call("list_scopes_for_account", account)

    # ------------------------------------------------------------------ DIDs and rules
    def get_did(self, scope: str, name: str) -> dict[str, Any]:
        return self._call("get_did", scope, name)

    def add_dataset(self, scope: str, name: str, meta: dict[str, Any] | None = None) -> bool:
        return self._call("add_dataset", scope, name, meta=meta)

    def list_replication_rules(self, filters: dict[str, Any]) -> list[dict[str, Any]]:
        return self._call("list_replication_rules", filters=filters)

    def add_replication_rule(
        self, dids: Sequence[dict[str, str]], copies: int, rse_expression: str, lifetime: int | None
    ) -> list[str]:
        return self._call(
            "add_replication_rule", dids=list(dids), copies=copies, rse_expression=rse_expression, lifetime=lifetime
        )

    def list_replicas(
        self, dids: Iterable[dict[str, str]], schemes: Sequence[str] | None = None, domain: str | None = None
    ) -> list[dict[str, Any]]:
        kwargs: dict[str, Any] = {}
        if schemes:
            kwargs["schemes"] = list(schemes)
        if domain:
            kwargs["domain"] = domain
        return self._call("list_replicas", list(dids), **kwargs)

    def list_files(self, scope: str, name: str) -> list[dict[str, Any]]:
        return self._call("list_files", scope, name)

    def attach_dids(self, scope: str, name: str, dids: Sequence[dict[str, str]]) -> bool:
        return self._call("attach_dids", scope, name, list(dids))

    def list_parent_dids(self, scope: str, name: str) -> list[dict[str, Any]]:
        return self._call("list_parent_dids", scope, name)

    # ------------------------------------------------------------------ uploads
    def upload(
        self,
        path: Path,
        *,
        rse: str,
        scope: str,
        name: str,
        dataset_scope: str,
        dataset_name: str,
        scheme: str | None = None,
        transfer_timeout: int = 1200,
    ) -> UploadResult:
        """Upload one file with ``UploadClient`` into ``dataset`` (justin-rucio-upload, §5.8).

        Registers the DID and replica on ``rse`` and attaches the file to the dataset, which
        must already exist with its rule (the upload client would otherwise create it with a
        rule of unlimited lifetime). ``register_after_upload``: the replica is registered,
        AVAILABLE, only once the bytes are written; by default the client registers it
        COPYING first, and a kill or a lost answer between the bytes and the state update
        leaves a replica that every later attempt skips as "already exists" and that never
        becomes AVAILABLE. With it, leftover bytes of an unregistered file are overwritten. Returns ``"already-present"`` when the client skipped the
        transfer because the file is already on the RSE (a re-upload raises
        ``NoFilesUploaded``; the caller verifies the replica either way). Tried up to the
        retry policy's attempts; write-blocked RSEs and quota errors are final at once.
        Tracing is off (the traces endpoint is not part of the server's API here).
        """
        item: dict[str, Any] = {
            "path": str(path),
            "rse": rse,
            "did_scope": scope,
            "did_name": name,
            "dataset_scope": dataset_scope,
            "dataset_name": dataset_name,
            "transfer_timeout": transfer_timeout,
            "register_after_upload": True,
        }
        if scheme:
            item["force_scheme"] = scheme

        def run() -> UploadResult:
            from rucio.client.uploadclient import UploadClient
            from rucio.common.exception import NoFilesUploaded

            traces: list[dict[str, Any]] = []
            client = UploadClient(self._client(), logger=_UploadLogger(), tracing=False)  # type: ignore[arg-type]
            try:
                client.upload([item], traces_copy_out=traces)  # type: ignore[list-item]
            except NoFilesUploaded:
                if traces and all(t.get("stateReason") == "File already exists" for t in traces):
                    return "already-present"
                reasons = "; ".join(str(t.get("stateReason")) for t in traces if t.get("stateReason"))
                raise NoFilesUploaded(reasons or "no file was uploaded") from None
            return "uploaded"

        return self.service.call("upload", run)

    def mark_available_if_stored(
        self, *, rse: str, scope: str, name: str, size: int, adler32: str, scheme: str | None = None
    ) -> bool:
        """Repair a replica left COPYING with its bytes on ``rse`` (an upload killed between the
        bytes and the state update, by upstream's client or before ``register_after_upload``).

        The bytes are stat'ed on the storage through the client's RSE manager; only when size
        and adler32 equal the file's is the replica set AVAILABLE. Returns whether it was.
        """
        from justin_flows.domain.output_files import same_adler32

        def run() -> bool:
            from rucio.rse import rsemanager as rsemgr

            client = self._client()
            info = rsemgr.get_rse_info(rse, vo=client.vo)
            did = {"scope": scope, "name": name}
            pfn = next(iter(rsemgr.lfns2pfns(info, [did], operation="read", scheme=scheme).values()))
            protocol = rsemgr.create_protocol(info, "read", scheme=scheme)
            protocol.connect()
            try:
                stored = protocol.stat(pfn)
            finally:
                protocol.close()
            if stored.get("filesize") != size or not same_adler32(stored.get("adler32"), adler32):
                return False
            client.update_replicas_states(rse, [{**did, "state": "A"}])
            return True

        return bool(self.service.call("repair_replica", run))
