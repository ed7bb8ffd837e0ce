"""Benchmark (not a test): plan and record 2,000 jobs over 50 stages with 100,000 files.

Seeds 50 running stages with 2,000 unallocated files each (100,000 in all, two replicas
per file), 20 sites with 3 entries each and 10 storages, then runs ``workflow_jobs`` once
against the condor_submit stand-in with 40 jobs per cluster (50 x 40 = 2,000 jobs), and
prints where the time went: planning (database reads and planning), recording (the 50
recording transactions), condor_submit (the stand-in's process starts) and the total.

    .venv/bin/python benchmarks/bench_job_factory.py

Uses ``JUSTIN_DATABASE_URL`` if set (it must hold no workflows yet; the seeded rows are left
there), else a throw-away database from ``PostgresServer.discover()``, dropped at the end.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import func, insert, select, text
from sqlalchemy.exc import DBAPIError

STAGES = 50
FILES_PER_STAGE = 2000
SITES = 20
ENTRIES_PER_SITE = 3
STORAGES = 10
JOBS_PER_CLUSTER = 40


def _database() -> tuple[str, object | None]:
    url = os.environ.get("JUSTIN_DATABASE_URL")
    if url:
        return url, None
    from justin_flows.testing.postgres import PostgresServer

    server = PostgresServer.discover()
    return server.create_database(prefix="justin_bench"), server


def _seed() -> None:
    from justin_flows.admin import create_workflow
    from justin_flows.db.engine import get_engine, transaction
    from justin_flows.db.models import Base, Entry, Site, SiteStorage, Storage, Workflow

    with transaction() as s:
        # migration 0002 seeds the AWT workflow 1; anything else means someone's data
        if s.scalar(select(func.count()).select_from(Workflow).where(Workflow.workflow_id != 1)):
            sys.exit("bench_job_factory: the database already holds workflows; use an empty one")
        if s.get(Workflow, 1) is None:
            s.execute(insert(Workflow).values(workflow_id=1, state="running", mql="AWT"))
        site_ids = list(s.scalars(insert(Site).returning(Site.site_id, sort_by_parameter_order=True), [
            {"site_name": f"XX_Site{i:02d}", "jobsub_site_name": f"XX_Site{i:02d}", "enabled": True}
            for i in range(SITES)
        ]))
        s.execute(insert(Entry), [
            {"site_id": site_id, "entry_name": f"E_{site_id}_{j}"}
            for site_id in site_ids for j in range(ENTRIES_PER_SITE)
        ])
        rse_ids = list(s.scalars(insert(Storage).returning(Storage.rse_id, sort_by_parameter_order=True), [
            {"rse_name": f"XX_RSE{i:02d}"} for i in range(STORAGES)
        ]))
        # every storage is at distance 0 from two sites, 50 from the rest
        s.execute(insert(SiteStorage), [
            {"site_id": site_id, "rse_id": rse_id,
             "distance": 0.0 if site_index // 2 == rse_index else 50.0}
            for rse_index, rse_id in enumerate(rse_ids) for site_index, site_id in enumerate(site_ids)
        ])
    workflow_ids = [create_workflow(f"files from bench:set{i}", scope="benchscope") for i in range(STAGES)]
    file_rows = [
        {"workflow_id": w, "stage_id": 1, "state": "unallocated", "file_did": f"bench:w{w}-f{i:05d}"}
        for w in workflow_ids for i in range(FILES_PER_STAGE)
    ]
    with transaction() as s:
        files = Base.metadata.tables["files"]  # Core inserts: the ORM adds nothing to a bulk load
        file_ids = list(s.scalars(insert(files).returning(files.c.file_id, sort_by_parameter_order=True),
                                  file_rows))
        s.execute(insert(Base.metadata.tables["replicas"]), [
            {"file_id": f, "rse_id": rse_ids[(f + k) % STORAGES], "workflow_id": row["workflow_id"], "stage_id": 1,
             "wan_pfn": f"root://xx{(f + k) % STORAGES}.example/{row['file_did']}"}
            for f, row in zip(file_ids, file_rows) for k in (0, 1)
        ])
    # a live database has planner statistics (freshly bulk-loaded tables do not yet), and
    # the flush of the bulk load should not be timed as the factory's work
    with get_engine().connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE"))
        try:
            conn.execute(text("CHECKPOINT"))
        except DBAPIError:  # needs superuser (or pg_checkpoint): measure without it
            print("bench_job_factory: CHECKPOINT not allowed; timings may include the bulk load's flush")


def main() -> int:
    url, server = _database()
    os.environ["JUSTIN_DATABASE_URL"] = url
    work = Path(tempfile.mkdtemp(prefix="justin-bench-"))
    from justin_flows.testing.condor_standins import install_condor_standins, read_calls

    install_condor_standins(work / "bin", work / "state")
    (work / "token").write_text("bench-token\n")
    os.environ.update({
        "JUSTIN_HTCONDOR__CONDOR_SUBMIT": str(work / "bin" / "condor_submit"),
        "JUSTIN_HTCONDOR__SCHEDDS": "sched01.bench.example sched02.bench.example",
        "JUSTIN_HTCONDOR__COLLECTORS": "coll.bench.example",
        "JUSTIN_HTCONDOR__BEARER_TOKEN_FILE": str(work / "token"),
        "JUSTIN_HTCONDOR__DRY_RUN": "false",
        "JUSTIN_JOB_FACTORY__JOBS_PER_CLUSTER": str(JOBS_PER_CLUSTER),
    })
    from justin_flows.adapters.htcondor import HTCondorAdapter
    from justin_flows.db.engine import get_engine, transaction
    from justin_flows.db.migrate import upgrade
    from justin_flows.db.models import Event, Job
    from justin_flows.factory.workflow_jobs import workflow_jobs
    from justin_flows.settings import get_settings

    get_settings.cache_clear()
    get_engine.cache_clear()
    try:
        upgrade(url)
        started = time.perf_counter()
        _seed()
        seed_seconds = time.perf_counter() - started

        started = time.perf_counter()
        report = workflow_jobs(HTCondorAdapter())
        total = time.perf_counter() - started
        with transaction() as s:
            jobs = s.scalar(select(func.count()).select_from(Job))
            events = s.scalar(select(func.count()).select_from(Event))
        calls = [c for c in read_calls(work / "state") if c["program"] == "condor_submit"]
        plan, record, submit = (report.timings[k] for k in ("plan", "record", "submit"))
        print(f"seeded {STAGES} stages, {STAGES * FILES_PER_STAGE} unallocated files, "
              f"{2 * STAGES * FILES_PER_STAGE} replicas in {seed_seconds:.1f} s")
        print(f"workflow_jobs: {report.summary()}")
        print(f"  clusters submitted  {len(calls):>8}")
        print(f"  jobs recorded       {jobs:>8}   events {events}")
        print(f"  planning            {plan:8.3f} s")
        print(f"  recording           {record:8.3f} s")
        print(f"  planning+recording  {plan + record:8.3f} s")
        print(f"  condor_submit       {submit:8.3f} s   (stand-in process starts)")
        print(f"  total               {total:8.3f} s")
        ok = jobs == STAGES * JOBS_PER_CLUSTER and not report.errors
        if not ok:
            print(f"UNEXPECTED: {jobs} jobs, errors {report.errors[:3]}", file=sys.stderr)
        return 0 if ok else 1
    finally:
        get_engine().dispose()
        shutil.rmtree(work, ignore_errors=True)
        if server is not None:
            server.drop_database(url)  # type: ignore[attr-defined]
            server.close()  # type: ignore[attr-defined]


if __name__ == "__main__":
    sys.exit(main())
