"""findFiles (reference §3): list each due workflow's input files and record them in ``files``.

A running workflow is due when its ``refind_next_time`` has come (NULL means "never again";
upstream writes the 1970 epoch for that). The workflow's MQL picks the source:

* ``rucio-dataset SCOPE:NAME``: the dataset's files from Rucio (``list_files``);
* ``monte-carlo N``: N counter files, each with a pseudo-replica on MONTECARLO (rse_id 1);
* anything else: a MetaCat query, sent **once** (upstream's retry loop has no ``break`` and
  so sends three identical queries on success [BUG]; here only failures are retried, by
  the adapter).

A find larger than the workflow's named quota (``max_files_per_workflow``) finishes the
workflow instead and records nothing. Upstream logs one event 201 per find; here it is one
per find that added at least one file, so a repeated find changes nothing at all.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import CursorResult, Table, func, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from justin_flows.adapters.metacat import MetaCatAdapter
from justin_flows.adapters.rucio import RucioAdapter
from justin_flows.collector.report import CollectorReport
from justin_flows.concurrency import bounded_map
from justin_flows.db.engine import transaction, upsert
from justin_flows.db.models import (
    MONTECARLO_RSE_ID,
    MONTECARLO_RSE_NAME,
    Event,
    File,
    FileState,
    NamedQuota,
    Replica,
    Scope,
    Storage,
    Workflow,
    WorkflowState,
)
from justin_flows.settings import get_settings

EVENT_FILE_ADDED = 201
EVENT_WORKFLOW_TOO_MANY_FILES = 109
DEFAULT_MAX_FILES_PER_WORKFLOW = 10000  # named_quotas' column default, for workflows without a quota
INPUT_STAGE_ID = 1  # found files are inputs of the first stage
INSERT_BATCH = 1000  # rows per INSERT statement

_FILES = cast(Table, File.__table__)
_REPLICAS = cast(Table, Replica.__table__)

SOURCE_METACAT = "metacat"
SOURCE_RUCIO_DATASET = "rucio-dataset"
SOURCE_MONTE_CARLO = "monte-carlo"


@dataclass(frozen=True)
class InputSource:
    """Where a workflow's files come from, parsed from its MQL."""

    kind: str
    mql: str = ""
    scope: str = ""
    name: str = ""
    count: int = 0


@dataclass(frozen=True)
class FoundFile:
    did: str
    size_bytes: int


@dataclass(frozen=True)
class _DueWorkflow:
    workflow_id: int
    mql: str
    refind_seconds: int
    refind_end_time: dt.datetime | None
    refind_next_time: dt.datetime
    max_files: int


@dataclass
class _Found:
    source: InputSource
    files: list[FoundFile]
    problems: list[str] = field(default_factory=list)


def parse_input_source(mql: str) -> InputSource:
    """The source named by ``mql``; ValueError for a malformed ``rucio-dataset``/``monte-carlo`` form.

    As upstream, only the exact two-word forms are special; any other text is MQL for MetaCat.
    """
    words = mql.split()
    if len(words) == 2 and words[0] == SOURCE_RUCIO_DATASET:
        scope, sep, name = words[1].partition(":")
        if not sep or not scope or not name or ":" in name:
            raise ValueError(f"'rucio-dataset' needs one SCOPE:NAME, got {words[1]!r}")
        return InputSource(SOURCE_RUCIO_DATASET, scope=scope, name=name)
    if len(words) == 2 and words[0] == SOURCE_MONTE_CARLO:
        try:
            count = int(words[1])
        except ValueError:
            raise ValueError(f"'monte-carlo' needs a whole number of files, got {words[1]!r}") from None
        if count < 0:
            raise ValueError(f"'monte-carlo' needs a file count >= 0, got {count}")
        return InputSource(SOURCE_MONTE_CARLO, count=count)
    return InputSource(SOURCE_METACAT, mql=mql)


def monte_carlo_did(workflow_id: int, i: int) -> str:
    """The counter file name upstream uses for Monte Carlo file ``i`` (from 1) of a workflow."""
    return "monte-carlo-%06d-%06d" % (workflow_id, i)


def monte_carlo_pfn(i: int) -> str:
    return "%06d" % i


def next_refind_time(
    *, now: dt.datetime, refind_seconds: int, refind_end_time: dt.datetime | None, refind_next_time: dt.datetime
) -> dt.datetime | None:
    """When to find again after a find that was due at ``refind_next_time`` (None = never).

    As upstream: no refind end means one find only; a find due at (or after) the end was the
    final one; otherwise ``now + refind_seconds``, but never later than the end, so the last
    find happens soon after it. A non-positive ``refind_seconds`` is taken as "no refinding"
    (upstream would find again on every cycle until the end).
    """
    if refind_end_time is None or refind_seconds <= 0 or refind_next_time >= refind_end_time:
        return None
    return min(now + dt.timedelta(seconds=refind_seconds), refind_end_time)


def find_files(
    metacat: MetaCatAdapter, rucio: RucioAdapter, *, now: dt.datetime | None = None
) -> CollectorReport:
    """findFiles: find the input files of every running workflow whose refind time has come.

    The sources are asked first (a bounded fan-out over workflows); then one transaction
    records every result, each workflow in its own savepoint. A workflow whose source fails
    is left exactly as it was, so the next run tries it again, and is reported by id.
    """
    report = CollectorReport("findFiles")
    now = now or dt.datetime.now(dt.timezone.utc)
    due = _due_workflows(now)
    if not due:
        return report

    def gather(workflow: _DueWorkflow) -> _Found:
        return _gather(metacat, rucio, workflow)

    outcomes = bounded_map(gather, due, max_workers=get_settings().rucio.max_in_flight)
    with transaction() as session:
        for outcome in outcomes:
            workflow = outcome.item
            if outcome.error is not None or outcome.value is None:
                report.error(f"workflow {workflow.workflow_id}: finding files failed: {outcome.error}")
                report.count("failed")
                due_at = workflow.refind_next_time  # unchanged
                report.rows.append(_row(workflow, _kind(workflow.mql), None, None, "find failed; retried", due_at))
                continue
            found = outcome.value
            for problem in found.problems:
                report.error(f"workflow {workflow.workflow_id}: {problem}")
            try:
                with session.begin_nested():
                    _record(session, workflow, found, now, report)
            except SQLAlchemyError as exc:
                report.error(
                    f"workflow {workflow.workflow_id}: recording its files failed: {type(exc).__name__}: {exc}"
                )
                report.count("failed")
    return report


# --------------------------------------------------------------------------- gather


def _due_workflows(now: dt.datetime) -> list[_DueWorkflow]:
    quota = func.coalesce(NamedQuota.max_files_per_workflow, DEFAULT_MAX_FILES_PER_WORKFLOW)
    query = (
        select(
            Workflow.workflow_id,
            Workflow.mql,
            Workflow.refind_seconds,
            Workflow.refind_end_time,
            Workflow.refind_next_time,
            quota,
        )
        .outerjoin(Scope, Scope.scope_id == Workflow.scope_id)
        .outerjoin(NamedQuota, NamedQuota.quota_id == Scope.quota_id)
        .where(
            Workflow.state == WorkflowState.RUNNING,
            Workflow.refind_next_time.is_not(None),
            Workflow.refind_next_time <= now,
        )
        .order_by(Workflow.workflow_id)
    )
    with transaction() as session:
        return [
            _DueWorkflow(wid, mql, refind_seconds, refind_end, cast(dt.datetime, refind_next), max_files)
            for wid, mql, refind_seconds, refind_end, refind_next, max_files in session.execute(query).all()
        ]


def _gather(metacat: MetaCatAdapter, rucio: RucioAdapter, workflow: _DueWorkflow) -> _Found:
    source = parse_input_source(workflow.mql)
    if source.kind == SOURCE_MONTE_CARLO:
        files = [FoundFile(monte_carlo_did(workflow.workflow_id, i), 0) for i in range(1, source.count + 1)]
        return _Found(source, files)
    if source.kind == SOURCE_RUCIO_DATASET:
        listed = rucio.list_files(source.scope, source.name)
        return _Found(source, [FoundFile(f"{f['scope']}:{f['name']}", int(f.get("bytes") or 0)) for f in listed])
    return _metacat_files(source, metacat.query(source.mql))


def _metacat_files(source: InputSource, answer: Sequence[dict[str, Any]]) -> _Found:
    found = _Found(source, [])
    for entry in answer:
        namespace, name, size = entry.get("namespace"), entry.get("name"), entry.get("size")
        try:
            if not namespace or not name:
                raise ValueError("no namespace or name")
            size_bytes = int(size if size is not None else 0)
        except (TypeError, ValueError) as exc:
            found.problems.append(f"MetaCat returned an unusable file {entry!r} ({exc}); skipped")
            continue
        found.files.append(FoundFile(f"{namespace}:{name}", size_bytes))
    return found


# --------------------------------------------------------------------------- record


def _record(session: Session, workflow: _DueWorkflow, found: _Found, now: dt.datetime, report: CollectorReport) -> None:
    wid = workflow.workflow_id
    files = list({f.did: f for f in found.files}.values())  # one row per DID, first size wins
    kind = found.source.kind

    if kind == SOURCE_MONTE_CARLO and files:
        storage = session.get(Storage, MONTECARLO_RSE_ID)
        if storage is None or storage.rse_name != MONTECARLO_RSE_NAME:
            report.error(
                f"workflow {wid}: storages row {MONTECARLO_RSE_ID} is not {MONTECARLO_RSE_NAME}; "
                "its Monte Carlo files were not recorded"
            )
            report.count("failed")
            outcome = "no MONTECARLO storage"
            report.rows.append(_row(workflow, kind, len(files), None, outcome, workflow.refind_next_time))
            return

    # Claim the find: only if the workflow is still running and still due at the time we read,
    # so an overlapping run or a state change meanwhile never records the same find twice.
    claim = (
        update(Workflow)
        .where(
            Workflow.workflow_id == wid,
            Workflow.state == WorkflowState.RUNNING,
            Workflow.refind_next_time == workflow.refind_next_time,
        )
        .execution_options(synchronize_session=False)
    )

    if len(files) > workflow.max_files:
        message = (
            f"Workflow finished: {len(files)} files found, which exceeded the limit of "
            f"{workflow.max_files} files per workflow"
        )
        finished = claim.values(
            state=WorkflowState.FINISHED, finished=now, state_message=message, refind_next_time=None
        )
        claimed = _changed(session, finished)
        if claimed != 1:
            report.count("skipped_changed")
            report.rows.append(_row(workflow, kind, len(files), 0, "changed meanwhile; skipped", None))
            return
        session.add(Event(event_type_id=EVENT_WORKFLOW_TOO_MANY_FILES, workflow_id=wid))
        report.count("exceeded")
        report.rows.append(_row(workflow, kind, len(files), 0, "exceeded quota; finished", None))
        return

    next_time = next_refind_time(
        now=now,
        refind_seconds=workflow.refind_seconds,
        refind_end_time=workflow.refind_end_time,
        refind_next_time=workflow.refind_next_time,
    )
    if _changed(session, claim.values(refind_next_time=next_time)) != 1:
        report.count("skipped_changed")
        report.rows.append(_row(workflow, kind, len(files), 0, "changed meanwhile; skipped", workflow.refind_next_time))
        return

    before = _file_count(session, wid)
    # Monte Carlo files are born unallocated with their pseudo-replica: findReplicas only
    # looks up SCOPE:NAME DIDs in Rucio, so a counter file in ``finding`` would stay there.
    state = FileState.UNALLOCATED if kind == SOURCE_MONTE_CARLO else FileState.FINDING
    rows = [
        {"workflow_id": wid, "stage_id": INPUT_STAGE_ID, "file_did": f.did, "size_bytes": f.size_bytes, "state": state}
        for f in files
    ]
    for start in range(0, len(rows), INSERT_BATCH):
        upsert(session, _FILES, rows[start : start + INSERT_BATCH], ["workflow_id", "stage_id", "file_did"])
    if kind == SOURCE_MONTE_CARLO:
        _monte_carlo_replicas(session, wid, found.source.count)
    inserted = _file_count(session, wid) - before

    if inserted:
        session.add(Event(event_type_id=EVENT_FILE_ADDED, workflow_id=wid, stage_id=INPUT_STAGE_ID))
    report.count("workflows_found")
    report.count("files_found", len(files))
    report.count("files_inserted", inserted)
    report.rows.append(_row(workflow, kind, len(files), inserted, "found", next_time))


def _monte_carlo_replicas(session: Session, workflow_id: int, count: int) -> None:
    file_ids = dict(
        session.execute(
            select(File.file_did, File.file_id).where(
                File.workflow_id == workflow_id,
                File.stage_id == INPUT_STAGE_ID,
                File.file_did.like("monte-carlo-%"),
            )
        ).all()
    )
    rows = []
    for i in range(1, count + 1):
        file_id = file_ids.get(monte_carlo_did(workflow_id, i))
        if file_id is not None:
            rows.append(
                {
                    "file_id": file_id,
                    "rse_id": MONTECARLO_RSE_ID,
                    "workflow_id": workflow_id,
                    "stage_id": INPUT_STAGE_ID,
                    "wan_pfn": monte_carlo_pfn(i),
                    "lan_pfn": "",
                }
            )
    for start in range(0, len(rows), INSERT_BATCH):
        upsert(session, _REPLICAS, rows[start : start + INSERT_BATCH], ["rse_id", "file_id"])


def _kind(mql: str) -> str:
    try:
        return parse_input_source(mql).kind
    except ValueError:
        return "malformed"


def _changed(session: Session, statement: Any) -> int:
    """Rows an UPDATE changed."""
    return cast(CursorResult[Any], session.execute(statement)).rowcount


def _file_count(session: Session, workflow_id: int) -> int:
    return session.scalar(
        select(func.count()).select_from(File).where(File.workflow_id == workflow_id, File.stage_id == INPUT_STAGE_ID)
    ) or 0


def _row(
    workflow: _DueWorkflow,
    source: str,
    found: int | None,
    inserted: int | None,
    outcome: str,
    refind_next_time: dt.datetime | None,
) -> dict[str, Any]:
    return {
        "workflow_id": workflow.workflow_id,
        "source": source,
        "found": found,
        "inserted": inserted,
        "outcome": outcome,
        "refind_next_time": refind_next_time.isoformat() if refind_next_time else None,
    }
