"""findReplicas against PostgreSQL and the real Rucio server.

The test RSEs offer the ``root`` scheme (xrootd protocol registrations; no bytes are ever
read), so the function runs with upstream's default ``schemes=['root']``. One test shows
that a posix RSE (scheme ``file`` only, like the sandbox RSEs) needs ``schemes`` to say so.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import Engine, select

from justin_flows.db.engine import transaction
from justin_flows.db.models import File, FileState, Replica, WorkflowState
from justin_flows.finder.replicas import NEEDS_PIN, find_replicas
from justin_flows.ledger import LEDGER
from justin_flows.testing.rucio_server import RucioServer
from tests.finder.conftest import Rows, RucioSeed, SpyRucio

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def file_states() -> dict[str, str]:
    with transaction() as s:
        return {did: state.value for did, state in s.execute(select(File.file_did, File.state)).all()}


def replica_rows() -> list[tuple[Any, ...]]:
    with transaction() as s:
        return sorted(
            tuple(r)
            for r in s.execute(
                select(File.file_did, Replica.rse_id, Replica.workflow_id, Replica.stage_id,
                       Replica.wan_pfn, Replica.lan_pfn, Replica.accessible_until)
                .join(File, File.file_id == Replica.file_id)
            ).all()
        )


def running_stage(rows: Rows, priority: int = 50, stage_id: int = 1) -> int:
    wid = rows.workflow(WorkflowState.RUNNING)
    rows.stage(wid, stage_id, priority)
    return wid


def test_replicas_are_looked_up_in_chunks_one_call_per_chunk_per_domain(
    db: Engine, rows: Rows, rucio: SpyRucio, seed: RucioSeed
) -> None:
    rse = seed.rse()
    rse_id = rows.storage(rse)
    dids = seed.files(5, [rse])
    wid = running_stage(rows)
    rows.finding(wid, dids)

    report = find_replicas(rucio, chunk_size=2)

    calls = sorted((domain or "", len(chunk)) for chunk, domain in rucio.replica_calls)
    assert calls == [("lan", 1), ("lan", 2), ("lan", 2), ("wan", 1), ("wan", 2), ("wan", 2)]
    assert sorted(d for chunk, dom in rucio.replica_calls if dom == "wan" for d in chunk) == sorted(dids)
    assert [(r.operation, r.outcome) for r in LEDGER.snapshot()] == [("list_replicas", "ok")] * 6
    assert file_states() == {d: "unallocated" for d in dids}
    assert replica_rows() == sorted((d, rse_id, wid, 1, seed.pfn(rse, d), "", None) for d in dids)
    assert report.counts["chunks"] == 3 and report.counts["replicas_recorded"] == 5 and report.errors == []
    assert report.rows == [
        {"workflow_id": wid, "stage_id": 1, "files": 5, "unallocated": 5, "notfound": 0, "replicas": 5}
    ]


def test_replica_rows_carry_wan_and_lan_pfns_and_pin_needs(
    db: Engine, rows: Rows, rucio: SpyRucio, seed: RucioSeed
) -> None:
    same, split, pinned = seed.rse(), seed.rse("root-split"), seed.rse()
    same_id, split_id = rows.storage(same), rows.storage(split)
    pinned_id = rows.storage(pinned, needs_pin=True)
    [did] = seed.files(1, [same, split, pinned])
    wid = running_stage(rows, stage_id=2)
    rows.finding(wid, [did], stage_id=2)

    find_replicas(rucio)

    assert replica_rows() == sorted([
        (did, same_id, wid, 2, seed.pfn(same, did), "", None),  # LAN PFN equal to the WAN one: ''
        (did, split_id, wid, 2, seed.pfn(split, did, "wan"), seed.pfn(split, did, "lan"), None),
        (did, pinned_id, wid, 2, seed.pfn(pinned, did), "", NEEDS_PIN),  # epoch: pin before use
    ])
    assert seed.pfn(split, did, "wan") != seed.pfn(split, did, "lan")
    assert NEEDS_PIN == EPOCH
    assert file_states() == {did: "unallocated"}


def test_unusable_replicas_are_ignored_and_files_without_any_become_notfound(
    db: Engine, rows: Rows, rucio: SpyRucio, seed: RucioSeed
) -> None:
    good, retired, unknown, tape = seed.rse(), seed.rse(), seed.rse(), seed.rse(rse_type="TAPE")
    good_id = rows.storage(good)
    rows.storage(retired, decommissioned=True)
    rows.storage(tape)  # known and in service, but tape
    on_retired, on_unknown, on_tape = (seed.files(1, [r])[0] for r in (retired, unknown, tape))
    [on_retired_and_good] = seed.files(1, [retired, good])
    not_in_rucio = f"{seed.scope}:never-registered"
    wid = running_stage(rows)
    rows.finding(wid, [on_retired, on_unknown, on_tape, on_retired_and_good, not_in_rucio])

    report = find_replicas(rucio)

    assert file_states() == {
        on_retired: "notfound", on_unknown: "notfound", on_tape: "notfound", not_in_rucio: "notfound",
        on_retired_and_good: "unallocated",
    }
    assert replica_rows() == [(on_retired_and_good, good_id, wid, 1, seed.pfn(good, on_retired_and_good), "", None)]
    assert report.counts["pfns_ignored_not_disk"] == 1
    assert report.counts["pfns_ignored_unknown_or_decommissioned_rse"] == 3


def test_a_did_rucio_refuses_is_isolated_and_does_not_sink_its_chunk(
    db: Engine, rows: Rows, rucio: SpyRucio, seed: RucioSeed
) -> None:
    rse = seed.rse()
    rse_id = rows.storage(rse)
    good = seed.files(2, [rse])
    refused = f"{seed.scope}:"  # an empty name makes Rucio reject the whole request
    wid = running_stage(rows)
    rows.finding(wid, [*good, refused])

    report = find_replicas(rucio, chunk_size=3)

    assert file_states() == {good[0]: "unallocated", good[1]: "unallocated", refused: "notfound"}
    assert replica_rows() == sorted((d, rse_id, wid, 1, seed.pfn(rse, d), "", None) for d in good)
    assert len(report.errors) == 1 and repr(refused) in report.errors[0] and "InvalidObject" in report.errors[0]
    # [g1 g2 bad] refused -> [g1] ok, [g2 bad] refused -> [g2] ok, [bad] refused: never retried
    outcomes = sorted((r.operation, r.attempt, r.outcome) for r in LEDGER.snapshot())
    assert outcomes == sorted([("list_replicas", 1, "error")] * 3 + [("list_replicas", 1, "ok")] * 4)


def test_a_tape_rse_named_as_always_kept_counts_and_is_marked_for_pinning(
    db: Engine, rows: Rows, rucio: SpyRucio, seed: RucioSeed
) -> None:
    """Upstream keeps FNAL_DCACHE whatever its type; the name is a parameter here."""
    tape = seed.rse(rse_type="TAPE")
    tape_id = rows.storage(tape, needs_pin=True)
    [did] = seed.files(1, [tape])
    wid = running_stage(rows)
    rows.finding(wid, [did])

    find_replicas(rucio, always_kept_rses=[tape])

    assert replica_rows() == [(did, tape_id, wid, 1, seed.pfn(tape, did), "", EPOCH)]
    assert file_states() == {did: "unallocated"}


def test_posix_rse_offers_no_root_pfn_so_its_files_need_the_file_scheme(
    db: Engine, rows: Rows, rucio: SpyRucio, seed: RucioSeed
) -> None:
    posix = seed.rse("posix")
    posix_id = rows.storage(posix)
    first, second = seed.files(2, [posix])
    wid = running_stage(rows)
    rows.finding(wid, [first])

    find_replicas(rucio)  # upstream's default: root only
    assert file_states() == {first: "notfound"} and replica_rows() == []

    rows.finding(wid, [second])
    find_replicas(rucio, schemes=["root", "file"])
    assert file_states() == {first: "notfound", second: "unallocated"}
    assert replica_rows() == [(second, posix_id, wid, 1, seed.pfn(posix, second), "", None)]
    assert seed.pfn(posix, second).startswith("file://localhost/")


def test_higher_priority_stages_go_first_within_the_per_run_file_cap(
    db: Engine, rows: Rows, rucio: SpyRucio, seed: RucioSeed
) -> None:
    rse = seed.rse()
    rows.storage(rse)
    low_dids, high_dids = seed.files(2, [rse]), seed.files(2, [rse])
    low, high = running_stage(rows, priority=10), running_stage(rows, priority=90)
    rows.finding(low, low_dids)
    rows.finding(high, high_dids)

    first = find_replicas(rucio, max_files=2)
    assert file_states() == {**{d: "finding" for d in low_dids}, **{d: "unallocated" for d in high_dids}}
    assert [r["workflow_id"] for r in first.rows] == [high]

    second = find_replicas(rucio, max_files=2)
    assert set(file_states().values()) == {"unallocated"}
    assert [r["workflow_id"] for r in second.rows] == [low]
    assert len(rucio.replica_calls) == 4  # one call per domain per run


def test_second_run_calls_nothing_and_changes_nothing(
    db: Engine, rows: Rows, rucio: SpyRucio, seed: RucioSeed
) -> None:
    rse = seed.rse()
    rows.storage(rse)
    dids = seed.files(2, [rse])
    wid = running_stage(rows)
    rows.finding(wid, [*dids, f"{seed.scope}:absent"])
    find_replicas(rucio)
    before = (file_states(), replica_rows())
    calls = len(rucio.replica_calls)

    again = find_replicas(rucio)

    assert (file_states(), replica_rows()) == before
    assert len(rucio.replica_calls) == calls and again.counts == {}


def test_only_running_workflows_scope_name_dids_are_looked_up(
    db: Engine, rows: Rows, rucio: SpyRucio, seed: RucioSeed
) -> None:
    rse = seed.rse()
    rows.storage(rse)
    [paused_did] = seed.files(1, [rse])
    paused = rows.workflow(WorkflowState.PAUSED)
    rows.stage(paused)
    rows.finding(paused, [paused_did])
    running = running_stage(rows)
    rows.finding(running, ["no-scope-in-this-did"])

    report = find_replicas(rucio)

    assert rucio.replica_calls == [] and report.counts == {}
    assert file_states() == {paused_did: "finding", "no-scope-in-this-did": "finding"}


def test_bad_parameters_are_refused(db: Engine, rucio: SpyRucio) -> None:
    with pytest.raises(ValueError):
        find_replicas(rucio, chunk_size=0)
    with pytest.raises(ValueError):
        find_replicas(rucio, max_files=0)


def test_rucio_down_leaves_files_in_finding_and_reports_the_chunk(
    db: Engine, rows: Rows, rucio: SpyRucio, seed: RucioSeed, stopped_rucio: RucioServer
) -> None:
    wid = running_stage(rows)
    dids = [f"{seed.scope}:a", f"{seed.scope}:b"]
    rows.finding(wid, dids)

    report = find_replicas(rucio)

    assert file_states() == {d: FileState.FINDING.value for d in dids} and replica_rows() == []
    assert len(report.errors) == 1 and f"{seed.scope}:a ... {seed.scope}:b" in report.errors[0]
    assert report.counts["chunks_failed"] == 1
