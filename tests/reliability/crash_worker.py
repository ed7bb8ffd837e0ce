"""Flow bodies run in a child process that the crash tests SIGKILL at a random moment.

The children are forked from a ``multiprocessing`` fork server that imported the libraries
once (a fresh single-threaded process, so forking it is safe), which makes a trial cost
milliseconds instead of a two-second ``python -c`` start. Each child is a real separate
process with its own database connections and Rucio/MetaCat clients, in its own session
so that the kill takes its ``condor_submit``/``git`` children with it, like a machine crash.
No Prefect here: the bodies are the lib functions the flows' tasks wrap.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Mapping
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

PRELOAD = [
    "justin_flows.collector.storages", "justin_flows.collector.logs_datasets", "justin_flows.collector.sites",
    "justin_flows.collector.sites_storages", "justin_flows.factory.workflow_jobs", "justin_flows.admin",
    "justin_flows.adapters.rucio", "justin_flows.adapters.metacat", "justin_flows.adapters.git",
    "justin_flows.adapters.htcondor", "justin_flows.output.results", "justin_flows.output.files",
    "justin_flows.output.logs", "rucio.client", "rucio.client.uploadclient", "metacat.webapi", "git", "htcondor2",
    "psycopg2", "tests.reliability.crash_worker",
]  # fmt: skip


def storages_group(options: Mapping[str, Any]) -> None:
    """updateStorages for the trial's RSEs, an operator enabling them, then updateLogsDatasets."""
    from justin_flows.adapters.metacat import MetaCatAdapter
    from justin_flows.adapters.rucio import RucioAdapter
    from justin_flows.admin import enable_storage
    from justin_flows.collector.logs_datasets import update_logs_datasets
    from justin_flows.collector.storages import update_storages

    rucio = RucioAdapter()
    report = update_storages(rucio, rse_expression=options["rse_expression"])
    assert not report.errors, report.errors
    for rse in options["rses"]:
        enable_storage(rse)
    with MetaCatAdapter() as metacat:
        report = update_logs_datasets(rucio, metacat, now=options["now"])
    assert not report.errors, report.errors


def sites_group(options: Mapping[str, Any]) -> None:
    """updateSites from the fixture gfactory repository, then updateSitesStorages."""
    from justin_flows.adapters.git import GitAdapter
    from justin_flows.collector.sites import update_sites
    from justin_flows.collector.sites_storages import update_sites_storages

    report = update_sites(GitAdapter(), repo_url=options["repo_url"])
    assert not report.errors, report.errors
    update_sites_storages()


def job_factory(options: Mapping[str, Any]) -> None:
    """workflowJobs with the condor_submit stand-in."""
    from justin_flows.adapters.htcondor import HTCondorAdapter
    from justin_flows.factory.workflow_jobs import workflow_jobs

    report = workflow_jobs(HTCondorAdapter())
    assert not report.errors, report.errors


def wrapper_output(options: Mapping[str, Any]) -> None:
    """The wrapper-output flow's steps for one job, in the flow's order and with its rules
    (flows/wrapper_output/output.py without Prefect): an abort still goes to confirmResults,
    so the database holds what the flow would leave; then the abort is raised."""
    import json

    from justin_flows.adapters.metacat import MetaCatAdapter
    from justin_flows.adapters.rucio import RucioAdapter
    from justin_flows.output import datasets, files, logs, results
    from justin_flows.output.job import Abort, load_output_job

    job = load_output_job(options["workdir"], json.loads(Path(options["allocation_file"]).read_text()))
    rucio = RucioAdapter()
    stored: list[files.StoredFile] = []
    logs_rse: str | None = None
    confirmed_errors: list[str] = []
    with MetaCatAdapter() as metacat:
        known, marked = results.record_results(job)
        abort: Abort | None = marked.abort
        ensurer = datasets.DatasetEnsurer(rucio, metacat, job.allocation.existing_dataset_dids | known)
        tgz = None
        if abort is None:
            tgz, built = logs.build_logs_tgz(job)
            abort = built.abort
        if abort is None and tgz is not None:
            uploaded = logs.upload_logs(rucio, metacat, job, tgz, ensurer)
            abort = uploaded.abort
            logs_rse = str(uploaded.rows[0]["rse"]) if uploaded.rows and uploaded.rows[0].get("rse") else None
        if abort is None:
            abort = job.stop_after_logs
        if abort is None and job.outputs:
            abort = datasets.ensure_output_datasets(job, ensurer).abort
        if abort is None and job.outputs:
            stored, report = files.store_output_files(rucio, metacat, job, ensurer)
            abort = report.abort
        if abort is None and stored:
            abort = files.catalogue_output_files(metacat, stored).abort
        outcome = results.OutputOutcome(abort, stored if abort is None else [], ensurer.ensured, logs_rse)
        recorded = results.confirm_results(job, outcome)
        if abort is None and recorded.abort is None:
            confirmed_errors = files.confirm_output_files(metacat, stored).errors
    assert recorded.abort is None, recorded.abort
    assert abort is None, abort
    assert not confirmed_errors, confirmed_errors


BODIES: dict[str, Callable[[Mapping[str, Any]], None]] = {
    "storages": storages_group, "sites": sites_group, "job_factory": job_factory, "wrapper_output": wrapper_output,
}


def _fresh_caches() -> None:
    from rucio.common.config import clean_cached_config

    from justin_flows.db.engine import get_engine
    from justin_flows.settings import get_settings

    get_settings.cache_clear()
    get_engine.cache_clear()
    clean_cached_config()


def child(kind: str, env: Mapping[str, str], options: Mapping[str, Any], conn: Connection) -> None:
    os.setsid()  # its own process group: the kill reaches condor_submit and git too
    os.environ.clear()
    os.environ.update(env)
    _fresh_caches()
    conn.send("ready")
    start = time.perf_counter()
    try:
        BODIES[kind](options)
    except BaseException as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        raise
    conn.send(("done", time.perf_counter() - start))


def run_here(kind: str, options: Mapping[str, Any]) -> float:
    """The same body in this process (the rerun after a crash, or the clean reference)."""
    start = time.perf_counter()
    BODIES[kind](options)
    return time.perf_counter() - start


_CONTEXT: Any = None


def context() -> Any:
    """The fork-server context, started once with the libraries preloaded."""
    global _CONTEXT
    if _CONTEXT is None:
        root = str(Path(__file__).resolve().parents[2])  # the server must import tests.reliability
        paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        os.environ["PYTHONPATH"] = os.pathsep.join([root, *[p for p in paths if p != root]])
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        _CONTEXT = ctx
    return _CONTEXT
