"""Job factory and AWT flows: the Rucio gate, submission through the stand-in, dry runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from flows.job_factory.awt import awt_flow
from flows.job_factory.factory import job_factory_flow
from justin_flows.db.engine import transaction
from justin_flows.db.models import Job
from justin_flows.testing.condor_standins import read_calls
from justin_flows.testing.rucio_server import RucioServer
from tests.conftest import CondorStandins
from tests.factory.helpers import seed_factory_stage

pytestmark = pytest.mark.usefixtures("prefect_server")


def seed_stage_with_unallocated_files(files: int) -> int:
    """A running workflow whose files sit on a storage at distance 0 from an enabled site."""
    return seed_factory_stage(files, site="UK_Flowtest", rse="FLOWTEST_DISK", scope="flowtest")


def submits(condor: CondorStandins) -> list[dict[str, object]]:
    return [c for c in read_calls(condor.state_dir) if c["program"] == "condor_submit"]


def test_healthy_rucio_lets_the_factory_submit_one_cluster_per_stage(
    db: Engine, rucio_server: RucioServer, condor_env: CondorStandins
) -> None:
    wid = seed_stage_with_unallocated_files(4)
    state = job_factory_flow(return_state=True)
    assert state.is_completed(), state.message
    with transaction() as s:
        jobs = s.scalars(select(Job).where(Job.workflow_id == wid)).all()
    assert len(jobs) == 6  # ceil(1.5 x 4)
    assert len(submits(condor_env)) == 1


def test_rucio_down_means_no_submission_and_the_state_says_why(
    db: Engine, condor_env: CondorStandins, stopped_rucio: RucioServer
) -> None:
    seed_stage_with_unallocated_files(4)
    state = job_factory_flow(return_state=True)
    assert state.is_completed() and state.name == "Skipped"
    assert "Rucio unreachable" in (state.message or "")
    assert submits(condor_env) == []
    with transaction() as s:
        assert s.scalars(select(Job)).all() == []


def test_awt_still_runs_while_rucio_is_down(db: Engine, condor_env: CondorStandins, stopped_rucio: RucioServer) -> None:
    seed_stage_with_unallocated_files(1)
    state = awt_flow(return_state=True)
    assert state.is_completed(), state.message
    with transaction() as s:
        awt_jobs = s.scalars(select(Job).where(Job.workflow_id == 1)).all()
    assert len(awt_jobs) == 1 and awt_jobs[0].site_id is not None
    assert len(submits(condor_env)) == 1


def test_dry_run_parameter_submits_nothing_and_records_nothing(
    db: Engine, rucio_server: RucioServer, condor_env: CondorStandins, tmp_path: Path
) -> None:
    seed_stage_with_unallocated_files(4)
    state = job_factory_flow(dry_run=True, return_state=True)
    assert state.is_completed(), state.message
    assert submits(condor_env) == []
    with transaction() as s:
        assert s.scalars(select(Job)).all() == []
