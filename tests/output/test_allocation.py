"""The allocation a job is given, and what the job decides from it before any call (pure)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from justin_flows.output.allocation import AllocationError, parse_allocation
from justin_flows.output.job import load_output_job

GOOD: dict[str, Any] = {
    "justin_job_id": 17,
    "jobsub_id": "1234.0@justin-prod-sched01.dune.hep.ac.uk",
    "workflow_id": 5,
    "stage_id": 1,
    "scope": "usertests",
    "jobscript_exit": 0,
    "output_rses": [["RSE_A", "root"], {"rse": "RSE_B", "scheme": "davs"}, ["RSE_A", "root"], ["C", "file"],
                    ["D", "file"]],
    "patterns": {
        "2": {"file_pattern": "*.hist", "destination": "dev-w5s1p2", "destination_number": 3,
              "lifetime_seconds": 600, "rse_expression": "country=UK", "for_next_stage": True},
        "1": {"file_pattern": "*.root", "destination": "myrun-dev-w5s1p1"},
    },
    "existing_dataset_dids": ["usertests:dev-w5s1p2"],
    "job": {"site_name": "UK_Manchester"},
}


def test_a_good_allocation_is_parsed_with_upstreams_defaults() -> None:
    a = parse_allocation(GOOD)
    assert [(r.rse, r.scheme) for r in a.output_rses] == [("RSE_A", "root"), ("RSE_B", "davs"), ("C", "file"),
                                                         ("D", "file")]
    assert [r.rse for r in a.tried_rses] == ["RSE_A", "RSE_B", "C"]  # upstream's output_rses[:3]
    assert [p.pattern_id for p in a.patterns] == [1, 2]
    p1, p2 = a.patterns
    assert (p1.destination_number, p1.lifetime_seconds, p1.rse_expression, p1.for_next_stage) == ("n001", 86400, "", False)
    assert (p2.destination_number, p2.lifetime_seconds, p2.rse_expression, p2.for_next_stage) == ("n003", 600, "country=UK", True)
    assert a.existing_dataset_dids == {"usertests:dev-w5s1p2"}
    assert a.job == {"site_name": "UK_Manchester"}


def test_patterns_may_be_a_list_with_pattern_ids() -> None:
    data = copy.deepcopy(GOOD)
    data["patterns"] = [{"pattern_id": 4, "file_pattern": "*", "destination": "x-dev-w5s1p4"}]
    assert [p.pattern_id for p in parse_allocation(data).patterns] == [4]


def broken(path: str, value: Any) -> dict[str, Any]:
    data = copy.deepcopy(GOOD)
    *parents, last = path.split(".")
    target = data
    for key in parents:
        target = target[key]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("justin_job_id", KeyError, "job_id must be an integer"),
        ("justin_job_id", "17", "justin_job_id must be an integer"),
        ("jobsub_id", "1234.0", "is not <cluster>.<proc>@<schedd>"),
        ("jobsub_id", "1;rm@x", "is not <cluster>.<proc>@<schedd>"),
        ("scope", "user tests", "is not a Rucio scope name"),
        ("output_rses", [["rse a", "root"]], "is not a Rucio RSE name"),
        ("output_rses", [["RSE_A", "ro ot"]], "is not a protocol scheme"),
        ("output_rses", [["RSE_A"]], "is not [rse, scheme]"),
        ("patterns.1.file_pattern", "../*.root", "must stay inside the workspace"),
        ("patterns.1.file_pattern", "/etc/*", "must stay inside the workspace"),
        ("patterns.1.destination", "scope:name", "is not [A-Za-z0-9_.-]"),
        ("patterns.1.destination_number", "007", "is not n%03d"),
        ("patterns.1.lifetime_seconds", 0, "lifetime_seconds must be a positive integer"),
        ("patterns.1.rse_expression", "A;B", "is not a Rucio RSE expression"),
        ("patterns.1.for_next_stage", "yes", "for_next_stage must be true or false"),
        ("existing_dataset_dids", ["no-colon"], "existing_dataset_dids must be a list of scope:name"),
        ("job", [], "job must be an object"),
        ("workflow_id", 0, "workflow_id must be at least 1"),
    ],
)
def test_a_bad_field_is_refused_naming_it(path: str, value: Any, message: str) -> None:
    with pytest.raises(AllocationError) as info:
        parse_allocation(broken(path, value))
    assert message in str(info.value)


def workdir(tmp_path: Path) -> Path:
    (tmp_path / "home" / "workspace").mkdir(parents=True)
    return tmp_path


def test_a_directory_without_a_workspace_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="home/workspace is missing"):
        load_output_job(tmp_path, GOOD)


def test_a_failed_jobscript_stores_no_outputs_324(tmp_path: Path) -> None:
    root = workdir(tmp_path)
    (root / "home" / "workspace" / "out.root").write_text("x")
    job = load_output_job(root, {**GOOD, "jobscript_exit": 9})
    assert job.outputs == () and job.stop_after_logs is not None
    assert (job.stop_after_logs.code, job.stop_after_logs.message) == (324, "the jobscript exited with 9; its outputs are not stored")


def test_webdav_destinations_with_files_are_refused_clearly_317(tmp_path: Path) -> None:
    root = workdir(tmp_path)
    data = broken("patterns.2.destination", "https://scratch.example.org/dune")
    assert load_output_job(root, data).stop_after_logs is None  # no *.hist file: nothing to write there
    (root / "home" / "workspace" / "a.hist").write_text("x")
    stop = load_output_job(root, data).stop_after_logs
    assert stop is not None and stop.code == 317 and "[2]" in stop.message


def test_outputs_are_found_and_their_stage_follows_for_next_stage(tmp_path: Path) -> None:
    root = workdir(tmp_path)
    for name in ("b.root", "a.root", "h.hist"):
        (root / "home" / "workspace" / name).write_text(name)
    job = load_output_job(root, GOOD, instance="dev")
    assert [(f.name, f.pattern_id) for f in job.outputs] == [("a.root", 1), ("b.root", 1), ("h.hist", 2)]
    assert job.stop_after_logs is None
    a = job.allocation
    assert (job.output_stage_id(a.pattern(1)), job.output_stage_id(a.pattern(2))) == (0, 2)
    numbered, overall = job.pattern_datasets(a.pattern(2))
    assert (numbered.did, numbered.rule_rse_expression, overall.did) == (
        "usertests:dev-w5s1p2n003", "country=UK", "usertests:dev-w5s1p2")
    assert job.rse_dataset(a.pattern(1), a.output_rses[0]).did == "usertests:dev-w5s1p1-RSE_A"
