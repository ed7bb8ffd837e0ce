"""`prefect deploy --all` against a real local Prefect server, then read back what it holds."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.settings import PREFECT_API_URL

from tests.shared_data import REPO_ROOT

pytestmark = pytest.mark.usefixtures("prefect_server")


def prefect_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value()), "JUSTIN_FLOWS_ROOT": str(REPO_ROOT)}
    return subprocess.run(
        [str(Path(sys.executable).with_name("prefect")), "--no-prompt", *args],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )


async def read_back() -> dict[str, object]:
    async with get_client() as client:
        try:
            await client.create_work_pool(WorkPoolCreate(name="justin-process", type="process"))
        except Exception:  # noqa: BLE001 - already created by an earlier test in this session
            pass
        done = await asyncio.to_thread(prefect_cli, "deploy", "--all")
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        result = {}
        for dep in await client.read_deployments():
            result[dep.name] = dep
        return result


def test_deploy_all_registers_every_deployment_with_its_schedule_and_limit() -> None:
    config = yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())
    deployed = asyncio.run(read_back())
    for spec in config["deployments"]:
        dep = deployed[spec["name"]]
        assert dep.entrypoint == spec["entrypoint"]
        assert dep.work_pool_name == "justin-process"
        assert dep.parameters == (spec.get("parameters") or {})
        wanted = spec.get("schedules") or []
        assert [s.slug for s in dep.schedules] == [w["slug"] for w in wanted]
        for got, want in zip(dep.schedules, wanted, strict=True):
            if "interval" in want:
                assert got.schedule.interval == dt.timedelta(seconds=want["interval"])
            assert got.active
        limit = spec.get("concurrency_limit")
        if isinstance(limit, dict):
            assert dep.global_concurrency_limit is not None and dep.global_concurrency_limit.limit == limit["limit"]
            assert dep.concurrency_options is not None
            assert dep.concurrency_options.collision_strategy.value == limit["collision_strategy"]
