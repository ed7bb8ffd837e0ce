"""Every file the project writes that holds a secret is private to the agents' user, whatever
the umask: proxies 0600, wrapper scripts 0700 in a 0700 directory, MetaCat's token library in
a 0700 directory (and the file itself 0600), and the private-file helper 0600."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from justin_flows.adapters.htcondor import HTCondorAdapter
from justin_flows.adapters.metacat import MetaCatAdapter
from justin_flows.db.engine import transaction
from justin_flows.db.models import Job
from justin_flows.factory.workflow_jobs import workflow_jobs
from justin_flows.proxies import create_proxies
from justin_flows.secrets import write_private_file
from justin_flows.testing.condor_standins import read_calls
from justin_flows.testing.metacat_double import MetaCatDouble
from tests.conftest import CondorStandins, reset_caches
from tests.factory.helpers import seed_factory_stage
from tests.proxies.conftest import VomsEnv, grid_credentials, voms_env  # noqa: F401 - fixtures


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """umask 000: any private mode below comes from the code, not from the environment."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_write_private_file_is_0600_even_with_umask_000(tmp_path: Path, open_umask: None) -> None:
    target = tmp_path / "token"
    write_private_file(target, b"secret")
    assert mode(target) == 0o600 and target.read_bytes() == b"secret"
    assert [p.name for p in tmp_path.iterdir()] == ["token"], "no temporary file left behind"


def test_proxies_are_0600_and_leave_no_work_files(voms_env: VomsEnv, open_umask: None) -> None:  # noqa: F811
    report = create_proxies(voms_env.adapter(), kinds=("production", "no-roles"))
    assert report.errors == []
    written = {p.name: mode(p) for p in voms_env.out_dir.iterdir()}
    assert written == {
        voms_env.production_proxy.name: 0o600,
        voms_env.no_roles_proxy.name: 0o600,
        voms_env.default_proxy.name: 0o600,
    }


def test_wrapper_scripts_holding_the_cluster_secret_are_0700_in_a_0700_directory(
    db: Engine, condor_env: CondorStandins, open_umask: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("JUSTIN_HTCONDOR__KEEP_WRAPPER_FILES", "true")
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    reset_caches()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    seed_factory_stage(2)
    report = workflow_jobs(HTCondorAdapter())
    assert report.errors == []
    [submit] = [c for c in read_calls(condor_env.state_dir) if c["program"] == "condor_submit"]
    match = re.search(r"^executable\s*=\s*(\S+)", submit["submit_description"], re.MULTILINE)
    assert match, submit["submit_description"]
    wrapper = Path(match.group(1))
    with transaction() as s:
        secret = s.scalars(select(Job.justin_job_secret)).first()
    assert secret and secret in wrapper.read_text(), "the wrapper carries the cluster secret"
    assert secret not in submit["submit_description"], "the submit description (visible in condor_q) does not"
    assert mode(wrapper) == 0o700 and mode(wrapper.parent) == 0o700
    assert wrapper.parent.parent == tmp_path / "tmp"
    reset_caches()


def test_wrapper_scripts_are_removed_after_submission(
    db: Engine, condor_env: CondorStandins, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    seed_factory_stage(2)
    workflow_jobs(HTCondorAdapter())
    assert [c["program"] for c in read_calls(condor_env.state_dir)].count("condor_submit") == 1
    assert list((tmp_path / "tmp").iterdir()) == [], "no wrapper (and no secret) left in TMPDIR"


def test_metacat_token_library_is_private_and_removed_on_close(metacat_env: MetaCatDouble, open_umask: None) -> None:
    adapter = MetaCatAdapter()
    try:
        adapter.outputs()  # logs in: the token is stored in the adapter's token library
        library = adapter._tmp
        files = [p for p in library.rglob("*") if p.is_file()]
        assert files, "the login stored its token"
        assert mode(library) == 0o700
        assert all(mode(f) & 0o077 == 0 for f in files), {f.name: oct(mode(f)) for f in files}
    finally:
        adapter.close()
    assert not library.exists()
