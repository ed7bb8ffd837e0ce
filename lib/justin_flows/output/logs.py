"""The job's logs.tgz: built, declared in MetaCat, uploaded to the first working output RSE
(the wrapper's logs step, reference §5.4).

Deliberate differences from upstream, each for a reason:

* **Declared with its real size and adler32** (upstream declares size 0 and no checksum
  [BUG]), so MetaCat and Rucio describe the same bytes and a rerun can tell its own tgz.
* **No output RSEs is abort 316** (upstream silently skips the upload [BUG]).
* **Built with ``tarfile``**, never a shell, so log names with spaces or shell characters are
  archived as they are; it is written next to the workspace (not into it, where an output
  pattern could pick it up), under a temporary name renamed when complete. A complete
  logs.tgz from an earlier run of the same job is reused, so its checksum still matches what
  that run declared.
* An AVAILABLE replica on an output RSE from an earlier run is used as it is (no second
  replica); the logs dataset membership is checked with ``list_parent_dids`` as upstream's
  ``justin-rucio-upload`` does.
"""

from __future__ import annotations

import os
import tarfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from justin_flows.adapters.calls import ExternalCallError
from justin_flows.adapters.metacat import MetaCatAdapter
from justin_flows.adapters.rucio import RucioAdapter
from justin_flows.domain.job_aborts import AbortCode
from justin_flows.domain.naming import LOGS_SCOPE
from justin_flows.domain.output_datasets import ALL_FILES_DATASET, logs_dataset, logs_tgz_name, logs_tgz_prefix
from justin_flows.domain.output_files import adler32_of, same_adler32
from justin_flows.output.allocation import OutputRse
from justin_flows.output.datasets import DatasetEnsurer, DatasetError
from justin_flows.output.job import OutputJob, StepReport
from justin_flows.output.upload import (
    Placement,
    SilentUploadFailure,
    attach_once,
    find_existing_replica,
    parent_dids,
    place_file,
)

BUILD = "buildLogsTgz"
UPLOAD = "uploadLogsTgz"


@dataclass(frozen=True)
class LogsTgz:
    path: Path
    name: str
    size: int
    adler32: str
    members: tuple[str, ...]
    reused: bool

    @property
    def did(self) -> str:
        return f"{LOGS_SCOPE}:{self.name}"


def _log_sources(job: OutputJob, extra_files: Sequence[str | os.PathLike[str]]) -> list[Path]:
    sources = [p for p in sorted(job.workspace.glob("*.log")) if p.is_file() and not p.is_symlink()]
    for extra in extra_files:
        path = Path(extra)
        if path.is_file():
            sources.append(path)
    return sources


def build_logs_tgz(job: OutputJob, extra_files: Sequence[str | os.PathLike[str]] = ()) -> tuple[LogsTgz | None, StepReport]:
    """``<workdir>/<jobsub id with @→->.logs.tgz`` of the workspace's ``*.log`` and ``extra_files``
    (e.g. the job and machine ads), each entry under ``<jobsub id with @→->/``. 313 on failure."""
    report = StepReport(BUILD)
    name = logs_tgz_name(job.allocation.jobsub_id)
    prefix = logs_tgz_prefix(job.allocation.jobsub_id)
    path = job.workdir / name
    try:
        if path.is_file() and tarfile.is_tarfile(path):
            with tarfile.open(path, "r:gz") as tar:
                members = tuple(tar.getnames())
            reused = True
        else:
            partial = job.workdir / f".{name}.partial"
            added: list[str] = []
            with tarfile.open(partial, "w:gz") as tar:
                for source in _log_sources(job, extra_files):
                    arcname = f"{prefix}/{source.name}"
                    if arcname in added:
                        report.error(f"{source}: a log with the same name is already in {name}; left out")
                        continue
                    tar.add(source, arcname=arcname, recursive=False)
                    added.append(arcname)
            os.replace(partial, path)
            members, reused = tuple(added), False
        tgz = LogsTgz(path, name, path.stat().st_size, adler32_of(path), members, reused)
    except (OSError, tarfile.TarError) as exc:
        report.fail(AbortCode.LOGS_TGZ, f"{name}: building the logs archive failed: {type(exc).__name__}: {exc}")
        return None, report
    report.count("reused" if reused else "built")
    report.count("members", len(members))
    report.rows.append({"logs_tgz": name, "size": tgz.size, "adler32": tgz.adler32, "members": len(members),
                        "reused": reused})
    return tgz, report


def upload_logs(
    rucio: RucioAdapter,
    metacat: MetaCatAdapter,
    job: OutputJob,
    tgz: LogsTgz,
    datasets: DatasetEnsurer,
    *,
    now: float | None = None,
) -> StepReport:
    """Declare logs.tgz into ``dune:all`` (315), check it, upload it (316; 328 if silent)."""
    from metacat.webapi.webapi import AlreadyExistsError

    report = StepReport(UPLOAD)
    now = time.time() if now is None else now
    row: dict[str, object] = {"logs_tgz": tgz.did, "size": tgz.size, "adler32": tgz.adler32, "declared": "",
                              "rse": "", "upload": "", "seconds": 0.0}
    report.rows.append(row)
    rses = job.allocation.tried_rses
    if not rses:
        report.fail(AbortCode.LOGS_UPLOAD, f"{tgz.did}: the allocation names no output RSEs, so the logs cannot be "
                                           "stored (upstream skipped this silently)")
        return report

    existed = False
    try:
        metacat.declare_file(tgz.did, ALL_FILES_DATASET, tgz.size, {}, checksums={"adler32": tgz.adler32})
        row["declared"] = "declared"
    except ExternalCallError as exc:
        if not isinstance(exc.cause, AlreadyExistsError):
            report.fail(AbortCode.LOGS_METACAT, f"{tgz.did}: declaring in MetaCat failed: {exc}")
            return report
        existed = True
        row["declared"] = "existing"
    try:
        record = metacat.get_file(tgz.did, with_metadata=False)
    except ExternalCallError as exc:
        report.fail(AbortCode.LOGS_METACAT, f"{tgz.did}: reading it back from MetaCat failed: {exc}")
        return report
    if record is None or record.get("size") != tgz.size or not same_adler32(
        (record.get("checksums") or {}).get("adler32"), tgz.adler32
    ):
        shown = None if record is None else {"size": record.get("size"), "checksums": record.get("checksums")}
        report.fail(AbortCode.LOGS_METACAT, f"{tgz.did}: MetaCat holds {shown}, not {tgz.size} bytes / adler32 "
                                            f"{tgz.adler32}")
        return report

    def prepare_rse(rse: OutputRse) -> None:
        datasets.ensure(logs_dataset(rse.rse, now), check_first=True)

    errors: list[str] = []
    try:
        placement: Placement | None = None
        if existed:
            placement = find_existing_replica(rucio, scope=LOGS_SCOPE, name=tgz.name, size=tgz.size,
                                              adler32=tgz.adler32, rses=rses)
        if placement is None:
            placement = place_file(
                rucio, path=tgz.path, scope=LOGS_SCOPE, name=tgz.name, size=tgz.size, adler32=tgz.adler32, rses=rses,
                dataset_for=lambda rse: (LOGS_SCOPE, logs_dataset(rse.rse, now).name), prepare_rse=prepare_rse,
                errors=errors,
            )
    except SilentUploadFailure as exc:
        report.fail(AbortCode.SILENT_UPLOAD_FAILURE, str(exc), exc.rse)
        return report
    except ExternalCallError as exc:
        report.fail(AbortCode.LOGS_UPLOAD, f"{tgz.did}: looking for an earlier replica failed: {exc}")
        return report
    if placement is None:
        tried = ", ".join(r.rse for r in rses)
        report.fail(AbortCode.LOGS_UPLOAD, f"{tgz.did}: no output RSE took the logs (tried {tried}): "
                                           + " | ".join(errors))
        return report
    for error in errors:  # RSEs that refused before one took it
        report.error(f"{tgz.did}: {error}")
    rse = placement.rse.rse
    try:
        _check_logs_membership(rucio, tgz, placement, prepare_rse, now)
    except SilentUploadFailure as exc:
        report.fail(AbortCode.SILENT_UPLOAD_FAILURE, str(exc), rse)
        return report
    except (ExternalCallError, DatasetError) as exc:
        report.fail(AbortCode.LOGS_UPLOAD, f"{tgz.did}: checking its logs dataset on {rse} failed: {exc}", rse)
        return report
    row.update(rse=rse, upload=placement.how, seconds=round(placement.seconds, 3))
    report.count(placement.how)
    return report


def _check_logs_membership(
    rucio: RucioAdapter, tgz: LogsTgz, placement: Placement, prepare_rse: Callable[[OutputRse], None], now: float
) -> None:
    """The tgz is in a logs dataset of its RSE: the one just uploaded into, or (for a replica an
    earlier run left) any period's; an earlier run's that never got attached is attached now."""
    rse = placement.rse.rse
    parents = parent_dids(rucio, LOGS_SCOPE, tgz.name)
    expected = logs_dataset(rse, now).did
    if placement.how == "already-present" and expected not in parents:  # an attempt cut before its attach
        prepare_rse(placement.rse)
        attach_once(rucio, LOGS_SCOPE, logs_dataset(rse, now).name, LOGS_SCOPE, tgz.name)
        parents = parent_dids(rucio, LOGS_SCOPE, tgz.name)
    if placement.how != "found":
        if expected not in parents:
            raise SilentUploadFailure(f"{tgz.did}: uploaded to {rse} but not in {expected} "
                                      f"(datasets: {sorted(parents)})", rse)
        return
    if any(p.startswith(f"{LOGS_SCOPE}:logstgz-") and p.endswith(f"-{rse}") for p in parents):
        return
    prepare_rse(placement.rse)
    attach_once(rucio, LOGS_SCOPE, logs_dataset(rse, now).name, LOGS_SCOPE, tgz.name)
