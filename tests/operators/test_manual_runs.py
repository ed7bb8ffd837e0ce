"""Manual runs with parameters, as an operator starts them from the UI's run form.

Each run is created through the API from the deployment (what the UI's "Custom run" does),
executed by a real process worker in its own process, against the real Rucio server, the
MetaCat double, HTCondor stand-ins and the session's PostgreSQL results database. Each test
checks the run's final state and what it left in PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.client.schemas.objects import FlowRun
from rucio.client import Client
from sqlalchemy import Engine, select

from justin_flows.collector.rucio_health import HEALTH_KEY
from justin_flows.db.engine import transaction
from justin_flows.db.models import (
    MONTECARLO_RSE_NAME,
    Entry,
    ExternalCall,
    File,
    FileState,
    Job,
    KeyNameValue,
    Replica,
    Site,
    SiteStorage,
    Stage,
    Storage,
    Workflow,
    WorkflowState,
)
from justin_flows.testing.condor_standins import read_calls
from justin_flows.testing.git_repo import file_url, make_git_repo
from justin_flows.testing.metacat_double import MetaCatDouble
from justin_flows.testing.prefect_stack import PrefectStack
from justin_flows.testing.rucio_server import RucioServer
from tests.factory.helpers import seed_factory_stage
from tests.operators.conftest import deployment_id, ledger_rows, run_deployment
from tests.rucio_seed import add_rse, unique
from tests.shared_data import REPO_ROOT

pytestmark = pytest.mark.slow

GFACTORY_CHECKOUT = REPO_ROOT / "tests" / "fixtures" / "gfactory" / "checkout"


def table_artifacts(stack: PrefectStack, flow_run_id: UUID) -> dict[str, list[dict[str, Any]]]:
    with stack.client() as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {
        a.key: json.loads(a.data) if isinstance(a.data, str) else a.data
        for a in artifacts
        if a.type == "table" and a.key
    }


def condor_submits(condor_dirs: tuple[Path, Path]) -> list[dict[str, object]]:
    return [c for c in read_calls(condor_dirs[1]) if c["program"] == "condor_submit"]


def assert_completed(run: FlowRun) -> None:
    assert run.state is not None and run.state.is_completed(), f"{run.name}: {run.state}"
    assert run.run_count == 1


def test_rucio_health_with_two_pings(stack: PrefectStack, db: Engine) -> None:
    started = dt.datetime.now(dt.timezone.utc)
    run = run_deployment(stack, "rucio-health", {"pings": 2})
    assert_completed(run)
    assert run.parameters == {"pings": 2}
    pings = [(r.service, r.operation, r.outcome) for r in ledger_rows(run.id)]
    assert pings == [("rucio", "ping", "ok")] * 2, "exactly the two pings asked for, by this run"
    with transaction() as s:
        health = s.get(KeyNameValue, HEALTH_KEY)
        assert health is not None and health.updated_time is not None and health.updated_time >= started
        assert json.loads(health.key_value)["milliseconds"] is not None


def test_storages_limited_to_one_rse_expression(
    stack: PrefectStack, db: Engine, rucio_server: RucioServer, tmp_path: Path
) -> None:
    tag = unique("ops")
    rse = add_rse(
        Client(), unique("OPS_").upper(), tmp_path / "rse", attributes={"justin_test": tag, "country": "UK"},
        protocols=[("file", 1, 1)], limits={rucio_server.root_account: 10**9},
    )  # fmt: skip
    run = run_deployment(stack, "info-collector-storages", {"rse_expression": f"justin_test={tag}"})
    assert_completed(run)
    with transaction() as s:
        stored = set(s.scalars(select(Storage.rse_name)).all())
    assert stored == {MONTECARLO_RSE_NAME, rse}, "only the RSE the expression names (and the fixed MONTECARLO)"
    assert {r.flow_run_id for r in ledger_rows(run.id)} == {str(run.id)}
    tables = table_artifacts(stack, run.id)
    assert [row["rse_name"] for row in tables["updatestorages"]] == [rse]


def test_sites_from_a_given_repository_url_and_branch(stack: PrefectStack, db: Engine, tmp_path: Path) -> None:
    repo = make_git_repo(GFACTORY_CHECKOUT, tmp_path / "gfactory")
    with transaction() as s:
        s.add(Storage(rse_id=1, rse_name="MONTECARLO"))
    run = run_deployment(stack, "info-collector-sites", {"repo_url": file_url(repo), "branch": repo.active_branch.name})
    assert_completed(run)
    with transaction() as s:
        sites = s.scalars(select(Site.site_name)).all()
        entries = s.scalars(select(Entry.entry_name)).all()
        distances = s.scalars(select(SiteStorage.distance)).all()
    assert sites and entries
    assert len(distances) == len(sites)
    assert [r.operation for r in ledger_rows(run.id) if r.service == "git"], "the clone is in the ledger"


def test_finder_with_a_smaller_replica_chunk(stack: PrefectStack, db: Engine) -> None:
    with transaction() as s:
        s.add(Storage(rse_id=1, rse_name="MONTECARLO"))
        wf = Workflow(state=WorkflowState.SUBMITTED, mql="monte-carlo 3")
        s.add(wf)
        s.flush()
        s.add(Stage(workflow_id=wf.workflow_id, stage_id=1))
        wid = wf.workflow_id
    run = run_deployment(stack, "finder", {"replica_chunk_size": 100})
    assert_completed(run)
    assert run.parameters == {"replica_chunk_size": 100}
    with transaction() as s:
        assert s.get(Workflow, wid).state == WorkflowState.RUNNING  # type: ignore[union-attr]
        assert s.scalars(select(File.state).where(File.workflow_id == wid)).all() == [FileState.UNALLOCATED] * 3
        assert s.scalars(select(Replica.rse_id).where(Replica.workflow_id == wid)).all() == [1, 1, 1]
    assert [r.operation for r in ledger_rows(run.id) if r.service == "rucio"].count("ping") == 3


def seed_running_stage_and_site() -> int:
    """A running stage with unallocated files on a storage at distance 0 from an enabled site."""
    return seed_factory_stage(4, site="UK_Opstest", rse="OPSTEST_DISK", scope="opstest")


def test_job_factory_dry_run_submits_and_records_nothing(
    stack: PrefectStack, db: Engine, condor_dirs: tuple[Path, Path]
) -> None:
    seed_running_stage_and_site()
    submits_before = len(condor_submits(condor_dirs))
    run = run_deployment(stack, "job-factory", {"dry_run": True})
    assert_completed(run)
    assert len(condor_submits(condor_dirs)) == submits_before, "no condor_submit in a dry run"
    with transaction() as s:
        assert s.scalars(select(Job)).all() == []
    outcomes = [row["outcome"] for row in table_artifacts(stack, run.id)["workflowjobs"]]
    assert outcomes and all(o.startswith("dry run: 6 job(s)") for o in outcomes), outcomes
    assert {r.operation for r in ledger_rows(run.id)} == {"ping"}, "only the Rucio health gate was called"


def test_awt_dry_run_lists_each_site_and_submits_nothing(
    stack: PrefectStack, db: Engine, condor_dirs: tuple[Path, Path]
) -> None:
    seed_running_stage_and_site()
    submits_before = len(condor_submits(condor_dirs))
    run = run_deployment(stack, "awt-jobs", {"dry_run": True})
    assert_completed(run)
    assert len(condor_submits(condor_dirs)) == submits_before
    with transaction() as s:
        assert s.scalars(select(Job)).all() == []
        assert s.scalar(select(Site.last_awt_time)) is None
    rows = table_artifacts(stack, run.id)["awtjobstosites"]
    assert [(r["site"], r["kind"]) for r in rows] == [("UK_Opstest", "cpu")]
    assert rows[0]["outcome"].startswith("dry run: to schedd0")
    assert ledger_rows(run.id) == [], "a dry run calls nothing"


def all_artifacts(stack: PrefectStack, flow_run_id: UUID) -> dict[str, Any]:
    with stack.client() as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key: a for a in artifacts if a.key}


def test_x509_proxies_renews_only_the_kind_asked_for(stack: PrefectStack, db: Engine) -> None:
    env = stack.worker_env
    production, no_roles = Path(env["JUSTIN_PROXIES__PRODUCTION_PROXY"]), Path(env["JUSTIN_PROXIES__NO_ROLES_PROXY"])
    production.unlink(missing_ok=True)
    no_roles.unlink(missing_ok=True)
    run = run_deployment(stack, "x509-proxies", {"kinds": ["no-roles"]})
    assert_completed(run)
    assert no_roles.is_file() and (no_roles.stat().st_mode & 0o777) == 0o600
    assert not production.exists(), "only the kind the run asked for"
    assert [(r.service, r.outcome) for r in ledger_rows(run.id)] == [("voms", "ok")]


def test_api_rates_over_fewer_runs_with_the_page_prunes_old_ledger_rows(stack: PrefectStack, db: Engine) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    with transaction() as s:
        for when, operation in ((now - dt.timedelta(days=400), "ancient"), (now - dt.timedelta(hours=1), "recent")):
            s.add(ExternalCall(flow_run_id="seeded", flow_name="finder", deployment_name="finder", service="rucio",
                               operation=operation, attempt=1, outcome="ok", started_at=when, duration_ms=5.0))  # fmt: skip
    run = run_deployment(stack, "api-rates", {"runs": 5, "write_markdown": True})
    assert_completed(run)
    assert run.parameters == {"runs": 5, "write_markdown": True}
    with transaction() as s:
        left = set(s.scalars(select(ExternalCall.operation).where(ExternalCall.flow_run_id == "seeded")))
    assert left == {"recent"}, "the row past ledger.retention_days was pruned, the recent one kept"
    artifacts = all_artifacts(stack, run.id)
    assert artifacts["api-rates"].type == "table"
    assert artifacts["api-rates-page"].type == "markdown" and "finder" in str(artifacts["api-rates-page"].data)


def test_show_files_with_a_query_and_a_limit(stack: PrefectStack, db: Engine, metacat_double: MetaCatDouble) -> None:
    namespace = unique("opsfiles")
    for i in range(3):
        metacat_double.seed_file(namespace, f"f{i}.root", 100 + i, {}, datasets=[f"{namespace}:set"])
    run = run_deployment(stack, "show-files", {"mql": f"files from {namespace}:set", "limit": 2})
    assert_completed(run)
    rows = table_artifacts(stack, run.id)["show-files"]
    assert len(rows) == 2 and all(namespace in str(row) for row in rows)
    assert [(r.service, r.operation) for r in ledger_rows(run.id)] == [("metacat", "query")]


# (deployment, parameters, reason in the failed state): one run per deployment, since a second
# run of a no-overlap deployment would be cancelled while the first is in flight
BAD_PARAMETERS = [
    ("rucio-health", {"pings": 0}, "pings must be between 1 and 20"),
    ("finder", {"replica_chunk_size": 0}, "replica_chunk_size must be between 1 and 5000"),
    ("info-collector-storages", {"rse_expression": "A;DROP"}, "is not a Rucio RSE expression"),
    ("info-collector-sites", {"repo_url": "--upload-pack=touch /tmp/pwned"}, "not an acceptable git repository URL"),
]


def test_bad_parameters_fail_the_run_with_the_reason_before_any_external_call(stack: PrefectStack, db: Engine) -> None:
    with stack.client() as client:
        created = [
            (client.create_flow_run_from_deployment(deployment_id(stack, name), parameters=params), message)
            for name, params, message in BAD_PARAMETERS
        ]
    runs = stack.wait_for_runs([run.id for run, _ in created])
    for run, (_, message) in zip(runs, created, strict=True):
        assert run.state is not None and run.state.is_failed(), f"{run.parameters}: {run.state}"
        assert message in (run.state.message or ""), run.state.message
    with transaction() as s:
        assert s.scalars(select(ExternalCall)).all() == [], "no external call was made by any of them"


def test_a_parameter_of_the_wrong_type_is_refused_by_the_api(stack: PrefectStack, db: Engine) -> None:
    """The deployments enforce their parameter schema: the UI form cannot even create the run."""
    from prefect.exceptions import PrefectHTTPStatusError

    with stack.client() as client, pytest.raises(PrefectHTTPStatusError) as refused:
        client.create_flow_run_from_deployment(deployment_id(stack, "rucio-health"), parameters={"pings": "three"})
    assert refused.value.response.status_code in (409, 422)
    assert "pings" in refused.value.response.text


def test_every_parameter_on_the_run_form_has_a_type_a_default_and_a_description(stack: PrefectStack) -> None:
    """What the UI's run form is built from: each deployment's parameter schema on the server."""
    problems = []
    with stack.client() as client:
        for dep in client.read_deployments():
            schema = dep.parameter_openapi_schema or {}
            assert dep.enforce_parameter_schema, f"{dep.name}: the server would accept any parameter type"
            for name, prop in (schema.get("properties") or {}).items():
                missing = [
                    what for what, ok in (
                        ("a type", "type" in prop or "anyOf" in prop or "$ref" in prop or "allOf" in prop),
                        ("a default", "default" in prop),
                        ("a description (docstring Args:)", bool(prop.get("description"))),
                    ) if not ok
                ]  # fmt: skip
                if missing:
                    problems.append(f"{dep.name}.{name} lacks {', '.join(missing)}")
            assert not schema.get("required"), f"{dep.name}: required parameters {schema['required']}"
    assert not problems, problems
