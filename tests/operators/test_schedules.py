"""Schedule management as the UI does it, against a real Prefect server on PostgreSQL.

The UI's schedule toggle is ``PATCH /deployments/{id}/schedules/{schedule_id}`` with
``active``; the client's ``update_deployment_schedule`` sends exactly that. ``prefect deploy``
is run as an operator runs it, from the checkout.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from prefect.client.schemas.responses import DeploymentResponse

from justin_flows.testing.prefect_stack import PrefectStack
from tests.operators.conftest import PREFECT_YAML, deployment_id

pytestmark = pytest.mark.slow

# a daily schedule: switching it on in a test never makes a run fire during the session
DEPLOYMENT = "info-collector-jwks"
SLUG = "jwks-every-86400s"


def read(stack: PrefectStack, name: str) -> DeploymentResponse:
    with stack.client() as client:
        return client.read_deployment(deployment_id(stack, name))


def toggle(stack: PrefectStack, name: str, active: bool) -> None:
    dep = read(stack, name)
    with stack.client() as client:
        for schedule in dep.schedules:
            client.update_deployment_schedule(dep.id, schedule.id, active=active)


def test_a_schedule_switched_off_in_the_ui_stays_off_and_single_across_prefect_deploy(stack: PrefectStack) -> None:
    toggle(stack, DEPLOYMENT, True)
    before = read(stack, DEPLOYMENT)
    assert [(s.slug, s.active) for s in before.schedules] == [(SLUG, True)]
    toggle(stack, DEPLOYMENT, False)  # the operator switches it off in the UI
    others_before = {d.name: [(s.id, s.active) for s in d.schedules] for d in all_deployments(stack)}

    stack.deploy()  # prefect --no-prompt deploy --all, from prefect.yaml

    after = read(stack, DEPLOYMENT)
    assert [(s.id, s.slug, s.active) for s in after.schedules] == [(before.schedules[0].id, SLUG, False)], (
        "same schedule (same id, no duplicate), still switched off"
    )
    assert after.schedules[0].schedule.interval == dt.timedelta(seconds=86400)  # type: ignore[union-attr]
    # every other deployment's schedule too: same ids, toggles untouched
    assert {d.name: [(s.id, s.active) for s in d.schedules] for d in all_deployments(stack)} == others_before


def test_prefect_deploy_resets_what_the_yaml_owns_paused_flag_and_parameters(stack: PrefectStack) -> None:
    """The ownership rule the guide states: a redeploy un-pauses and resets parameters."""
    dep = read(stack, "rucio-health")
    with stack.client() as client:
        client.pause_deployment(dep.id)
        client.update_deployment(dep.id, _parameters_update({"pings": 7}))
    paused = read(stack, "rucio-health")
    assert paused.paused and paused.parameters == {"pings": 7}

    stack.deploy(names=["rucio-health"])

    again = read(stack, "rucio-health")
    assert not again.paused, "prefect deploy un-pauses a paused deployment"
    assert again.parameters == {"pings": 3}, "prefect deploy resets parameters to prefect.yaml"
    assert [s.active for s in again.schedules] == [False], "but the schedule toggle is the UI's and stays off"


def test_an_interval_edited_in_a_copy_of_prefect_yaml_is_applied_to_the_same_schedule(
    stack: PrefectStack, tmp_path: Path
) -> None:
    original = read(stack, DEPLOYMENT)
    text = PREFECT_YAML.read_text()
    assert text.count("interval: 86400") == 1
    edited = tmp_path / "prefect.yaml"
    edited.write_text(text.replace("interval: 86400", "interval: 43200"))
    try:
        stack.deploy(prefect_file=edited, names=[DEPLOYMENT])
        changed = read(stack, DEPLOYMENT)
        assert len(changed.schedules) == 1
        schedule = changed.schedules[0]
        assert schedule.id == original.schedules[0].id and schedule.slug == SLUG
        assert schedule.schedule.interval == dt.timedelta(seconds=43200)  # type: ignore[union-attr]
        assert schedule.active is False, "the UI toggle survives an interval change"
    finally:
        stack.deploy(names=[DEPLOYMENT])  # back to the checkout's prefect.yaml
    restored = read(stack, DEPLOYMENT)
    assert restored.schedules[0].schedule.interval == dt.timedelta(seconds=86400)  # type: ignore[union-attr]


def all_deployments(stack: PrefectStack) -> list[DeploymentResponse]:
    with stack.client() as client:
        return sorted(client.read_deployments(), key=lambda d: d.name)


def _parameters_update(parameters: dict[str, object]) -> object:
    from prefect.client.schemas.actions import DeploymentUpdate

    return DeploymentUpdate(parameters=parameters)
