"""The UI commands in the ``justin-flows`` CLI: exact output and exit codes (0 ok, 2 bad input, 1 service)."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from justin_flows.cli import build_parser
from justin_flows.db.models import FileState
from justin_flows.testing.https_server import LocalHTTPSServer
from justin_flows.testing.metacat_double import MetaCatDouble
from tests.test_cli import run
from tests.ui.conftest import JOBSCRIPT_BODY, JOBSCRIPT_GIT, Catalogue, ledger_calls, seed_workflow, unique


def test_every_earlier_command_is_still_there() -> None:
    parser = build_parser()
    assert parser.parse_args(["db", "upgrade"]).revision == "head"
    assert parser.parse_args(["settings"]).func.__name__ == "_settings_show"
    assert parser.parse_args(["sandbox"]).func.__name__ == "_sandbox"
    assert parser.parse_args(["site", "enable", "X"]).func.__name__ == "_site_enable"
    assert parser.parse_args(["storage", "enable", "X"]).func.__name__ == "_storage_enable"
    assert parser.parse_args(["workflow", "create", "--mql", "m", "--scope", "s"]).func.__name__ == "_workflow_create"


# --------------------------------------------------------------------------- show-jobscript


def test_show_jobscript_prints_the_script(github: LocalHTTPSServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["show-jobscript", JOBSCRIPT_GIT, "--base-url", github.url], capsys) == (0, JOBSCRIPT_BODY + "\n", "")
    assert ledger_calls() == [("http", "GET 127.0.0.1", 1, "ok")]


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["show-jobscript", "DUNE/dune-justin/x.jobscript"], "the :TAG (branch, tag or commit) is mandatory"),
        (["show-jobscript", "DUNE/dune-justin/x$(id):main"], "characters '$()' are not allowed"),
        (["show-jobscript"], "give ORG/REPO/PATH:TAG (or --workflow-id with --stage-id)"),
        (["show-jobscript", "--workflow-id", "3"], "--workflow-id and --stage-id go together"),
        (["show-jobscript", "--workflow-id", "3", "--stage-id", "1"], "is not available: this database has no stages_jobscripts table"),
        (["show-jobscript", "DUNE/dune-justin/nothing.jobscript:main"], "jobscript DUNE/dune-justin/nothing.jobscript:main not found: "),
    ],
)
def test_show_jobscript_bad_input_exits_2_with_the_reason(
    argv: list[str], problem: str, github: LocalHTTPSServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run([*argv, "--base-url", github.url], capsys)
    assert (code, out) == (2, "")
    assert err.startswith("justin-flows: ") and problem in err


def test_show_jobscript_from_an_unverifiable_server_exits_1(
    github: LocalHTTPSServer, impostor: LocalHTTPSServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(["show-jobscript", JOBSCRIPT_GIT, "--base-url", impostor.url], capsys)
    assert (code, out) == (1, "")
    assert err == (
        f"justin-flows: jobscript {JOBSCRIPT_GIT}: the TLS certificate of 127.0.0.1:{impostor.port} "
        "did not verify; nothing was fetched\n"
    )
    assert impostor.requests == []


# --------------------------------------------------------------------------- show-files


def test_show_files_mql_with_limit(metacat_env: MetaCatDouble, ledger: None, capsys: pytest.CaptureFixture[str]) -> None:
    ns = unique("cli")
    for i in range(4):
        metacat_env.seed_file(ns, f"f{i}.root", 10, {}, datasets=[f"{ns}:set"])
    assert run(["show-files", "--mql", f"files from {ns}:set", "--limit", "3"], capsys) == (
        0, f"{ns}:f0.root\n{ns}:f1.root\n{ns}:f2.root\n", "",
    )
    assert ledger_calls() == [("metacat", "query", 1, "ok")]


def test_show_files_bad_mql_exits_2_naming_the_problem(
    metacat_env: MetaCatDouble, ledger: None, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(["show-files", "--mql", "files frm x:y"], capsys)
    assert (code, out) == (2, "")
    assert err.startswith("justin-flows: MetaCat refused the MQL query 'files frm x:y': MQLSyntaxError: ")


@pytest.mark.parametrize(
    "argv",
    [
        ["show-files"],
        ["show-files", "--mql", "files from a:b", "--workflow-id", "1"],
        ["show-files", "--mql", "files from a:b", "--limit", "0"],
        ["show-replicas", "--workflow-id", "x"],
    ],
)
def test_argument_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(argv, capsys)
    assert (code, out) == (2, "")


def test_show_files_and_replicas_for_a_workflow(db: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    rows = seed_workflow(
        [(1, "usertests:a.root", FileState.UNALLOCATED), (1, "usertests:b.root", FileState.NOTFOUND)],
        [("usertests:a.root", "RAL_ECHO", "root://ral.example/a.root")],
    )
    wid = rows.workflow_id
    assert run(["show-files", "--workflow-id", str(wid)], capsys) == (
        0, f"{wid} 1 unallocated usertests:a.root\n{wid} 1 notfound usertests:b.root\n", "",
    )
    assert run(["show-files", "--workflow-id", str(wid), "--stage-id", "1", "--file-did", "usertests:b.root"], capsys) == (
        0, f"{wid} 1 notfound usertests:b.root\n", "",
    )
    assert run(["show-replicas", "--workflow-id", str(wid), "--rse", "RAL_ECHO"], capsys) == (
        0, "%5d  1 unallocated usertests:a.root RAL_ECHO root://ral.example/a.root\n" % wid, "",
    )
    code, out, err = run(["show-files", "--workflow-id", str(wid + 1)], capsys)
    assert (code, out, err) == (2, "", f"justin-flows: there is no workflow {wid + 1}\n")
    code, _, err = run(["show-files", "--mql", "files from a:b", "--stage-id", "1"], capsys)
    assert code == 2 and "goes with a workflow id" in err
    assert ledger_calls() == []


# --------------------------------------------------------------------------- show-replicas


def test_show_replicas_mql_in_chunks(catalogue: Catalogue, capsys: pytest.CaptureFixture[str]) -> None:
    rse = catalogue.rse()
    dids = catalogue.files(5, [rse])
    code, out, err = run(["show-replicas", "--mql", catalogue.mql, "--chunk-size", "2"], capsys)
    assert (code, err) == (0, "")
    assert out == "".join(f"{did} {catalogue.pfn(rse, did)} {rse}\n" for did in dids)
    calls = ledger_calls()
    assert sorted(calls) == [("metacat", "query", 1, "ok")] + [("rucio", "list_replicas", 1, "ok")] * 3


def test_show_replicas_monte_carlo_and_bad_mql(catalogue: Catalogue, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["show-replicas", "--mql", "monte-carlo 2"], capsys) == (
        0, "monte-carlo-000001-000001 000001 MONTECARLO\nmonte-carlo-000001-000002 000002 MONTECARLO\n", "",
    )
    code, out, err = run(["show-replicas", "--mql", "files frm x:y"], capsys)
    assert (code, out) == (2, "") and "MQLSyntaxError" in err
    assert ledger_calls() == [("metacat", "query", 1, "error")]
