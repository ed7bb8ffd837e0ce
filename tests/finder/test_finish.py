"""findWorkflowsToFinish against PostgreSQL."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine, select

from justin_flows.db.engine import transaction
from justin_flows.db.models import FileState, Workflow, WorkflowState
from justin_flows.finder.finish import FINAL_FILE_STATES, find_workflows_to_finish
from tests.finder.conftest import NOW, Rows


def states() -> dict[int, str]:
    with transaction() as s:
        return {wid: st.value for wid, st in s.execute(select(Workflow.workflow_id, Workflow.state)).all()}


def test_running_workflows_with_only_final_files_and_no_refind_go_to_finishing(db: Engine, rows: Rows) -> None:
    all_final = rows.workflow()
    for i, state in enumerate(sorted(FINAL_FILE_STATES, key=lambda s: s.value)):
        rows.finding(all_final, [f"s:final-{i}"], state=state)
    no_files = rows.workflow()  # its find returned nothing
    one_left = rows.workflow()
    rows.finding(one_left, ["s:done"], state=FileState.PROCESSED)
    rows.finding(one_left, ["s:todo"], state=FileState.UNALLOCATED)
    refinding = rows.workflow(refind_next_time=NOW + dt.timedelta(hours=1))
    rows.finding(refinding, ["s:x"], state=FileState.PROCESSED)
    paused = rows.workflow(WorkflowState.PAUSED)
    rows.finding(paused, ["s:y"], state=FileState.PROCESSED)
    busy = {st: rows.workflow() for st in (FileState.FINDING, FileState.ALLOCATED, FileState.OUTPUTTING)}
    for st, wid in busy.items():
        rows.finding(wid, ["s:z"], state=st)

    report = find_workflows_to_finish()

    assert states() == {
        all_final: "finishing", no_files: "finishing", one_left: "running", refinding: "running",
        paused: "paused", **{wid: "running" for wid in busy.values()},
    }
    assert report.counts["finishing"] == 2
    assert [r["workflow_id"] for r in report.rows] == [all_final, no_files]

    again = find_workflows_to_finish()
    assert again.counts["finishing"] == 0 and again.rows == []
