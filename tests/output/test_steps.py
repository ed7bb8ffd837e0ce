"""The output-phase steps one by one, without Prefect, against the real Rucio server, the MetaCat
double and PostgreSQL: the failure paths the flow tests do not reach."""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Any

import pytest
from rucio.client import Client
from rucio.common.exception import DataIdentifierNotFound
from sqlalchemy import insert

from justin_flows.adapters.metacat import MetaCatAdapter
from justin_flows.adapters.rucio import RucioAdapter, UploadResult
from justin_flows.db.engine import transaction
from justin_flows.db.models import File, FileState, JobState
from justin_flows.domain.output_files import adler32_of
from justin_flows.output.datasets import DatasetEnsurer, DatasetError, ensure_output_datasets
from justin_flows.output.files import store_output_files
from justin_flows.output.job import Abort, load_output_job
from justin_flows.output.logs import build_logs_tgz, upload_logs
from justin_flows.output.results import OutputOutcome, confirm_results, record_results
from tests.output.conftest import JobSetup, OutputGrid, Pattern, events, job_row

Adapters = tuple[RucioAdapter, MetaCatAdapter]


def requests_to(grid: OutputGrid, since: int, route: str) -> list[int]:
    return [r.status for r in grid.metacat.requests[since:] if r.path.endswith("/" + route)]


def ready(job: JobSetup, adapters: Adapters) -> tuple[Any, DatasetEnsurer]:
    """The job loaded and marked outputting, with a dataset ensurer (as the flow's first steps)."""
    out = load_output_job(job.workdir, job.allocation())
    known, report = record_results(out)
    assert report.abort is None, report.errors
    return out, DatasetEnsurer(*adapters, out.allocation.existing_dataset_dids | known)


# --------------------------------------------------------------------------- logs.tgz


def test_logs_tgz_entries_sit_under_the_jobsub_prefix_and_a_rerun_reuses_the_archive(grid: OutputGrid) -> None:
    job = grid.job([Pattern(1, "*.root")], [grid.rse()])
    (job.workspace / "heartbeats.log").write_text("beat\n")
    (job.workspace / "not-a-log.txt").write_text("no\n")
    job_ad = job.workdir / "job.ad"
    job_ad.write_text("ClusterId = 1\n")
    out = load_output_job(job.workdir, job.allocation())
    tgz, report = build_logs_tgz(out, [job_ad])
    assert tgz is not None and report.abort is None
    prefix = job.tgz_name.removesuffix(".logs.tgz")
    with tarfile.open(tgz.path) as tar:
        assert tar.getnames() == [f"{prefix}/heartbeats.log", f"{prefix}/jobscript.log", f"{prefix}/job.ad"]
        assert tar.extractfile(f"{prefix}/job.ad").read() == b"ClusterId = 1\n"  # type: ignore[union-attr]
    assert tgz.path.parent == job.workdir  # outside the workspace: no output pattern can pick it up
    assert (tgz.size, tgz.adler32) == (tgz.path.stat().st_size, adler32_of(tgz.path))
    (job.workspace / "jobscript.log").write_text("it grew since\n")
    again, report = build_logs_tgz(out, [job_ad])
    assert again is not None and again.reused and again.adler32 == tgz.adler32


def test_no_output_rses_is_abort_316_not_a_silent_skip(grid: OutputGrid, adapters: Adapters) -> None:
    """[BUG] fixed: upstream skips the logs upload silently when there is no output RSE."""
    job = grid.job([Pattern(1, "*.root")], [])
    out, ensurer = ready(job, adapters)
    tgz, _ = build_logs_tgz(out)
    assert tgz is not None
    seen = len(grid.metacat.requests)
    report = upload_logs(*adapters, out, tgz, ensurer)
    assert report.abort is not None and report.abort.code == 316
    assert "names no output RSEs" in report.abort.message
    assert grid.metacat.requests[seen:] == []


def test_logs_tgz_is_declared_with_its_real_size_and_adler32_not_0_bug_fixed(grid: OutputGrid, adapters: Adapters) -> None:
    """[BUG] fixed: upstream declares logs.tgz with size 0 and no checksum."""
    rse = grid.rse()
    job = grid.job([Pattern(1, "*.root")], [rse])
    out, ensurer = ready(job, adapters)
    tgz, _ = build_logs_tgz(out)
    assert tgz is not None
    report = upload_logs(*adapters, out, tgz, ensurer, now=1_710_000_000)
    assert report.abort is None, report.errors
    record = grid.metacat.get_file_record(tgz.did)
    assert record is not None and record["size"] == tgz.size > 0
    assert record["checksums"] == {"adler32": tgz.adler32}
    # the logs dataset was missing (no updateLogsDatasets run): made with its 4,000,000 s rule
    rules = list(grid.client.list_replication_rules({"scope": "justin-logs", "name": f"logstgz-1710000000-{rse}"}))
    assert [(r["rse_expression"], r["copies"]) for r in rules] == [(rse, 1)]
    assert report.rows[0]["rse"] == rse and report.rows[0]["upload"] == "uploaded"


# --------------------------------------------------------------------------- silent failures and conflicts


class ReplicaLosingRucio(RucioAdapter):
    """Real Rucio, but every upload's replica turns UNAVAILABLE right after the upload returns:
    the "upload succeeded, no replica" case upstream meant to catch with abort 328."""

    def upload(self, path: Path, **kwargs: Any) -> UploadResult:
        how = super().upload(path, **kwargs)
        Client().update_replicas_states(kwargs["rse"], [{"scope": kwargs["scope"], "name": kwargs["name"],
                                                          "state": "U"}])
        return how


def test_an_upload_without_a_replica_is_abort_328_not_success(grid: OutputGrid, adapters: Adapters) -> None:
    """[BUG] fixed: upstream's 96/97/98 check compares os.system()'s raw status and never fires."""
    rse_a, rse_b = grid.rse(), grid.rse()
    job = grid.job([Pattern(1, "*.root")], [rse_a, rse_b])
    job.output("lost.root", b"gone")
    out, ensurer = ready(job, adapters)
    losing = ReplicaLosingRucio()
    ensurer.rucio = losing
    assert ensure_output_datasets(out, ensurer).abort is None
    stored, report = store_output_files(losing, adapters[1], out, ensurer)
    assert report.abort is not None and report.abort.code == 328 and report.abort.rse == rse_a
    assert "Rucio lists no AVAILABLE replica there" in report.abort.message
    assert stored[0].stored is False
    assert list(grid.client.list_replicas([{"scope": job.scope, "name": "lost.root"}]))[0]["rses"] == {}
    # at once: no second replica scattered over the next RSE
    everywhere = list(grid.client.list_replicas([{"scope": job.scope, "name": "lost.root"}], all_states=True))
    assert everywhere[0]["states"] == {rse_a: "UNAVAILABLE"}


def test_a_file_declared_before_with_other_bytes_is_abort_319_and_not_overwritten(
    grid: OutputGrid, adapters: Adapters
) -> None:
    rse = grid.rse()
    job = grid.job([Pattern(1, "*.root")], [rse])
    job.output("clash.root", b"these bytes")
    grid.metacat.seed_file(job.scope, "clash.root", 3, {"core.x": 1}, checksums={"adler32": "00000001"})
    out, ensurer = ready(job, adapters)
    assert ensure_output_datasets(out, ensurer).abort is None
    stored, report = store_output_files(*adapters, out, ensurer)
    assert report.abort is not None and report.abort.code == 319
    assert "already declared in MetaCat with 3 bytes / adler32 00000001" in report.abort.message
    record = grid.metacat.get_file_record(f"{job.scope}:clash.root")
    assert record is not None and (record["size"], record["metadata"]) == (3, {"core.x": 1})
    with pytest.raises(DataIdentifierNotFound):
        grid.client.get_did(job.scope, "clash.root")


def test_an_unreadable_metadata_file_is_abort_318_before_anything_is_declared(
    grid: OutputGrid, adapters: Adapters
) -> None:
    job = grid.job([Pattern(1, "*.root")], [grid.rse()])
    job.output("meta.root", b"m")
    (job.workspace / "meta.root.json").write_text("{not json")
    out, ensurer = ready(job, adapters)
    seen = len(grid.metacat.requests)
    _, report = store_output_files(*adapters, out, ensurer)
    assert report.abort is not None and report.abort.code == 318
    assert "meta.root.json is not readable JSON" in report.abort.message
    assert requests_to(grid, seen, "declare_files") == []


# --------------------------------------------------------------------------- datasets


def test_datasets_already_in_both_catalogues_and_duplicate_rules_count_as_success(
    grid: OutputGrid, adapters: Adapters
) -> None:
    rse = grid.rse()
    job = grid.job([Pattern(1, "*.root", rse_expression=rse)], [rse])
    job.output("a.root", b"a")
    grid.dataset_ready(job.numbered(1), rule_rse=rse, lifetime=86400)  # made by a concurrent job
    grid.dataset_ready(job.overall(1))
    out, ensurer = ready(job, adapters)
    report = ensure_output_datasets(out, ensurer)
    assert report.abort is None and report.errors == []
    assert [(r["dataset"], r["metacat"], r["rucio"], r["rule"]) for r in report.rows] == [
        (job.numbered(1), "existing", "existing", "existing"),
        (job.overall(1), "existing", "existing", "none"),
    ]
    scope, name = job.numbered(1).split(":")
    assert len(list(grid.client.list_replication_rules({"scope": scope, "name": name}))) == 1


def test_a_failed_metacat_dataset_creation_is_abort_320_and_leaves_rucio_alone(
    grid: OutputGrid, adapters: Adapters
) -> None:
    """Upstream ignores the creation script's exit code and records the dataset as created."""
    job = grid.job([Pattern(1, "*.root")], [grid.rse()])
    job.output("a.root", b"a")
    out, ensurer = ready(job, adapters)
    grid.metacat.fail_next("create_dataset", 403)
    report = ensure_output_datasets(out, ensurer)
    assert report.abort is not None and report.abort.code == 320
    assert report.abort.message.startswith(f"{job.numbered(1)}: creating the MetaCat dataset failed, Rucio dataset not created")
    scope, name = job.numbered(1).split(":")
    with pytest.raises(DataIdentifierNotFound):
        grid.client.get_did(scope, name)
    assert [e.spec.did for e in ensurer.ensured] == [job.overall(1)]  # the other one is fine
    seen = len(grid.metacat.requests)
    numbered, _ = out.pattern_datasets(out.allocation.pattern(1))
    with pytest.raises(DatasetError):
        ensurer.ensure(numbered)  # remembered for the run: no second round of failing calls
    assert grid.metacat.requests[seen:] == []


# --------------------------------------------------------------------------- database


def test_an_output_name_another_job_recorded_is_abort_312_and_nothing_changes(grid: OutputGrid) -> None:
    job = grid.job([Pattern(1, "*.root")], [grid.rse()])
    job.output("taken.root", b"t")
    with transaction() as s:
        s.execute(insert(File).values(workflow_id=job.workflow_id, stage_id=0, file_did=f"{job.scope}:taken.root",
                                      state=FileState.OUTPUT, creator_justin_job_id=job.justin_job_id + 1000))
    _, report = record_results(load_output_job(job.workdir, job.allocation()))
    assert report.abort is not None and report.abort.code == 312
    assert f"{job.scope}:taken.root (job {job.justin_job_id + 1000})" in report.abort.message
    assert job_row(job.justin_job_id)["job_state"] == "processing"  # rolled back with the files
    assert events(job.justin_job_id) == []


def test_a_job_missing_from_the_database_is_abort_312(grid: OutputGrid) -> None:
    job = grid.job([Pattern(1, "*.root")], [grid.rse()])
    job.justin_job_id += 1000
    _, report = record_results(load_output_job(job.workdir, job.allocation()))
    assert report.abort is not None and report.abort.code == 312
    assert "is not in the jobs table" in report.abort.message


def test_a_finished_job_is_not_set_back_to_failed_by_a_later_run(grid: OutputGrid) -> None:
    job = grid.job([Pattern(1, "*.root")], [grid.rse()], job_state=JobState.FINISHED)
    out = load_output_job(job.workdir, job.allocation())
    report = confirm_results(out, OutputOutcome(Abort(320, "every RSE refused")))  # type: ignore[arg-type]
    assert report.abort is None and "was already finished" in report.errors[0]
    assert job_row(job.justin_job_id) == {"job_state": "finished", "abort_code": None, "jobscript_exit": None}
    assert events(job.justin_job_id) == []
