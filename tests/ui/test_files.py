"""show-files (showFilesCmd, reference §6.2) against the MetaCat double and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from justin_flows.adapters.metacat import MetaCatAdapter
from justin_flows.db.models import FileState
from justin_flows.testing.metacat_double import MetaCatDouble
from justin_flows.ui.files import UPSTREAM_LIMIT, show_files, show_files_mql, show_files_workflow
from justin_flows.ui.result import UIInputError
from tests.ui.conftest import ledger_calls, seed_workflow, unique


def seed(double: MetaCatDouble, n: int) -> tuple[str, list[str]]:
    """``n`` files in a fresh dataset; returns its MQL and the files' DIDs in dataset order."""
    namespace = unique("sf")
    names = [f"file-{i:03d}-{unique('')}.root" for i in range(n)]
    for i, name in enumerate(names):
        double.seed_file(namespace, name, 100 + i, {"core.runs": [i]}, datasets=[f"{namespace}:raw"])
    return f"files from {namespace}:raw", [f"{namespace}:{name}" for name in names]


def queries(double: MetaCatDouble) -> list[tuple[str, str, int]]:
    return [(r.method, r.path, r.status) for r in double.requests if r.path.endswith("/data/query")]


def test_mql_files_are_one_namespace_name_line_each_from_one_unauthenticated_query(
    metacat_env: MetaCatDouble, ledger: None
) -> None:
    mql, dids = seed(metacat_env, 3)
    metacat_env.clear_requests()
    with MetaCatAdapter() as metacat:
        result = show_files_mql(metacat, mql)
    assert result.text == "".join(f"{did}\n" for did in dids)
    assert result.rows == [{"did": did} for did in dids]
    assert dict(result.counts) == {"matched": 3, "shown": 3}
    assert ledger_calls() == [("metacat", "query", 1, "ok")]
    assert queries(metacat_env) == [("POST", "/app/data/query", 200)]
    assert [r.path for r in metacat_env.requests if "/auth/" in r.path] == []  # no login for a query


def test_upstreams_limit_of_100_is_the_default_and_a_limit_is_honoured(
    metacat_env: MetaCatDouble, ledger: None
) -> None:
    mql, dids = seed(metacat_env, UPSTREAM_LIMIT + 5)
    with MetaCatAdapter() as metacat:
        default = show_files(metacat, mql=mql)
        three = show_files(metacat, mql=mql, limit=3)
    assert UPSTREAM_LIMIT == 100
    assert default.lines == dids[:100]
    assert dict(default.counts) == {"matched": 105, "shown": 100}
    assert three.text == f"{dids[0]}\n{dids[1]}\n{dids[2]}\n"
    assert ledger_calls() == [("metacat", "query", 1, "ok")] * 2  # one query per command


def test_bad_mql_is_an_input_error_quoting_metacats_explanation_and_is_not_retried(
    metacat_env: MetaCatDouble, ledger: None
) -> None:
    with MetaCatAdapter() as metacat, pytest.raises(UIInputError) as info:
        show_files(metacat, mql="files frm nowhere:at-all")
    message = str(info.value)
    assert message.startswith("MetaCat refused the MQL query 'files frm nowhere:at-all': MQLSyntaxError: ")
    assert "line 1 col 11" in message
    assert ledger_calls() == [("metacat", "query", 1, "error")]


def test_a_query_matching_nothing_prints_nothing(metacat_env: MetaCatDouble, ledger: None) -> None:
    with MetaCatAdapter() as metacat:
        result = show_files(metacat, mql=f"files from {unique('none')}:empty")
    assert (result.text, result.rows, dict(result.counts)) == ("", [], {"matched": 0, "shown": 0})


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({}, "exactly one of an MQL query or a workflow id"),
        ({"mql": "files from a:b", "workflow_id": 1}, "exactly one of an MQL query or a workflow id"),
        ({"mql": "files from a:b", "stage_id": 1}, "goes with a workflow id"),
        ({"mql": "   "}, "the MQL query is empty"),
        ({"mql": "files from a:b", "limit": 0}, "limit must be at least 1, got 0"),
    ],
)
def test_wrong_argument_combinations_are_refused_before_any_call(
    kwargs: dict[str, object], problem: str, ledger: None
) -> None:
    with MetaCatAdapter() as metacat, pytest.raises(UIInputError, match=problem):
        show_files(metacat, **kwargs)  # type: ignore[arg-type]
    assert ledger_calls() == []


def test_workflow_files_come_from_the_database_in_upstreams_order_and_format(db: Engine) -> None:
    rows = seed_workflow([
        (2, "usertests:b-second.root", FileState.OUTPUTTING),
        (1, "usertests:z.root", FileState.UNALLOCATED),
        (1, "usertests:a.root", FileState.PROCESSED),
        (0, "usertests:final-output.root", FileState.OUTPUT),  # stage 0 = final output: not shown
    ])
    seed_workflow([(1, "usertests:other-workflow.root", FileState.FINDING)])
    wid = rows.workflow_id

    result = show_files_workflow(wid)

    assert result.text == (
        f"{wid} 1 processed usertests:a.root\n"
        f"{wid} 1 unallocated usertests:z.root\n"
        f"{wid} 2 outputting usertests:b-second.root\n"
    )
    assert result.rows[0] == {"workflow_id": wid, "stage_id": 1, "state": "processed", "did": "usertests:a.root"}
    assert show_files_workflow(wid, stage_id=2).lines == [f"{wid} 2 outputting usertests:b-second.root"]
    assert show_files_workflow(wid, file_did="usertests:z.root").lines == [f"{wid} 1 unallocated usertests:z.root"]
    assert show_files_workflow(wid, limit=1).lines == [f"{wid} 1 processed usertests:a.root"]
    assert ledger_calls() == []  # the database only


def test_an_unknown_workflow_is_an_input_error(db: Engine) -> None:
    with pytest.raises(UIInputError, match="there is no workflow 4242"):
        show_files_workflow(4242)
