"""findWorkflowsToFinish (reference §3): hand workflows with nothing left to do to the finishing step.

A running workflow is done when no refind is scheduled (``refind_next_time`` NULL, upstream's
epoch) and none of its files is in a non-final state. Upstream's next step,
``finishWorkflows`` (close the workflow's open Rucio datasets, then ``finished``), is not
part of this module.
"""

from __future__ import annotations

from sqlalchemy import exists, update

from justin_flows.collector.report import CollectorReport
from justin_flows.db.engine import transaction
from justin_flows.db.models import File, FileState, Workflow, WorkflowState

FINAL_FILE_STATES: frozenset[FileState] = frozenset(
    {FileState.PROCESSED, FileState.NOTFOUND, FileState.FAILED, FileState.RECORDED, FileState.OUTPUT}
)


def find_workflows_to_finish() -> CollectorReport:
    """findWorkflowsToFinish: ``running`` → ``finishing`` for every workflow whose files are all final.

    One UPDATE with the whole condition in it, so a file leaving a final state at the same
    moment cannot be overlooked between a read and a write. A workflow with no files at all
    (its find returned nothing) also qualifies, as upstream.
    """
    report = CollectorReport("findWorkflowsToFinish")
    unfinished_file = exists().where(
        File.workflow_id == Workflow.workflow_id, File.state.not_in(sorted(FINAL_FILE_STATES, key=lambda s: s.value))
    )
    with transaction() as session:
        finishing = session.scalars(
            update(Workflow)
            .where(Workflow.state == WorkflowState.RUNNING, Workflow.refind_next_time.is_(None), ~unfinished_file)
            .values(state=WorkflowState.FINISHING)
            .returning(Workflow.workflow_id)
        ).all()
    for workflow_id in sorted(finishing):
        report.rows.append({"workflow_id": workflow_id, "from": "running", "to": "finishing"})
    report.count("finishing", len(finishing))
    return report

