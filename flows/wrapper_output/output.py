"""The wrapper job's output phase (reference §5.2-§5.9): logs.tgz, datasets, each output file,
results and confirmation, as thin tasks around ``justin_flows.output``.

A wrapper job runs it at the end of its jobscript (``justin-flows wrapper-output``); an
operator can start it from the ``wrapper-output`` deployment to finish a job's outputs by
hand (same working directory and allocation, e.g. after a crash: every step converges).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed, Failed, State

from flows.common import artifact_key, ledger_scope
from justin_flows.adapters.metacat import MetaCatAdapter
from justin_flows.adapters.rucio import RucioAdapter
from justin_flows.ledger import LEDGER
from justin_flows.output import datasets as output_datasets
from justin_flows.output import files as output_files
from justin_flows.output import logs as output_logs
from justin_flows.output import results as output_results
from justin_flows.output.job import Abort, OutputJob, StepReport, load_output_job

ALLOCATION_FILE = "justin-allocation.json"


def _publish(report: StepReport) -> None:
    logger = get_run_logger()
    for error in report.errors:
        logger.warning("%s: %s", report.function, error)
    if report.rows:
        create_table_artifact(key=artifact_key(f"wrapper-output-{report.function}"), table=report.rows,
                              description=report.summary())
    logger.info(report.summary())


@task(name="recordResults", cache_policy=NO_CACHE)
def record_results(job: OutputJob) -> tuple[frozenset[str], StepReport]:
    known, report = output_results.record_results(job)
    _publish(report)
    return known, report


@task(name="buildLogsTgz", cache_policy=NO_CACHE)
def build_logs_tgz(job: OutputJob, extra_log_files: list[str]) -> tuple[output_logs.LogsTgz | None, StepReport]:
    tgz, report = output_logs.build_logs_tgz(job, extra_log_files)
    _publish(report)
    return tgz, report


@task(name="uploadLogsTgz", cache_policy=NO_CACHE)
def upload_logs(rucio: RucioAdapter, metacat: MetaCatAdapter, job: OutputJob, tgz: output_logs.LogsTgz,
                datasets: output_datasets.DatasetEnsurer) -> StepReport:
    report = output_logs.upload_logs(rucio, metacat, job, tgz, datasets)
    _publish(report)
    return report


@task(name="createDatasets", cache_policy=NO_CACHE)
def ensure_datasets(job: OutputJob, datasets: output_datasets.DatasetEnsurer) -> StepReport:
    report = output_datasets.ensure_output_datasets(job, datasets)
    _publish(report)
    return report


@task(name="storeOutputFiles", cache_policy=NO_CACHE)
def store_files(rucio: RucioAdapter, metacat: MetaCatAdapter, job: OutputJob,
                datasets: output_datasets.DatasetEnsurer) -> tuple[list[output_files.StoredFile], StepReport]:
    stored, report = output_files.store_output_files(rucio, metacat, job, datasets)
    _publish(report)
    return stored, report


@task(name="catalogueOutputFiles", cache_policy=NO_CACHE)
def catalogue_files(metacat: MetaCatAdapter, stored: list[output_files.StoredFile]) -> StepReport:
    report = output_files.catalogue_output_files(metacat, stored)
    _publish(report)
    return report


@task(name="confirmResults", cache_policy=NO_CACHE)
def confirm_results(job: OutputJob, outcome: output_results.OutputOutcome) -> StepReport:
    report = output_results.confirm_results(job, outcome)
    _publish(report)
    return report


@task(name="confirmOutputFiles", cache_policy=NO_CACHE)
def confirm_files(metacat: MetaCatAdapter, stored: list[output_files.StoredFile]) -> StepReport:
    report = output_files.confirm_output_files(metacat, stored)
    _publish(report)
    return report


def _load(workdir: str | None, allocation_file: str | None) -> OutputJob:
    root = workdir or os.environ.get("JUSTIN_WORKDIR")
    if not root:
        raise ValueError("workdir is required (or JUSTIN_WORKDIR in the environment)")
    path = Path(allocation_file) if allocation_file else Path(root) / ALLOCATION_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read the allocation {path}: {exc}") from exc
    return load_output_job(root, data)


def _calls(first: int) -> dict[str, int]:
    """Attempts per ``service.operation`` recorded in the ledger since index ``first``."""
    counts = Counter(f"{r.service}.{r.operation}" for r in LEDGER.snapshot()[first:])
    return dict(sorted(counts.items()))


@flow(name="wrapper-output", timeout_seconds=86400)  # no job outlives its glidein (GLIDEIN_Max_Walltime 86400 s)
def wrapper_output_flow(
    workdir: str | None = None, allocation_file: str | None = None, extra_log_files: list[str] | None = None
) -> State[Any]:
    """Store one job's logs and outputs, record the result, confirm (reference §5.3-§5.9).

    Args:
        workdir: the job's working directory (holding ``home/workspace``); default
            ``$JUSTIN_WORKDIR``, as the wrapper job sets it.
        allocation_file: the allocation JSON (see ``justin_flows.output.allocation``);
            default ``<workdir>/justin-allocation.json``.
        extra_log_files: more files for logs.tgz besides the workspace's ``*.log`` (e.g.
            the job and machine ads).
    """
    job = _load(workdir, allocation_file)
    a = job.allocation
    with ledger_scope():
        first = len(LEDGER.snapshot())
        rucio = RucioAdapter()
        datasets: output_datasets.DatasetEnsurer
        stored: list[output_files.StoredFile] = []
        tgz: output_logs.LogsTgz | None = None
        logs_rse: str | None = None
        with MetaCatAdapter() as metacat:
            known, marked = record_results(job)
            abort: Abort | None = marked.abort
            datasets = output_datasets.DatasetEnsurer(rucio, metacat, a.existing_dataset_dids | known)
            if abort is None:
                tgz, built = build_logs_tgz(job, list(extra_log_files or []))
                abort = built.abort
            if abort is None and tgz is not None:
                logs = upload_logs(rucio, metacat, job, tgz, datasets)
                abort = logs.abort
                logs_rse = str(logs.rows[0]["rse"]) if logs.rows and logs.rows[0].get("rse") else None
            if abort is None:
                abort = job.stop_after_logs
            if abort is None and job.outputs:
                abort = ensure_datasets(job, datasets).abort
            if abort is None and job.outputs:
                stored, store_report = store_files(rucio, metacat, job, datasets)
                abort = store_report.abort
            if abort is None and stored:
                abort = catalogue_files(metacat, stored).abort
            outcome = output_results.OutputOutcome(abort, stored if abort is None else [], datasets.ensured, logs_rse)
            recorded = confirm_results(job, outcome)
            confirmed = confirm_files(metacat, stored) if abort is None and recorded.abort is None else None
        result: dict[str, Any] = {
            "justin_job_id": a.justin_job_id,
            "jobsub_id": a.jobsub_id,
            "job_state": recorded.rows[0]["job_state"] if recorded.rows else None,
            "abort_code": int(abort.code) if abort else None,
            "abort": abort.message if abort else None,
            "output_files": [s.row() for s in stored],
            "datasets": [d.row() for d in datasets.ensured],
            "unconfirmed": confirmed.errors if confirmed else [],
            "external_calls": _calls(first),
        }
        create_table_artifact(
            key="wrapper-output-external-calls",
            table=[{"call": call, "attempts": n} for call, n in result["external_calls"].items()],
            description=f"external call attempts of job {a.justin_job_id} ({len(job.outputs)} output file(s))",
        )
    if recorded.abort is not None:
        return Failed(message=f"job {a.justin_job_id}: results not recorded: {recorded.abort.message}", data=result)
    if abort is not None:
        return Failed(message=f"job {a.justin_job_id} {result['job_state']} (abort {int(abort.code)}): "
                              f"{abort.message}", data=result)
    return Completed(message=f"job {a.justin_job_id} finished: {len(stored)} output(s) stored", data=result)
