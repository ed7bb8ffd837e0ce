"""A real Prefect deployment on one machine: server on PostgreSQL, process pool, deploy, workers.

This is the production layout in miniature, used by the operator tests and by
``scripts/deploy``:

- ``prefect server start`` as a subprocess, backed by its own PostgreSQL database (never
  the results database), with concurrency leases on disk so that a server restart does not
  crash running concurrency-limited flows, and analytics off;
- the ``justin-process`` process work pool;
- ``prefect --no-prompt deploy --all`` from the checkout, with ``JUSTIN_FLOWS_ROOT`` set,
  because the pull step's ``{{ $JUSTIN_FLOWS_ROOT }}`` is filled in at deploy time;
- N ``prefect worker start --pool justin-process`` processes, each started through
  ``scripts/worker``, which resets SIGINT to its default first: a worker launched from a
  non-interactive shell otherwise inherits SIGINT=SIG_IGN and then ignores SIGTERM too.

``stop()`` drains before it stops: it pauses the work pool (and, for a throw-away server,
every schedule), waits for the flow runs in flight, then SIGTERMs the workers and the server.
A worker stopped mid-run kills its flow-run process and leaves the run ``Running`` forever.

``python -m justin_flows.testing.prefect_stack`` (what ``scripts/deploy`` runs) brings the
whole stack up for an operator, prints what the server holds, and with ``--keep`` leaves it
running with the UI until Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

from sqlalchemy.engine import make_url

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.objects import FlowRun

    from justin_flows.testing.postgres import PostgresServer

REPO_ROOT = Path(__file__).resolve().parents[3]
POOL = "justin-process"
LEASE_STORAGE = "prefect.server.concurrency.lease_storage.filesystem"
# States in which a flow run holds (or is about to hold) a worker's process.
IN_FLIGHT = ("PENDING", "RUNNING", "CANCELLING")
TERMINAL = ("COMPLETED", "FAILED", "CANCELLED", "CRASHED")


class PrefectStackError(RuntimeError):
    pass


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def prefect_database_url(url: str) -> str:
    """The same PostgreSQL database as a ``postgresql+asyncpg://`` URL, the driver Prefect's server uses."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise ValueError("the Prefect server database must be PostgreSQL")
    return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


def _clean_environ() -> dict[str, str]:
    """This process's environment without Prefect client/server settings (set explicitly instead)."""
    keep = {"PREFECT_LOGGING_LEVEL"}
    return {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_") or k in keep}


def _terminate(proc: subprocess.Popen[bytes], timeout: float, group: bool) -> None:
    """SIGTERM ``proc`` (its process group if it leads one), wait, then SIGKILL."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        if group:
            os.killpg(proc.pid, signal.SIGTERM)
        else:
            proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.kill()
        proc.wait(timeout=10)
    if group:  # uvicorn children of the server share its group
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


@dataclass
class Worker:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def running(self) -> bool:
        return self.proc.poll() is None


@dataclass
class PrefectStack:
    """A Prefect server on PostgreSQL, the process pool, the deployments and N workers.

    ``database_url`` is the Prefect server's own database (any SQLAlchemy PostgreSQL URL;
    the driver is switched to asyncpg). ``worker_env`` is added to each worker's environment
    and so reaches every flow run: the ``JUSTIN_*`` settings, ``RUCIO_CONFIG`` and the like.
    """

    database_url: str
    work_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="justin-prefect-")))
    root: Path = REPO_ROOT
    worker_env: Mapping[str, str] = field(default_factory=dict)
    workers: int = 1
    worker_query_seconds: float = 10.0
    worker_prefetch_seconds: float = 10.0
    host: str = "127.0.0.1"
    port: int | None = None
    public_url: str | None = None
    server_env: Mapping[str, str] = field(default_factory=dict)
    startup_timeout: float = 120.0
    venv: Path | None = None
    owns_database: bool = False
    pg: PostgresServer | None = None
    remove_work_dir: bool = True
    _server: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _workers: list[Worker] = field(default_factory=list, init=False, repr=False)
    _worker_serial: int = field(default=0, init=False, repr=False)
    server_start_seconds: list[float] = field(default_factory=list, init=False)

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def on_postgres(cls, pg: PostgresServer, **kwargs: Any) -> PrefectStack:
        """A stack whose Prefect database is a fresh one on ``pg`` (dropped by ``close()``)."""
        url = pg.create_database(prefix="prefect")
        return cls(database_url=url, owns_database=True, pg=pg, **kwargs)

    # -- paths and URLs ---------------------------------------------------------------------
    @property
    def bin_dir(self) -> Path:
        return (self.venv / "bin") if self.venv else Path(sys.executable).parent

    @property
    def prefect_exe(self) -> str:
        return str(self.bin_dir / "prefect")

    @property
    def server_home(self) -> Path:
        """The server's PREFECT_HOME; its ``concurrency_leases/`` must survive restarts."""
        return self.work_dir / "server-home"

    @property
    def lease_dir(self) -> Path:
        return self.server_home / "concurrency_leases"

    @property
    def api_url(self) -> str:
        """The API as this machine reaches it (loopback when the server listens on every address)."""
        if self.port is None:
            raise PrefectStackError("the server has not been started")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return self.api_url[: -len("/api")]

    @property
    def server_log(self) -> Path:
        return self.work_dir / "server.log"

    @property
    def running_workers(self) -> list[Worker]:
        return [w for w in self._workers if w.running]

    def client(self) -> SyncPrefectClient:
        """A synchronous client on this server (use as a context manager)."""
        from prefect.client.orchestration import SyncPrefectClient

        return SyncPrefectClient(self.api_url)

    def client_env(self) -> dict[str, str]:
        """Environment for a Prefect CLI or client process talking to this server."""
        home = self.work_dir / "client-home"
        home.mkdir(parents=True, exist_ok=True)
        return {
            **_clean_environ(),
            "PREFECT_API_URL": self.api_url,
            "PREFECT_HOME": str(home),
            "DO_NOT_TRACK": "1",
            "JUSTIN_FLOWS_ROOT": str(self.root),
        }

    # -- server -----------------------------------------------------------------------------
    def start_server(self) -> None:
        """Start ``prefect server start`` (migrating its database) and wait for /api/health."""
        if self._server is not None and self._server.poll() is None:
            raise PrefectStackError(f"server already running at {self.api_url}")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.server_home.mkdir(parents=True, exist_ok=True)
        if self.port is None:
            self.port = _free_port(self.host)
        env = {
            **_clean_environ(),
            "PREFECT_HOME": str(self.server_home),
            "PREFECT_API_DATABASE_CONNECTION_URL": prefect_database_url(self.database_url),
            "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": LEASE_STORAGE,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
            "PREFECT_UI_API_URL": f"{self.public_url.rstrip('/')}/api" if self.public_url else self.api_url,
            **self.server_env,
        }
        argv = [self.prefect_exe, "server", "start", "--host", self.host, "--port", str(self.port), "--analytics-off"]
        started = time.monotonic()
        with self.server_log.open("ab") as log:
            self._server = subprocess.Popen(
                argv, cwd=self.work_dir, env=env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        try:
            self.wait_healthy(self.startup_timeout)
        except BaseException:
            self.stop_server()
            raise
        self.server_start_seconds.append(time.monotonic() - started)

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as resp:
                return resp.status == 200 and json.loads(resp.read()) is True
        except (OSError, ValueError, urllib.error.URLError):
            return False

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._server is not None and self._server.poll() is not None:
                raise PrefectStackError(
                    f"prefect server exited with {self._server.returncode}; tail of {self.server_log}:\n"
                    + _tail(self.server_log)
                )
            if self.healthy():
                return
            time.sleep(0.25)
        raise PrefectStackError(f"prefect server not healthy after {timeout:.0f} s:\n{_tail(self.server_log)}")

    def stop_server(self, timeout: float = 30.0) -> None:
        proc, self._server = self._server, None
        if proc is not None:
            _terminate(proc, timeout, group=True)

    def restart_server(self) -> None:
        """Stop the server and start it again on the same port, database and lease directory."""
        self.stop_server()
        self.start_server()

    # -- pool and deployments ---------------------------------------------------------------
    def ensure_pool(self) -> None:
        """Create the process work pool, or resume it if an earlier drain paused it."""
        from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
        from prefect.exceptions import ObjectAlreadyExists

        with self.client() as client:
            try:
                client.create_work_pool(WorkPoolCreate(name=POOL, type="process"))
            except ObjectAlreadyExists:
                client.update_work_pool(POOL, WorkPoolUpdate(is_paused=False))

    def prefect(self, *args: str, timeout: float = 300.0, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``prefect --no-prompt ARGS`` from the checkout against this server."""
        done = subprocess.run(
            [self.prefect_exe, "--no-prompt", *args], cwd=self.root, env=self.client_env(),
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        if check and done.returncode != 0:
            raise PrefectStackError(
                f"prefect {' '.join(args)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
        return done

    def deploy(self, prefect_file: Path | None = None, names: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
        """``prefect --no-prompt deploy --all`` (or ``--name`` each of ``names``) from ``prefect_file``."""
        args = ["deploy"]
        if prefect_file is not None:
            args += ["--prefect-file", str(prefect_file)]
        if names:
            for name in names:
                args += ["--name", name]
        else:
            args.append("--all")
        return self.prefect(*args)

    # -- workers ----------------------------------------------------------------------------
    def worker_environ(self) -> dict[str, str]:
        home = self.work_dir / "worker-home"
        home.mkdir(parents=True, exist_ok=True)
        return {
            **_clean_environ(),
            **self.worker_env,
            "PREFECT_API_URL": self.api_url,
            "PREFECT_HOME": str(home),
            "PREFECT_WORKER_QUERY_SECONDS": str(self.worker_query_seconds),
            "PREFECT_WORKER_PREFETCH_SECONDS": str(self.worker_prefetch_seconds),
            "DO_NOT_TRACK": "1",
            "PYTHONUNBUFFERED": "1",
            "JUSTIN_VENV": str(self.bin_dir.parent),
        }

    def start_worker(self, name: str | None = None) -> Worker:
        """Start one ``prefect worker start --pool justin-process`` through ``scripts/worker``."""
        self._worker_serial += 1
        name = name or f"justin-worker-{self._worker_serial}"
        log = self.work_dir / f"{name}.log"
        argv = ["bash", str(self.root / "scripts" / "worker"), "--name", name]
        with log.open("ab") as out:
            proc = subprocess.Popen(
                argv, cwd=self.work_dir, env=self.worker_environ(), stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        worker = Worker(name, proc, log)
        self._workers.append(worker)
        return worker

    def wait_workers_online(self, timeout: float = 60.0) -> None:
        """Until every running worker has sent its first heartbeat to the pool."""
        wanted = {w.name for w in self.running_workers}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for w in self._workers:
                if not w.running and w.name in wanted:
                    raise PrefectStackError(f"worker {w.name} exited with {w.proc.returncode}:\n{_tail(w.log)}")
            with self.client() as client:
                online = {w.name for w in client.read_workers_for_work_pool(POOL) if w.status.value == "ONLINE"}
            if wanted <= online:
                return
            time.sleep(0.5)
        raise PrefectStackError(f"workers {sorted(wanted)} not online after {timeout:.0f} s")

    def stop_worker(self, worker: Worker, timeout: float = 20.0) -> None:
        _terminate(worker.proc, timeout, group=False)

    # -- flow runs --------------------------------------------------------------------------
    def flow_runs(self, states: Iterable[str] = (), deployment_ids: Iterable[UUID] = ()) -> list[FlowRun]:
        from prefect.client.schemas.filters import (
            FlowRunFilter,
            FlowRunFilterDeploymentId,
            FlowRunFilterState,
            FlowRunFilterStateType,
        )
        from prefect.client.schemas.objects import StateType

        flt = FlowRunFilter()
        wanted = list(states)
        if wanted:
            flt.state = FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType(s) for s in wanted]))
        ids = list(deployment_ids)
        if ids:
            flt.deployment_id = FlowRunFilterDeploymentId(any_=ids)
        with self.client() as client:
            return list(client.read_flow_runs(flow_run_filter=flt, limit=200))

    def wait_for_runs(self, ids: Iterable[UUID], timeout: float = 120.0) -> list[FlowRun]:
        """Until each flow run is in a terminal state; returns them in the order given."""
        ids = list(ids)
        deadline = time.monotonic() + timeout
        with self.client() as client:
            while True:
                runs = [client.read_flow_run(i) for i in ids]
                if all(r.state is not None and r.state.type.value in TERMINAL for r in runs):
                    return runs
                if time.monotonic() > deadline:
                    pending = {str(r.id): (r.state.name if r.state else None) for r in runs}
                    logs = "\n".join(f"--- {w.name}\n{_tail(w.log, 25)}" for w in self._workers)
                    raise PrefectStackError(f"flow runs not finished after {timeout:.0f} s: {pending}\n{logs}")
                time.sleep(0.5)

    def wait_idle(self, timeout: float = 120.0) -> None:
        """Until no flow run is Pending, Running or Cancelling."""
        deadline = time.monotonic() + timeout
        while self.flow_runs(IN_FLIGHT):
            if time.monotonic() > deadline:
                names = [(r.name, r.state.name if r.state else None) for r in self.flow_runs(IN_FLIGHT)]
                raise PrefectStackError(f"flow runs still in flight after {timeout:.0f} s: {names}")
            time.sleep(0.5)

    # -- lifecycle --------------------------------------------------------------------------
    def start(self, deploy: bool = True) -> PrefectStack:
        """Server, pool, ``prefect deploy --all``, then the workers (online before returning)."""
        self.start_server()
        self.ensure_pool()
        if deploy:
            self.deploy()
        for _ in range(self.workers):
            self.start_worker()
        if self.workers:
            self.wait_workers_online()
        return self

    def drain(self, timeout: float = 120.0, pause_schedules: bool | None = None) -> None:
        """Pause the work pool (and the schedules), then wait until no run is in flight."""
        from prefect.client.schemas.actions import WorkPoolUpdate

        if pause_schedules is None:
            pause_schedules = self.owns_database
        with self.client() as client:
            client.update_work_pool(POOL, WorkPoolUpdate(is_paused=True))
            if pause_schedules:
                for dep in client.read_deployments():
                    for schedule in dep.schedules:
                        if schedule.active:
                            client.update_deployment_schedule(dep.id, schedule.id, active=False)
        self.wait_idle(timeout)

    def stop(self, drain_timeout: float = 120.0, pause_schedules: bool | None = None) -> None:
        """Drain, then SIGTERM the workers, then the server. Safe to call twice."""
        try:
            if self._server is not None and self._server.poll() is None and self.healthy():
                with contextlib.suppress(PrefectStackError):
                    self.drain(drain_timeout, pause_schedules)
        finally:
            for worker in self._workers:
                self.stop_worker(worker)
            self.stop_server()

    def close(self) -> None:
        """``stop()``, then drop a database this stack created and delete the work directory."""
        self.stop()
        if self.owns_database and self.pg is not None:
            with contextlib.suppress(Exception):
                self.pg.drop_database(self.database_url)
        if self.remove_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def __enter__(self) -> PrefectStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------- reading back


def describe_deployments(stack: PrefectStack) -> list[dict[str, str]]:
    """Each deployment as the server reports it: schedules, parameters, concurrency, pool."""
    rows = []
    with stack.client() as client:
        for dep in sorted(client.read_deployments(), key=lambda d: d.name):
            schedules = []
            for s in dep.schedules:
                sched = s.schedule
                every = getattr(sched, "interval", None)
                what = f"every {int(every.total_seconds())} s" if every is not None else getattr(sched, "cron", "?")
                schedules.append(f"{s.slug}: {what}{'' if s.active else ' (off)'}")
            limit = dep.global_concurrency_limit.limit if dep.global_concurrency_limit else None
            strategy = dep.concurrency_options.collision_strategy.value if dep.concurrency_options else None
            rows.append({
                "deployment": dep.name,
                "schedule": "; ".join(schedules) or "none (manual runs only)",
                "parameters": _parameters(dep.parameter_openapi_schema, dep.parameters),
                "concurrency": f"limit {limit}, {strategy}" if limit is not None else "unlimited",
                "pool": f"{dep.work_pool_name}/{dep.work_queue_name}",
                "paused": "yes" if dep.paused else "no",
            })  # fmt: skip
    return rows


def _parameters(schema: Mapping[str, Any] | None, values: Mapping[str, Any]) -> str:
    """Every parameter of the run form with the value a scheduled run gets (prefect.yaml's, else
    the flow's default)."""
    properties = (schema or {}).get("properties", {})
    shown = [f"{name}={json.dumps(values.get(name, spec.get('default')))}" for name, spec in properties.items()]
    return ", ".join(shown) or "(none)"


def markdown_table(rows: Sequence[Mapping[str, str]]) -> str:
    if not rows:
        return "(none)"
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]).replace("|", "\\|") for c in cols) + " |" for r in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------- operator command


def _say(text: str) -> None:
    print(text, flush=True)


@contextlib.contextmanager
def _sandbox_services(work: Path) -> Iterator[dict[str, str]]:
    from justin_flows.sandbox import local_services

    with local_services(work) as env:
        yield {k: v for k, v in env.items() if k not in ("PREFECT_HOME", "SANDBOX_MQL", "JUSTIN_DATABASE_URL")}


def main(argv: Sequence[str] | None = None) -> int:
    """Bring up the real deployment path on this machine (what ``scripts/deploy`` runs)."""
    parser = argparse.ArgumentParser(
        prog="scripts/deploy",
        description="Prefect server on PostgreSQL, the justin-process pool, prefect deploy --all, workers.",
    )
    parser.add_argument("--keep", action="store_true", help="leave the server, UI and workers running until Ctrl-C")
    parser.add_argument("--workers", type=int, default=1, help="worker processes on this machine (default 1)")
    parser.add_argument("--host", default="127.0.0.1", help="address the server listens on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=4200, help="server and UI port (default 4200; 0 = any free port)")
    parser.add_argument(
        "--public-url", help="how browsers and other machines reach the server, e.g. http://prefect.example.org:4200"
    )
    parser.add_argument("--work-dir", type=Path, default=REPO_ROOT / ".sandbox" / "deploy",
                        help="server home (lease files), logs (default .sandbox/deploy/)")  # fmt: skip
    parser.add_argument("--sandbox", action="store_true",
                        help="point the workers at local throw-away Rucio, MetaCat and HTCondor stand-ins")  # fmt: skip
    args = parser.parse_args(argv)
    if args.workers < 0:
        parser.error("--workers must be 0 or more")

    from justin_flows.db.migrate import upgrade
    from justin_flows.testing.postgres import PostgresServer

    pg: PostgresServer | None = None
    created: list[str] = []
    work: Path = args.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as cleanup:

        def local_database(prefix: str) -> str:
            nonlocal pg
            if pg is None:
                pg = PostgresServer.discover()
                cleanup.callback(pg.close)
            url = pg.create_database(prefix=prefix)
            created.append(url)
            return url

        worker_env: dict[str, str] = {}
        if args.sandbox:
            _say("starting the sandbox's local services (Rucio, MetaCat, HTCondor stand-ins) ...")
            worker_env.update(cleanup.enter_context(_sandbox_services(work / "sandbox")))
        results_url = os.environ.get("JUSTIN_DATABASE_URL") or local_database("justin_results")
        prefect_url = os.environ.get("PREFECT_API_DATABASE_CONNECTION_URL") or local_database("prefect")
        worker_env["JUSTIN_DATABASE_URL"] = results_url
        _say("1. justin-flows db upgrade (results database migrations first)")
        upgrade(results_url)
        stack = PrefectStack(
            database_url=prefect_url, work_dir=work, worker_env=worker_env, workers=args.workers, host=args.host,
            port=args.port or None, public_url=args.public_url, owns_database=prefect_url in created,
        )  # fmt: skip
        _say(f"2. prefect server start on PostgreSQL, leases in {stack.lease_dir}")
        stack.start_server()
        cleanup.callback(stack.stop)
        _say(f"   API {stack.api_url} (up in {stack.server_start_seconds[-1]:.1f} s)")
        _say(f"3. work pool {POOL} (process)")
        stack.ensure_pool()
        _say("4. prefect --no-prompt deploy --all")
        stack.deploy()
        _say(f"5. {args.workers} worker(s): scripts/worker --pool {POOL}")
        for _ in range(args.workers):
            stack.start_worker()
        if args.workers:
            stack.wait_workers_online()
        _say("\ndeployments as the server reports them:\n" + markdown_table(describe_deployments(stack)))
        _say(f"\nPrefect UI: {args.public_url or stack.ui_url}")
        _say(f"logs: {work}/server.log, {work}/justin-worker-*.log")
        if args.keep:
            _say("running; Ctrl-C drains (pauses the pool, waits for runs in flight) and stops")
            stopped = False

            def _stop(_sig: int, _frame: object) -> None:
                nonlocal stopped
                stopped = True

            signal.signal(signal.SIGTERM, _stop)
            signal.signal(signal.SIGINT, _stop)
            while not stopped:
                time.sleep(0.5)
        _say("draining and stopping ...")
        stack.stop()
        for url in created:  # databases this command made are throw-away; set the URLs to keep data
            assert pg is not None
            with contextlib.suppress(Exception):
                pg.drop_database(url)
        _say("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
