"""prefect.yaml as Prefect reads it: valid, importable entrypoints, documented intervals."""

from __future__ import annotations

import datetime as dt
import importlib.util
from pathlib import Path

import pytest
import yaml
from prefect import Flow
from prefect.cli.deploy._models import PrefectYamlModel

from tests.shared_data import REPO_ROOT

PREFECT_YAML = REPO_ROOT / "prefect.yaml"

# The documented interval of each deployment (reference §2, §4, §9; issue texts).
DOCUMENTED_SCHEDULES: dict[str, dict[str, object]] = {
    "rucio-health": {"interval": 300},
    "info-collector-storages": {"interval": 3600},
    "info-collector-sites": {"interval": 3600},
    "finder": {"interval": 60},
    "job-factory": {"interval": 60},
    "awt-jobs": {"interval": 21600},
    "x509-proxies": {"cron": "15 4 * * *"},
    "api-rates": {"cron": "0 5 * * *"},
    "info-collector-jwks": {"interval": 86400},
}


def load_model() -> PrefectYamlModel:
    return PrefectYamlModel.model_validate(yaml.safe_load(PREFECT_YAML.read_text()))


def deployments() -> list[dict[str, object]]:
    return [d.model_dump(exclude_unset=True) for d in load_model().deployments]


def load_entrypoint(entrypoint: str) -> object:
    path, func = entrypoint.split(":")
    spec = importlib.util.spec_from_file_location(f"entrypoint_{Path(path).stem}", REPO_ROOT / path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, func)


def test_prefect_yaml_validates_with_prefects_own_model() -> None:
    model = load_model()
    assert model.deployments, "no deployments in prefect.yaml"
    names = [d.name for d in model.deployments]
    assert len(names) == len(set(names)), f"duplicate deployment names: {names}"


@pytest.mark.parametrize("deployment", deployments(), ids=lambda d: str(d["name"]))
def test_every_entrypoint_imports_and_is_a_flow(deployment: dict[str, object]) -> None:
    obj = load_entrypoint(str(deployment["entrypoint"]))
    assert isinstance(obj, Flow), f"{deployment['entrypoint']} is not a Prefect flow"


@pytest.mark.parametrize("deployment", deployments(), ids=lambda d: str(d["name"]))
def test_every_schedule_has_a_slug_and_the_documented_interval(deployment: dict[str, object]) -> None:
    name = str(deployment["name"])
    schedules = deployment.get("schedules") or []
    expected = DOCUMENTED_SCHEDULES.get(name)
    if expected is None:
        assert not schedules, f"{name} has a schedule but no documented interval in this test"
        return
    assert len(schedules) == 1  # type: ignore[arg-type]
    schedule = schedules[0]  # type: ignore[index]
    assert schedule.get("slug"), f"{name}: a schedule without a slug is recreated on every deploy"
    for key, value in expected.items():
        actual = schedule.get(key)
        if isinstance(actual, dt.timedelta):
            actual = actual.total_seconds()
        assert actual == value, f"{name}: {key} is {schedule.get(key)!r}, documented {value!r}"
    if "interval" in expected:
        assert schedule.get("anchor_date"), f"{name}: an interval without anchor_date drifts with each deploy"


@pytest.mark.parametrize("deployment", deployments(), ids=lambda d: str(d["name"]))
def test_default_parameters_are_accepted_by_the_flow(deployment: dict[str, object]) -> None:
    flow = load_entrypoint(str(deployment["entrypoint"]))
    assert isinstance(flow, Flow)
    params = deployment.get("parameters") or {}
    flow.validate_parameters(dict(params))  # type: ignore[arg-type]
