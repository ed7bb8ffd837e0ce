"""The wrapper-output flow end to end (reference §5.3-§5.9): real Prefect, the real Rucio server
with posix RSEs (the bytes land on disk), the MetaCat double and PostgreSQL."""

from __future__ import annotations

import tarfile
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from prefect.states import State
from sqlalchemy import select

from flows.wrapper_output.output import wrapper_output_flow
from justin_flows.adapters.metacat import MetaCatAdapter
from justin_flows.adapters.rucio import RucioAdapter
from justin_flows.db.engine import transaction
from justin_flows.db.models import ExternalCall
from justin_flows.domain.output_files import adler32_of
from justin_flows.ledger import LEDGER
from justin_flows.output.datasets import DatasetEnsurer, ensure_output_datasets
from justin_flows.output.files import catalogue_output_files, store_output_files
from justin_flows.output.job import load_output_job
from justin_flows.output.logs import build_logs_tgz, upload_logs
from justin_flows.output.results import record_results
from tests.output.conftest import (
    JobSetup,
    OutputGrid,
    Pattern,
    events,
    file_rows,
    job_row,
    number_files,
    output_details,
    rse_id,
    workflow_datasets,
)

pytestmark = pytest.mark.usefixtures("prefect_server")


def run(job: JobSetup) -> tuple[State[Any], dict[str, Any]]:
    job.write_allocation()
    state = wrapper_output_flow(workdir=str(job.workdir), return_state=True)
    result = state.result(raise_on_failure=False)
    assert isinstance(result, dict), state
    return state, result


def replicas(grid: OutputGrid, did: str) -> dict[str, list[str]]:
    scope, name = did.split(":")
    return {rse: pfns for e in grid.client.list_replicas([{"scope": scope, "name": name}]) for rse, pfns in e["rses"].items()}


def parents(grid: OutputGrid, did: str) -> set[str]:
    scope, name = did.split(":")
    return {f"{p['scope']}:{p['name']}" for p in grid.client.list_parent_dids(scope, name)}


def rules(grid: OutputGrid, did: str) -> list[tuple[str, int, float | None]]:
    """(rse expression, copies, lifetime seconds) of every rule on the DID."""
    scope, name = did.split(":")
    out = []
    for r in grid.client.list_replication_rules({"scope": scope, "name": name}):
        lifetime = (r["expires_at"] - r["created_at"]).total_seconds() if r["expires_at"] else None
        out.append((r["rse_expression"], r["copies"], lifetime))
    return out


def bytes_at(pfn: str) -> bytes:
    return Path(urlsplit(pfn).path).read_bytes()


def metacat_requests(grid: OutputGrid, since: int, route: str) -> list[int]:
    return [r.status for r in grid.metacat.requests[since:] if r.path.endswith("/" + route)]


def approx_lifetime(actual: float | None, expected: int) -> bool:
    return actual is not None and abs(actual - expected) < 120


# --------------------------------------------------------------------------- happy path


def test_happy_path_stores_every_output_and_a_rerun_changes_nothing(grid: OutputGrid) -> None:
    rse_a, rse_b = grid.rse(), grid.rse()
    p1 = Pattern(1, "*.root", lifetime_seconds=3 * 86400)
    p2 = Pattern(2, "*.hist", lifetime_seconds=86400, rse_expression=rse_a, for_next_stage=True)
    job = grid.job([p1, p2], [rse_a, rse_b])
    grid.logs_dataset_ready(rse_a)  # as updateLogsDatasets keeps it
    # another job of the stage already made pattern 2's overall dataset: it must be skipped
    grid.dataset_ready(job.overall(2))
    job.existing.append(job.overall(2))
    data = {"a.root": b"A" * 1000, "b.root": b"bee" * 77, "c.hist": b"histogram"}
    job.output("a.root", data["a.root"], {"metadata": {"Core.Run_Type": "test", "core.runs": [1, 2]},
                                          "parents": [{"did": "test:input-1"}]})
    job.output("b.root", data["b.root"])
    job.output("c.hist", data["c.hist"])
    grid.metacat.seed_file("test", "input-1", 10)
    seen = len(grid.metacat.requests)
    LEDGER.drain()

    started = time.perf_counter()
    state, result = run(job)
    first_seconds = time.perf_counter() - started
    assert state.is_completed(), state.message
    assert result["job_state"] == "finished" and result["abort_code"] is None
    calls = Counter(result["external_calls"])

    scope = job.scope
    dids = {name: f"{scope}:{name}" for name in data}
    pattern_of = {"a.root": 1, "b.root": 1, "c.hist": 2}
    # Rucio: one replica each, on the first RSE, with the real bytes, in exactly its three datasets
    for name, did in dids.items():
        got = replicas(grid, did)
        assert list(got) == [rse_a]
        assert bytes_at(got[rse_a][0]) == data[name]
        p = pattern_of[name]
        assert parents(grid, did) == {job.per_rse(p, rse_a), job.numbered(p), job.overall(p)}
        meta = grid.client.get_did(scope, name)
        assert (meta["bytes"], meta["adler32"]) == (len(data[name]), adler32_of(job.workspace / name))
    # rules: per-RSE (RSE, lifetime), numbered only with an RSE expression, overall none
    assert [(r[0], r[1]) for r in rules(grid, job.per_rse(1, rse_a))] == [(rse_a, 1)]
    assert approx_lifetime(rules(grid, job.per_rse(1, rse_a))[0][2], 3 * 86400)
    assert approx_lifetime(rules(grid, job.per_rse(2, rse_a))[0][2], 86400)
    assert rules(grid, job.numbered(1)) == []
    assert [(r[0], r[1]) for r in rules(grid, job.numbered(2))] == [(rse_a, 1)]
    assert rules(grid, job.overall(1)) == [] and rules(grid, job.overall(2)) == []
    assert replicas(grid, job.per_rse(1, rse_b)) == {}  # the second RSE was never needed

    # logs.tgz: real size and adler32 in MetaCat ([BUG] upstream declares 0), uploaded to RSE A
    tgz = job.workdir / job.tgz_name
    logs_did = f"justin-logs:{job.tgz_name}"
    with tarfile.open(tgz) as tar:
        assert tar.getnames() == [f"{job.tgz_name.removesuffix('.logs.tgz')}/jobscript.log"]
    logs_record = grid.metacat.get_file_record(logs_did)
    assert logs_record is not None
    assert (logs_record["size"], logs_record["checksums"]) == (tgz.stat().st_size, {"adler32": adler32_of(tgz)})
    assert {"namespace": "dune", "name": "all"} in logs_record["datasets"]
    assert bytes_at(replicas(grid, logs_did)[rse_a][0]) == tgz.read_bytes()
    logs_datasets = parents(grid, logs_did)
    assert len(logs_datasets) == 1 and logs_datasets.pop().endswith(f"-{rse_a}")

    # MetaCat: each file declared with size, checksum, merged metadata; confirmed; in its datasets
    for name, did in dids.items():
        record = grid.metacat.get_file_record(did)
        assert record is not None
        assert (record["size"], record["checksums"]) == (len(data[name]), {"adler32": adler32_of(job.workspace / name)})
        meta = record["metadata"]
        assert meta["dune.output_status"] == "confirmed"
        assert meta["dune.workflow"] == {"site_name": "UK_Test", "workflow_id": job.workflow_id, "stage_id": 1,
                                         "user": "someone@example.org", "hostname": "wn01.example.org",
                                         "jobscript_start": 1_700_000_000, "jobscript_finish": 1_700_000_100,
                                         "jobscript_real_seconds": 100.0, "jobscript_cpu_seconds": 90.0,
                                         "jobscript_max_rss_bytes": 1048576, "job_id": job.jobsub_id}
        p = pattern_of[name]
        for dataset in (job.per_rse(p, rse_a), job.numbered(p), job.overall(p), "dune:all"):
            assert grid.metacat.dataset_members(dataset).count(did) == 1, dataset
    a_meta = grid.metacat.get_file_record(dids["a.root"])["metadata"]  # type: ignore[index]
    assert (a_meta["core.run_type"], a_meta["core.runs"]) == ("test", [1, 2])
    assert len(grid.metacat.get_file_record(dids["a.root"])["parents"]) == 1  # type: ignore[index]
    per_rse_meta = grid.metacat.get_dataset_record(job.per_rse(1, rse_a))["metadata"]  # type: ignore[index]
    assert per_rse_meta["dune.workflow"]["pattern_id"] == 1 and per_rse_meta["dune.workflow"]["mql"]
    assert metacat_requests(grid, seen, "create_dataset").count(200) == 5  # not the skipped overall p2

    # database: files, events, datasets, counters, job
    assert file_rows(job.workflow_id) == [
        (0, dids["a.root"], "output", 1000, job.justin_job_id),
        (0, dids["b.root"], "output", 231, job.justin_job_id),
        (2, dids["c.hist"], "finding", 9, job.justin_job_id),
    ]
    assert job_row(job.justin_job_id) == {"job_state": "finished", "abort_code": None, "jobscript_exit": 0}
    for did, adler32, output_rse, seconds in output_details(job.workflow_id):
        assert adler32 == grid.client.get_did(*did.split(":"))["adler32"], did
        assert output_rse == rse_id(rse_a) and seconds is not None and seconds > 0, did
    evs = events(job.justin_job_id)
    assert [e[0] for e in evs] == [304, 404, 404, 404, 305]
    assert {e[2] for e in evs if e[0] == 404} == {rse_id(rse_a)} and all(e[3] > 0 for e in evs if e[0] == 404)
    assert workflow_datasets(job.workflow_id) == sorted(
        [job.per_rse(1, rse_a), job.per_rse(2, rse_a), job.numbered(1), job.numbered(2), job.overall(1),
         job.overall(2)]
    )
    assert number_files(job.workflow_id) == {1: 2, 2: 1}

    # external calls: attach once per dataset (upstream 3x), one MetaCat login for the run
    assert calls["rucio.attach_dids"] == 2 * 3
    assert calls["rucio.upload"] == 3 + 1
    assert calls["metacat.login"] == 1
    assert calls["metacat.add_files"] == 6  # one per dataset (2 per-RSE, 2 numbered, 2 overall), not per file
    print(f"\nhappy path: {len(data)} outputs in {first_seconds:.1f} s; calls {dict(calls)}")

    # a rerun of the finished job converges: no new row, event, rule, replica or declaration
    before = (file_rows(job.workflow_id), events(job.justin_job_id), workflow_datasets(job.workflow_id),
              number_files(job.workflow_id))
    all_rules = {d: rules(grid, d) for d in (job.per_rse(1, rse_a), job.per_rse(2, rse_a), job.numbered(2))}
    seen = len(grid.metacat.requests)
    state, result = run(job)
    assert state.is_completed(), state.message
    assert (file_rows(job.workflow_id), events(job.justin_job_id), workflow_datasets(job.workflow_id),
            number_files(job.workflow_id)) == before
    assert {d: rules(grid, d) for d in all_rules} == all_rules
    for name, did in dids.items():
        assert list(replicas(grid, did)) == [rse_a]
        assert grid.metacat.get_file_record(did)["metadata"]["dune.output_status"] == "confirmed"  # type: ignore[index]
        p = pattern_of[name]
        for dataset in (job.per_rse(p, rse_a), job.numbered(p), job.overall(p)):
            assert grid.metacat.dataset_members(dataset).count(did) == 1
    assert Counter(result["external_calls"])["rucio.upload"] == 0
    assert metacat_requests(grid, seen, "update_file") == []  # already confirmed: nothing rewritten


# --------------------------------------------------------------------------- RSE refusals


def ledger_rows(operation: str, service: str = "rucio") -> list[tuple[int, str, str | None]]:
    """(attempt, outcome, error) of every recorded attempt of ``operation`` (flushed by the flow)."""
    with transaction() as s:
        rows = s.execute(
            select(ExternalCall.attempt, ExternalCall.outcome, ExternalCall.error)
            .where(ExternalCall.service == service, ExternalCall.operation == operation)
            .order_by(ExternalCall.call_id)
        ).all()
    return [(r.attempt, r.outcome, r.error) for r in rows]


def block_writes(grid: OutputGrid, rse: str) -> None:
    grid.client.update_rse(rse, {"availability_write": False})


def test_first_rse_refuses_writes_so_the_second_is_used(grid: OutputGrid) -> None:
    rse_a, rse_b = grid.rse(), grid.rse()
    job = grid.job([Pattern(1, "*.root")], [rse_a, rse_b])
    for rse in (rse_a, rse_b):
        grid.logs_dataset_ready(rse)
    # A's per-RSE dataset exists already, so the upload itself meets the refusal
    grid.dataset_ready(job.per_rse(1, rse_a), rule_rse=rse_a, lifetime=86400)
    job.existing.append(job.per_rse(1, rse_a))
    block_writes(grid, rse_a)
    job.output("x.root", b"x" * 10)
    job.output("y.root", b"y" * 20)

    state, result = run(job)
    assert state.is_completed(), state.message
    for name in ("x.root", "y.root"):
        did = f"{job.scope}:{name}"
        assert list(replicas(grid, did)) == [rse_b]
        assert parents(grid, did) == {job.per_rse(1, rse_b), job.numbered(1), job.overall(1)}
    assert list(replicas(grid, f"justin-logs:{job.tgz_name}")) == [rse_b]
    uploads = ledger_rows("upload")
    refused = [u for u in uploads if u[1] == "error"]
    assert len(refused) == 3 and all(u[0] == 1 and "RSEWriteBlocked" in (u[2] or "") for u in refused)  # no retry
    assert [u[:2] for u in uploads if u[1] == "ok"] == [(1, "ok")] * 3
    assert {e[2] for e in events(job.justin_job_id) if e[0] == 404} == {rse_id(rse_b)}
    assert [r["rse"] for r in result["output_files"]] == [rse_b, rse_b]


def test_all_rses_refuse_so_the_job_fails_with_320_and_nothing_is_half_marked(grid: OutputGrid) -> None:
    from rucio.common.exception import DataIdentifierNotFound

    rse_a, rse_b = grid.rse(), grid.rse()
    job = grid.job([Pattern(1, "*.root")], [rse_a, rse_b])
    for rse in (rse_a, rse_b):
        grid.logs_dataset_ready(rse)  # so the logs still go somewhere
    grid.dataset_ready(job.per_rse(1, rse_a), rule_rse=rse_a, lifetime=86400)
    job.existing.append(job.per_rse(1, rse_a))
    block_writes(grid, rse_a)  # A: the upload is refused
    grid.client.set_local_account_limit("root", rse_b, 0)  # B: no quota for the per-RSE dataset's rule
    job.output("z.root", b"zzz")
    did = f"{job.scope}:z.root"

    state, result = run(job)
    assert state.is_failed()
    assert result["abort_code"] == 320 and result["job_state"] == "outputting_failed"
    assert rse_a in result["abort"] and rse_b in result["abort"]
    assert "RSEWriteBlocked" in result["abort"] and "InsufficientAccountLimit" in result["abort"]
    assert job_row(job.justin_job_id) == {"job_state": "outputting_failed", "abort_code": 320, "jobscript_exit": 0}
    assert [e[0] for e in events(job.justin_job_id)] == [304, 320]
    # nothing half-marked: the file stays recorded everywhere, is in no dataset, not in Rucio
    assert file_rows(job.workflow_id) == [(0, did, "recorded", 3, job.justin_job_id)]
    record = grid.metacat.get_file_record(did)
    assert record is not None and record["metadata"]["dune.output_status"] == "recorded"
    assert [d["name"] for d in record["datasets"]] == ["all"]
    assert grid.metacat.dataset_members(job.numbered(1)) == grid.metacat.dataset_members(job.overall(1)) == []
    with pytest.raises(DataIdentifierNotFound):
        grid.client.get_did(job.scope, "z.root")
    assert list(replicas(grid, f"justin-logs:{job.tgz_name}")) == [rse_b]  # the logs made it
    assert number_files(job.workflow_id) == {1: 0}


# --------------------------------------------------------------------------- MetaCat trouble


@pytest.mark.parametrize(
    ("route", "operation", "status"),
    [("declare_files", "declare_file", 503), ("add_files", "add_files", 502), ("update_file", "update_file", 504)],
)
def test_metacat_5xx_twice_then_success_is_exactly_three_attempts_with_backoff(
    grid: OutputGrid, route: str, operation: str, status: int
) -> None:
    rse = grid.rse()
    grid.logs_dataset_ready(rse)
    job = grid.job([Pattern(1, "*.root")], [rse])
    job.output("one.root", b"1")
    seen = len(grid.metacat.requests)
    grid.metacat.fail_next(route, status, 2)

    state, _ = run(job)
    assert state.is_completed(), state.message
    statuses = metacat_requests(grid, seen, route)
    assert statuses[:3] == [status, status, 200]
    assert statuses.count(status) == 2
    with transaction() as s:
        first = s.execute(
            select(ExternalCall.attempt, ExternalCall.outcome, ExternalCall.started_at)
            .where(ExternalCall.service == "metacat", ExternalCall.operation == operation)
            .order_by(ExternalCall.call_id).limit(3)
        ).all()
    assert [(r.attempt, r.outcome) for r in first] == [(1, "error"), (2, "error"), (3, "ok")]
    gaps = [(b.started_at - a.started_at).total_seconds() for a, b in zip(first, first[1:])]
    assert gaps[0] >= 0.02 and gaps[1] >= 0.04, f"retries must back off, not repeat at once: {gaps}"
    assert job_row(job.justin_job_id)["job_state"] == "finished"


def test_metacat_5xx_three_times_fails_the_job_after_exactly_three_attempts(grid: OutputGrid) -> None:
    rse = grid.rse()
    grid.logs_dataset_ready(rse)
    job = grid.job([Pattern(1, "*.root")], [rse])
    job.output("one.root", b"1")
    seen = len(grid.metacat.requests)
    grid.metacat.fail_next("declare_files", 503, 3)

    state, result = run(job)
    assert state.is_failed() and result["abort_code"] == 315
    assert metacat_requests(grid, seen, "declare_files") == [503, 503, 503]
    assert ledger_rows("upload") == []  # nothing uploaded after the logs failed in MetaCat
    assert job_row(job.justin_job_id) == {"job_state": "outputting_failed", "abort_code": 315, "jobscript_exit": 0}


# --------------------------------------------------------------------------- convergence


@pytest.mark.parametrize("crash_after", ["store", "catalogue"])
def test_rerun_after_a_crash_between_upload_and_confirm_converges_without_duplicates(
    grid: OutputGrid, adapters: tuple[RucioAdapter, MetaCatAdapter], crash_after: str
) -> None:
    rucio, metacat = adapters
    rse_a, rse_b = grid.rse(), grid.rse()
    for rse in (rse_a, rse_b):
        grid.logs_dataset_ready(rse)
    job = grid.job([Pattern(1, "*.root")], [rse_a, rse_b])
    job.output("f1.root", b"one")
    job.output("f2.root", b"two" * 9)
    block_writes(grid, rse_a)  # the first run lands on B

    # the crashed run: everything up to the uploads (and MetaCat datasets), then nothing
    out_job = load_output_job(job.workdir, job.allocation())
    known, marked = record_results(out_job)
    assert marked.abort is None
    ensurer = DatasetEnsurer(rucio, metacat, out_job.allocation.existing_dataset_dids | known)
    tgz, _ = build_logs_tgz(out_job)
    assert tgz is not None and upload_logs(rucio, metacat, out_job, tgz, ensurer).abort is None
    assert ensure_output_datasets(out_job, ensurer).abort is None
    stored, report = store_output_files(rucio, metacat, out_job, ensurer)
    assert report.abort is None and [s.rse for s in stored] == [rse_b, rse_b]
    if crash_after == "catalogue":
        assert catalogue_output_files(metacat, stored).abort is None
    LEDGER.drain()
    grid.client.update_rse(rse_a, {"availability_write": True})  # A works again: still no second copy

    state, result = run(job)
    assert state.is_completed(), state.message
    assert Counter(result["external_calls"])["rucio.upload"] == 0
    for name in ("f1.root", "f2.root"):
        did = f"{job.scope}:{name}"
        assert list(replicas(grid, did)) == [rse_b] and len(replicas(grid, did)[rse_b]) == 1
        assert parents(grid, did) == {job.per_rse(1, rse_b), job.numbered(1), job.overall(1)}
        for dataset in (job.per_rse(1, rse_b), job.numbered(1), job.overall(1), "dune:all"):
            assert grid.metacat.dataset_members(dataset).count(did) == 1
        assert grid.metacat.get_file_record(did)["metadata"]["dune.output_status"] == "confirmed"  # type: ignore[index]
    assert list(replicas(grid, f"justin-logs:{job.tgz_name}")) == [rse_b]
    assert [(r[0], r[1]) for r in rules(grid, job.per_rse(1, rse_b))] == [(rse_b, 1)]
    assert [f[2] for f in file_rows(job.workflow_id)] == ["output", "output"]
    assert [e[0] for e in events(job.justin_job_id)] == [304, 404, 404, 305]
    assert number_files(job.workflow_id) == {1: 2}


# --------------------------------------------------------------------------- names and exits


def test_unsafe_and_rucio_refused_names_are_refused_before_anything_is_declared(grid: OutputGrid) -> None:
    rse = grid.rse()
    grid.logs_dataset_ready(rse)
    job = grid.job([Pattern(1, "*.root")], [rse])
    odd = {
        "with space.root": "Rucio's DID name rule",
        "ünïcödé.root": "Rucio's DID name rule",
        "x;touch PWNED1.root": "Rucio's DID name rule",
        "$(touch PWNED2).root": "Rucio's DID name rule",
        "`touch PWNED3`|&.root": "Rucio's DID name rule",
        "L" * 250 + ".root": "Rucio allows at most 250",
        "new\nline.root": "control character U+000A",
    }
    for name in odd:
        job.output(name, b"odd")
    job.output("good.root", b"good")
    (job.workspace / "odd name;$(touch PWNED4).log").write_text("a log with shell characters in its name\n")
    seen = len(grid.metacat.requests)

    state, result = run(job)
    assert state.is_failed() and result["abort_code"] == 318
    assert f"{len(odd)} output file(s) refused, none stored" in result["abort"]
    for name, reason in odd.items():
        assert f"{name!r} (pattern 1): " in result["abort"] and reason in result["abort"]
    assert job_row(job.justin_job_id) == {"job_state": "outputting_failed", "abort_code": 318, "jobscript_exit": 0}
    assert file_rows(job.workflow_id) == []
    assert metacat_requests(grid, seen, "declare_files") == [200]  # the logs.tgz only
    assert grid.metacat.get_file_record(f"{job.scope}:good.root") is None
    with tarfile.open(job.workdir / job.tgz_name) as tar:  # archived as named, by tarfile
        assert any(n.endswith("/odd name;$(touch PWNED4).log") for n in tar.getnames())
    for where in (job.workdir, Path.cwd(), grid.base):
        assert not list(where.rglob("PWNED*")), "a name reached a shell"


def test_jobscript_error_uploads_the_logs_then_aborts_324(grid: OutputGrid) -> None:
    rse = grid.rse()
    grid.logs_dataset_ready(rse)
    job = grid.job([Pattern(1, "*.root")], [rse], jobscript_exit=2)
    job.output("partial.root", b"half")

    state, result = run(job)
    assert state.is_failed() and result["abort_code"] == 324
    assert job_row(job.justin_job_id) == {"job_state": "jobscript_error", "abort_code": 324, "jobscript_exit": 2}
    assert [e[0] for e in events(job.justin_job_id)] == [304, 324]
    assert list(replicas(grid, f"justin-logs:{job.tgz_name}")) == [rse]
    assert grid.metacat.get_file_record(f"{job.scope}:partial.root") is None
    assert file_rows(job.workflow_id) == []


# --------------------------------------------------------------------------- external calls


UPSTREAM_PER_FILE = {  # reference §5.9, for one more output file (datasets existing, first RSE works)
    "rucio.upload": 1, "rucio.attach_dids": 6, "rucio.list_replicas": 1, "rucio.list_parent_dids": 1,
    "metacat.declare_file": 1, "metacat.add_files": 3, "metacat.update_file": 2, "metacat.login": 6,
}


def test_external_calls_per_output_file_from_the_ledger(grid: OutputGrid) -> None:
    rse = grid.rse()
    grid.logs_dataset_ready(rse)
    counts = {}
    for n in (1, 4):
        job = grid.job([Pattern(1, "*.root")], [rse])
        for did, rule in ((job.per_rse(1, rse), rse), (job.numbered(1), None), (job.overall(1), None)):
            grid.dataset_ready(did, rule_rse=rule, lifetime=86400 if rule else None)
            job.existing.append(did)
        for i in range(n):
            job.output(f"n{n}f{i}.root", b"%d" % i)
        state, result = run(job)
        assert state.is_completed(), state.message
        counts[n] = Counter(result["external_calls"])
    per_file = {op: (counts[4][op] - counts[1][op]) / 3 for op in sorted(set(counts[4]) | set(counts[1]))}
    fixed = {op: counts[1][op] - per_file[op] for op in per_file}
    assert per_file == {
        "metacat.add_files": 0.0, "metacat.declare_file": 1.0, "metacat.get_file": 0.0, "metacat.login": 0.0,
        "metacat.update_file": 2.0, "rucio.attach_dids": 2.0, "rucio.get_did": 0.0, "rucio.list_parent_dids": 1.0,
        "rucio.list_replicas": 1.0, "rucio.upload": 1.0,
    }
    assert fixed == {
        "metacat.add_files": 3.0, "metacat.declare_file": 1.0, "metacat.get_file": 1.0, "metacat.login": 1.0,
        "metacat.update_file": 0.0, "rucio.attach_dids": 0.0, "rucio.get_did": 1.0, "rucio.list_parent_dids": 1.0,
        "rucio.list_replicas": 1.0, "rucio.upload": 1.0,
    }
    ours, upstream = sum(per_file.values()), sum(UPSTREAM_PER_FILE.values())
    print(f"\nper output file: ours {ours:.0f} calls {per_file}\n  upstream {upstream} {UPSTREAM_PER_FILE}"
          f"\nper job: ours {fixed}")
