"""The info-collector flows end to end: real Prefect, Rucio, PostgreSQL, MetaCat double, condor stand-ins."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from rucio.client import Client
from sqlalchemy import Engine, select

from flows.info_collector.sites import sites_flow
from flows.info_collector.storages import storages_flow
from justin_flows.db.engine import transaction
from justin_flows.db.models import CondorGroup, Entry, ExternalCall, Site, SiteStorage, Storage
from justin_flows.testing.condor_standins import set_behaviour
from justin_flows.testing.git_repo import file_url, make_git_repo
from justin_flows.testing.metacat_double import MetaCatDouble
from justin_flows.testing.rucio_server import RucioServer
from tests.conftest import CondorStandins
from tests.rucio_seed import add_rse, unique
from tests.shared_data import REPO_ROOT

pytestmark = pytest.mark.usefixtures("prefect_server")

FIXTURE_CHECKOUT = REPO_ROOT / "tests" / "fixtures" / "gfactory" / "checkout"


@pytest.fixture
def tagged_rse(rucio_server: RucioServer, tmp_path: Path) -> tuple[str, str]:
    """A fresh RSE carrying a unique attribute, so a run can be limited to it."""
    tag = unique("t")
    name = add_rse(
        Client(), unique("FLOW_").upper(), tmp_path / "rse",
        attributes={"justin_test": tag, "country": "UK"},
        protocols=[("file", 1, 1)], limits={rucio_server.root_account: 10**9},
    )
    return name, f"justin_test={tag}"


def flow_runs_artifacts(flow_run_id: str) -> set[str]:
    async def read() -> set[str]:
        async with get_client() as client:
            artifacts = await client.read_artifacts()
            return {a.key for a in artifacts if str(a.flow_run_id) == flow_run_id and a.key}

    return asyncio.run(read())


def test_storages_flow_runs_every_step_in_order_and_publishes_tables(
    db: Engine, metacat_env: MetaCatDouble, condor_env: CondorStandins, tagged_rse: tuple[str, str]
) -> None:
    rse, expression = tagged_rse
    state = storages_flow(rse_expression=expression, return_state=True)
    assert state.is_completed(), state.message
    steps = [s["function"] for s in state.result()]
    assert steps == [
        "updateGroupsHTCondor", "updateGroupsWLCG", "updateStorages", "updateLogsDatasets",
        "updateNamedQuotas", "updateScopes", "updateStoragesQuotas",
    ]
    with transaction() as s:
        assert s.scalar(select(Storage.rse_name).where(Storage.rse_name == rse)) == rse
        assert s.scalars(select(CondorGroup.condor_group_name)).all()
        run_ids = set(s.scalars(select(ExternalCall.flow_run_id)).all())
    flow_run_id = str(state.state_details.flow_run_id)
    assert run_ids == {flow_run_id}, "every ledger row names this flow run"
    assert {"updatestorages", "updategroupshtcondor"} <= flow_runs_artifacts(flow_run_id)


def test_a_failed_step_does_not_stop_the_later_ones_and_the_state_names_it(
    db: Engine, metacat_env: MetaCatDouble, condor_env: CondorStandins, tagged_rse: tuple[str, str]
) -> None:
    rse, expression = tagged_rse
    set_behaviour(condor_env.state_dir, {"condor_userprio": {"exit_code": 1, "stdout": "ERROR: cannot reach collector"}})
    state = storages_flow(rse_expression=expression, return_state=True)
    assert state.is_failed()
    assert "failed: updateGroupsHTCondor" in (state.message or "")
    with transaction() as s:  # the steps after the failed one still ran
        assert s.scalar(select(Storage.rse_name).where(Storage.rse_name == rse)) == rse


def test_bad_rse_expression_is_refused_before_any_call(db: Engine) -> None:
    state = storages_flow(rse_expression="A;DROP", return_state=True)
    assert state.is_failed() and "rse_expression" in (state.message or "")
    with transaction() as s:
        assert s.scalars(select(ExternalCall)).all() == []


def test_sites_flow_loads_sites_then_distances_and_is_idempotent(db: Engine, tmp_path: Path) -> None:
    url = file_url(make_git_repo(FIXTURE_CHECKOUT, tmp_path / "gfactory"))
    with transaction() as s:
        s.add(Storage(rse_id=1, rse_name="MONTECARLO"))
    first = sites_flow(repo_url=url, return_state=True)
    assert first.is_completed(), first.message
    with transaction() as s:
        sites = s.scalars(select(Site.site_name)).all()
        entries = s.scalars(select(Entry.entry_name)).all()
        distances = s.execute(select(SiteStorage.site_id, SiteStorage.rse_id, SiteStorage.distance)).all()
    assert sites and entries
    assert len(distances) == len(sites)  # every site x the one storage, MONTECARLO at distance 0
    assert {d for *_, d in distances} == {0.0}
    second = sites_flow(repo_url=url, return_state=True)
    assert second.is_completed()
    added = second.result()[0]["counts"]
    assert added.get("sites_added", 0) == 0 and added.get("entries_added", 0) == 0


def test_sites_flow_refuses_a_dangerous_repo_url_before_cloning(db: Engine) -> None:
    state = sites_flow(repo_url="--upload-pack=touch /tmp/pwned", return_state=True)
    assert state.is_failed() and "repo_url" in (state.message or "")
