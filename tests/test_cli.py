"""The ``justin-flows`` CLI: workflow create, site enable, storage enable (and the old commands)."""

from __future__ import annotations

import argparse

import pytest
from sqlalchemy import Engine, select

from justin_flows.admin import AdminError, create_workflow, destination_dataset
from justin_flows.cli import build_parser, main, parse_output
from justin_flows.db.engine import transaction
from justin_flows.db.models import (
    CondorGroup,
    NamedQuota,
    PrincipalName,
    Scope,
    Stage,
    StageOutput,
    StageSite,
    Storage,
    User,
    WlcgGroup,
    Workflow,
)
from tests.factory.helpers import add_site, add_storage


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_existing_commands_are_kept() -> None:
    parser = build_parser()
    assert parser.parse_args(["db", "upgrade"]).revision == "head"
    assert parser.parse_args(["sandbox", "--keep"]).keep is True
    assert parser.parse_args(["settings"]).func.__name__ == "_settings_show"


def test_workflow_create_makes_every_row_the_factory_needs(db: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    man = add_site("UK_Manchester")
    add_site("US_FNAL")
    add_site("XX_OnRequest", only_on_request=True)
    code, out, err = run([
        "workflow", "create", "--mql", "files from dune:all limit 10", "--scope", "usertests",
        "--processors", "2", "--rss-mib", "3000", "--wall-seconds", "7200", "--max-distance", "30",
        "--gpus", "1", "--output", "*.root:myrun", "--output", "*.json:https://webdav.example.org:8443/scratch:7:RAL_ECHO",
        "--output", "*.log::3", "--user", "alice@fnal.gov",
    ], capsys)
    assert (code, err) == (0, "")
    assert out.startswith("created workflow ")
    workflow_id = int(out.split()[2])
    with transaction() as s:
        wf = s.get(Workflow, workflow_id)
        assert wf is not None and wf.state.value == "running" and wf.mql == "files from dune:all limit 10"
        assert wf.started is not None
        stage = s.get(Stage, (workflow_id, 1))
        assert stage is not None
        assert (stage.processors, stage.rss_bytes, stage.wall_seconds, stage.max_distance, stage.gpus) == (
            2, 3000 * 1048576, 7200, 30.0, 1)
        outputs = [(o.pattern_id, o.file_pattern, o.destination, o.lifetime_seconds, o.rse_expression)
                   for o in s.scalars(select(StageOutput).order_by(StageOutput.pattern_id))]
        assert outputs == [
            (1, "*.root", f"myrun-dev-w{workflow_id}s1p1", 86400, ""),
            (2, "*.json", "https://webdav.example.org:8443/scratch", 7 * 86400, "RAL_ECHO"),
            (3, "*.log", f"dev-w{workflow_id}s1p3", 3 * 86400, ""),
        ]
        sites = set(s.scalars(select(StageSite.site_id).where(StageSite.workflow_id == workflow_id)))
        assert man in sites and len(sites) == 2  # not the only-on-request site
        scope = s.scalars(select(Scope).where(Scope.scope_name == "usertests")).one()
        assert wf.scope_id == scope.scope_id
        quota = s.get(NamedQuota, scope.quota_id)
        assert quota is not None and quota.quota_name == "alice" and quota.processing_enabled
        assert s.get(WlcgGroup, quota.wlcg_group_id).wlcg_group_name == "/dune"  # type: ignore[union-attr]
        assert s.get(CondorGroup, scope.condor_group_id).condor_group_name == "group_dune"  # type: ignore[union-attr]
        user = s.get(User, wf.user_id)
        assert user is not None and user.processing_enabled
        pn = s.get(PrincipalName, user.main_pn_id)
        assert pn is not None and pn.principal_name == "alice@fnal.gov"


def test_second_workflow_reuses_user_scope_and_quota(db: Engine) -> None:
    first = create_workflow("files from a:b", scope="usertests", principal_name="alice@fnal.gov")
    second = create_workflow("files from a:c", scope="usertests", principal_name="alice@fnal.gov", state="paused")
    with transaction() as s:
        a, b = s.get(Workflow, first), s.get(Workflow, second)
        assert a is not None and b is not None
        assert (a.user_id, a.scope_id) == (b.user_id, b.scope_id)
        assert b.state.value == "paused" and b.started is None
        assert len(s.scalars(select(User)).all()) == 1 and len(s.scalars(select(NamedQuota)).all()) == 1


def test_existing_disabled_quota_is_not_switched_back_on(db: Engine) -> None:
    create_workflow("files from a:b", scope="usertests", principal_name="alice")
    with transaction() as s:
        s.execute(NamedQuota.__table__.update().values(processing_enabled=False))
    create_workflow("files from a:c", scope="usertests", principal_name="alice")
    with transaction() as s:
        assert s.scalars(select(NamedQuota.processing_enabled)).all() == [False]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--processors", "0"], "must be at least 1"),
        (["--rss-mib", "lots"], "not an integer"),
        (["--max-distance", "-1"], ">= 0"),
        (["--max-distance", "nan"], ">= 0"),
        (["--gpus", "-2"], "0 or more"),
        (["--output", "nocolon"], "PATTERN:DESTINATION"),
        (["--output", "*.root:x:0"], "at least 1"),
        (["--state", "exploded"], "invalid choice"),
    ],
)
def test_bad_arguments_exit_2_with_a_clear_error(
    db: Engine, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, _, err = run(["workflow", "create", "--mql", "files from a:b", "--scope", "usertests", *args], capsys)
    assert code == 2 and message in err
    with transaction() as s:
        assert s.scalars(select(Workflow)).all() == []


@pytest.mark.parametrize(
    "args, message",
    [
        (["--scope", "bad scope!"], "scope"),
        (["--scope", "usertests", "--output", "*.root:bad/dest"], "destination"),
        (["--scope", "usertests", "--output", "a b:x"], "pattern"),
        (["--scope", "usertests", "--output", "*.root:x:1:(((bad"], "rse_expression"),
        (["--scope", "usertests", "--site", "NO_SUCH_SITE"], "unknown site"),
        (["--scope", "usertests", "--user", "eve; rm"], "principal name"),
    ],
)
def test_bad_values_exit_2_and_write_nothing(
    db: Engine, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, _, err = run(["workflow", "create", "--mql", "files from a:b", *args], capsys)
    assert code == 2 and message in err and err.startswith("justin-flows: ")
    with transaction() as s:
        assert s.scalars(select(Workflow)).all() == [] and s.scalars(select(Scope)).all() == []


def test_missing_required_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["workflow", "create", "--scope", "usertests"], capsys)
    assert code == 2 and "--mql" in err
    code, _, _ = run(["site"], capsys)
    assert code == 2


def test_site_enable(db: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    site_id = add_site("UK_Manchester", enabled=False)
    code, out, _ = run(["site", "enable", "UK_Manchester"], capsys)
    assert code == 0 and out == f"site UK_Manchester (id {site_id}) enabled\n"
    with transaction() as s:
        from justin_flows.db.models import Site

        assert s.get(Site, site_id).enabled is True  # type: ignore[union-attr]
    code, _, err = run(["site", "enable", "NOWHERE"], capsys)
    assert code == 2 and "unknown site 'NOWHERE'" in err


def test_storage_enable(db: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    rse_id = add_storage("RAL_ECHO")
    with transaction() as s:
        assert s.get(Storage, rse_id).justin_write is False  # type: ignore[union-attr]
    code, out, _ = run(["storage", "enable", "RAL_ECHO"], capsys)
    assert code == 0 and "RAL_ECHO" in out
    with transaction() as s:
        assert s.get(Storage, rse_id).justin_write is True  # type: ignore[union-attr]
    code, _, err = run(["storage", "enable", "NO_RSE"], capsys)
    assert code == 2 and "unknown storage 'NO_RSE'" in err


@pytest.mark.parametrize(
    "text, parsed",
    [
        ("*.root:myrun", ("*.root", "myrun", 86400, "")),
        ("*.root:myrun:30", ("*.root", "myrun", 30 * 86400, "")),
        ("*.root:myrun:2:DUNE_US_FNAL_DISK_STAGE", ("*.root", "myrun", 2 * 86400, "DUNE_US_FNAL_DISK_STAGE")),
        ("*.root:https://h.example:8443/p", ("*.root", "https://h.example:8443/p", 86400, "")),
        ("*.root:https://h.example:8443/p:5:R1|R2", ("*.root", "https://h.example:8443/p", 5 * 86400, "R1|R2")),
        ("*.root:", ("*.root", "", 86400, "")),
    ],
)
def test_parse_output(text: str, parsed: tuple[str, str, int, str]) -> None:
    assert parse_output(text) == parsed


def test_parse_output_refuses() -> None:
    for text in ("", ":dest", "plain"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_output(text)


def test_destination_dataset_expands_upstream_variables() -> None:
    assert destination_dataset("run-$JUSTIN_WORKFLOW_ID-$JUSTIN_SCOPE", instance="prod", workflow_id=12,
                               stage_id=1, pattern_id=2, scope="usertests") == "run-12-usertests-prod-w12s1p2"
    with pytest.raises(AdminError):
        create_workflow("q", scope="s", output_patterns=[("*.root", "x", 0, "")])


def test_destination_variables_through_create(db: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["workflow", "create", "--mql", "q", "--scope", "usertests",
                        "--output", "*.root:run$JUSTIN_WORKFLOW_ID"], capsys)
    assert code == 0
    workflow_id = int(out.split()[2])
    with transaction() as s:
        assert s.scalars(select(StageOutput.destination)).one() == f"run{workflow_id}-dev-w{workflow_id}s1p1"
