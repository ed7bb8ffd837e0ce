"""The job's outputs and final state in the results database: the allocator's side of
``record_results``, ``confirm_results`` and ``job_aborted_<code>`` (reference §5.1, §5.2, §5.6).

Two transactions, none open across a network call: ``record_results`` before the first
external call (job → ``outputting`` with event 304, the outputs as ``recorded`` files), and
``confirm_results`` at the end (files → ``output``, or ``finding`` in the next stage, with event
404 each; the datasets into ``workflows_datasets``; the job → ``finished`` with event 305, or
its abort state and code with an event of that code). State changes are guarded by the state
they leave, so a rerun of the same job adds no second row or event.

The database has no column yet for an output's RSE, checksum or upload seconds: the RSE and
seconds go into the 404 event (``rse_id``, ``seconds``), as upstream's do; all three are in
the step's table and the flow's result.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from justin_flows.db.engine import transaction, upsert
from justin_flows.db.models import Base, Event, File, FileState, Job, JobState, StageOutput, Storage, WorkflowDataset
from justin_flows.domain.job_aborts import FILE_CREATED, JOB_FINISHED, JOB_OUTPUTTING, AbortCode, job_state_for_abort
from justin_flows.output.datasets import EnsuredDataset
from justin_flows.output.files import StoredFile
from justin_flows.output.job import Abort, OutputJob, StepReport

RECORD = "recordResults"
CONFIRM = "confirmResults"


class RecordError(RuntimeError):
    """The job's results cannot be recorded; the message says why (abort 312)."""


@dataclass
class OutputOutcome:
    """What the steps did: the abort that ended the job (None = every output stored)."""

    abort: Abort | None
    stored: list[StoredFile] = field(default_factory=list)
    datasets: list[EnsuredDataset] = field(default_factory=list)
    logs_rse: str | None = None


def _table(model: type[Base]) -> Table:
    return Base.metadata.tables[model.__tablename__]


def _event(session: Session, job: OutputJob, event_type: int, **values: Any) -> None:
    a = job.allocation
    session.execute(insert(Event).values(event_type_id=int(event_type), workflow_id=a.workflow_id,
                                         stage_id=a.stage_id, justin_job_id=a.justin_job_id, **values))


def _job_row(session: Session, job: OutputJob) -> Any:
    a = job.allocation
    row = session.execute(
        select(Job.job_state, Job.workflow_id, Job.stage_id, Job.jobsub_id, Job.abort_code)
        .where(Job.justin_job_id == a.justin_job_id)
        .with_for_update()
    ).one_or_none()
    if row is None:
        raise RecordError(f"job {a.justin_job_id} is not in the jobs table")
    if (row.workflow_id, row.stage_id, row.jobsub_id) != (a.workflow_id, a.stage_id, a.jobsub_id):
        raise RecordError(
            f"job {a.justin_job_id} is {row.jobsub_id} of workflow {row.workflow_id} stage {row.stage_id}, "
            f"not {a.jobsub_id} of workflow {a.workflow_id} stage {a.stage_id} as the allocation says"
        )
    return row


def record_results(job: OutputJob) -> tuple[frozenset[str], StepReport]:
    """record_results (allocator side, §5.2): job → ``outputting`` (event 304) and each output
    a ``recorded`` file, in one transaction.

    Returns the stage's datasets already in ``workflows_datasets`` as well: the allocator's
    ``existing_dataset_dids`` is a snapshot, and datasets recorded since (by another job, or
    by an earlier run of this one) need no second creation. A finished job stays finished
    (a rerun only re-checks its outputs). An output name another job already recorded in the
    same stage is abort 312, as upstream's 409: its outputs must not be declared over the
    other job's.
    """
    report = StepReport(RECORD)
    a = job.allocation
    store_outputs = job.stop_after_logs is None
    known: frozenset[str] = frozenset()
    try:
        with transaction() as session:
            row = _job_row(session, job)
            known = frozenset(session.scalars(select(WorkflowDataset.dataset_did).where(
                WorkflowDataset.workflow_id == a.workflow_id, WorkflowDataset.stage_id == a.stage_id)))
            if row.job_state not in (JobState.OUTPUTTING, JobState.FINISHED):
                session.execute(update(Job).where(Job.justin_job_id == a.justin_job_id)
                                .values(job_state=JobState.OUTPUTTING))
                _event(session, job, JOB_OUTPUTTING)
                report.count("job_outputting")
            if store_outputs and job.outputs:
                rows = [
                    {"workflow_id": a.workflow_id, "stage_id": job.output_stage_id(a.pattern(f.pattern_id)),
                     "file_did": job.file_did(f.name), "state": FileState.RECORDED.value, "size_bytes": f.size,
                     "creator_justin_job_id": a.justin_job_id}
                    for f in job.outputs
                ]
                upsert(session, _table(File), rows, ["workflow_id", "stage_id", "file_did"])
                owners = session.execute(
                    select(File.file_did, File.creator_justin_job_id, File.state).where(
                        File.workflow_id == a.workflow_id,
                        File.stage_id.in_(sorted({r["stage_id"] for r in rows})),
                        File.file_did.in_([r["file_did"] for r in rows]),
                    )
                ).all()
                clashes = sorted(f"{o.file_did} (job {o.creator_justin_job_id})" for o in owners
                                 if o.creator_justin_job_id != a.justin_job_id)
                if clashes:
                    raise RecordError(f"output name(s) already recorded by another job: {', '.join(clashes)}")
                report.count("files_recorded", len(rows))
                report.rows.extend({"file": o.file_did, "state": str(o.state.value)} for o in owners)
    except (RecordError, IntegrityError) as exc:
        message = str(exc) if isinstance(exc, RecordError) else f"the database refused the outputs: {exc.orig}"
        report.fail(AbortCode.RECORD_RESULTS, f"job {a.justin_job_id}: {message}")
    report.count("datasets_known", len(known))
    return known, report


def _rse_ids(session: Session, names: Iterable[str]) -> dict[str, int]:
    wanted = sorted({n for n in names if n})
    if not wanted:
        return {}
    return dict(session.execute(select(Storage.rse_name, Storage.rse_id).where(Storage.rse_name.in_(wanted))).tuples().all())


def _record_datasets(session: Session, job: OutputJob, datasets: Sequence[EnsuredDataset]) -> int:
    a = job.allocation
    rows = [{"workflow_id": a.workflow_id, "stage_id": a.stage_id, "dataset_did": d.spec.did}
            for d in datasets if d.spec.kind != "logs" and d.spec.scope == a.scope]
    upsert(session, _table(WorkflowDataset), rows, ["workflow_id", "stage_id", "dataset_did"])
    return len(rows)


def confirm_results(job: OutputJob, outcome: OutputOutcome) -> StepReport:
    """confirm_results, or job_aborted_<code> when the outcome has an abort (allocator side,
    §5.6 and §5.1): the job's final record, in one transaction (see the module docstring).

    The datasets made ready are recorded even when the job failed (they exist; the next job
    then skips them). A failed job's outputs stay ``recorded``. A job recorded as finished
    by an earlier run keeps that state.
    """
    report = StepReport(CONFIRM)
    a = job.allocation
    now = dt.datetime.now(dt.timezone.utc)
    try:
        with transaction() as session:
            row = _job_row(session, job)
            report.count("datasets_recorded", _record_datasets(session, job, outcome.datasets))
            rse_ids = _rse_ids(session, [s.rse for s in outcome.stored] + [outcome.logs_rse or ""] +
                               [outcome.abort.rse or "" if outcome.abort else ""])
            if outcome.abort is None:
                _record_outputs(session, job, outcome.stored, rse_ids, report)
                if row.job_state != JobState.FINISHED:
                    session.execute(update(Job).where(Job.justin_job_id == a.justin_job_id).values(
                        job_state=JobState.FINISHED, finished_time=now, jobscript_exit=a.jobscript_exit,
                        abort_code=None))
                    _event(session, job, JOB_FINISHED)
                final_state, code = JobState.FINISHED, None
            else:
                code = int(outcome.abort.code)
                final_state = JobState(job_state_for_abort(code))
                if row.job_state == JobState.FINISHED:
                    report.error(f"job {a.justin_job_id} was already finished; this run's abort {code} is not "
                                 "recorded on it")
                    final_state, code = JobState.FINISHED, None
                elif (row.job_state, row.abort_code) != (final_state, code):
                    session.execute(update(Job).where(Job.justin_job_id == a.justin_job_id).values(
                        job_state=final_state, abort_code=code, finished_time=now,
                        jobscript_exit=a.jobscript_exit))
                    _event(session, job, code, rse_id=rse_ids.get(outcome.abort.rse or "", 0))
                    report.count("abort_recorded")
    except RecordError as exc:
        report.fail(AbortCode.CONFIRM_RESULTS, f"job {a.justin_job_id}: {exc}")
        return report
    report.rows.append({"justin_job_id": a.justin_job_id, "jobsub_id": a.jobsub_id, "job_state": final_state.value,
                        "abort_code": code, "abort": outcome.abort.message if outcome.abort else ""})
    return report


def _record_outputs(session: Session, job: OutputJob, stored: Sequence[StoredFile], rse_ids: dict[str, int],
                    report: StepReport) -> None:
    """recorded → output (or finding for the next stage): 404 each; stages_outputs.number_files."""
    a = job.allocation
    per_pattern: Counter[int] = Counter()
    for s in stored:
        pattern = a.pattern(s.file.pattern_id)
        new_state = FileState.FINDING if pattern.for_next_stage else FileState.OUTPUT
        file_id = session.scalar(
            update(File)
            .where(File.workflow_id == a.workflow_id, File.stage_id == job.output_stage_id(pattern),
                   File.file_did == s.did, File.creator_justin_job_id == a.justin_job_id,
                   File.state == FileState.RECORDED)
            .values(state=new_state, size_bytes=s.file.size, adler32=s.adler32 or None,
                    output_rse_id=rse_ids.get(s.rse), output_seconds=s.seconds)
            .returning(File.file_id)
        )
        if file_id is None:
            report.count("files_already_confirmed")
            continue
        _event(session, job, FILE_CREATED, file_id=file_id, rse_id=rse_ids.get(s.rse, 0), seconds=s.seconds)
        per_pattern[pattern.pattern_id] += 1
        report.count(f"files_{new_state.value}")
    for pattern_id, n in per_pattern.items():
        session.execute(
            update(StageOutput)
            .where(StageOutput.workflow_id == a.workflow_id, StageOutput.stage_id == a.stage_id,
                   StageOutput.pattern_id == pattern_id)
            .values(number_files=StageOutput.number_files + n)
        )
