"""The shipped Prefect automations: generated from prefect.yaml, accepted by a real Prefect server."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect.events.schemas.automations import AutomationCore, CompoundTrigger, EventTrigger, Posture

from justin_flows import automations as gen
from tests.shared_data import REPO_ROOT

PREFECT_YAML = REPO_ROOT / "prefect.yaml"
FOLDER = REPO_ROOT / "automations"


def shipped() -> list[dict[str, Any]]:
    return gen.load_files(FOLDER)


def test_shipped_files_are_exactly_what_prefect_yaml_generates() -> None:
    """No drift: `python -m justin_flows.automations check` passes on the repository."""
    assert gen.main(["check", "--prefect-yaml", str(PREFECT_YAML), "--out", str(FOLDER)]) == 0


def test_check_fails_when_a_schedule_changes(tmp_path: Path) -> None:
    document = yaml.safe_load(PREFECT_YAML.read_text())
    document["deployments"][0]["schedules"] = [{"slug": "x", "interval": 120}]
    changed = tmp_path / "prefect.yaml"
    changed.write_text(yaml.safe_dump(document))
    assert gen.main(["check", "--prefect-yaml", str(changed), "--out", str(FOLDER)]) == 1


def test_every_scheduled_deployment_gets_the_three_automations_with_windows_from_its_period() -> None:
    deployments = gen.load_scheduled_deployments(PREFECT_YAML)
    assert {d.name for d in deployments} >= {"rucio-health", "finder", "job-factory", "info-collector-storages"}
    by_name = {a["name"]: AutomationCore.model_validate(a) for a in shipped()}
    assert len(by_name) == 3 * len(deployments)
    for d in deployments:
        p = dt.timedelta(seconds=d.period_seconds)
        stale = by_name[f"justin: {d.name}: no completed run in {gen._human(2 * d.period_seconds)}"].trigger
        assert isinstance(stale, EventTrigger) and stale.posture == Posture.Proactive and stale.within == 2 * p
        assert stale.match.root["prefect.state-type"] == "COMPLETED"
        failed = by_name[f"justin: {d.name}: three failed runs in a row"].trigger
        assert isinstance(failed, CompoundTrigger) and failed.require == "all"
        reactive, no_success = failed.triggers
        assert isinstance(reactive, EventTrigger) and reactive.threshold == 3
        assert reactive.posture == Posture.Reactive and isinstance(no_success, EventTrigger)
        assert no_success.posture == Posture.Proactive
        # three runs that each fail at the run timeout fit in the window
        timeout = gen.run_timeout(d.period_seconds)
        assert failed.within is not None and failed.within.total_seconds() >= 2 * max(timeout, d.period_seconds)
        late = by_name[f"justin: {d.name}: run late by more than {gen._human(d.period_seconds)}"].trigger
        assert isinstance(late, EventTrigger) and late.after == {"prefect.flow-run.Late"} and late.within == p
        assert late.for_each == {"prefect.resource.id"}
    for automation in by_name.values():
        assert [a.type for a in automation.actions] == ["do-nothing"], "the shipped files must stay safe for CI"


def test_periods_and_timeouts() -> None:
    assert gen.schedule_period({"interval": 60}) == 60
    assert gen.schedule_period({"cron": "15 4 * * *"}) == 86400
    assert gen.schedule_period({"cron": "*/10 * * * *"}) == 600
    assert [gen.run_timeout(p) for p in (60, 300, 3600, 21600, 86400)] == [180, 900, 7200, 25200, 90000]
    with pytest.raises(ValueError, match="neither interval nor cron"):
        gen.schedule_period({"slug": "odd", "rrule": "FREQ=DAILY"})


def test_actions_can_name_a_notification_or_webhook_block() -> None:
    block = "00000000-0000-4000-8000-000000000001"
    notify = gen.build_automations(gen.load_scheduled_deployments(PREFECT_YAML), gen.actions_for(notify_block_id=block))
    doc = AutomationCore.model_validate(notify["late-runs"][0])
    assert doc.actions[0].type == "send-notification" and str(doc.actions[0].block_document_id) == block
    hook = AutomationCore.model_validate(
        gen.build_automations(gen.load_scheduled_deployments(PREFECT_YAML), gen.actions_for(webhook_block_id=block))[
            "no-completed-run"][0])  # fmt: skip
    assert hook.actions[0].type == "call-webhook"
    with pytest.raises(ValueError, match="not both"):
        gen.actions_for(block, block)


@pytest.mark.usefixtures("prefect_server")
def test_a_real_prefect_server_accepts_every_automation_and_returns_it_unchanged() -> None:
    from prefect.client.orchestration import get_client

    documents = shipped()

    async def roundtrip() -> list[tuple[AutomationCore, AutomationCore]]:
        pairs = []
        async with get_client() as client:
            try:
                for document in documents:
                    sent = AutomationCore.model_validate(document)
                    automation_id = await client.create_automation(sent)
                    back = await client.read_automation(automation_id)
                    assert back is not None
                    pairs.append((sent, back))
            finally:
                for _, back in pairs:
                    await client.delete_automation(back.id)
        return pairs

    pairs = asyncio.run(roundtrip())
    assert len(pairs) == len(documents)
    for sent, back in pairs:
        assert back.name == sent.name and back.enabled
        assert back.trigger.model_dump(exclude={"id"}) == sent.trigger.model_dump(exclude={"id"}), sent.name
        assert [a.type for a in back.actions] == [a.type for a in sent.actions]


@pytest.mark.usefixtures("prefect_server")
def test_the_prefect_cli_creates_a_shipped_file_and_apply_replaces_by_name() -> None:
    """`prefect automation create --from-file` (what an operator runs), then `apply` twice: no duplicates."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    done = subprocess.run(
        [sys.executable, "-m", "prefect", "automation", "create", "--from-file", str(FOLDER / "late-runs.yaml")],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    late = yaml.safe_load((FOLDER / "late-runs.yaml").read_text())["automations"]

    async def names() -> list[str]:
        async with get_client() as client:
            return [a.name for a in await client.read_automations()]

    try:
        assert sorted(n for n in asyncio.run(names()) if "late by" in n) == sorted(a["name"] for a in late)
        everything = shipped()
        asyncio.run(gen.apply(everything))
        asyncio.run(gen.apply(everything))
        listed = asyncio.run(names())
        assert sorted(listed) == sorted(a["name"] for a in everything), "apply replaces, never duplicates"
    finally:

        async def clean() -> None:
            async with get_client() as client:
                for a in await client.read_automations():
                    await client.delete_automation(a.id)

        asyncio.run(clean())
