"""Rucio protection: one shared health state, and the Rucio-heavy flows leave a sick Rucio alone.

The state is the ``rucio_health`` row written by the 300 s health flow and by every gated
flow's own pings. While it says overloaded/down and is younger than
``rucio.unhealthy_backoff_seconds``, the finder, the job factory and the storages group make
no Rucio call at all (upstream pinged three times per flow per minute into a Rucio that was
already struggling); the health flow keeps probing, and its healthy answer ends the back-off.
"""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import Engine, select

from flows.finder.finder import finder_flow
from flows.info_collector.rucio_health import rucio_health_flow
from flows.info_collector.storages import storages_flow
from flows.job_factory.factory import job_factory_flow
from justin_flows.collector import rucio_health
from justin_flows.db.engine import transaction
from justin_flows.db.models import ExternalCall, Job
from justin_flows.domain.health import RucioHealth
from justin_flows.settings import get_settings
from justin_flows.testing.condor_standins import read_calls
from justin_flows.testing.rucio_server import RucioServer
from tests.conftest import CondorStandins
from tests.flows.test_job_factory_flows import seed_stage_with_unallocated_files

pytestmark = pytest.mark.usefixtures("prefect_server")


def store_failure(seconds_ago: float) -> None:
    measured = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=seconds_ago)
    threshold = get_settings().rucio.overload_milliseconds
    with transaction() as s:
        rucio_health.record(s, RucioHealth(None, threshold, measured, "ConnectionError: refused"))


def rucio_calls() -> list[tuple[str, str]]:
    with transaction() as s:
        return [(c.operation, c.outcome) for c in s.scalars(select(ExternalCall).where(ExternalCall.service == "rucio"))]


def stored() -> RucioHealth:
    with transaction() as s:
        health = rucio_health.load(s)
    assert health is not None
    return health


def test_a_fresh_failure_keeps_every_gated_flow_off_rucio(
    db: Engine, rucio_server: RucioServer, condor_env: CondorStandins
) -> None:
    """Rucio is actually up here: only the shared state can explain that nobody calls it."""
    seed_stage_with_unallocated_files(2)
    store_failure(seconds_ago=10)

    factory = job_factory_flow(return_state=True)
    finder = finder_flow(return_state=True)
    storages = storages_flow(return_state=True)

    assert factory.name == "Skipped" and "Rucio unreachable" in (factory.message or "")
    assert "files and replicas not searched" in (finder.message or "")
    assert storages.is_completed() and "Rucio steps skipped" in (storages.message or ""), storages.message
    assert rucio_calls() == [], "no ping and no work while backing off"
    assert [c["program"] for c in read_calls(condor_env.state_dir)] == ["condor_userprio"], (
        "the storages group's HTCondor step still ran; nothing was submitted"
    )
    with transaction() as s:
        assert s.scalars(select(Job)).all() == []


def test_an_old_failure_is_measured_again_and_a_healthy_answer_lets_work_resume(
    db: Engine, rucio_server: RucioServer, condor_env: CondorStandins
) -> None:
    seed_stage_with_unallocated_files(2)
    window = get_settings().rucio.unhealthy_backoff_seconds
    store_failure(seconds_ago=window + 5)

    state = job_factory_flow(return_state=True)

    assert state.is_completed() and state.name != "Skipped", state.message
    assert rucio_calls() == [("ping", "ok")] * 3, "the gate pinged again once the window had passed"
    assert not stored().overloaded
    assert len([c for c in read_calls(condor_env.state_dir) if c["program"] == "condor_submit"]) == 1


def test_the_health_flow_probes_through_a_back_off_and_ends_it(db: Engine, rucio_server: RucioServer) -> None:
    store_failure(seconds_ago=1)

    rucio_health_flow()

    assert rucio_calls() == [("ping", "ok")] * 3
    assert not stored().overloaded, "the probe's healthy answer replaced the failure"


def test_a_gate_that_finds_rucio_down_starts_the_back_off_for_the_others(
    db: Engine, condor_env: CondorStandins, stopped_rucio: RucioServer
) -> None:
    seed_stage_with_unallocated_files(2)
    job_factory_flow(return_state=True)
    pinged = len(rucio_calls())
    assert pinged >= 3 and stored().overloaded, "the factory's own failed pings were recorded"

    finder = finder_flow(return_state=True)
    storages_flow(return_state=True)

    assert "Rucio unreachable" in (finder.message or "")
    assert len(rucio_calls()) == pinged, "the finder and the storages group added no Rucio call"
