"""Benchmark: a wrapper job's output phase with 20 output files (§5.4-§5.9).

One posix RSE (``file`` scheme, so the bytes really land on disk) is the job's only output
RSE; the stage's three output datasets (per-RSE, numbered, overall) and the RSE's logs
dataset already exist in both catalogues, as for every job of a stage but its first. The
project runs the ``wrapper-output`` flow (Prefect in ephemeral mode, started beforehand) for
a job with 20 files of 64 KiB; the baseline makes upstream's calls for another 20 files of
the same sizes into the same datasets (``baselines.wrapper_output``). Upstream's two calls
to justIN's own allocator (record_results, confirm_results) are not external calls and are
left out of the baseline; the project does that work in its database.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import baselines
from harness import BenchServices, Result, say, start_prefect_server_quietly

FILES = 20
SIZE = 64 * 1024
RSE = "BENCH_OUT"


def _workspace(root: Path, prefix: str) -> Path:
    workspace = root / "home" / "workspace"
    workspace.mkdir(parents=True)
    (workspace / "jobscript.log").write_text("jobscript said hello\n")
    for i in range(FILES):
        (workspace / f"{prefix}-{i:02d}.root").write_bytes(os.urandom(SIZE))
    return workspace


def run(services: BenchServices) -> list[Result]:
    from prefect import flow
    from rucio.common.exception import Duplicate
    from sqlalchemy import insert

    from justin_flows.db.engine import transaction
    from justin_flows.db.models import Job, JobState, Stage, StageOutput, Storage, Workflow
    from justin_flows.domain.naming import LOGS_SCOPE
    from justin_flows.domain.output_datasets import logs_dataset
    from justin_flows.settings import get_settings

    say(f"wrapper output: one job, {FILES} output files of {SIZE // 1024} KiB")
    client = services.direct_rucio()
    scope = f"wout{uuid.uuid4().hex[:6]}"
    root = services.work / "wrapper"
    (root / "rse").mkdir(parents=True)
    client.add_scope(services.rucio.root_account, scope)
    with contextlib.suppress(Duplicate):  # made by the storages benchmark when it ran first
        client.add_scope(services.rucio.root_account, LOGS_SCOPE)
    client.add_rse(RSE, deterministic=True, volatile=False, rse_type="DISK")
    client.add_protocol(RSE, {
        "scheme": "file", "hostname": "localhost", "port": 0, "prefix": f"{root / 'rse'}/",
        "impl": "rucio.rse.protocols.posix.Default",
        "domains": {"lan": {"read": 1, "write": 1, "delete": 1}, "wan": {"read": 1, "write": 1, "delete": 1}},
    })
    client.set_local_account_limit(services.rucio.root_account, RSE, -1)
    services.metacat.seed_dataset("dune:all")
    services.metacat.seed_dataset(f"{scope}:namespace-seed")
    instance = get_settings().instance
    now = time.time()
    logs = logs_dataset(RSE, now)
    services.metacat.seed_dataset(logs.did)
    client.add_dataset(LOGS_SCOPE, logs.name)
    client.add_replication_rule([{"scope": LOGS_SCOPE, "name": logs.name}], 1, RSE, lifetime=logs.rule_lifetime_seconds)

    with transaction() as s:
        s.execute(insert(Storage).values(rse_name=RSE, rucio_write=True, justin_write=True))
        workflow_id = s.scalar(insert(Workflow).values(mql="files from bench:input", state="running")
                               .returning(Workflow.workflow_id))
        s.execute(insert(Stage).values(workflow_id=workflow_id, stage_id=1))
        destination = f"bench-{instance}-w{workflow_id}s1p1"
        s.execute(insert(StageOutput).values(workflow_id=workflow_id, stage_id=1, pattern_id=1, file_pattern="*.root",
                                             destination=destination, lifetime_seconds=86400, rse_expression=""))
        jobsub_id = f"{uuid.uuid4().int % 10**9}.0@schedd.bench.invalid"
        job_id = s.scalar(insert(Job).values(jobsub_id=jobsub_id, workflow_id=workflow_id, stage_id=1,
                                             job_state=JobState.PROCESSING, justin_job_secret="s",
                                             jobscript_secret="s").returning(Job.justin_job_id))
    datasets = {
        "per_rse": f"{scope}:{instance}-w{workflow_id}s1p1-{RSE}",
        "numbered": f"{scope}:{destination}n001",
        "overall": f"{scope}:{destination}",
    }
    for kind, did in datasets.items():  # made by an earlier job of the stage
        ds_scope, ds_name = did.split(":")
        services.metacat.seed_dataset(did)
        client.add_dataset(ds_scope, ds_name)
        if kind == "per_rse":
            client.add_replication_rule([{"scope": ds_scope, "name": ds_name}], 1, RSE, lifetime=86400)

    workdir = root / "job"
    _workspace(workdir, "out")
    allocation = {
        "justin_job_id": job_id, "jobsub_id": jobsub_id, "workflow_id": workflow_id, "stage_id": 1, "scope": scope,
        "jobscript_exit": 0, "output_rses": [[RSE, "file"]],
        "patterns": {"1": {"file_pattern": "*.root", "destination": destination, "destination_number": "n001",
                           "lifetime_seconds": 86400, "rse_expression": "", "for_next_stage": False}},
        "existing_dataset_dids": sorted(datasets.values()),
        "job": {"site_name": "UK_Bench", "user": "someone@example.org", "hostname": "wn01.bench.invalid",
                "jobscript_start": int(now) - 100, "jobscript_finish": int(now), "jobscript_real_seconds": 100.0,
                "jobscript_cpu_seconds": 90.0, "jobscript_max_rss_bytes": 1048576},
        "stage": {"processors": 1, "rss_bytes": 2097152000, "wall_seconds": 80000,
                  "jobscript_image": "fnal-wn-sl7:latest", "mql": "files from bench:input"},
    }
    (workdir / "justin-allocation.json").write_text(json.dumps(allocation))

    base_dir = root / "baseline-job"
    base_workspace = _workspace(base_dir, "base")
    proxied = services.proxied_rucio()
    proxied.ping()
    cfg = get_settings().metacat

    def baseline() -> Any:
        return baselines.wrapper_output(
            proxied, cfg.server_outputs_url, cfg.auth_server_url, cfg.username,
            cfg.password.get_secret_value() if cfg.password else "", base_dir / "metacat-tokens",
            workspace=base_workspace, jobsub_id=f"{uuid.uuid4().int % 10**9}.0@schedd.bench.invalid",
            scope=scope, rse=RSE, scheme="file", logs_dataset=logs.name, datasets=datasets, now=now,
        )

    calls, base = services.measure(baseline)
    base.detail["calls"] = dict(calls)
    say(f"  baseline: {base.calls} HTTP requests, {base.seconds:.2f} s {dict(calls)}")

    from flows.wrapper_output.output import wrapper_output_flow

    @flow(name="bench-warm-up")
    def warm_up() -> None:
        return None

    say(f"  (Prefect ephemeral server up in {start_prefect_server_quietly():.1f} s)")
    warm_up()  # the first flow run, not measured
    state, project = services.measure(lambda: wrapper_output_flow(workdir=str(workdir), return_state=True))
    if not state.is_completed():
        raise RuntimeError(f"wrapper benchmark: the flow did not complete: {state.message}")
    result = state.result()
    stored = len(result["output_files"])
    if stored != FILES:
        raise RuntimeError(f"wrapper benchmark: {stored} of {FILES} files stored")
    project.detail["calls"] = result["external_calls"]
    say(f"  project: {project.calls} HTTP requests, {project.seconds:.2f} s {result['external_calls']}")
    return [Result(
        f"wrapper output, {FILES} files", project, base,
        target="calls <= base",
        met=project.calls <= base.calls,
        notes=[f"{stored} files stored and confirmed by the flow (datasets existing, as for all but a stage's first job); "
               f"baseline per file: MetaCat login before each of declare, 3 add-files, 2 updates; upload, "
               f"attach_dids x3 per extra dataset, list_replicas, list_parent_dids"],
    )]


def skipped(reason: str) -> Result:
    return Result(f"wrapper output, {FILES} files", None, None, target="calls <= base", skipped=reason)
