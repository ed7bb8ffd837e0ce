"""Two workers on one pool: a no-overlap deployment stays single, and no flow run runs twice.

Both workers poll the same ``justin-process`` pool every second and race for every run; the
server hands each run to one of them (the Scheduled -> Pending transition is accepted once),
and the deployment's concurrency limit (1, CANCEL_NEW) cancels a run whose predecessor still
holds the slot. The runs' own writes to PostgreSQL show when each one really executed.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path

import pytest
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.states import Scheduled
from sqlalchemy import Engine, select

from justin_flows.db.engine import transaction
from justin_flows.db.models import ExternalCall
from justin_flows.testing.prefect_stack import TERMINAL, PrefectStack
from tests.operators.conftest import (
    deployment_id,
    ledger_rows,
    remove_deployment,
    sleeper_deployment,
    utc,
    wait_until,
    yaml_copy,
)
from tests.operators.sleeper_flow import SERVICE

pytestmark = pytest.mark.slow


def assert_no_overlap(intervals: list[tuple[dt.datetime, dt.datetime]], what: str) -> None:
    intervals = sorted(intervals)
    for (_, end), (start, _) in zip(intervals, intervals[1:]):
        assert end <= start, f"{what}: a run started at {start} while another ran until {end}"


def test_two_workers_and_a_5s_schedule_never_overlap_and_never_run_a_flow_run_twice(
    stack: PrefectStack, db: Engine, tmp_path: Path
) -> None:
    name = "ops-sleeper-every-5s"
    stack.deploy(prefect_file=yaml_copy(tmp_path, [sleeper_deployment(name, seconds=4, interval=5)], only=[]))
    dep_id = deployment_id(stack, name)
    assert len(stack.running_workers) == 2
    try:
        # let the schedule fire for a while: every run takes longer than the 5 s interval
        wait_until(lambda: sum(r.state_type == StateType.COMPLETED for r in stack.flow_runs([], [dep_id])) >= 2,
                   150, "two completed runs of the 5 s schedule", every=1)  # fmt: skip
        with stack.client() as client:
            dep = client.read_deployment(dep_id)
            client.update_deployment_schedule(dep_id, dep.schedules[0].id, active=False)
        # past-due runs stay; the workers still take them (and cancel them): wait for all to settle
        runs: list[FlowRun] = wait_until(
            lambda: (rs := stack.flow_runs([], [dep_id])) and all(r.state_type.value in TERMINAL for r in rs) and rs,
            120, "every run of the test deployment to finish",
        )  # fmt: skip
    finally:
        remove_deployment(stack, name)

    completed = [r for r in runs if r.state_type == StateType.COMPLETED]
    cancelled = [r for r in runs if r.state_type == StateType.CANCELLED]
    assert len(completed) >= 2
    assert cancelled, "runs collided with a running predecessor (otherwise this test proves nothing)"
    assert {r.state_type for r in runs} <= {StateType.COMPLETED, StateType.CANCELLED}, Counter(
        r.state_name for r in runs
    )
    assert all(r.run_count == 1 for r in completed)
    assert all(r.run_count == 0 for r in cancelled), "a cancelled run never started"
    assert_no_overlap([(utc(r.start_time), utc(r.end_time)) for r in completed], "server run times")

    with transaction() as s:
        rows = s.execute(
            select(
                ExternalCall.flow_run_id, ExternalCall.started_at, ExternalCall.duration_ms, ExternalCall.operation
            ).where(ExternalCall.service == SERVICE)
        ).all()
    per_run = Counter(r.flow_run_id for r in rows)
    assert per_run == Counter({str(r.id): 1 for r in completed}), "each completed run wrote once, cancelled ones never"
    assert_no_overlap(
        [(r.started_at, r.started_at + dt.timedelta(milliseconds=r.duration_ms)) for r in rows], "the runs' own clocks"
    )
    print(f"\n{len(runs)} scheduled runs: {len(completed)} completed, {len(cancelled)} cancelled; "
          f"executed by {sorted(Counter(r.operation for r in rows).items())}")  # fmt: skip


def test_simultaneous_runs_of_rucio_health_execute_exactly_once_and_the_rest_are_cancelled(
    stack: PrefectStack, db: Engine
) -> None:
    when = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=3)
    with stack.client() as client:
        dep_id = deployment_id(stack, "rucio-health")
        ids = [
            client.create_flow_run_from_deployment(
                dep_id, parameters={"pings": 2}, state=Scheduled(scheduled_time=when)
            ).id
            for _ in range(4)
        ]
    runs = stack.wait_for_runs(ids)
    states = Counter(r.state_type for r in runs)
    assert states == {StateType.COMPLETED: 1, StateType.CANCELLED: 3}, states
    (done,) = [r for r in runs if r.state_type == StateType.COMPLETED]
    assert done.run_count == 1
    with transaction() as s:
        by_run = Counter(s.scalars(select(ExternalCall.flow_run_id)).all())
    assert by_run == {str(done.id): 2}, "two pings, from the one run that executed"
    assert ledger_rows(done.id)[0].deployment_name == "rucio-health"
