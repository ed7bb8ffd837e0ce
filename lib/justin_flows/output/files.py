"""Each output file: declared, uploaded, attached, checked, catalogued and confirmed
(the wrapper's per-file loop and confirmation, reference §5.5 and §5.6).

Per file: metadata (the user's ``<file>.json`` merged with ``dune.workflow``) and adler32
(318 on failure); MetaCat ``declare`` into ``dune:all`` with size and checksum (319); upload
to the first of up to three output RSEs into its per-RSE dataset (320; 328 when an upload
"succeeds" without a replica); one ``attach_dids`` to each of the numbered and overall
datasets; ``list_parent_dids`` must show all three (328). Then, once *every* output is
stored, the MetaCat datasets get their files (one ``add_files`` per dataset for all of the
job's files, not one per file) and each file's ``dune.output_status`` becomes ``uploaded``
(321); after the results are recorded, ``confirmed``.

Deliberate differences from upstream, each for a reason:

* **Attach once per dataset** (upstream: 3× each, its loop has no ``break`` [BUG]).
* **Nothing is half-marked**: MetaCat datasets and statuses change only when all outputs of
  the job are stored, so a failed job leaves its files ``recorded``; upstream marks each
  file uploaded as it goes and then aborts on a later one.
* **Reruns converge**: a file already declared with the same size and adler32 is taken as
  it is (different bytes → 319, never overwritten); a replica an earlier run left on an
  output RSE is used instead of uploading a second one; ``FileAlreadyExists`` on attach is
  success; statuses already ``uploaded``/``confirmed`` are not written again.
* The files are processed concurrently (``settings.rucio.max_in_flight`` at a time), not one
  at a time.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from justin_flows.adapters.calls import ExternalCallError
from justin_flows.adapters.metacat import MetaCatAdapter
from justin_flows.adapters.rucio import RucioAdapter
from justin_flows.concurrency import bounded_map
from justin_flows.domain.job_aborts import AbortCode
from justin_flows.domain.output_datasets import ALL_FILES_DATASET
from justin_flows.domain.output_files import (
    OUTPUT_STATUS_KEY,
    MetadataError,
    OutputFile,
    adler32_of,
    output_file_record,
    same_adler32,
)
from justin_flows.output.allocation import OutputRse
from justin_flows.output.datasets import DatasetEnsurer, DatasetError
from justin_flows.output.job import Abort, OutputJob, StepReport
from justin_flows.output.upload import (
    Placement,
    SilentUploadFailure,
    attach_once,
    find_existing_replica,
    parent_dids,
    place_file,
)

STORE = "storeOutputFiles"
CATALOGUE = "catalogueOutputFiles"
CONFIRM = "confirmOutputFiles"
ADD_FILES_CHUNK = 500
METACAT_IN_FLIGHT = 4  # as the MetaCat adapter's own limit


@dataclass
class StoredFile:
    """What happened to one output; ``abort`` is set when it could not be stored."""

    file: OutputFile
    did: str
    adler32: str = ""
    declared: str = ""  # "declared" or "existing"
    metacat_status: str = ""  # dune.output_status in MetaCat before this run's updates
    rse: str = ""
    placement: str = ""  # "uploaded", "already-present" or "found"
    seconds: float = 0.0
    datasets: tuple[str, ...] = ()  # per-RSE, numbered, overall DIDs
    refusals: tuple[str, ...] = ()  # why the RSEs tried before ``rse`` did not take it
    abort: Abort | None = None

    @property
    def stored(self) -> bool:
        return self.abort is None and bool(self.rse)

    def row(self) -> dict[str, Any]:
        return {
            "file": self.did, "pattern_id": self.file.pattern_id, "size_bytes": self.file.size,
            "adler32": self.adler32, "declared": self.declared, "rse": self.rse, "upload": self.placement,
            "seconds": round(self.seconds, 3), "datasets": " ".join(self.datasets),
            "rses_refused": len(self.refusals),
            "result": "stored" if self.stored else f"abort {int(self.abort.code) if self.abort else '?'}",
        }


def _read_user_json(f: OutputFile) -> Any:
    path = f.path.with_name(f.name + ".json")
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MetadataError(f"{path.name} is not readable JSON: {exc}") from exc


def _declare(metacat: MetaCatAdapter, result: StoredFile, metadata: dict[str, Any], parents: list[Any]) -> None:
    """Declare into dune:all, or accept the earlier declaration of the same bytes."""
    from metacat.webapi.webapi import AlreadyExistsError

    size = result.file.size
    try:
        metacat.declare_file(result.did, ALL_FILES_DATASET, size, metadata, checksums={"adler32": result.adler32},
                             parents=parents)
        result.declared, result.metacat_status = "declared", "recorded"
        return
    except ExternalCallError as exc:
        if not isinstance(exc.cause, AlreadyExistsError):
            raise
    record = metacat.get_file(result.did, with_metadata=True)
    if record is None:
        raise RuntimeError(f"{result.did}: MetaCat says it exists but does not show it")
    theirs = (record.get("checksums") or {}).get("adler32")
    if record.get("size") != size or not same_adler32(theirs, result.adler32):
        raise RuntimeError(
            f"{result.did} is already declared in MetaCat with {record.get('size')} bytes / adler32 {theirs}, "
            f"but this file has {size} bytes / {result.adler32}; it is not overwritten"
        )
    result.declared = "existing"
    result.metacat_status = str((record.get("metadata") or {}).get(OUTPUT_STATUS_KEY, ""))


class _Failed(Exception):
    """Ends one file's processing with its abort."""

    def __init__(self, code: AbortCode, message: str, rse: str | None = None) -> None:
        super().__init__(message)
        self.abort = Abort(code, message, rse)


def _store_one(rucio: RucioAdapter, metacat: MetaCatAdapter, job: OutputJob, datasets: DatasetEnsurer,
               f: OutputFile) -> StoredFile:
    result = StoredFile(f, job.file_did(f.name))
    try:
        try:
            record = output_file_record(_read_user_json(f), workflow=job.workflow_fields())
            result.adler32 = adler32_of(f.path)
        except (MetadataError, OSError) as exc:
            raise _Failed(AbortCode.OUTPUT_METADATA, f"{result.did}: {exc}") from exc
        try:
            _declare(metacat, result, record.metadata, record.parents)
        except RuntimeError as exc:  # ExternalCallError included
            raise _Failed(AbortCode.OUTPUT_METACAT, f"{result.did}: declaring in MetaCat failed: {exc}") from exc
        placement = _place(rucio, job, datasets, f, result)
        _attach_and_check(rucio, job, f, result, placement)
    except _Failed as failed:
        result.abort = failed.abort
    return result


def _place(rucio: RucioAdapter, job: OutputJob, datasets: DatasetEnsurer, f: OutputFile,
           result: StoredFile) -> Placement:
    """The file's replica: an earlier run's (when MetaCat already had it), else a new upload."""
    pattern = job.allocation.pattern(f.pattern_id)
    rses = job.allocation.tried_rses

    def prepare_rse(rse: OutputRse) -> None:
        datasets.ensure(job.rse_dataset(pattern, rse))

    errors: list[str] = []
    try:
        placement = None
        if result.declared == "existing":
            placement = find_existing_replica(rucio, scope=job.scope, name=f.name, size=f.size,
                                              adler32=result.adler32, rses=rses)
            if placement is not None:
                prepare_rse(placement.rse)
        if placement is None:
            placement = place_file(
                rucio, path=f.path, scope=job.scope, name=f.name, size=f.size, adler32=result.adler32, rses=rses,
                dataset_for=lambda rse: (job.scope, job.rse_dataset(pattern, rse).name), prepare_rse=prepare_rse,
                errors=errors,
            )
    except SilentUploadFailure as exc:
        raise _Failed(AbortCode.SILENT_UPLOAD_FAILURE, str(exc), exc.rse) from exc
    except (ExternalCallError, DatasetError) as exc:
        raise _Failed(AbortCode.OUTPUT_UPLOAD, f"{result.did}: reusing an earlier replica failed: {exc}") from exc
    if placement is None:
        tried = ", ".join(r.rse for r in rses) or "none"
        raise _Failed(AbortCode.OUTPUT_UPLOAD,
                      f"{result.did}: no output RSE took the file (tried {tried}): " + " | ".join(errors))
    result.rse, result.placement, result.seconds = placement.rse.rse, placement.how, placement.seconds
    result.refusals = tuple(errors)
    numbered, overall = job.pattern_datasets(pattern)
    result.datasets = (job.rse_dataset(pattern, placement.rse).did, numbered.did, overall.did)
    return placement


def _attach_and_check(rucio: RucioAdapter, job: OutputJob, f: OutputFile, result: StoredFile,
                      placement: Placement) -> None:
    """One attach to each dataset the upload did not attach to, then ``list_parent_dids`` (328)."""
    scope, rse = job.scope, placement.rse.rse
    # a fresh upload attached the file to its per-RSE dataset; a replica an earlier run or
    # attempt left ("found", "already-present") may lack any of its datasets
    reused = placement.how in ("found", "already-present")
    wanted = list(result.datasets) if reused else list(result.datasets[1:])
    try:
        parents: set[str] = set()
        if reused:
            parents = parent_dids(rucio, scope, f.name)
            wanted = [did for did in wanted if did not in parents]
        for did in wanted:
            attach_once(rucio, scope, did.split(":", 1)[1], scope, f.name)
        if wanted or not reused:
            parents = parent_dids(rucio, scope, f.name)
    except ExternalCallError as exc:
        raise _Failed(AbortCode.OUTPUT_UPLOAD, f"{result.did}: attaching to its datasets failed: {exc}", rse) from exc
    missing = [did for did in result.datasets if did not in parents]
    if missing:
        raise _Failed(AbortCode.SILENT_UPLOAD_FAILURE,
                      f"{result.did}: on {rse} but not in {missing} (Rucio shows {sorted(parents)})", rse)


def store_output_files(
    rucio: RucioAdapter, metacat: MetaCatAdapter, job: OutputJob, datasets: DatasetEnsurer
) -> tuple[list[StoredFile], StepReport]:
    """Declare, upload, attach and check every output; the first failure (in file order) is the abort."""
    report = StepReport(STORE)

    def store(f: OutputFile) -> StoredFile:
        return _store_one(rucio, metacat, job, datasets, f)

    results: list[StoredFile] = []
    for outcome in bounded_map(store, job.outputs, max_workers=rucio.settings.rucio.max_in_flight):
        if outcome.error is not None:  # a bug, not a service answer: still the file's failure
            result = StoredFile(outcome.item, job.file_did(outcome.item.name))
            result.abort = Abort(AbortCode.OUTPUT_UPLOAD, f"{result.did}: {type(outcome.error).__name__}: "
                                                          f"{outcome.error}")
        else:
            assert outcome.value is not None
            result = outcome.value
        results.append(result)
        report.rows.append(result.row())
        for refusal in result.refusals:
            report.error(f"{result.did}: {refusal}")
        if result.abort is not None:
            report.fail(result.abort.code, result.abort.message, result.abort.rse)
            report.count("failed")
        else:
            report.count(result.placement)
    return results, report


def _chunks(items: Sequence[str], size: int) -> list[Sequence[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def catalogue_output_files(metacat: MetaCatAdapter, stored: Sequence[StoredFile]) -> StepReport:
    """MetaCat dataset membership (one ``add_files`` per dataset, 319), then status ``uploaded`` (321).

    The status is set only after every dataset has its files, so a file already ``uploaded``
    (an earlier run got this far) needs neither again.
    """
    report = StepReport(CATALOGUE)
    members: dict[str, list[str]] = {}
    # a file whose status is already uploaded/confirmed had its datasets added before that
    for result in (r for r in stored if r.metacat_status not in ("uploaded", "confirmed")):
        for dataset in result.datasets:
            members.setdefault(dataset, []).append(result.did)
    for dataset, dids in members.items():
        for chunk in _chunks(dids, ADD_FILES_CHUNK):
            try:
                metacat.add_files(dataset, list(chunk))
            except ExternalCallError as exc:
                report.fail(AbortCode.OUTPUT_METACAT, f"{dataset}: adding {len(chunk)} file(s) in MetaCat failed: {exc}")
                return report
        report.rows.append({"dataset": dataset, "files": len(dids)})
        report.count("datasets")
    _set_status(metacat, stored, "uploaded", ("uploaded", "confirmed"), report, AbortCode.OUTPUT_STATUS)
    return report


def confirm_output_files(metacat: MetaCatAdapter, stored: Sequence[StoredFile]) -> StepReport:
    """``dune.output_status`` → ``confirmed`` after the results are recorded (§5.6).

    A failure here is reported but is not an abort: the outputs are stored and recorded; a
    rerun of the job confirms what is left.
    """
    report = StepReport(CONFIRM)
    _set_status(metacat, stored, "confirmed", ("confirmed",), report, None)
    return report


def _set_status(
    metacat: MetaCatAdapter,
    stored: Sequence[StoredFile],
    status: str,
    already: tuple[str, ...],
    report: StepReport,
    code: AbortCode | None,
) -> None:
    todo = [r for r in stored if r.metacat_status not in already]

    def update(r: StoredFile) -> Any:
        return metacat.update_file_metadata(r.did, {OUTPUT_STATUS_KEY: status})

    for outcome in bounded_map(update, todo, max_workers=METACAT_IN_FLIGHT):
        if outcome.error is not None:
            message = f"{outcome.item.did}: setting {OUTPUT_STATUS_KEY}={status} failed: {outcome.error}"
            if code is None:
                report.error(message)
            else:
                report.fail(code, message)
            report.count(f"{status}_failed")
        else:
            outcome.item.metacat_status = status
            report.count(status)
    report.count(f"already_{status}", len(stored) - len(todo))
