"""Timeouts everywhere: every external call has one, every flow has a run timeout that follows
min(3 x period, period + 3600 s), and a hung service cannot hold a deployment's only slot."""

from __future__ import annotations

import ast
import asyncio
import importlib
import inspect
import pkgutil
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prefect import Flow
from sqlalchemy import Engine

import flows
from justin_flows import automations
from justin_flows.adapters import commands
from justin_flows.adapters.calls import ExternalCallError, ExternalService
from justin_flows.adapters.git import GitAdapter, GitError
from justin_flows.adapters.git import is_transient as git_is_transient
from justin_flows.adapters.htcondor import HTCondorAdapter
from justin_flows.adapters.http import HTTPAdapter
from justin_flows.adapters.metacat import MetaCatAdapter
from justin_flows.adapters.rucio import RucioAdapter
from justin_flows.adapters.voms import VOMSAdapter
from justin_flows.concurrency import bounded_map
from justin_flows.db.engine import transaction
from justin_flows.db.models import Storage
from justin_flows.settings import RetryPolicy
from justin_flows.testing.condor_standins import set_behaviour
from justin_flows.testing.metacat_double import MetaCatDouble
from justin_flows.testing.rucio_server import RucioServer
from tests.conftest import CondorStandins, reset_caches
from tests.reliability.conftest import StallServer, rucio_at
from tests.shared_data import REPO_ROOT

ONE_TRY = RetryPolicy(attempts=1, backoff_seconds=0, max_backoff_seconds=0, jitter=0)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    yield monkeypatch
    monkeypatch.undo()
    reset_caches()


def _set(mp: pytest.MonkeyPatch, **values: str) -> None:
    for key, value in values.items():
        mp.setenv(key, value)
    reset_caches()


# ---------------------------------------------------------------------------------- clients


def test_rucio_clients_carry_the_configured_timeout(rucio_server: RucioServer, env: pytest.MonkeyPatch) -> None:
    _set(env, JUSTIN_RUCIO__TIMEOUT_SECONDS="7")
    adapter = RucioAdapter()
    assert adapter._client().timeout == 7
    assert adapter._ping_client().timeout == 7


def test_metacat_clients_carry_the_configured_timeout_and_never_retry_for_30_minutes(
    metacat_env: MetaCatDouble, env: pytest.MonkeyPatch
) -> None:
    _set(env, JUSTIN_METACAT__TIMEOUT_SECONDS="9")
    with MetaCatAdapter() as adapter:
        inputs = adapter.inputs()
        assert inputs.Timeout == 9  # each request
        assert inputs.DefaultTimeout == 0  # the client's own 503 retry loop: off (ExternalService retries)


def test_http_client_has_a_timeout_and_a_whole_body_deadline(env: pytest.MonkeyPatch) -> None:
    _set(env, JUSTIN_CILOGON__TIMEOUT_SECONDS="4")
    with HTTPAdapter() as http:
        assert http._client.timeout == httpx.Timeout(4)
        assert http.timeout_seconds == 4


def test_run_command_requires_a_timeout_and_enforces_it() -> None:
    timeout = inspect.signature(commands.run_command).parameters["timeout"]
    assert timeout.kind is inspect.Parameter.KEYWORD_ONLY and timeout.default is inspect.Parameter.empty
    start = time.monotonic()
    with pytest.raises(commands.subprocess.TimeoutExpired):
        commands.run_command([sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.5)
    assert time.monotonic() - start < 5


def test_a_hung_condor_command_is_cut_at_its_timeout_and_condor_submit_is_tried_once(
    condor_env: CondorStandins, env: pytest.MonkeyPatch
) -> None:
    _set(env, JUSTIN_HTCONDOR__COMMAND_TIMEOUT_SECONDS="1")
    set_behaviour(condor_env.state_dir, {"sleep": 30, "condor_userprio": {"sleep": 30}})
    condor = HTCondorAdapter()  # its own policy: only a time-out is retried
    start = time.monotonic()
    with pytest.raises(ExternalCallError) as userprio:
        condor.userprio_quotas()
    assert userprio.value.attempts == 3 and isinstance(userprio.value.cause, commands.subprocess.TimeoutExpired)
    assert time.monotonic() - start < 3 * 1 + 6
    start = time.monotonic()
    with pytest.raises(ExternalCallError) as submit:
        condor.submit("schedd01.test.invalid", "executable = /bin/true\nqueue 1\n")
    assert submit.value.attempts == 1  # a time-out may hide a queued cluster: never repeated
    assert time.monotonic() - start < 1 + 4


def test_a_hung_voms_proxy_init_is_cut_at_its_timeout(tmp_path: Path, env: pytest.MonkeyPatch) -> None:
    hang = tmp_path / "voms-proxy-init"
    hang.write_text(f"#!{sys.executable}\nimport time\ntime.sleep(30)\n")
    hang.chmod(0o755)
    _set(env, JUSTIN_PROXIES__VOMS_PROXY_INIT=str(hang))
    voms = VOMSAdapter(service=ExternalService("voms", ONE_TRY, lambda e: True), timeout_seconds=1)
    start = time.monotonic()
    with pytest.raises(ExternalCallError) as caught:
        voms.proxy_init(tmp_path / "c.pem", tmp_path / "k.pem", "dune", tmp_path / "out.pem", 1)
    assert isinstance(caught.value.cause, commands.subprocess.TimeoutExpired)
    assert time.monotonic() - start < 1 + 4


def test_a_git_server_that_never_answers_is_cut_at_the_clone_deadline(
    stall_server: StallServer, tmp_path: Path
) -> None:
    """GitPython's clone_from has no deadline of its own (and git's low-speed limit is HTTP only):
    the adapter's own kill_after_timeout ends it, and the failure counts as transient."""
    git = GitAdapter(service=ExternalService("git", ONE_TRY, git_is_transient), timeout_seconds=1.5)
    start = time.monotonic()
    with pytest.raises(ExternalCallError) as caught:
        git.clone(f"git://127.0.0.1:{stall_server.port}/osg-gfactory.git", tmp_path / "clone")
    elapsed = time.monotonic() - start
    assert isinstance(caught.value.cause, GitError) and "did not complete" in str(caught.value)
    assert git_is_transient(caught.value.cause)
    assert stall_server.accepted >= 1 and elapsed < 1.5 + 4


def test_a_metacat_auth_server_that_never_answers_is_cut_at_the_timeout(
    metacat_env: MetaCatDouble, stall_server: StallServer, env: pytest.MonkeyPatch
) -> None:
    _set(env, JUSTIN_METACAT__AUTH_SERVER_URL=stall_server.url + "/auth", JUSTIN_METACAT__TIMEOUT_SECONDS="1")
    adapter = MetaCatAdapter(service=ExternalService("metacat", ONE_TRY, lambda e: True))
    done = threading.Event()

    def login() -> None:
        try:
            adapter.outputs()
        except Exception:  # noqa: BLE001 - any error is a finished login here
            pass
        done.set()

    threading.Thread(target=login, daemon=True).start()
    try:
        assert done.wait(1 + 4), "the MetaCat login was still waiting 5 s after its 1 s timeout"
    finally:
        adapter.close()


# ---------------------------------------------------------------------------------- the source


def _calls_in(path: Path) -> Iterator[ast.Call]:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call):
            yield node


def _name(func: ast.expr) -> str:
    return ast.unparse(func)


def test_every_command_and_http_call_in_the_production_code_passes_a_timeout() -> None:
    """No subprocess, run_command, httpx or requests call without ``timeout=`` outside the test doubles."""
    missing = []
    files = [p for folder in ("lib/justin_flows", "flows") for p in (REPO_ROOT / folder).rglob("*.py")
             if "testing" not in p.parts and "__pycache__" not in p.parts]  # fmt: skip
    watched = {"subprocess.run", "subprocess.call", "subprocess.check_call", "subprocess.check_output",
               "run_command", "commands.run_command", "httpx.Client", "httpx.get", "httpx.post", "httpx.stream",
               "requests.get", "requests.post", "requests.put", "requests.request"}  # fmt: skip
    for path in files:
        for call in _calls_in(path):
            if _name(call.func) in watched and not any(k.arg == "timeout" for k in call.keywords):
                missing.append(f"{path.relative_to(REPO_ROOT)}:{call.lineno} {_name(call.func)}")
            if _name(call.func) == "subprocess.Popen":
                missing.append(f"{path.relative_to(REPO_ROOT)}:{call.lineno} Popen (no timeout possible)")
    assert not missing, "external calls without a timeout:\n" + "\n".join(missing)


# ---------------------------------------------------------------------------------- flows


def all_flows() -> dict[str, Flow[..., object]]:
    found: dict[str, Flow[..., object]] = {}
    for info in pkgutil.walk_packages(flows.__path__, "flows."):
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if isinstance(value, Flow) and value.__module__ == module.__name__:
                found[f"{module.__name__}:{value.fn.__name__}"] = value
    return found


def test_every_flow_has_a_run_timeout() -> None:
    found = all_flows()
    assert "flows.finder.finder:finder_flow" in found and len(found) >= 8
    missing = sorted(name for name, f in found.items() if not f.timeout_seconds)
    assert not missing, f"flows without timeout_seconds: {missing}"


def test_scheduled_flows_time_out_at_min_of_3_periods_and_period_plus_an_hour() -> None:
    deployments = automations.load_scheduled_deployments(REPO_ROOT / "prefect.yaml")
    assert len(deployments) >= 7
    found = all_flows()
    wrong = {}
    for d in deployments:
        path, func = d.entrypoint.split(":")
        flow = found[f"{path.removesuffix('.py').replace('/', '.')}:{func}"]
        want = automations.run_timeout(d.period_seconds)
        if flow.timeout_seconds != want:
            wrong[d.name] = (d.period_seconds, flow.timeout_seconds, want)
    assert not wrong, f"deployment: (period, timeout_seconds, expected): {wrong}"


# ---------------------------------------------------------------------------------- a hung service


def test_an_interrupted_fan_out_does_not_wait_for_its_queued_items() -> None:
    """A flow's timeout lands in ``bounded_map`` while it waits: the queued items are cancelled
    (``Executor.map`` does so when interrupted), so the run ends after the in-flight calls instead
    of after the whole queue (here 40 x 0.5 s / 2 workers = 10 s)."""
    calls = []

    def slow(i: int) -> int:
        calls.append(i)
        time.sleep(0.5)
        return i

    def alarm(*_: object) -> None:
        raise TimeoutError("flow run timed out")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, 0.3)
    start = time.monotonic()
    try:
        with pytest.raises(TimeoutError):
            bounded_map(slow, range(40), max_workers=2)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert time.monotonic() - start < 1.5
    time.sleep(0.7)
    assert len(calls) <= 4, "queued items kept running after the interruption"


def _writable_storages(count: int) -> None:
    with transaction() as s:
        for i in range(count):
            s.add(Storage(rse_name=f"STALL_{i:02d}", rucio_write=True, justin_write=True))


@pytest.mark.usefixtures("prefect_server")
def test_a_stalled_rucio_cannot_hold_the_deployments_only_slot(
    db: Engine, rucio_server: RucioServer, metacat_env: MetaCatDouble, condor_env: CondorStandins,
    stall_server: StallServer, tmp_path: Path,
) -> None:
    """The storages flow against a Rucio that accepts and never answers, as a run of a deployment
    with ``concurrency_limit: 1`` (CANCEL_NEW): the run holds the slot, ends TimedOut within its
    (short) timeout although 60 fan-out items are still queued, and the slot is free again: the
    next run of the deployment gets it instead of being cancelled."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import ConcurrencyLimitStrategy, ConcurrencyOptions
    from prefect.flow_engine import run_flow
    from prefect.states import Pending

    from flows.info_collector.storages import storages_flow

    _writable_storages(20)  # 3 periods x 20 RSEs = 60 logs-dataset items fanned out to the stalled Rucio
    timeout = 8
    short = storages_flow.with_options(timeout_seconds=timeout)

    async def deployment() -> tuple[object, object]:
        async with get_client() as client:
            flow_id = await client.create_flow_from_name(short.name)
            deployment_id = await client.create_deployment(
                flow_id=flow_id, name=f"stall-{time.time_ns()}", entrypoint="flows/info_collector/storages.py:storages_flow",
                concurrency_limit=1,
                concurrency_options=ConcurrencyOptions(collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW),
            )
            run = await client.create_flow_run_from_deployment(deployment_id)
            state = await client.set_flow_run_state(run.id, Pending())  # what a worker does: take the slot
            assert state.status.value == "ACCEPT"
            return deployment_id, await client.read_flow_run(run.id)

    async def slots(deployment_id: object) -> int:
        async with get_client() as client:
            d = await client.read_deployment(deployment_id)  # type: ignore[arg-type]
            assert d.global_concurrency_limit is not None
            return d.global_concurrency_limit.active_slots

    async def next_run(deployment_id: object) -> str:
        async with get_client() as client:
            run = await client.create_flow_run_from_deployment(deployment_id)  # type: ignore[arg-type]
            await client.set_flow_run_state(run.id, Pending())
            return (await client.read_flow_run(run.id)).state_type.value  # type: ignore[union-attr]

    deployment_id, flow_run = asyncio.run(deployment())
    assert asyncio.run(slots(deployment_id)) == 1
    with rucio_at(rucio_server, stall_server.url, tmp_path, JUSTIN_RUCIO__TIMEOUT_SECONDS="1"):
        start = time.monotonic()
        state = run_flow(short, flow_run=flow_run, return_type="state")  # type: ignore[arg-type]
        elapsed = time.monotonic() - start
    assert state.is_failed() and state.name == "TimedOut", (state.name, state.message)
    assert elapsed < timeout + 5, f"the run ended {elapsed:.1f} s after it started (timeout {timeout} s)"
    assert stall_server.accepted >= 1
    assert asyncio.run(slots(deployment_id)) == 0
    assert asyncio.run(next_run(deployment_id)) == "PENDING", "the next run must get the freed slot"
