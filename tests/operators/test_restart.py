"""Prefect server restarts and outages while a long, concurrency-limited run is in flight.

With the server's concurrency leases on disk (``PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE=
prefect.server.concurrency.lease_storage.filesystem``, as PrefectStack and the guide set it),
the restarted server still knows the run's lease: the renewal the run sends every 225 s is
accepted, the run finishes Completed and its write is kept. (With the default in-memory
storage that renewal is refused after a restart and the run is terminated as Crashed.)

The test flow waits for a release file, so the test decides when it ends whatever the load.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest
from prefect.client.schemas.objects import FlowRun, StateType
from sqlalchemy import Engine

from justin_flows.testing.prefect_stack import PrefectStack
from tests.operators.conftest import (
    deployment_id,
    ledger_rows,
    remove_deployment,
    sleeper_deployment,
    wait_until,
    yaml_copy,
)
from tests.operators.sleeper_flow import SERVICE

pytestmark = pytest.mark.slow

NAME = "ops-sleeper-manual"
LEDGER_WARNING = "could not write the external-call ledger"


@pytest.fixture(scope="module")
def sleeper(stack: PrefectStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[UUID]:
    path = yaml_copy(tmp_path_factory.mktemp("ops-restart"), [sleeper_deployment(NAME, seconds=300)], only=[])
    stack.deploy(prefect_file=path)
    try:
        yield deployment_id(stack, NAME)
    finally:
        remove_deployment(stack, NAME)


def start_held_run(stack: PrefectStack, dep_id: UUID, release: Path) -> FlowRun:
    with stack.client() as client:
        run = client.create_flow_run_from_deployment(dep_id, parameters={"seconds": 300, "until_file": str(release)})
        return wait_until(
            lambda: (r := client.read_flow_run(run.id)).state_type == StateType.RUNNING and r, 120, "the run to start"
        )


def test_a_server_restart_mid_run_keeps_the_run_its_lease_and_its_write(
    stack: PrefectStack, db: Engine, sleeper: UUID, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    run = start_held_run(stack, sleeper, release)
    lease_id = run.state.state_details.deployment_concurrency_lease_id  # type: ignore[union-attr]
    assert lease_id is not None, "a limited deployment's run holds a concurrency lease"
    assert (stack.lease_dir / f"{lease_id}.json").is_file(), "the lease is on disk"

    started = time.monotonic()
    stack.restart_server()
    restart_seconds = time.monotonic() - started
    with stack.client() as client:
        # exactly the call the run makes every 0.75 x 300 s; a lost lease answers 410 Gone
        client.renew_concurrency_lease(lease_id, lease_duration=300)
        assert client.read_flow_run(run.id).state_type == StateType.RUNNING
    assert not ledger_rows(run.id), "still waiting: the restart happened mid-run"

    release.touch()
    (final,) = stack.wait_for_runs([run.id], timeout=180)
    assert final.state is not None and final.state.is_completed(), final.state
    assert final.run_count == 1
    assert [(r.service, r.outcome) for r in ledger_rows(run.id)] == [(SERVICE, "ok")], "its write is kept"
    with stack.client() as client:
        limit = client.read_deployment(sleeper).global_concurrency_limit
    assert limit is not None and limit.active_slots == 0, "the slot was released at the end"
    assert len(stack.running_workers) == 2, "the workers rode out the restart"
    print(f"\nserver restart took {restart_seconds:.1f} s in the middle of the run")


def test_a_run_that_ends_while_the_server_is_down_still_keeps_its_ledger_rows(
    stack: PrefectStack, db: Engine, sleeper: UUID, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    run = start_held_run(stack, sleeper, release)
    warnings_before = sum(w.log.read_text(errors="replace").count(LEDGER_WARNING) for w in stack.running_workers)
    stack.stop_server()
    try:
        release.touch()
        wait_until(
            lambda: ledger_rows(run.id)
            or sum(w.log.read_text(errors="replace").count(LEDGER_WARNING) for w in stack.running_workers) > warnings_before,
            120, "the run's body to end (its row written, or the warning logged)",
        )  # fmt: skip
    finally:
        stack.start_server()
    (final,) = stack.wait_for_runs([run.id], timeout=180)
    assert final.state is not None and final.state.is_completed(), final.state
    assert [(r.service, r.outcome) for r in ledger_rows(run.id)] == [(SERVICE, "ok")]
