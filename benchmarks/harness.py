"""What every benchmark shares: throw-away services behind latency proxies, and measuring.

``BenchServices`` starts a results database (PostgreSQL, migrated) plus a second, empty one
for baselines that write row by row, a real Rucio 41.5.1 server on its own PostgreSQL
database, the MetaCat double, and one ``LatencyProxy`` (default 50 ms per request) in front
of each of Rucio and MetaCat. This process's Rucio client and the justin-flows settings point
at the proxies, so the project's code and the baselines see the same latency, and the
proxies' request counters are the wire-level call counts of both.
"""

from __future__ import annotations

import configparser
import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

METACAT_USER = "bench-agent"
METACAT_PASSWORD = "bench-password"


def say(text: str) -> None:
    print(text, flush=True)


@dataclass
class Measurement:
    """Calls seen at the proxies (HTTP requests) or made by the code, and wall time."""

    calls: int
    seconds: float
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Result:
    """One row of the side-by-side table."""

    name: str
    project: Measurement | None
    baseline: Measurement | None
    target: str = ""
    met: bool | None = None
    notes: list[str] = field(default_factory=list)
    skipped: str | None = None


def reset_settings() -> None:
    from justin_flows.db.engine import get_engine
    from justin_flows.settings import get_settings

    get_settings.cache_clear()
    get_engine.cache_clear()


@contextlib.contextmanager
def env(values: dict[str, str]) -> Iterator[None]:
    """``values`` set in ``os.environ`` (settings re-read) for the block, then restored."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    reset_settings()
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        reset_settings()


def _bench_rucio_server_class(cache_url: str) -> type:
    """``RucioServer`` with a working cache and a few ``[core]`` options in its config file.

    Production Rucio servers run with memcached; the test launcher points the cache at a
    port where nothing listens, so every request reads the server's configuration table
    from the database, and, with no GeoIP database (none can be downloaded here), the
    default replica sort looked up five ``[core] geoip_*`` options in the database for every
    file: ``list_replicas`` of 500 files took about 20 s. The benchmark server gets the
    memcached stand-in and those options in its file (with a download URL that fails at
    once); the sort still runs and still finds no GeoIP database. Both sides see the same
    server.
    """
    from justin_flows.testing.rucio_server import RucioServer

    class BenchRucioServer(RucioServer):
        def _write_configs(self, venv: Path) -> None:
            super()._write_configs(venv)
            parser = configparser.RawConfigParser()
            parser.read(self.server_config_path)
            parser["cache"] = {"url": cache_url}
            parser["core"] = {
                "geoip_ignore_error": "True",
                "geoip_expire_delay": "30",
                "geoip_download_url": "http://127.0.0.1:9/no-geoip-database",
                "geoip_download_verify_tls": "False",
                "geoip_licence_key": "none",
            }
            with self.server_config_path.open("w") as out:
                parser.write(out)

    return BenchRucioServer


class BenchServices:
    """The services of one benchmark run; a context manager."""

    def __init__(self, delay_ms: float = 50.0) -> None:
        self.delay_ms = delay_ms
        self.work = Path(tempfile.mkdtemp(prefix="apirates-bench-"))
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> BenchServices:
        try:
            self._start()
        except BaseException:
            self._stack.close()
            shutil.rmtree(self.work, ignore_errors=True)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            from justin_flows.db.engine import get_engine

            with contextlib.suppress(Exception):
                get_engine().dispose()
            self._stack.close()
        finally:
            shutil.rmtree(self.work, ignore_errors=True)

    def _start(self) -> None:
        from justin_flows.db.migrate import upgrade
        from justin_flows.testing.latency_proxy import LatencyProxy
        from justin_flows.testing.metacat_double import MetaCatDouble
        from justin_flows.testing.postgres import PostgresServer
        from justin_flows.testing.rucio_server import ensure_server_venv

        t0 = time.perf_counter()
        self.pg = PostgresServer.discover()
        self._stack.callback(self.pg.close)
        self.db_url = self._database("apirates_bench")
        self.baseline_db_url = self._database("apirates_bench_baseline")
        for url in (self.db_url, self.baseline_db_url):
            upgrade(url)
        rucio_db = self._database("apirates_bench_rucio").replace("postgresql+psycopg2://", "postgresql+psycopg://")
        ensure_server_venv()
        from memcache_standin import MemcacheStandin

        cache = self._stack.enter_context(MemcacheStandin())
        self.rucio = _bench_rucio_server_class(cache.url)(database_url=rucio_db, work_dir=self.work / "rucio")
        self.rucio.start()
        self._stack.callback(self.rucio.stop)
        self.metacat = self._stack.enter_context(MetaCatDouble())
        self.metacat.add_user(METACAT_USER, METACAT_PASSWORD)
        self.rucio_proxy = self._stack.enter_context(LatencyProxy(self.rucio.url, delay_ms=self.delay_ms))
        self.metacat_proxy = self._stack.enter_context(LatencyProxy(self.metacat.server_url, delay_ms=self.delay_ms))
        client_cfg = self.work / "client-via-proxy" / "rucio.cfg"
        parser = configparser.RawConfigParser()
        parser.read(self.rucio.client_config_path)
        parser["client"]["rucio_host"] = self.rucio_proxy.url
        parser["client"]["auth_host"] = self.rucio_proxy.url
        client_cfg.parent.mkdir(parents=True)
        with client_cfg.open("w") as out:
            parser.write(out)
        self.environment = {
            "RUCIO_CONFIG": str(client_cfg),
            "JUSTIN_DATABASE_URL": self.db_url,
            "JUSTIN_RUCIO__ACCOUNT": self.rucio.root_account,
            "JUSTIN_METACAT__AUTH_SERVER_URL": self.metacat_proxy.url_for(self.metacat.auth_url),
            "JUSTIN_METACAT__SERVER_INPUTS_URL": self.metacat_proxy.url_for(self.metacat.server_url),
            "JUSTIN_METACAT__SERVER_OUTPUTS_URL": self.metacat_proxy.url_for(self.metacat.server_url),
            "JUSTIN_METACAT__USERNAME": METACAT_USER,
            "JUSTIN_METACAT__LOGIN_METHOD": "password",
            "JUSTIN_METACAT__PASSWORD": METACAT_PASSWORD,
            "HOME": str(self.work / "home"),  # the MetaCat client's token library falls back to it
        }
        (self.work / "home").mkdir()
        self._stack.enter_context(env(self.environment))
        from rucio.common.config import clean_cached_config

        clean_cached_config()
        self._stack.callback(clean_cached_config)
        say(f"services up in {time.perf_counter() - t0:.1f} s: Rucio {self.rucio.url} "
            f"(PostgreSQL, memcached stand-in), "
            f"MetaCat double {self.metacat.server_url}, {self.delay_ms:g} ms proxies "
            f"{self.rucio_proxy.url} / {self.metacat_proxy.url}")

    def _database(self, prefix: str) -> str:
        url = self.pg.create_database(prefix=prefix)
        self._stack.callback(self.pg.drop_database, url)
        return url

    # ---------------------------------------------------------------- clients

    def direct_rucio(self) -> Any:
        """A Rucio client talking to the server itself (no proxy): for seeding."""
        from rucio.client import Client

        return Client(rucio_host=self.rucio.url, auth_host=self.rucio.url, account=self.rucio.root_account,
                      auth_type="userpass", creds=self.rucio.root_creds)

    def proxied_rucio(self) -> Any:
        """A Rucio client through the latency proxy, as this process's config says."""
        from rucio.client import Client

        return Client(account=self.rucio.root_account)

    # ---------------------------------------------------------------- measuring

    def measure(self, fn: Callable[[], T]) -> tuple[T, Measurement]:
        """Run ``fn``; its wall time and the HTTP requests both proxies saw meanwhile."""
        from justin_flows.ledger import LEDGER

        LEDGER.drain()
        for proxy in (self.rucio_proxy, self.metacat_proxy):
            proxy.reset_counters()
        start = time.perf_counter()
        value = fn()
        seconds = time.perf_counter() - start
        records = LEDGER.drain()
        rucio, metacat = self.rucio_proxy.requests, self.metacat_proxy.requests
        detail: dict[str, Any] = {"rucio_http": rucio, "metacat_http": metacat}
        if records:
            detail["ledger"] = len(records)
            errors = [r for r in records if r.outcome == "error"]
            if errors:
                detail["ledger_errors"] = len(errors)
                kinds = Counter(f"{r.service}.{r.operation}: {(r.error or '')[:120]}" for r in errors)
                say(f"    ledger: {len(errors)} failed attempt(s): {dict(kinds.most_common(3))}")
            if os.environ.get("BENCH_VERBOSE"):
                ops = Counter(f"{r.service}.{r.operation}" for r in records)
                slow = sorted(records, key=lambda r: -r.duration_ms)[:3]
                say(f"    ledger ops {dict(ops)}; slowest {[(r.operation, round(r.duration_ms)) for r in slow]}")
        return value, Measurement(rucio + metacat, seconds, detail)


def start_prefect_server_quietly() -> float:
    """Start Prefect's ephemeral server (if not yet up) with its output in ``$PREFECT_HOME/server.log``.

    The server is a subprocess that inherits this process's stdout and stderr; its services
    log cancellation tracebacks when it is stopped at exit, which would bury the table.
    Returns the seconds the start took.
    """
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    if server.running:
        return 0.0
    log = Path(os.environ.get("PREFECT_HOME", tempfile.gettempdir())) / "server.log"
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    start = time.perf_counter()
    try:
        with log.open("ab") as out:
            os.dup2(out.fileno(), 1)
            os.dup2(out.fileno(), 2)
            server.start()
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])
    return time.perf_counter() - start
