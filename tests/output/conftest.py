"""A job ready for its output phase: posix RSEs on the real Rucio server (the bytes really land),
the MetaCat double with the namespaces, and the database rows the allocator would have made."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from rucio.client import Client
from sqlalchemy import Engine, insert, select

from justin_flows.adapters.metacat import MetaCatAdapter
from justin_flows.adapters.rucio import RucioAdapter
from justin_flows.db.engine import transaction
from justin_flows.db.models import Event, File, Job, JobState, Stage, StageOutput, Storage, Workflow, WorkflowDataset
from justin_flows.domain.naming import LOGS_SCOPE
from justin_flows.domain.output_datasets import logs_dataset
from justin_flows.settings import get_settings
from justin_flows.testing.metacat_double import MetaCatDouble
from justin_flows.testing.rucio_server import RucioServer
from tests.rucio_seed import add_rse, add_scope, unique

ROOT = "root"


@dataclass
class Pattern:
    pattern_id: int
    file_pattern: str
    lifetime_seconds: int = 86400
    rse_expression: str = ""
    for_next_stage: bool = False
    destination: str = ""  # filled in by OutputGrid.job()


@dataclass
class JobSetup:
    """One job: its rows, its working directory and allocation, and names to assert on."""

    grid: OutputGrid
    justin_job_id: int
    workflow_id: int
    jobsub_id: str
    workdir: Path
    patterns: list[Pattern]
    rses: list[str]
    existing: list[str] = field(default_factory=list)
    jobscript_exit: int = 0

    @property
    def workspace(self) -> Path:
        return self.workdir / "home" / "workspace"

    @property
    def allocation_file(self) -> Path:
        return self.workdir / "justin-allocation.json"

    @property
    def scope(self) -> str:
        return self.grid.scope

    @property
    def tgz_name(self) -> str:
        return self.jobsub_id.replace("@", "-") + ".logs.tgz"

    def pattern(self, pattern_id: int) -> Pattern:
        return next(p for p in self.patterns if p.pattern_id == pattern_id)

    def output(self, name: str, data: bytes, metadata: Mapping[str, Any] | None = None) -> Path:
        path = self.workspace / name
        path.write_bytes(data)
        if metadata is not None:
            path.with_name(name + ".json").write_text(json.dumps(metadata))
        return path

    def per_rse(self, pattern_id: int, rse: str) -> str:
        return f"{self.scope}:{get_settings().instance}-w{self.workflow_id}s1p{pattern_id}-{rse}"

    def numbered(self, pattern_id: int) -> str:
        return f"{self.scope}:{self.pattern(pattern_id).destination}n001"

    def overall(self, pattern_id: int) -> str:
        return f"{self.scope}:{self.pattern(pattern_id).destination}"

    def allocation(self) -> dict[str, Any]:
        return {
            "justin_job_id": self.justin_job_id,
            "jobsub_id": self.jobsub_id,
            "workflow_id": self.workflow_id,
            "stage_id": 1,
            "scope": self.scope,
            "jobscript_exit": self.jobscript_exit,
            "output_rses": [[rse, "file"] for rse in self.rses],
            "patterns": {
                str(p.pattern_id): {
                    "file_pattern": p.file_pattern, "destination": p.destination, "destination_number": "n001",
                    "lifetime_seconds": p.lifetime_seconds, "rse_expression": p.rse_expression,
                    "for_next_stage": p.for_next_stage,
                }
                for p in self.patterns
            },
            "existing_dataset_dids": self.existing,
            "job": {"site_name": "UK_Test", "user": "someone@example.org", "hostname": "wn01.example.org",
                    "jobscript_start": 1_700_000_000, "jobscript_finish": 1_700_000_100,
                    "jobscript_real_seconds": 100.0, "jobscript_cpu_seconds": 90.0,
                    "jobscript_max_rss_bytes": 1048576},
            "stage": {"processors": 1, "rss_bytes": 2097152000, "wall_seconds": 80000,
                      "jobscript_image": "fnal-wn-sl7:latest", "mql": "files from test:input"},
        }

    def write_allocation(self) -> Path:
        self.allocation_file.write_text(json.dumps(self.allocation()))
        return self.allocation_file


@dataclass
class OutputGrid:
    client: Client
    metacat: MetaCatDouble
    scope: str
    base: Path

    def rse(self, *, quota: bool = True, tag: str = "OUT_") -> str:
        """A posix RSE (``file`` scheme) with a storages row; ``quota``: root may add rules on it."""
        name = unique(tag).upper()
        (self.base / name).mkdir(parents=True)
        add_rse(self.client, name, self.base / name, protocols=[("file", 1, 1)], limits={ROOT: -1 if quota else 0})
        with transaction() as s:
            s.execute(insert(Storage).values(rse_name=name, rucio_write=True, justin_write=True))
        return name

    def logs_dataset_ready(self, rse: str, now: float | None = None) -> str:
        """What updateLogsDatasets would have made for ``rse`` (needs quota at that moment)."""
        import time

        spec = logs_dataset(rse, time.time() if now is None else now)
        self.metacat.seed_dataset(spec.did)
        self.client.add_dataset(LOGS_SCOPE, spec.name)
        self.client.add_replication_rule([{"scope": LOGS_SCOPE, "name": spec.name}], 1, rse,
                                         lifetime=spec.rule_lifetime_seconds)
        return spec.did

    def dataset_ready(self, did: str, rule_rse: str | None = None, lifetime: int | None = None) -> None:
        """A dataset another job already made, in both catalogues."""
        scope, name = did.split(":")
        self.metacat.seed_dataset(did)
        self.client.add_dataset(scope, name)
        if rule_rse:
            self.client.add_replication_rule([{"scope": scope, "name": name}], 1, rule_rse, lifetime=lifetime)

    def job(
        self,
        patterns: Sequence[Pattern],
        rses: Sequence[str],
        *,
        jobscript_exit: int = 0,
        existing: Sequence[str] = (),
        job_state: JobState = JobState.PROCESSING,
    ) -> JobSetup:
        """The workflow, stage, outputs and job rows, and an empty workspace with a jobscript log."""
        tag = uuid.uuid4().hex[:8]
        instance = get_settings().instance
        with transaction() as s:
            workflow_id = s.scalar(insert(Workflow).values(mql="files from test:input").returning(Workflow.workflow_id))
            assert workflow_id is not None
            s.execute(insert(Stage).values(workflow_id=workflow_id, stage_id=1))
            for p in patterns:
                p.destination = f"t{tag}-{instance}-w{workflow_id}s1p{p.pattern_id}"
                s.execute(insert(StageOutput).values(
                    workflow_id=workflow_id, stage_id=1, pattern_id=p.pattern_id, file_pattern=p.file_pattern,
                    destination=p.destination, lifetime_seconds=p.lifetime_seconds, rse_expression=p.rse_expression,
                    for_next_stage=p.for_next_stage))
            jobsub_id = f"{uuid.uuid4().int % 10**9}.0@schedd-{tag}.test.invalid"
            job_id = s.scalar(insert(Job).values(
                jobsub_id=jobsub_id, workflow_id=workflow_id, stage_id=1, job_state=job_state,
                justin_job_secret="s", jobscript_secret="s").returning(Job.justin_job_id))
            assert job_id is not None
        workdir = self.base / f"job-{tag}"
        (workdir / "home" / "workspace").mkdir(parents=True)
        (workdir / "home" / "workspace" / "jobscript.log").write_text("jobscript said hello\n")
        return JobSetup(self, job_id, workflow_id, jobsub_id, workdir, list(patterns), list(rses), list(existing),
                        jobscript_exit)


@pytest.fixture
def grid(db: Engine, rucio_server: RucioServer, metacat_env: MetaCatDouble, tmp_path: Path) -> OutputGrid:
    client = Client()
    scope = unique("out").lower()[:20]
    add_scope(client, ROOT, scope)
    add_scope(client, ROOT, LOGS_SCOPE)
    metacat_env.seed_dataset("dune:all")
    metacat_env.seed_dataset(f"{scope}:namespace-seed")
    return OutputGrid(client, metacat_env, scope, tmp_path)


@pytest.fixture
def adapters(grid: OutputGrid) -> Iterator[tuple[RucioAdapter, MetaCatAdapter]]:
    with MetaCatAdapter() as metacat:
        yield RucioAdapter(), metacat


# --------------------------------------------------------------------------- reading back


def job_row(job_id: int) -> dict[str, Any]:
    with transaction() as s:
        row = s.execute(select(Job.job_state, Job.abort_code, Job.jobscript_exit).where(Job.justin_job_id == job_id)).one()
    return {"job_state": row.job_state.value, "abort_code": row.abort_code, "jobscript_exit": row.jobscript_exit}


def file_rows(workflow_id: int) -> list[tuple[int, str, str, int, int | None]]:
    with transaction() as s:
        rows = s.execute(
            select(File.stage_id, File.file_did, File.state, File.size_bytes, File.creator_justin_job_id)
            .where(File.workflow_id == workflow_id).order_by(File.file_did)
        ).all()
    return [(r.stage_id, r.file_did, r.state.value, r.size_bytes, r.creator_justin_job_id) for r in rows]


def output_details(workflow_id: int) -> list[tuple[str, str | None, int | None, float | None]]:
    """(did, adler32, output RSE id, seconds) of the workflow's files."""
    with transaction() as s:
        rows = s.execute(
            select(File.file_did, File.adler32, File.output_rse_id, File.output_seconds)
            .where(File.workflow_id == workflow_id).order_by(File.file_did)
        ).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def events(job_id: int) -> list[tuple[int, int, int, float]]:
    """(event type, file_id, rse_id, seconds) of the job's events, in order."""
    with transaction() as s:
        rows = s.execute(
            select(Event.event_type_id, Event.file_id, Event.rse_id, Event.seconds)
            .where(Event.justin_job_id == job_id).order_by(Event.event_id)
        ).all()
    return [(r.event_type_id, r.file_id, r.rse_id, r.seconds) for r in rows]


def workflow_datasets(workflow_id: int) -> list[str]:
    with transaction() as s:
        return sorted(s.scalars(select(WorkflowDataset.dataset_did).where(WorkflowDataset.workflow_id == workflow_id)))


def number_files(workflow_id: int) -> dict[int, int]:
    with transaction() as s:
        return dict(s.execute(select(StageOutput.pattern_id, StageOutput.number_files)
                              .where(StageOutput.workflow_id == workflow_id)).tuples().all())


def rse_id(name: str) -> int:
    with transaction() as s:
        value = s.scalar(select(Storage.rse_id).where(Storage.rse_name == name))
    assert value is not None
    return value
