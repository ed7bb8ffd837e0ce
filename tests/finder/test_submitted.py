"""findSubmittedWorkflows against PostgreSQL."""

from __future__ import annotations

from sqlalchemy import Engine, select

from justin_flows.db.engine import transaction
from justin_flows.db.models import Workflow, WorkflowState
from justin_flows.finder.submitted import find_submitted_workflows
from tests.finder.conftest import NOW, Rows


def _states() -> dict[int, tuple[str, object, object]]:
    with transaction() as s:
        return {
            wid: (state.value, started, refind)
            for wid, state, started, refind in s.execute(
                select(Workflow.workflow_id, Workflow.state, Workflow.started, Workflow.refind_next_time)
            ).all()
        }


def test_submitted_workflows_start_running_and_are_due_for_a_find_at_once(db: Engine, rows: Rows) -> None:
    a = rows.workflow(WorkflowState.SUBMITTED)
    b = rows.workflow(WorkflowState.SUBMITTED)
    others = {st: rows.workflow(st) for st in (WorkflowState.DRAFT, WorkflowState.PAUSED, WorkflowState.RUNNING)}

    report = find_submitted_workflows(now=NOW)

    states = _states()
    assert states[a] == ("running", NOW, NOW)
    assert states[b] == ("running", NOW, NOW)
    for st, wid in others.items():
        assert states[wid] == (st.value, None, None)
    assert report.counts["started"] == 2
    assert [r["workflow_id"] for r in report.rows] == [a, b]


def test_second_run_changes_nothing(db: Engine, rows: Rows) -> None:
    rows.workflow(WorkflowState.SUBMITTED)
    find_submitted_workflows(now=NOW)
    before = _states()
    report = find_submitted_workflows()
    assert _states() == before
    assert report.counts["started"] == 0 and report.rows == []
