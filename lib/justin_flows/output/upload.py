"""One file to the first output RSE that takes it, and proof that it landed
(``justin-rucio-upload``, reference §5.8, as the wrapper drives it in §5.4 and §5.5).

For each of the (at most three) output RSEs in order: make that RSE's dataset ready, upload
(the adapter tries up to three times; a write-blocked RSE or a quota error moves on at once),
then ``list_replicas``: an upload counts only once Rucio lists an AVAILABLE replica on that
RSE with the file's size and adler32. An upload that "succeeded" without one is a *silent
failure*: upstream meant to abort 328 for it, but its check could never fire ([BUG], §5.4);
here it does, at once, rather than scattering more replicas over other RSEs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from justin_flows.adapters.calls import ExternalCallError
from justin_flows.adapters.rucio import RucioAdapter
from justin_flows.domain.output_files import same_adler32
from justin_flows.output.allocation import OutputRse

TRANSFER_TIMEOUT_SECONDS = 1200  # upstream --timeout 1200


class SilentUploadFailure(RuntimeError):
    """Rucio accepted an upload but does not show the replica (or shows different bytes)."""

    def __init__(self, message: str, rse: str) -> None:
        super().__init__(message)
        self.rse = rse


@dataclass(frozen=True)
class Placement:
    """Where a file's replica is: ``how`` is ``uploaded``, ``already-present`` (the upload client
    found it on the RSE) or ``found`` (an earlier run had put it there)."""

    rse: OutputRse
    how: str
    seconds: float
    pfn: str


def _replica_on(entry: dict[str, Any], rse: str) -> str | None:
    pfns = (entry.get("rses") or {}).get(rse) or []
    state = (entry.get("states") or {}).get(rse, "AVAILABLE")
    return str(pfns[0]) if pfns and state == "AVAILABLE" else None


def _matches(entry: dict[str, Any], size: int, adler32: str) -> bool:
    return entry.get("bytes") == size and same_adler32(entry.get("adler32"), adler32)


def find_existing_replica(
    rucio: RucioAdapter, *, scope: str, name: str, size: int, adler32: str, rses: Sequence[OutputRse]
) -> Placement | None:
    """An AVAILABLE replica of the very same bytes on one of ``rses`` (from an earlier run)."""
    from rucio.common.exception import DataIdentifierNotFound

    try:
        entries = rucio.list_replicas([{"scope": scope, "name": name}])
    except ExternalCallError as exc:
        if isinstance(exc.cause, DataIdentifierNotFound):
            return None
        raise
    for entry in entries:
        if entry.get("name") != name or not _matches(entry, size, adler32):
            continue
        for rse in rses:
            pfn = _replica_on(entry, rse.rse)
            if pfn:
                return Placement(rse, "found", 0.0, pfn)
    return None


def verify_replica(rucio: RucioAdapter, *, scope: str, name: str, size: int, adler32: str, rse: str) -> str:
    """The PFN of the AVAILABLE replica on ``rse``; ``SilentUploadFailure`` if Rucio has none."""
    entries = [e for e in rucio.list_replicas([{"scope": scope, "name": name}]) if e.get("name") == name]
    if not entries:
        raise SilentUploadFailure(f"{scope}:{name}: uploaded to {rse}, but Rucio lists no replica", rse)
    entry = entries[0]
    pfn = _replica_on(entry, rse)
    if pfn is None:
        raise SilentUploadFailure(f"{scope}:{name}: uploaded to {rse}, but Rucio lists no AVAILABLE replica there", rse)
    if not _matches(entry, size, adler32):
        raise SilentUploadFailure(
            f"{scope}:{name}: the replica on {rse} has {entry.get('bytes')} bytes / adler32 {entry.get('adler32')}, "
            f"the file {size} bytes / {adler32}",
            rse,
        )
    return pfn


def place_file(
    rucio: RucioAdapter,
    *,
    path: Path,
    scope: str,
    name: str,
    size: int,
    adler32: str,
    rses: Sequence[OutputRse],
    dataset_for: Callable[[OutputRse], tuple[str, str]],
    prepare_rse: Callable[[OutputRse], None],
    errors: list[str],
) -> Placement | None:
    """Upload to the first of ``rses`` that takes the file; None when none did.

    ``dataset_for(rse)`` is the ``(scope, name)`` the upload attaches the file to on that RSE;
    ``prepare_rse(rse)`` makes that dataset ready and raises to skip the RSE. Each RSE's
    failure is appended to ``errors``. ``SilentUploadFailure`` propagates.
    """
    for rse in rses:
        try:
            prepare_rse(rse)
        except Exception as exc:  # noqa: BLE001 - the RSE is skipped, the reason reported
            errors.append(f"{rse.rse}: {exc}")
            continue
        dataset_scope, dataset_name = dataset_for(rse)
        start = time.perf_counter()
        try:
            how = rucio.upload(
                path, rse=rse.rse, scope=scope, name=name, dataset_scope=dataset_scope, dataset_name=dataset_name,
                scheme=rse.scheme, transfer_timeout=TRANSFER_TIMEOUT_SECONDS,
            )
        except ExternalCallError as exc:
            errors.append(f"{rse.rse}: {exc}")
            continue
        seconds = time.perf_counter() - start
        try:
            try:
                pfn = verify_replica(rucio, scope=scope, name=name, size=size, adler32=adler32, rse=rse.rse)
            except SilentUploadFailure:
                # "already there" but not AVAILABLE: a replica stuck COPYING with its bytes written
                if how != "already-present" or not rucio.mark_available_if_stored(
                    rse=rse.rse, scope=scope, name=name, size=size, adler32=adler32, scheme=rse.scheme
                ):
                    raise
                pfn = verify_replica(rucio, scope=scope, name=name, size=size, adler32=adler32, rse=rse.rse)
        except ExternalCallError as exc:
            errors.append(f"{rse.rse}: uploaded, but the replica could not be checked: {exc}")
            continue
        return Placement(rse, how, seconds, pfn)
    return None


def parent_dids(rucio: RucioAdapter, scope: str, name: str) -> set[str]:
    """``scope:name`` of every dataset the file is attached to (upstream's membership check)."""
    return {f"{p['scope']}:{p['name']}" for p in rucio.list_parent_dids(scope, name)}


def attach_once(rucio: RucioAdapter, scope: str, dataset: str, file_scope: str, file_name: str) -> str:
    """Attach the file to ``scope:dataset`` with one call: ``attached``, or ``existing`` when it
    already was (``FileAlreadyExists``). Upstream's loop has no ``break`` and always attaches
    three times ([BUG], §5.8); once is enough, and a retried attach that had landed is fine."""
    from rucio.common.exception import FileAlreadyExists

    try:
        rucio.attach_dids(scope, dataset, [{"scope": file_scope, "name": file_name}])
    except ExternalCallError as exc:
        if isinstance(exc.cause, FileAlreadyExists):
            return "existing"
        raise
    return "attached"
