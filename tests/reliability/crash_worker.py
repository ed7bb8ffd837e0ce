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
    "justin_flows.adapters.htcondor", "rucio.client", "metacat.webapi", "git", "htcondor2", "psycopg2",
    "tests.reliability.crash_worker",
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


BODIES: dict[str, Callable[[Mapping[str, Any]], None]] = {
    "storages": storages_group, "sites": sites_group, "job_factory": job_factory,
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
