"""One real Prefect deployment for the operator tests: server on PostgreSQL, 2 process workers.

The stack is what an operator runs (``justin_flows.testing.prefect_stack``, the code behind
``scripts/deploy``): the deployments come from the real ``prefect.yaml``; the workers carry
the JUSTIN_* settings of this test session (results database, the real Rucio server, the
MetaCat double, HTCondor stand-ins). Every schedule is switched off right after the deploy,
as an operator can do in the UI, so that no scheduled run fires in the middle of a test;
the tests start runs by hand, or switch on the schedule they look at.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import yaml
from prefect.client.schemas.objects import FlowRun
from sqlalchemy import select

from justin_flows.db.engine import transaction
from justin_flows.db.models import ExternalCall
from justin_flows.testing.condor_standins import install_condor_standins
from justin_flows.testing.metacat_double import MetaCatDouble
from justin_flows.testing.postgres import PostgresServer
from justin_flows.testing.prefect_stack import PrefectStack
from justin_flows.testing.rucio_server import RucioServer
from justin_flows.testing.x509 import install_voms_proxy_init_standin, make_grid_ca
from tests.conftest import metacat_settings
from tests.shared_data import REPO_ROOT

PREFECT_YAML = REPO_ROOT / "prefect.yaml"
SLEEPER_ENTRYPOINT = "tests/operators/sleeper_flow.py:sleeper_flow"


@pytest.fixture(scope="session")
def condor_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("ops-condor")
    install_condor_standins(root / "bin", root / "state")
    (root / "bearer-token").write_text("test-bearer-token\n")
    return root / "bin", root / "state"


def voms_env(root: Path) -> dict[str, str]:
    """The voms-proxy-init stand-in, a test grid CA's two robot certificates, and the proxy paths."""
    voms_init = install_voms_proxy_init_standin(root / "bin", root / "voms")
    ca = make_grid_ca("justin-flows operator tests grid CA")
    for stem in ("justin-jobs-production.dune.hep.ac.uk", "justin-jobs-no-roles.dune.hep.ac.uk"):
        ca.issue_user(stem).write(root / "justin-secrets", stem)
    return {
        "JUSTIN_PROXIES__VOMS_PROXY_INIT": str(voms_init),
        "JUSTIN_PROXIES__SECRETS_DIR": str(root / "justin-secrets"),
        "JUSTIN_PROXIES__PRODUCTION_PROXY": str(root / "production.proxy.pem"),
        "JUSTIN_PROXIES__NO_ROLES_PROXY": str(root / "no-roles.proxy.pem"),
        "JUSTIN_PROXIES__DEFAULT_PROXY": str(root / "x509up_ops"),
    }


@pytest.fixture(scope="package")  # stopped once the operator tests are done
def stack(
    pg_server: PostgresServer,
    database_url: str,
    rucio_server: RucioServer,
    metacat_double: MetaCatDouble,
    condor_dirs: tuple[Path, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[PrefectStack]:
    bin_dir, _state_dir = condor_dirs
    home = tmp_path_factory.mktemp("ops-worker-home")
    worker_env = {
        "HOME": str(home),
        "JUSTIN_DATABASE_URL": database_url,
        **rucio_server.client_env(),
        "JUSTIN_RUCIO__ACCOUNT": rucio_server.root_account,
        **metacat_settings(metacat_double),
        "JUSTIN_HTCONDOR__CONDOR_SUBMIT": str(bin_dir / "condor_submit"),
        "JUSTIN_HTCONDOR__CONDOR_USERPRIO": str(bin_dir / "condor_userprio"),
        "JUSTIN_HTCONDOR__SCHEDDS": "schedd01.test.invalid schedd02.test.invalid",
        "JUSTIN_HTCONDOR__COLLECTORS": "collector.test.invalid",
        "JUSTIN_HTCONDOR__BEARER_TOKEN_FILE": str(bin_dir.parent / "bearer-token"),
        **voms_env(tmp_path_factory.mktemp("ops-voms")),
    }
    ops = PrefectStack.on_postgres(
        pg_server, work_dir=tmp_path_factory.mktemp("ops-prefect"), worker_env=worker_env,
        workers=0, worker_query_seconds=1, remove_work_dir=False,  # pytest keeps the logs of the last runs
    )  # fmt: skip
    try:
        ops.start(deploy=True)
        quiet_schedules(ops)
        for _ in range(2):
            ops.start_worker()
        ops.wait_workers_online()
        yield ops
    finally:
        ops.close()


def quiet_schedules(stack: PrefectStack) -> None:
    """Switch every schedule off (the UI toggle) and drop runs the scheduler already made."""
    with stack.client() as client:
        for dep in client.read_deployments():
            for schedule in dep.schedules:
                client.update_deployment_schedule(dep.id, schedule.id, active=False)
        for run in stack.flow_runs(["SCHEDULED"]):
            client.delete_flow_run(run.id)


def deployment_id(stack: PrefectStack, name: str) -> UUID:
    with stack.client() as client:
        for dep in client.read_deployments():
            if dep.name == name:
                return dep.id
    raise AssertionError(f"no deployment {name!r} on the server")


def run_deployment(stack: PrefectStack, name: str, parameters: dict[str, Any], timeout: float = 180) -> FlowRun:
    """A manual run, as the UI's "Custom run" form creates it, executed by the workers."""
    with stack.client() as client:
        run = client.create_flow_run_from_deployment(deployment_id(stack, name), parameters=parameters)
    return stack.wait_for_runs([run.id], timeout)[0]


def yaml_copy(
    tmp_path: Path, extra_deployments: Sequence[dict[str, Any]] = (), only: Sequence[str] | None = None
) -> Path:
    """A copy of prefect.yaml (anchors resolved) with test deployments added, in ``tmp_path``."""
    config = yaml.safe_load(PREFECT_YAML.read_text())
    deployments = config["deployments"] if only is None else [d for d in config["deployments"] if d["name"] in only]
    config["deployments"] = deployments + list(extra_deployments)
    path = tmp_path / "prefect.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def sleeper_deployment(name: str, seconds: float, interval: int | None = None) -> dict[str, Any]:
    """A test deployment of the sleeper flow with the project's pool and no-overlap limit."""
    config = yaml.safe_load(PREFECT_YAML.read_text())
    spec: dict[str, Any] = {
        "name": name,
        "entrypoint": SLEEPER_ENTRYPOINT,
        "tags": ["justin-test"],
        "parameters": {"seconds": seconds},
        "concurrency_limit": config["definitions"]["no_overlap"],
        "work_pool": config["definitions"]["work_pool"],
    }
    if interval is not None:
        spec["schedules"] = [{
            "slug": f"{name}-every-{interval}s", "interval": interval,
            "anchor_date": "2026-01-01T00:00:00Z", "timezone": "UTC",
        }]  # fmt: skip
    return spec


def remove_deployment(stack: PrefectStack, name: str) -> None:
    """``prefect deploy`` never deletes: remove a test deployment by hand."""
    with stack.client() as client:
        for dep in client.read_deployments():
            if dep.name == name:
                client.delete_deployment(dep.id)


def ledger_rows(flow_run_id: UUID | str) -> list[ExternalCall]:
    with transaction() as s:
        rows = s.scalars(select(ExternalCall).where(ExternalCall.flow_run_id == str(flow_run_id))).all()
        s.expunge_all()
        return list(rows)


def wait_until(predicate: Any, timeout: float, what: str, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def utc(value: dt.datetime | None) -> dt.datetime:
    assert value is not None
    return value.astimezone(dt.timezone.utc)
