"""findSubmittedWorkflows (reference §3): start every submitted workflow so the finder looks for its files.

Upstream only starts a submitted workflow once none of its ``stages_git_repos`` rows is still
waiting for an RCDS path. Our schema has no ``stages_git_repos`` table (jobscripts from git are
not cached through RCDS here), so that condition cannot hold and every submitted workflow
starts. Upstream's ``[users] debug_username`` switch (start as ``paused``) has no setting here.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import update

from justin_flows.collector.report import CollectorReport
from justin_flows.db.engine import transaction
from justin_flows.db.models import Workflow, WorkflowState


def find_submitted_workflows(*, now: dt.datetime | None = None) -> CollectorReport:
    """Move ``submitted`` workflows to ``running`` with ``started`` and ``refind_next_time`` = now.

    ``refind_next_time`` = now makes the next ``find_files`` run query the workflow's inputs.
    One UPDATE, so a workflow is never half-started.
    """
    report = CollectorReport("findSubmittedWorkflows")
    now = now or dt.datetime.now(dt.timezone.utc)
    with transaction() as session:
        started = session.scalars(
            update(Workflow)
            .where(Workflow.state == WorkflowState.SUBMITTED)
            .values(state=WorkflowState.RUNNING, started=now, refind_next_time=now)
            .returning(Workflow.workflow_id)
        ).all()
    for workflow_id in sorted(started):
        report.rows.append(
            {"workflow_id": workflow_id, "from": "submitted", "to": "running", "started": now.isoformat()}
        )
    report.count("started", len(started))
    return report
