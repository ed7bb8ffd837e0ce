"""The test services themselves: a real Rucio server on loopback and the HTCondor stand-ins."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import uuid
from pathlib import Path

import pytest
import requests
from rucio.client import Client
from rucio.client.pingclient import PingClient
from rucio.client.uploadclient import UploadClient
from rucio.common.exception import ServerConnectionException

from justin_flows.testing.condor_standins import (
    DEFAULT_USERPRIO_ROWS,
    install_condor_standins,
    read_calls,
    set_behaviour,
    set_userprio_rows,
)
from justin_flows.testing.rucio_server import RUCIO_VERSION, RucioServer

# -- Rucio -----------------------------------------------------------------------------------


@pytest.fixture()
def rucio_client(rucio_server: RucioServer) -> Client:
    return Client()


def _unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def test_ping_reports_server_version(rucio_server: RucioServer) -> None:
    assert PingClient().ping() == {"version": RUCIO_VERSION}
    assert rucio_server.url.startswith("http://127.0.0.1:")
    assert rucio_server.start_seconds is not None and rucio_server.start_seconds > 0
    assert Client().whoami()["account"] == "root"


def test_rse_setup_and_upload_lands_bytes_on_disk(rucio_client: Client, tmp_path: Path) -> None:
    rse = _unique("TEST_").upper()
    prefix = tmp_path / "rse"
    prefix.mkdir()
    assert rucio_client.add_rse(rse, deterministic=True, volatile=False, rse_type="DISK")
    assert rucio_client.add_rse_attribute(rse, "site", "LAB")
    assert rucio_client.list_rse_attributes(rse)["site"] == "LAB"
    assert rucio_client.add_protocol(rse, {
        "scheme": "file", "hostname": "localhost", "port": 0, "prefix": f"{prefix}/",
        "impl": "rucio.rse.protocols.posix.Default",
        "domains": {
            "lan": {"read": 1, "write": 1, "delete": 1},
            "wan": {"read": 1, "write": 1, "delete": 1,
                    "third_party_copy_read": 1, "third_party_copy_write": 1},
        },
    })
    assert rucio_client.set_local_account_limit("root", rse, 10**12)
    assert rucio_client.get_local_account_limit("root", rse) == {rse: 10**12}

    scope = _unique("t")
    assert rucio_client.add_scope("root", scope)
    payload = os.urandom(4096)
    source = tmp_path / "payload.dat"
    source.write_bytes(payload)
    item = {"path": str(source), "rse": rse, "did_scope": scope, "did_name": source.name}
    assert UploadClient(rucio_client).upload([item]) == 0

    digest = hashlib.md5(f"{scope}:{source.name}".encode()).hexdigest()
    landed = prefix / scope / digest[0:2] / digest[2:4] / source.name
    assert landed.read_bytes() == payload
    replicas = list(rucio_client.list_replicas([{"scope": scope, "name": source.name}], schemes=["file"]))
    assert replicas[0]["states"] == {rse: "AVAILABLE"}


def test_stop_then_restart(rucio_server: RucioServer) -> None:
    long_lived = PingClient()
    port = rucio_server.port
    rucio_server.stop()
    try:
        assert not rucio_server.running
        # request_retries=0: the client re-raises the connection error instead of wrapping it
        with pytest.raises((ServerConnectionException, requests.exceptions.ConnectionError)):
            long_lived.ping()
        with pytest.raises(Exception):  # noqa: B017 - a new client may already fail to authenticate
            PingClient().ping()
    finally:
        rucio_server.restart()
    assert rucio_server.port == port
    assert PingClient().ping() == {"version": RUCIO_VERSION}
    assert long_lived.ping() == {"version": RUCIO_VERSION}  # an old client recovers by itself
    assert Client().whoami()["account"] == "root"  # the database survived the restart


def test_abacus_daemon_runs_once(rucio_server: RucioServer) -> None:
    done = rucio_server.run_daemon_once("rucio-abacus-rse")
    assert done.returncode == 0
    with pytest.raises(ValueError):
        rucio_server.run_daemon_once("rm -rf /")


# -- HTCondor stand-ins ----------------------------------------------------------------------

_TERSE = re.compile(r"^(\d+)\.(\d+) - (\d+)\.(\d+)$")
_SUBMIT_DESCRIPTION = """\
universe = vanilla
executable = /bin/true
+JustinJobID = "abc"
queue 3
"""


@pytest.fixture()
def condor(tmp_path: Path) -> tuple[Path, Path]:
    bin_dir, state_dir = tmp_path / "bin", tmp_path / "state"
    install_condor_standins(bin_dir, state_dir)
    return bin_dir, state_dir


def _submit(bin_dir: Path, env: dict[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    argv = [str(bin_dir / "condor_submit"), "-name", "schedd.example", "-pool", "pool.example", "-spool", "-terse"]
    return subprocess.run(argv, input=_SUBMIT_DESCRIPTION, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def test_condor_submit_terse_range_and_recording(condor: tuple[Path, Path], tmp_path: Path) -> None:
    bin_dir, state_dir = condor
    token = tmp_path / "token"
    token.write_text("not-a-real-token")
    first = _submit(bin_dir, {"BEARER_TOKEN_FILE": str(token)})
    assert first.returncode == 0, first.stderr
    match = _TERSE.match(first.stdout.strip())
    assert match, first.stdout
    cluster, first_proc, cluster2, last_proc = map(int, match.groups())
    assert cluster == cluster2 and last_proc - first_proc + 1 == 3

    second = _submit(bin_dir)
    match2 = _TERSE.match(second.stdout.strip())
    assert match2 and int(match2.group(1)) == cluster + 1  # cluster ids increase

    calls = read_calls(state_dir)
    assert [c["program"] for c in calls] == ["condor_submit", "condor_submit"]
    assert calls[0]["argv"] == ["-name", "schedd.example", "-pool", "pool.example", "-spool", "-terse"]
    assert calls[0]["stdin"] == _SUBMIT_DESCRIPTION
    assert calls[0]["env"]["bearer_token_file_set"] and calls[0]["env"]["bearer_token_file_exists"]
    assert calls[0]["cluster"] == cluster and calls[0]["jobs"] == 3
    assert calls[1]["env"]["bearer_token_file_set"] is (os.environ.get("BEARER_TOKEN_FILE") is not None)


def test_condor_submit_behaviour_knobs(condor: tuple[Path, Path]) -> None:
    bin_dir, state_dir = condor
    set_behaviour(state_dir, {"exit_code": 1})
    failed = _submit(bin_dir)
    assert failed.returncode == 1 and failed.stdout == ""

    set_behaviour(state_dir, {"stdout": "garbage\n", "times": 1})
    garbage = _submit(bin_dir)
    assert garbage.returncode == 0 and garbage.stdout == "garbage\n"
    assert not (state_dir / "behaviour.json").exists()  # 'times' used up

    set_behaviour(state_dir, {"sleep": 5})
    with pytest.raises(subprocess.TimeoutExpired):
        _submit(bin_dir, timeout=0.5)
    set_behaviour(state_dir, None)
    assert _TERSE.match(_submit(bin_dir).stdout.strip())
    assert [c["exit_code"] for c in read_calls(state_dir)] == [1, 0, 0, 0]
    assert [c["cluster"] for c in read_calls(state_dir)][:2] == [None, None]


def _six_field_rows(stdout: str) -> dict[str, list[str]]:
    """The way upstream justIN reads ``condor_userprio -quotas`` output."""
    rows = {}
    for line in stdout.splitlines():
        fields = line.split()
        if len(fields) == 6 and fields[0].startswith("group_dune"):
            rows[fields[0]] = fields[1:]
    return rows


def test_condor_userprio_quota_rows(condor: tuple[Path, Path]) -> None:
    bin_dir, state_dir = condor
    argv = [str(bin_dir / "condor_userprio"), "-pool", "pool.example", "-quotas", "-allusers"]
    default = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert default.returncode == 0, default.stderr
    lines = default.stdout.splitlines()
    assert lines[0].startswith("Last Priority Update:") and set(lines[3].replace(" ", "")) == {"-"}
    expected = {r["group"] for r in DEFAULT_USERPRIO_ROWS if r["group"].startswith("group_dune")}
    assert set(_six_field_rows(default.stdout)) == expected

    set_userprio_rows(state_dir, [
        {"group": "group_dune.prod.mcsim", "effective_quota": 1234.5, "config_quota": 1000,
         "surplus": "ByQuota", "subtree_quota": 1500, "weighted": 42},
        {"group": "group_other", "effective_quota": 1, "config_quota": 1,
         "surplus": "no", "subtree_quota": 1, "weighted": 1},
    ])
    custom = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert _six_field_rows(custom.stdout) == {
        "group_dune.prod.mcsim": ["1234.50", "1000.00", "ByQuota", "1500.00", "42"],
    }
    call = read_calls(state_dir)[-1]
    assert call["program"] == "condor_userprio" and call["options"] == {"-pool": "pool.example"}
    assert call["flags"] == ["-quotas", "-allusers"]
