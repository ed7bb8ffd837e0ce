"""The finder flow end to end: Rucio health gate, then files and replicas, on real services."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, select

from flows.finder.finder import finder_flow
from justin_flows.db.engine import transaction
from justin_flows.db.models import File, FileState, Replica, Stage, Storage, Workflow, WorkflowState
from justin_flows.testing.metacat_double import MetaCatDouble
from justin_flows.testing.rucio_server import RucioServer

pytestmark = pytest.mark.usefixtures("prefect_server")


def submitted_monte_carlo_workflow(files: int) -> int:
    with transaction() as s:
        s.add(Storage(rse_id=1, rse_name="MONTECARLO"))
        wf = Workflow(state=WorkflowState.SUBMITTED, mql=f"monte-carlo {files}")
        s.add(wf)
        s.flush()
        s.add(Stage(workflow_id=wf.workflow_id, stage_id=1))
        return wf.workflow_id


def test_a_submitted_monte_carlo_workflow_is_started_and_its_files_found(
    db: Engine, rucio_server: RucioServer, metacat_env: MetaCatDouble
) -> None:
    wid = submitted_monte_carlo_workflow(3)
    state = finder_flow(return_state=True)
    assert state.is_completed(), state.message
    with transaction() as s:
        assert s.get(Workflow, wid).state == WorkflowState.RUNNING  # type: ignore[union-attr]
        files = s.scalars(select(File.state).where(File.workflow_id == wid)).all()
        replicas = s.scalars(select(Replica.rse_id).where(Replica.workflow_id == wid)).all()
    assert files == [FileState.UNALLOCATED] * 3
    assert replicas == [1, 1, 1]


def test_with_rucio_down_no_files_are_searched_and_the_state_says_why(
    db: Engine, metacat_env: MetaCatDouble, stopped_rucio: RucioServer
) -> None:
    wid = submitted_monte_carlo_workflow(3)
    seen = len(metacat_env.requests)
    state = finder_flow(return_state=True)
    assert state.is_completed()
    assert "files and replicas not searched: Rucio unreachable" in (state.message or "")
    with transaction() as s:
        assert s.get(Workflow, wid).state == WorkflowState.RUNNING  # type: ignore[union-attr]
        assert s.scalars(select(File)).all() == []
    assert metacat_env.requests[seen:] == [], "MetaCat must not be asked while Rucio is down"


def test_bad_chunk_size_is_refused(db: Engine) -> None:
    state = finder_flow(replica_chunk_size=0, return_state=True)
    assert state.is_failed() and "replica_chunk_size" in (state.message or "")
