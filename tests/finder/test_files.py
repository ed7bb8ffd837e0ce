"""findFiles against PostgreSQL, the MetaCat double and the real Rucio server."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import Engine, select

from justin_flows.db.engine import transaction
from justin_flows.db.models import Event, File, NamedQuota, Replica, Scope, Workflow, WorkflowState
from justin_flows.finder.files import find_files, next_refind_time, parse_input_source
from justin_flows.ledger import LEDGER
from tests.finder.conftest import NOW, MetaCat, Rows, RucioSeed, SpyRucio, unique

DUE = NOW - dt.timedelta(minutes=1)


def files_of(workflow_id: int) -> list[tuple[int, str, int, str]]:
    with transaction() as s:
        return [
            (stage, did, size, state.value)
            for stage, did, size, state in s.execute(
                select(File.stage_id, File.file_did, File.size_bytes, File.state)
                .where(File.workflow_id == workflow_id)
                .order_by(File.file_did)
            ).all()
        ]


def events() -> list[tuple[int, int, int]]:
    with transaction() as s:
        return [tuple(r) for r in s.execute(  # type: ignore[misc]
            select(Event.event_type_id, Event.workflow_id, Event.stage_id).order_by(Event.event_id)
        ).all()]


def workflow(workflow_id: int) -> Workflow:
    with transaction() as s:
        wf = s.get(Workflow, workflow_id)
        assert wf is not None
        return wf


def ledger_ops() -> list[tuple[str, str, str]]:
    return [(r.service, r.operation, r.outcome) for r in LEDGER.snapshot()]


def seed_metacat_dataset(metacat: MetaCat, sizes: list[int]) -> tuple[str, list[str]]:
    ns = unique("ns")
    for i, size in enumerate(sizes):
        metacat.double.seed_file(ns, f"f{i}.root", size, datasets=[f"{ns}:ds"])
    return f"files from {ns}:ds", [f"{ns}:f{i}.root" for i in range(len(sizes))]


# --------------------------------------------------------------------------- pure parts


def test_mql_forms() -> None:
    assert parse_input_source("rucio-dataset sc:ds").kind == "rucio-dataset"
    dataset = parse_input_source("rucio-dataset sc:ds")
    assert (dataset.scope, dataset.name) == ("sc", "ds")
    assert parse_input_source("  monte-carlo   7 ").count == 7
    assert parse_input_source("files from ns:ds where x > 1").kind == "metacat"
    assert parse_input_source("rucio-dataset a:b extra").kind == "metacat"  # only the exact two-word form
    for bad in ("rucio-dataset nocolon", "rucio-dataset a:b:c", "monte-carlo many", "monte-carlo -1"):
        with pytest.raises(ValueError):
            parse_input_source(bad)


def test_refind_schedule_follows_upstream_with_null_for_never() -> None:
    end = NOW + dt.timedelta(hours=2)
    assert next_refind_time(now=NOW, refind_seconds=3600, refind_end_time=None, refind_next_time=NOW) is None
    in_an_hour = next_refind_time(now=NOW, refind_seconds=3600, refind_end_time=end, refind_next_time=NOW)
    assert in_an_hour == NOW + dt.timedelta(hours=1)
    late = NOW + dt.timedelta(minutes=90)
    assert next_refind_time(now=late, refind_seconds=3600, refind_end_time=end, refind_next_time=late) == end  # capped
    assert next_refind_time(now=end, refind_seconds=3600, refind_end_time=end, refind_next_time=end) is None  # final
    assert next_refind_time(now=NOW, refind_seconds=0, refind_end_time=end, refind_next_time=NOW) is None


# --------------------------------------------------------------------------- MetaCat


def test_metacat_query_is_sent_once_not_three_times_upstream_bug(
    db: Engine, rows: Rows, metacat: MetaCat, rucio: SpyRucio
) -> None:
    """[BUG] upstream repeats a successful MetaCat query 3 times; exactly one is sent here."""
    mql, dids = seed_metacat_dataset(metacat, [100, 200, 300])
    wid = rows.workflow(mql=mql, refind_next_time=DUE)

    report = find_files(metacat.adapter, rucio, now=NOW)

    assert files_of(wid) == [(1, dids[0], 100, "finding"), (1, dids[1], 200, "finding"), (1, dids[2], 300, "finding")]
    assert [(method, status) for method, _, status in metacat.queries()] == [("POST", 200)]
    assert ledger_ops() == [("metacat", "query", "ok")]
    assert events() == [(201, wid, 1)]  # one event per find, as upstream
    assert workflow(wid).refind_next_time is None  # no refind end: that was the only find
    assert report.counts["files_inserted"] == 3 and report.errors == []
    assert report.rows == [{"workflow_id": wid, "source": "metacat", "found": 3, "inserted": 3,
                            "outcome": "found", "refind_next_time": None}]


def test_a_transient_metacat_failure_is_retried_and_only_that_is_repeated(
    db: Engine, rows: Rows, metacat: MetaCat, rucio: SpyRucio
) -> None:
    # 500, not 503: the MetaCat client itself silently re-sends 502/503/504 answers
    mql, dids = seed_metacat_dataset(metacat, [1])
    wid = rows.workflow(mql=mql, refind_next_time=DUE)
    metacat.double.fail_next("query", 500)

    report = find_files(metacat.adapter, rucio, now=NOW)

    assert [status for *_, status in metacat.queries()] == [500, 200]
    attempts = [(r.operation, r.attempt, r.outcome) for r in LEDGER.snapshot()]
    assert attempts == [("query", 1, "error"), ("query", 2, "ok")]
    assert [f[1] for f in files_of(wid)] == dids and report.errors == []


def test_rejected_mql_is_reported_once_and_the_other_workflows_are_still_found(
    db: Engine, rows: Rows, metacat: MetaCat, rucio: SpyRucio
) -> None:
    bad = rows.workflow(mql="files from nowhere:ds where", refind_next_time=DUE)  # MetaCat answers 400
    mc = rows.workflow(mql="monte-carlo 1", refind_next_time=DUE)
    rows.montecarlo()

    report = find_files(metacat.adapter, rucio, now=NOW)

    assert files_of(bad) == []
    assert workflow(bad).refind_next_time == DUE and workflow(bad).state == WorkflowState.RUNNING
    assert len(report.errors) == 1
    assert report.errors[0].startswith(f"workflow {bad}: ") and "BadRequestError" in report.errors[0]
    assert [status for *_, status in metacat.queries()] == [400]  # a 400 is final: not retried
    assert len(files_of(mc)) == 1


def test_metacat_down_leaves_the_workflow_due_for_the_next_run(
    db: Engine, rows: Rows, metacat: MetaCat, rucio: SpyRucio
) -> None:
    mql, dids = seed_metacat_dataset(metacat, [5])
    wid = rows.workflow(mql=mql, refind_next_time=DUE)
    metacat.double.fail_next("query", 500, count=3)

    failed = find_files(metacat.adapter, rucio, now=NOW)

    assert [status for *_, status in metacat.queries()] == [500, 500, 500]
    assert files_of(wid) == [] and events() == [] and workflow(wid).refind_next_time == DUE
    assert len(failed.errors) == 1 and "after 3 attempt(s)" in failed.errors[0]

    recovered = find_files(metacat.adapter, rucio, now=NOW)
    assert files_of(wid) == [(1, dids[0], 5, "finding")] and recovered.errors == []


def test_over_quota_workflow_is_finished_and_nothing_is_inserted(
    db: Engine, rows: Rows, metacat: MetaCat, rucio: SpyRucio
) -> None:
    mql, _ = seed_metacat_dataset(metacat, [1, 2, 3])
    with transaction() as s:
        quota = NamedQuota(quota_name=unique("q"), max_files_per_workflow=2)
        s.add(quota)
        s.flush()
        scope = Scope(scope_name=unique("sc"), quota_id=quota.quota_id)
        s.add(scope)
        s.flush()
        scope_id = scope.scope_id
    wid = rows.workflow(mql=mql, refind_next_time=DUE, scope_id=scope_id,
                        refind_seconds=60, refind_end_time=NOW + dt.timedelta(days=1))
    within = rows.workflow(mql="monte-carlo 2", refind_next_time=DUE, scope_id=scope_id)  # 2 is not over 2
    rows.montecarlo()

    report = find_files(metacat.adapter, rucio, now=NOW)

    wf = workflow(wid)
    assert wf.state == WorkflowState.FINISHED and wf.finished == NOW and wf.refind_next_time is None
    assert "exceeded" in wf.state_message and "3 files" in wf.state_message
    assert files_of(wid) == []
    assert events() == [(109, wid, 0), (201, within, 1)]
    assert len(files_of(within)) == 2 and workflow(within).state == WorkflowState.RUNNING
    assert report.counts["exceeded"] == 1


def test_refind_adds_only_new_files_and_a_repeat_changes_nothing(
    db: Engine, rows: Rows, metacat: MetaCat, rucio: SpyRucio
) -> None:
    mql, dids = seed_metacat_dataset(metacat, [10, 20])
    end = NOW + dt.timedelta(hours=2)
    wid = rows.workflow(mql=mql, refind_next_time=DUE, refind_seconds=3600, refind_end_time=end)

    find_files(metacat.adapter, rucio, now=NOW)
    assert workflow(wid).refind_next_time == NOW + dt.timedelta(hours=1)
    assert find_files(metacat.adapter, rucio, now=NOW).counts["workflows_found"] == 0  # not due yet

    ns = dids[0].split(":")[0]
    metacat.double.seed_file(ns, "late.root", 30, datasets=[f"{ns}:ds"])
    later = NOW + dt.timedelta(hours=1, seconds=1)
    second = find_files(metacat.adapter, rucio, now=later)
    assert second.counts["files_inserted"] == 1
    assert [f[1] for f in files_of(wid)] == sorted([*dids, f"{ns}:late.root"])
    assert workflow(wid).refind_next_time == end  # capped at the end: one final find there

    before_files, before_events = files_of(wid), events()
    final = find_files(metacat.adapter, rucio, now=end + dt.timedelta(seconds=1))
    assert final.counts["files_inserted"] == 0
    assert files_of(wid) == before_files and events() == before_events  # no new rows, no new event
    assert workflow(wid).refind_next_time is None
    assert len(metacat.queries()) == 3


def test_workflows_not_due_are_not_queried(db: Engine, rows: Rows, metacat: MetaCat, rucio: SpyRucio) -> None:
    mql, _ = seed_metacat_dataset(metacat, [1])
    rows.workflow(mql=mql, refind_next_time=None)  # never again
    rows.workflow(mql=mql, refind_next_time=NOW + dt.timedelta(seconds=1))  # not yet
    rows.workflow(WorkflowState.PAUSED, mql=mql, refind_next_time=DUE)

    report = find_files(metacat.adapter, rucio, now=NOW)

    assert metacat.queries() == [] and LEDGER.snapshot() == []
    assert report.rows == [] and events() == []


# --------------------------------------------------------------------------- Rucio dataset


def test_rucio_dataset_form_lists_the_dataset_files_from_rucio(
    db: Engine, rows: Rows, metacat: MetaCat, rucio: SpyRucio, seed: RucioSeed
) -> None:
    rse = seed.rse()
    dids = seed.files(3, [rse], size=500)
    dataset = seed.dataset(dids)
    wid = rows.workflow(mql=f"rucio-dataset {dataset}", refind_next_time=DUE)

    report = find_files(metacat.adapter, rucio, now=NOW)

    assert files_of(wid) == sorted((1, did, 500 + i, "finding") for i, did in enumerate(dids))
    assert ledger_ops() == [("rucio", "list_files", "ok")]
    assert metacat.queries() == []
    assert events() == [(201, wid, 1)] and report.errors == []


def test_missing_rucio_dataset_is_reported_and_retried_next_run(
    db: Engine, rows: Rows, metacat: MetaCat, rucio: SpyRucio, seed: RucioSeed
) -> None:
    wid = rows.workflow(mql=f"rucio-dataset {seed.scope}:{unique('nods-')}", refind_next_time=DUE)

    report = find_files(metacat.adapter, rucio, now=NOW)

    assert files_of(wid) == [] and workflow(wid).refind_next_time == DUE
    assert len(report.errors) == 1 and "list_files" in report.errors[0]


# --------------------------------------------------------------------------- Monte Carlo


def test_monte_carlo_form_makes_counter_files_with_montecarlo_replicas(
    db: Engine, rows: Rows, metacat: MetaCat, rucio: SpyRucio
) -> None:
    rows.montecarlo()
    wid = rows.workflow(mql="monte-carlo 3", refind_next_time=DUE)

    find_files(metacat.adapter, rucio, now=NOW)

    names = ["monte-carlo-%06d-%06d" % (wid, i) for i in (1, 2, 3)]
    assert files_of(wid) == [(1, n, 0, "unallocated") for n in names]
    with transaction() as s:
        replicas = s.execute(
            select(File.file_did, Replica.rse_id, Replica.workflow_id, Replica.stage_id, Replica.wan_pfn,
                   Replica.lan_pfn, Replica.accessible_until)
            .join(File, File.file_id == Replica.file_id).order_by(File.file_did)
        ).all()
    assert [tuple(r) for r in replicas] == [
        (names[0], 1, wid, 1, "000001", "", None),
        (names[1], 1, wid, 1, "000002", "", None),
        (names[2], 1, wid, 1, "000003", "", None),
    ]
    assert LEDGER.snapshot() == [] and metacat.queries() == []  # no external call at all

    with transaction() as s:  # due again (as a refind would be): nothing new
        s.get(Workflow, wid).refind_next_time = DUE  # type: ignore[union-attr]
    again = find_files(metacat.adapter, rucio, now=NOW)
    assert again.counts["files_inserted"] == 0 and len(files_of(wid)) == 3
    with transaction() as s:
        assert len(s.execute(select(Replica.replica_id)).all()) == 3
    assert events() == [(201, wid, 1)]


def test_monte_carlo_without_the_montecarlo_storage_row_is_reported_not_half_done(
    db: Engine, rows: Rows, metacat: MetaCat, rucio: SpyRucio
) -> None:
    wid = rows.workflow(mql="monte-carlo 2", refind_next_time=DUE)

    report = find_files(metacat.adapter, rucio, now=NOW)

    assert files_of(wid) == [] and workflow(wid).refind_next_time == DUE
    assert len(report.errors) == 1 and "MONTECARLO" in report.errors[0]
