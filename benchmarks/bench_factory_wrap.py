"""The job-factory benchmark, taken from ``bench_job_factory.py`` (run in this process).

``bench_job_factory.main()`` plans and records 2,000 jobs over 50 stages with 100,000
unallocated files against the condor_submit stand-in and prints where the time went; this
wrapper gives it a throw-away migrated database and its own environment, and reads the
numbers back. Upstream's external calls for the same work are one ``condor_submit`` per stage
per cycle (§4.3): 50. Upstream's wall time is not measured (there is no MariaDB here).
"""

from __future__ import annotations

import contextlib
import io
import os
import re

from harness import Measurement, Result, reset_settings, say

STAGES = 50
TARGET_SECONDS = 2.0


def _number(text: str, label: str) -> float:
    found = re.search(rf"^\s*{re.escape(label)}\s+([0-9.]+)", text, re.MULTILINE)
    if not found:
        raise RuntimeError(f"bench_job_factory printed no {label!r}:\n{text}")
    return float(found.group(1))


def run() -> Result:
    import bench_job_factory

    say("job factory: bench_job_factory.py (2,000 jobs, 50 stages, 100,000 files)")
    from sqlalchemy import create_engine, text

    from justin_flows.db.migrate import upgrade
    from justin_flows.testing.postgres import PostgresServer

    # its own throw-away database, migrated; bench_job_factory wants one without workflows and
    # inserts the AWT workflow itself, so migration 0002's reference AWT row is taken out first
    server = PostgresServer.discover()
    url = server.create_database(prefix="justin_bench_factory")
    saved = dict(os.environ)
    out = io.StringIO()
    try:
        upgrade(url)
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM workflows"))
        engine.dispose()
        os.environ["JUSTIN_DATABASE_URL"] = url
        with contextlib.redirect_stdout(out):
            code = bench_job_factory.main()
    finally:
        os.environ.clear()
        os.environ.update(saved)
        reset_settings()
        server.drop_database(url)
        server.close()
    text = out.getvalue()
    for line in text.splitlines():
        say(f"  | {line}")
    clusters = int(_number(text, "clusters submitted"))
    jobs = int(_number(text, "jobs recorded"))
    plan_record = _number(text, "planning+recording")
    total = _number(text, "total")
    project = Measurement(clusters, plan_record, {"jobs": jobs, "total_seconds": total})
    baseline = Measurement(STAGES, float("nan"))
    return Result(
        "job factory, 2,000 jobs / 50 stages (plan+record)", project, baseline,
        target=f"calls <= base; plan+record <= {TARGET_SECONDS:g} s",
        met=code == 0 and clusters <= STAGES and plan_record <= TARGET_SECONDS,
        notes=[f"{jobs} jobs recorded; planning+recording {plan_record:.3f} s, with the {clusters} condor_submit "
               f"stand-in runs {total:.2f} s; baseline calls = one condor_submit per stage (§4.3), wall not measured"],
    )
