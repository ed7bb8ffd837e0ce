"""The UI-command flows on a real Prefect server: artifacts, ledger rows, failures."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from sqlalchemy import Engine, select

from flows.ui_commands.show_files import show_files_flow
from flows.ui_commands.show_jobscript import show_jobscript_flow
from flows.ui_commands.show_replicas import show_replicas_flow
from justin_flows.db.engine import transaction
from justin_flows.db.models import ExternalCall, FileState
from justin_flows.testing.https_server import LocalHTTPSServer
from justin_flows.testing.metacat_double import MetaCatDouble
from tests.ui.conftest import JOBSCRIPT_BODY, JOBSCRIPT_GIT, Catalogue, seed_workflow, unique

pytestmark = pytest.mark.usefixtures("prefect_server")


def artifacts(flow_run_id: Any) -> list[tuple[str | None, str | None, Any, str | None]]:
    """(key, type, data, description) of the run's keyed artifacts (not Prefect's own result records)."""

    async def read() -> list[tuple[str | None, str | None, Any, str | None]]:
        async with get_client() as client:
            found = await client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
            )
            return [(a.key, a.type, a.data, a.description) for a in found if a.key]

    return asyncio.run(read())


def ledger_rows(flow_run_id: Any) -> list[tuple[str, str, int, str]]:
    with transaction() as s:
        rows = s.execute(
            select(ExternalCall.service, ExternalCall.operation, ExternalCall.attempt, ExternalCall.outcome)
            .where(ExternalCall.flow_run_id == str(flow_run_id))
            .order_by(ExternalCall.call_id)
        ).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def test_show_jobscript_flow_publishes_the_script_as_markdown(db: Engine, github: LocalHTTPSServer) -> None:
    state = show_jobscript_flow(jobscript_git=JOBSCRIPT_GIT, base_url=github.url, return_state=True)
    assert state.is_completed(), state.message
    assert state.result() == {"command": "show-jobscript", "text": JOBSCRIPT_BODY + "\n",
                              "counts": {"lines": 3, "bytes": len(JOBSCRIPT_BODY) + 1}}
    run_id = state.state_details.flow_run_id
    assert artifacts(run_id) == [(
        "show-jobscript", "markdown",
        f"Jobscript `{JOBSCRIPT_GIT}`\n\n````\n{JOBSCRIPT_BODY}\n````\n",
        f"show-jobscript: bytes={len(JOBSCRIPT_BODY) + 1}, lines=3",
    )]
    assert ledger_rows(run_id) == [("http", "GET 127.0.0.1", 1, "ok")]


def test_show_jobscript_flow_fails_clearly_for_an_unknown_jobscript(db: Engine, github: LocalHTTPSServer) -> None:
    state = show_jobscript_flow(jobscript_git="DUNE/dune-justin/none.jobscript:main", base_url=github.url,
                                return_state=True)
    assert state.is_failed()
    assert "jobscript DUNE/dune-justin/none.jobscript:main not found" in (state.message or "")
    assert artifacts(state.state_details.flow_run_id) == []
    assert ledger_rows(state.state_details.flow_run_id) == [("http", "GET 127.0.0.1", 1, "error")]


def test_show_files_flow_publishes_a_table(db: Engine, metacat_env: MetaCatDouble) -> None:
    ns = unique("flow")
    for i in range(3):
        metacat_env.seed_file(ns, f"f{i}.root", 10, {}, datasets=[f"{ns}:set"])
    state = show_files_flow(mql=f"files from {ns}:set", limit=2, return_state=True)
    assert state.is_completed(), state.message
    assert state.result()["text"] == f"{ns}:f0.root\n{ns}:f1.root\n"
    run_id = state.state_details.flow_run_id
    [(key, kind, data, description)] = artifacts(run_id)
    assert (key, kind) == ("show-files", "table")
    assert json.loads(data) == [{"did": f"{ns}:f0.root"}, {"did": f"{ns}:f1.root"}]
    assert description == f"Files of MQL `files from {ns}:set`\n\nshow-files: matched=3, shown=2"
    assert ledger_rows(run_id) == [("metacat", "query", 1, "ok")]


def test_show_files_flow_for_a_workflow_and_its_bad_input(db: Engine, metacat_env: MetaCatDouble) -> None:
    wid = seed_workflow([(1, "usertests:a.root", FileState.FINDING)]).workflow_id
    state = show_files_flow(workflow_id=wid, return_state=True)
    assert state.is_completed(), state.message
    [(_, kind, data, _)] = artifacts(state.state_details.flow_run_id)
    assert kind == "table"
    assert json.loads(data) == [{"workflow_id": wid, "stage_id": 1, "state": "finding", "did": "usertests:a.root"}]

    bad = show_files_flow(mql="files frm x:y", return_state=True)
    assert bad.is_failed() and "MetaCat refused the MQL query 'files frm x:y': MQLSyntaxError" in (bad.message or "")
    neither = show_files_flow(return_state=True)
    assert neither.is_failed() and "exactly one of an MQL query or a workflow id" in (neither.message or "")


def test_show_replicas_flow_publishes_a_table_and_records_chunked_calls(db: Engine, catalogue: Catalogue) -> None:
    rse = catalogue.rse()
    dids = catalogue.files(5, [rse])
    state = show_replicas_flow(mql=catalogue.mql, chunk_size=2, return_state=True)
    assert state.is_completed(), state.message
    run_id = state.state_details.flow_run_id
    [(key, kind, data, description)] = artifacts(run_id)
    assert (key, kind) == ("show-replicas", "table")
    assert json.loads(data) == [{"did": d, "pfn": catalogue.pfn(rse, d), "rse": rse} for d in dids]
    assert description == (
        f"Replicas of MQL `{catalogue.mql}`\n\n"
        "show-replicas: files=5, files_without_replicas=0, list_replicas_calls=3, replicas=5"
    )
    assert sorted(ledger_rows(run_id)) == [("metacat", "query", 1, "ok")] + [("rucio", "list_replicas", 1, "ok")] * 3


def test_show_replicas_flow_with_nothing_found_says_so(db: Engine, catalogue: Catalogue) -> None:
    state = show_replicas_flow(mql=catalogue.mql, return_state=True)  # an empty dataset
    assert state.is_completed(), state.message
    [(key, kind, data, _)] = artifacts(state.state_details.flow_run_id)
    assert (key, kind, data) == ("show-replicas", "markdown", f"Replicas of MQL `{catalogue.mql}`: nothing found.\n")
