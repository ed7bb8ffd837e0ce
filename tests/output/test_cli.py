"""``justin-flows wrapper-output`` (``justin_flows.output.cli.main``): arguments, exit status."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from justin_flows.output.cli import EXIT_BAD_INPUT, EXIT_FINISHED, EXIT_JOB_FAILED, main
from tests.output.conftest import OutputGrid, Pattern, job_row


def test_a_directory_without_a_workspace_fails_fast_with_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--workdir", str(tmp_path)]) == EXIT_BAD_INPUT
    assert "cannot read the allocation" in capsys.readouterr().err


def test_a_bad_allocation_fails_fast_with_2_naming_the_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "home" / "workspace").mkdir(parents=True)
    allocation = tmp_path / "a.json"
    allocation.write_text(json.dumps({"justin_job_id": 1, "jobsub_id": "1.0@s", "scope": "bad scope"}))
    assert main(["--workdir", str(tmp_path), "--allocation", str(allocation)]) == EXIT_BAD_INPUT
    assert "scope 'bad scope' is not a Rucio scope name" in capsys.readouterr().err


@pytest.mark.usefixtures("prefect_server")
def test_a_job_runs_end_to_end_from_the_command_line(grid: OutputGrid, capsys: pytest.CaptureFixture[str]) -> None:
    rse = grid.rse()
    grid.logs_dataset_ready(rse)
    job = grid.job([Pattern(1, "*.root")], [rse])
    job.output("cli.root", b"from the command line")
    job.write_allocation()
    assert main(["--workdir", str(job.workdir)]) == EXIT_FINISHED
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed == {"justin_job_id": job.justin_job_id, "jobsub_id": job.jobsub_id, "job_state": "finished",
                       "abort_code": None, "abort": None}

    failed = grid.job([Pattern(1, "*.root")], [rse], jobscript_exit=1)
    failed.write_allocation()
    assert main(["--workdir", str(failed.workdir), "--allocation", str(failed.allocation_file)]) == EXIT_JOB_FAILED
    assert job_row(failed.justin_job_id)["abort_code"] == 324
