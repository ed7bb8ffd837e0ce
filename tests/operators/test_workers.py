"""scripts/worker: the SIGINT trap of background jobs, and the missing-server guard.

A non-interactive bash starts background jobs with SIGINT ignored. ``prefect worker start``
turns SIGTERM into SIGINT for itself, so such a worker ignores SIGTERM too and goes on taking
runs. ``scripts/worker`` resets SIGINT to its default before it execs the worker.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest

from justin_flows.testing.prefect_stack import POOL, PrefectStack
from tests.operators.conftest import wait_until
from tests.shared_data import REPO_ROOT

pytestmark = pytest.mark.slow

WORKER = REPO_ROOT / "scripts" / "worker"


def ignores(pid: int, signum: int) -> bool:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    raise AssertionError(f"no SigIgn line for {pid}")


def background_job(command: str, env: dict[str, str], log: Path) -> tuple[subprocess.Popen[str], int]:
    """``command &`` inside a non-interactive bash, as a CI script or a cron job would run it."""
    script = f"{command} >>{shlex.quote(str(log))} 2>&1 & echo $!; wait"
    shell = subprocess.Popen(
        ["bash", "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    assert shell.stdout is not None
    return shell, int(shell.stdout.readline())


def test_a_background_job_of_a_script_inherits_sigint_ignored(tmp_path: Path) -> None:
    """The trap itself, so that the next test proves something."""
    shell, pid = background_job("sleep 60", dict(os.environ), tmp_path / "sleep.log")
    try:
        # read the mask only once the job has exec'd sleep: before that it is still bash's fork
        wait_until(lambda: Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"sleep"), 10, "the job to start")
        assert ignores(pid, signal.SIGINT)
    finally:
        os.kill(pid, signal.SIGKILL)
        shell.wait(timeout=10)


def test_a_worker_started_in_the_background_by_a_script_still_stops_on_sigterm(
    stack: PrefectStack, tmp_path: Path
) -> None:
    name = "ops-background-worker"
    command = f"bash {shlex.quote(str(WORKER))} --name {name}"
    shell, pid = background_job(command, stack.worker_environ(), tmp_path / "worker.log")
    try:
        with stack.client() as client:
            wait_until(
                lambda: any(w.name == name and w.status.value == "ONLINE" for w in client.read_workers_for_work_pool(POOL)),
                90, "the background worker to come online",
            )  # fmt: skip
        assert "worker" in Path(f"/proc/{pid}/cmdline").read_text(), "scripts/worker execs the worker in place"
        assert not ignores(pid, signal.SIGINT), "scripts/worker reset SIGINT to its default"
        started = time.monotonic()
        os.kill(pid, signal.SIGTERM)
        shell.wait(timeout=30)
        assert time.monotonic() - started < 30
    finally:
        if shell.poll() is None:
            os.kill(pid, signal.SIGKILL)
            shell.wait(timeout=10)
    assert "Worker 'ops-background-worker' stopped" in (tmp_path / "worker.log").read_text()


def test_scripts_worker_refuses_to_start_without_a_server_url(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    done = subprocess.run(["bash", str(WORKER)], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "PREFECT_API_URL" in done.stderr
