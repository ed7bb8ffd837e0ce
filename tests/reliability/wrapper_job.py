"""One small wrapper job for the reliability tests, and its whole state, normalised.

The job has three outputs in two patterns (two final ``*.root`` files, one ``*.hist`` for the
next stage whose numbered dataset has a rule), one posix RSE on the real Rucio server and the
logs dataset updateLogsDatasets would have made. Each ``make_wrapper_job`` uses a fresh Rucio
scope, RSE and destinations, so runs never meet each other's DIDs; ``wrapper_state`` reads
back everything the output phase writes (database rows, Rucio DIDs, replicas, rules and
attachments, MetaCat files and dataset memberships) with those per-run names replaced, so two
runs' states compare equal exactly when they did the same thing.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rucio.client import Client
from rucio.common.exception import DataIdentifierNotFound
from sqlalchemy import select

from justin_flows.db.engine import transaction
from justin_flows.db.models import Event, File, Job, StageOutput, Storage, WorkflowDataset
from justin_flows.domain.naming import LOGS_SCOPE
from justin_flows.domain.output_files import adler32_of
from justin_flows.testing.metacat_double import MetaCatDouble
from tests.output.conftest import JobSetup, OutputGrid, Pattern
from tests.reliability.seeding import duplicates
from tests.rucio_seed import add_scope, unique

#: name → (bytes, user metadata or None): small, so a trial stays quick
OUTPUTS: dict[str, tuple[bytes, dict[str, Any] | None]] = {
    "a.root": (b"A" * 1000, {"metadata": {"core.run_type": "test"}}),
    "b.root": (b"bee" * 77, None),
    "c.hist": (b"histogram", None),
}
_LOGS_PERIOD = re.compile(r"logstgz-\d+-")


@dataclass
class WrapperJob:
    grid: OutputGrid
    job: JobSetup
    rse: str
    logs_dataset: str  # made in advance, as updateLogsDatasets keeps it

    @property
    def scope(self) -> str:
        return self.job.scope

    @property
    def outputs(self) -> list[str]:
        return [f"{self.scope}:{name}" for name in OUTPUTS]

    @property
    def logs_tgz(self) -> str:
        return f"{LOGS_SCOPE}:{self.job.tgz_name}"

    @property
    def datasets(self) -> list[str]:
        """The job's six output datasets (per-RSE, numbered, overall of each pattern)."""
        return [did for p in (1, 2) for did in (self.job.per_rse(p, self.rse), self.job.numbered(p),
                                                 self.job.overall(p))]  # fmt: skip

    def options(self) -> dict[str, Any]:
        return {"workdir": str(self.job.workdir), "allocation_file": str(self.job.allocation_file)}

    def normalise(self, value: Any) -> Any:
        """``value`` with this run's names (destinations, jobsub id, RSE, scope, logs period) replaced."""
        if isinstance(value, tuple):
            return tuple(self.normalise(v) for v in value)
        if not isinstance(value, str):
            return value
        for p in sorted(self.job.patterns, key=lambda p: -len(p.destination)):
            value = value.replace(p.destination, f"DEST{p.pattern_id}")
        value = value.replace(self.job.jobsub_id.replace("@", "-"), "JOB").replace(self.job.jobsub_id, "JOB")
        value = value.replace(self.rse, "RSE").replace(self.scope, "SCOPE")
        return _LOGS_PERIOD.sub("logstgz-PERIOD-", value)


def make_wrapper_job(client: Client, metacat: MetaCatDouble, base: Path, account: str) -> WrapperJob:
    """A fresh scope, RSE, logs dataset and job with the three outputs and its allocation file.

    The database must have been emptied: the RSE's storages row and the job's rows are added.
    """
    scope = unique("wo").lower()
    add_scope(client, account, scope)
    add_scope(client, account, LOGS_SCOPE)
    metacat.seed_dataset("dune:all")
    metacat.seed_dataset(f"{scope}:namespace-seed")
    base.mkdir(parents=True, exist_ok=True)
    grid = OutputGrid(client, metacat, scope, base)
    rse = grid.rse(tag="WO_")
    logs = grid.logs_dataset_ready(rse)
    patterns = [Pattern(1, "*.root", lifetime_seconds=3 * 86400),
                Pattern(2, "*.hist", rse_expression=rse, for_next_stage=True)]  # fmt: skip
    job = grid.job(patterns, [rse])
    for name, (data, metadata) in OUTPUTS.items():
        job.output(name, data, metadata)
    job.write_allocation()
    return WrapperJob(grid, job, rse, logs)


def _did(did: str) -> tuple[str, str]:
    scope, name = did.split(":", 1)
    return scope, name


def _rucio_file(client: Client, did: str) -> tuple[Any, ...]:
    scope, name = _did(did)
    try:
        meta = client.get_did(scope, name)
    except DataIdentifierNotFound:
        return (did, "absent")
    replicas = []
    for entry in client.list_replicas([{"scope": scope, "name": name}], all_states=True):
        for rse, pfns in (entry.get("rses") or {}).items():
            replicas.append((rse, len(pfns), str((entry.get("states") or {}).get(rse))))
    parents = sorted(f"{p['scope']}:{p['name']}" for p in client.list_parent_dids(scope, name))
    return (did, meta["bytes"], meta["adler32"], tuple(sorted(replicas)), tuple(parents))


def _rucio_dataset(client: Client, did: str) -> tuple[Any, ...]:
    scope, name = _did(did)
    try:
        client.get_did(scope, name)
    except DataIdentifierNotFound:
        return (did, "absent")
    rules = []
    for r in client.list_replication_rules({"scope": scope, "name": name}):
        # in minutes: Rucio takes the two clocks a moment apart
        lifetime = round((r["expires_at"] - r["created_at"]).total_seconds() / 60) if r["expires_at"] else None
        rules.append((r["rse_expression"], r["copies"], lifetime))
    content = sorted(f"{c['scope']}:{c['name']}" for c in client.list_content(scope, name))
    return (did, tuple(sorted(rules)), tuple(content))


def _metacat_file(metacat: MetaCatDouble, did: str) -> tuple[Any, ...]:
    record = metacat.get_file_record(did)
    if record is None:
        return (did, "absent")
    datasets = sorted(f"{d['namespace']}:{d['name']}" for d in record["datasets"])
    status = (record.get("metadata") or {}).get("dune.output_status")
    return (did, record["size"], (record.get("checksums") or {}).get("adler32"), status, tuple(datasets))


def _metacat_dataset(metacat: MetaCatDouble, did: str) -> tuple[Any, ...]:
    if metacat.get_dataset_record(did) is None:
        return (did, "absent")
    return (did, tuple(sorted(metacat.dataset_members(did))))


def _database() -> dict[str, list[tuple[Any, ...]]]:
    """The tables the output phase writes, with ids that sequences hand out mapped to names."""
    with transaction() as s:
        rses = dict(s.execute(select(Storage.rse_id, Storage.rse_name)).tuples().all())
        dids = dict(s.execute(select(File.file_id, File.file_did)).tuples().all())
        jobs = s.execute(select(Job.justin_job_id, Job.workflow_id, Job.stage_id, Job.jobsub_id, Job.job_state,
                                Job.jobscript_exit, Job.abort_code, Job.finished_time.is_not(None))).all()  # fmt: skip
        files = s.execute(select(File.workflow_id, File.stage_id, File.file_did, File.state, File.size_bytes,
                                 File.creator_justin_job_id, File.adler32, File.output_rse_id,
                                 File.output_seconds.is_not(None))).all()  # fmt: skip
        events = s.execute(select(Event.event_type_id, Event.workflow_id, Event.stage_id, Event.file_id,
                                  Event.justin_job_id, Event.rse_id)).all()  # fmt: skip
        datasets = s.execute(select(WorkflowDataset.workflow_id, WorkflowDataset.stage_id,
                                    WorkflowDataset.dataset_did)).all()  # fmt: skip
        outputs = s.execute(select(StageOutput.workflow_id, StageOutput.pattern_id, StageOutput.number_files)).all()
    return {
        "jobs": [(j[0], j[1], j[2], j[3], str(j[4].value), *j[5:]) for j in jobs],
        "files": [(*f[:3], str(f[3].value), *f[4:7], rses.get(f[7]), f[8]) for f in files],
        "events": [(e[0], e[1], e[2], dids.get(e[3], e[3]), e[4], rses.get(e[5], e[5])) for e in events],
        "workflows_datasets": [tuple(d) for d in datasets],
        "stages_outputs": [tuple(o) for o in outputs],
    }


def wrapper_state(wj: WrapperJob) -> dict[str, list[tuple[Any, ...]]]:
    """Everything the job's output phase leaves, normalised (see the module docstring)."""
    client, metacat = wj.grid.client, wj.grid.metacat
    state = _database()
    files = [*wj.outputs, wj.logs_tgz]
    state["rucio files"] = [_rucio_file(client, did) for did in files]
    logs_datasets = {wj.logs_dataset}
    for entry in state["rucio files"]:
        if entry[0] == wj.logs_tgz and len(entry) > 2:
            logs_datasets.update(entry[4])  # a dataset of a later period, if the run crossed an hour
    state["rucio datasets"] = [_rucio_dataset(client, did) for did in [*wj.datasets, *sorted(logs_datasets)]]
    state["metacat files"] = [_metacat_file(metacat, did) for did in files]
    state["metacat datasets"] = [_metacat_dataset(metacat, did) for did in [*wj.datasets, *sorted(logs_datasets)]]
    # logs.tgz differs in bytes from job to job (names, clocks inside): the catalogues must
    # describe the job's own archive, whatever its size
    tgz = wj.job.workdir / wj.job.tgz_name
    mine = (tgz.stat().st_size, adler32_of(tgz)) if tgz.is_file() else None
    for key in ("rucio files", "metacat files"):
        state[key] = [(row[0], "its size", "its adler32", *row[3:]) if row[0] == wj.logs_tgz and tuple(row[1:3]) == mine
                      else row for row in state[key]]  # fmt: skip
    return {key: sorted((wj.normalise(tuple(row)) for row in rows), key=repr) for key, rows in state.items()}


def state_duplicates(state: dict[str, list[tuple[Any, ...]]]) -> list[str]:
    """What is there twice: a row (a repeated event included), a rule, an attachment or a
    dataset member, a replica on more than one RSE or with more than one PFN."""
    found = [f"{key}: {row}" for key, rows in state.items() for row in duplicates(rows)]
    for did, *rest in state["rucio files"]:
        if len(rest) > 1 and (len(rest[2]) > 1 or any(n > 1 for _, n, _ in rest[2])):
            found.append(f"{did}: replicas {rest[2]}")
    for key, index in (("rucio datasets", 1), ("rucio datasets", 2), ("metacat datasets", 1),
                       ("rucio files", 4), ("metacat files", 4)):  # fmt: skip
        for row in state[key]:
            if len(row) > index and isinstance(row[index], tuple):
                twice = [item for item, n in Counter(row[index]).items() if n > 1]
                if twice:
                    found.append(f"{key} {row[0]}: {twice} more than once")
    return found


def state_diff(got: dict[str, list[tuple[Any, ...]]], want: dict[str, list[tuple[Any, ...]]]) -> str:
    """The rows only one side has, per key (for a failure note)."""
    parts = []
    for key in sorted(set(got) | set(want)):
        extra = Counter(got.get(key, [])) - Counter(want.get(key, []))
        missing = Counter(want.get(key, [])) - Counter(got.get(key, []))
        if extra or missing:
            parts.append(f"{key}: extra {sorted(extra.elements(), key=repr)} missing "
                         f"{sorted(missing.elements(), key=repr)}")  # fmt: skip
    return "; ".join(parts) or "equal"


def left_behind(wj: WrapperJob) -> str:
    """How far a killed run got, coarsely: the job's state and the outputs' progress."""
    with transaction() as s:
        job_state = s.scalar(select(Job.job_state).where(Job.justin_job_id == wj.job.justin_job_id))
    metacat, client = wj.grid.metacat, wj.grid.client
    records = [metacat.get_file_record(did) for did in wj.outputs]
    statuses = Counter(str((r.get("metadata") or {}).get("dune.output_status")) for r in records if r)
    available = attached = 0
    for did in wj.outputs:
        scope, name = _did(did)
        try:
            entries = list(client.list_replicas([{"scope": scope, "name": name}]))
        except DataIdentifierNotFound:
            continue
        available += any((e.get("states") or {}).get(wj.rse) == "AVAILABLE" for e in entries)
        attached += len(list(client.list_parent_dids(scope, name)))
    members = sum(len(r["datasets"]) - 1 for r in records if r)  # besides dune:all
    logs = "stored" if _has_replica(client, wj.logs_tgz) else ("declared" if metacat.get_file_record(wj.logs_tgz)
                                                              else "-")  # fmt: skip
    state = job_state.value if job_state is not None else "?"
    return (f"{state}; logs {logs}; outputs declared {sum(1 for r in records if r)}, on the RSE {available}, "
            f"attached {attached}/9, MetaCat members {members}/9, uploaded {statuses['uploaded']}, "
            f"confirmed {statuses['confirmed']}")  # fmt: skip


def _has_replica(client: Client, did: str) -> bool:
    scope, name = _did(did)
    try:
        return any(e.get("rses") for e in client.list_replicas([{"scope": scope, "name": name}]))
    except DataIdentifierNotFound:
        return False


def discount_recovery(rows: Iterable[tuple[Any, ...]]) -> tuple[list[tuple[Any, ...]], int]:
    """The events without what a recorded failure followed by a successful rerun adds: each
    abort event (3xx other than 304/305) and the rerun's second 304 (job outputting again)."""
    rows = list(rows)
    aborts = [r for r in rows if 300 <= r[0] < 400 and r[0] not in (304, 305)]
    kept = [r for r in rows if r not in aborts]
    reentries = 0
    for _ in aborts:
        again = [r for r in kept if r[0] == 304]
        if len(again) > 1:
            kept.remove(again[-1])
            reentries += 1
    return kept, len(aborts) + reentries
