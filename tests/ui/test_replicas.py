"""show-replicas (showReplicasCmd, reference §6.3): MetaCat double, the real Rucio server, PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from justin_flows.adapters.metacat import MetaCatAdapter
from justin_flows.adapters.rucio import RucioAdapter
from justin_flows.db.models import FileState
from justin_flows.ui.replicas import show_replicas, show_replicas_mql, show_replicas_workflow
from justin_flows.ui.result import UIInputError, UIServiceError
from tests.conftest import reset_caches
from tests.ui.conftest import Catalogue, SpyRucio, ledger_calls, seed_workflow


def test_one_query_then_one_bulk_wan_root_call_and_a_line_per_replica_per_rse(catalogue: Catalogue) -> None:
    """[DOC≠CODE] upstream's doc says per file; the code (and this) asks Rucio in bulk."""
    near, far = catalogue.rse(), catalogue.rse()
    both = catalogue.files(2, [near, far])
    only_far = catalogue.files(1, [far])
    nowhere = catalogue.files(1)  # in MetaCat, not in Rucio
    rucio = SpyRucio()
    with MetaCatAdapter() as metacat:
        result = show_replicas_mql(metacat, rucio, catalogue.mql)

    expected = []
    for did in both:
        expected += sorted([(did, catalogue.pfn(near, did), near), (did, catalogue.pfn(far, did), far)],
                           key=lambda line: line[2])
    expected.append((only_far[0], catalogue.pfn(far, only_far[0]), far))
    assert result.text == "".join(f"{d} {p} {r}\n" for d, p, r in expected)
    assert result.rows == [{"did": d, "pfn": p, "rse": r} for d, p, r in expected]
    assert dict(result.counts) == {"files": 4, "files_without_replicas": 1, "replicas": 5, "list_replicas_calls": 1}
    assert nowhere[0] not in result.text
    assert rucio.chunks == [4] and rucio.arguments == [(("root",), "wan")]
    assert ledger_calls() == [("metacat", "query", 1, "ok"), ("rucio", "list_replicas", 1, "ok")]


def test_list_replicas_is_called_per_chunk_not_per_file(catalogue: Catalogue) -> None:
    rse = catalogue.rse()
    dids = catalogue.files(5, [rse])
    rucio = SpyRucio()
    with MetaCatAdapter() as metacat:
        result = show_replicas_mql(metacat, rucio, catalogue.mql, chunk_size=2)
    assert sorted(rucio.chunks) == [1, 2, 2]
    assert [line.split()[0] for line in result.lines] == dids  # the query's order, whatever the chunks
    assert result.lines == [f"{did} {catalogue.pfn(rse, did)} {rse}" for did in dids]
    calls = ledger_calls()
    assert calls.count(("rucio", "list_replicas", 1, "ok")) == 3
    assert calls.count(("metacat", "query", 1, "ok")) == 1 and len(calls) == 4


def test_a_limit_bounds_the_files_looked_up(catalogue: Catalogue) -> None:
    rse = catalogue.rse()
    dids = catalogue.files(5, [rse])
    rucio = SpyRucio()
    with MetaCatAdapter() as metacat:
        result = show_replicas(metacat, rucio, mql=catalogue.mql, limit=3, chunk_size=2)
    assert result.lines == [f"{did} {catalogue.pfn(rse, did)} {rse}" for did in dids[:3]]
    assert sorted(rucio.chunks) == [1, 2]


def test_monte_carlo_gives_upstreams_synthetic_lines_without_any_call(catalogue: Catalogue) -> None:
    with MetaCatAdapter() as metacat:
        three = show_replicas(metacat, RucioAdapter(), mql="monte-carlo 3")
        many = show_replicas(metacat, RucioAdapter(), mql="monte-carlo 250")
        two = show_replicas(metacat, RucioAdapter(), mql="monte-carlo 250", limit=2)
    assert three.text == (
        "monte-carlo-000001-000001 000001 MONTECARLO\n"
        "monte-carlo-000001-000002 000002 MONTECARLO\n"
        "monte-carlo-000001-000003 000003 MONTECARLO\n"
    )
    assert len(many.lines) == 100 and many.lines[-1] == "monte-carlo-000001-000100 000100 MONTECARLO"
    assert two.lines == three.lines[:2]
    assert ledger_calls() == []
    with MetaCatAdapter() as metacat, pytest.raises(UIInputError, match="'monte-carlo' needs a whole number"):
        show_replicas(metacat, RucioAdapter(), mql="monte-carlo lots")


def test_bad_mql_is_an_input_error_and_rucio_is_not_asked(catalogue: Catalogue) -> None:
    rucio = SpyRucio()
    with MetaCatAdapter() as metacat, pytest.raises(UIInputError, match=r"^MetaCat refused the MQL query 'files of x:y': MQLSyntaxError"):
        show_replicas(metacat, rucio, mql="files of x:y")
    assert rucio.chunks == []
    assert ledger_calls() == [("metacat", "query", 1, "error")]


def test_a_rucio_error_fails_the_command_naming_the_chunk(catalogue: Catalogue) -> None:
    """A real refusal from the server: an account the credentials do not belong to."""
    rse = catalogue.rse()
    first, _, last = catalogue.files(3, [rse])
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUSTIN_RUCIO__ACCOUNT", "nosuchaccount")
        reset_caches()
        try:
            with MetaCatAdapter() as metacat, pytest.raises(UIServiceError) as info:
                show_replicas(metacat, RucioAdapter(), mql=catalogue.mql)
        finally:
            mp.undo()
            reset_caches()
    message = str(info.value)
    assert message.startswith(f"Rucio list_replicas for 3 file(s) ({first} ... {last}) failed: ")
    assert "rucio.list_replicas failed after 1 attempt(s): CannotAuthenticate" in message
    assert ledger_calls() == [("metacat", "query", 1, "ok"), ("rucio", "list_replicas", 1, "error")]


def test_chunk_size_is_bounded(catalogue: Catalogue) -> None:
    with MetaCatAdapter() as metacat, pytest.raises(UIInputError, match="chunk size must be between 1 and 5000"):
        show_replicas(metacat, RucioAdapter(), mql=catalogue.mql, chunk_size=0)


def test_workflow_replicas_come_from_the_database_in_upstreams_format(db: Engine) -> None:
    rows = seed_workflow(
        [(1, "usertests:a.root", FileState.UNALLOCATED), (2, "usertests:b.root", FileState.PROCESSED),
         (0, "usertests:out.root", FileState.OUTPUT)],
        [("usertests:a.root", "RAL_ECHO", "root://ral.example/a.root"),
         ("usertests:a.root", "MANCHESTER", "root://man.example/a.root"),
         ("usertests:b.root", "RAL_ECHO", "root://ral.example/b.root"),
         ("usertests:out.root", "RAL_ECHO", "root://ral.example/out.root")],
    )
    wid = rows.workflow_id

    result = show_replicas_workflow(wid)

    assert result.text == (
        "%5d  1 unallocated usertests:a.root MANCHESTER root://man.example/a.root\n" % wid
        + "%5d  1 unallocated usertests:a.root RAL_ECHO root://ral.example/a.root\n" % wid
        + "%5d  2 processed   usertests:b.root RAL_ECHO root://ral.example/b.root\n" % wid
    )
    assert result.rows[2] == {"workflow_id": wid, "stage_id": 2, "state": "processed", "did": "usertests:b.root",
                              "rse": "RAL_ECHO", "wan_pfn": "root://ral.example/b.root"}
    assert len(show_replicas_workflow(wid, stage_id=1).lines) == 2
    assert show_replicas_workflow(wid, rse_name="MANCHESTER").lines == [result.lines[0]]
    assert show_replicas_workflow(wid, file_did="usertests:b.root").lines == [result.lines[2]]
    assert show_replicas_workflow(wid, limit=1).lines == [result.lines[0]]
    assert ledger_calls() == []


def test_the_workflow_form_keeps_upstreams_limit_of_100(db: Engine) -> None:
    files = [(1, f"usertests:f{i:03d}.root", FileState.UNALLOCATED) for i in range(105)]
    rows = seed_workflow(files, [(did, "RAL_ECHO", f"root://ral.example/{i}") for i, (_, did, _) in enumerate(files)])
    with MetaCatAdapter() as metacat:
        result = show_replicas(metacat, RucioAdapter(), workflow_id=rows.workflow_id)
    assert len(result.lines) == 100 and result.lines[-1].split()[3] == "usertests:f099.root"
    with pytest.raises(UIInputError, match="there is no workflow 999"):
        show_replicas_workflow(999)
