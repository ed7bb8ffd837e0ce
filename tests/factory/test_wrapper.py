"""render_wrapper (upstream submitJobs steps 1-2, reference §4.4): our own template, private file."""

from __future__ import annotations

import logging
import secrets
import stat
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from justin_flows.factory.wrapper import (
    PLACEHOLDERS,
    WrapperError,
    WrapperValues,
    load_template,
    remove_wrapper,
    render_wrapper,
    render_wrapper_text,
)

VALUES = WrapperValues(
    job_secret=secrets.token_urlsafe(64),
    instance="dev",
    workflow_id=42,
    stage_id=3,
    jobscript_image="/cvmfs/singularity.opensciencegrid.org/fermilab/fnal-wn-sl7:latest",
    metacat_auth_server_url="https://metacat.example.org:8143/auth/dune",
    metacat_server_outputs_url="https://metacat.example.org:9443/dune_meta_prod/app",
)


def test_template_is_shipped_with_every_upstream_placeholder() -> None:
    template = load_template()
    assert template.startswith("#!/bin/bash\n")
    for name in PLACEHOLDERS:
        assert f"###justin_{name}###" in template


def test_placeholders_are_replaced_and_the_script_is_valid_bash(tmp_path: Path) -> None:
    path = render_wrapper(VALUES, directory=tmp_path)
    try:
        text = path.read_text()
        assert "###" not in text
        assert "JUSTIN_WORKFLOW_ID='42'" in text and "JUSTIN_STAGE_ID='3'" in text
        assert "JUSTIN_INSTANCE='dev'" in text
        assert f"JUSTIN_JOBSCRIPT_IMAGE='{VALUES.jobscript_image}'" in text
        assert f"JUSTIN_METACAT_AUTH_SERVER_URL='{VALUES.metacat_auth_server_url}'" in text
        assert f"JUSTIN_METACAT_SERVER_OUTPUTS_URL='{VALUES.metacat_server_outputs_url}'" in text
        assert text.count(VALUES.job_secret) == 1  # only into the 0600 secret file
        assert subprocess.run(["bash", "-n", str(path)], capture_output=True).returncode == 0
    finally:
        remove_wrapper(path)
    assert not path.parent.exists()


def test_script_and_its_directory_are_private(tmp_path: Path) -> None:
    path = render_wrapper(VALUES, directory=tmp_path)
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o700
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert path.parent.parent == tmp_path and path.parent.name.startswith("justin-wrapper-")
    finally:
        remove_wrapper(path)


def test_rendered_script_refuses_to_run_outside_a_job(tmp_path: Path) -> None:
    path = render_wrapper(VALUES, directory=tmp_path)
    try:
        run = subprocess.run([str(path)], capture_output=True, text=True, cwd=tmp_path,
                             env={"PATH": "/usr/bin:/bin"}, timeout=30)
        assert run.returncode == 1
        assert "JUSTIN_JOBSUB_ID is not set" in run.stderr
        assert VALUES.job_secret not in run.stdout + run.stderr
    finally:
        remove_wrapper(path)


@pytest.mark.parametrize(
    "field, value",
    [
        ("jobscript_image", "/cvmfs/x'; rm -rf ~; '"),
        ("jobscript_image", "/cvmfs/$(id)"),
        ("metacat_auth_server_url", "https://a b"),
        ("instance", "dev\nexport X=1"),
        ("job_secret", "abc'def-secret-value"),
        ("jobscript_image", ""),
    ],
)
def test_values_unsafe_in_shell_are_refused(field: str, value: str) -> None:
    with pytest.raises(WrapperError) as err:
        render_wrapper_text(replace(VALUES, **{field: value}))
    if field == "job_secret":
        assert value not in str(err.value)


def test_unknown_or_missing_placeholders_are_errors() -> None:
    with pytest.raises(WrapperError, match="lacks"):
        render_wrapper_text(VALUES, template="#!/bin/bash\n")
    template = load_template() + "\n# ###justin_unknown###\n"
    with pytest.raises(WrapperError, match="unknown placeholder"):
        render_wrapper_text(VALUES, template=template)


def test_secret_never_in_repr_or_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert VALUES.job_secret not in repr(VALUES)
    with caplog.at_level(logging.DEBUG):
        remove_wrapper(render_wrapper(VALUES, directory=tmp_path))
    assert VALUES.job_secret not in caplog.text
