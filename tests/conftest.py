"""Session-wide real services for the tests: PostgreSQL, Rucio, MetaCat, a Prefect server.

Each service starts once per test session, only when a test asks for it, and is torn
down at the end. Tests isolate themselves by truncating the results database (``db``)
and by unique names in Rucio and MetaCat.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from justin_flows.db.engine import get_engine
from justin_flows.db.migrate import upgrade
from justin_flows.db.models import Base
from justin_flows.ledger import LEDGER
from justin_flows.settings import get_settings
from justin_flows.testing.postgres import PostgresServer
from justin_flows.testing.rucio_server import RucioServer

# fast retries in tests; the policy (3 attempts) itself stays as in production
os.environ.setdefault("JUSTIN_RETRY__BACKOFF_SECONDS", "0.05")
os.environ.setdefault("JUSTIN_RETRY__MAX_BACKOFF_SECONDS", "0.2")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def reset_caches() -> None:
    """Forget cached settings and engines after a test changed the environment."""
    get_settings.cache_clear()
    get_engine.cache_clear()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    server = PostgresServer.discover()
    yield server
    server.close()


@pytest.fixture(scope="session")
def database_url(pg_server: PostgresServer) -> Iterator[str]:
    """This test session's own migrated results database, exported as JUSTIN_DATABASE_URL."""
    url = pg_server.create_database()
    upgrade(url)
    os.environ["JUSTIN_DATABASE_URL"] = url
    reset_caches()
    yield url
    get_engine().dispose()
    pg_server.drop_database(url)


@pytest.fixture
def db(database_url: str) -> Iterator[Engine]:
    """The results database, emptied before the test."""
    engine = get_engine()
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    LEDGER.drain()
    yield engine


@pytest.fixture
def tmp_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh HOME and cwd (the MetaCat client falls back to both for its token library)."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    return home


@pytest.fixture(scope="session")
def rucio_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RucioServer]:
    """A real Rucio 41.5.1 server for the session; this process's client points at it as root."""
    from rucio.common.config import clean_cached_config

    server = RucioServer(work_dir=tmp_path_factory.mktemp("rucio-server"))
    with server, pytest.MonkeyPatch.context() as mp:
        for key, value in server.client_env().items():
            mp.setenv(key, value)
        mp.setenv("JUSTIN_RUCIO__ACCOUNT", server.root_account)
        clean_cached_config()  # the client caches its parsed config per process
        reset_caches()
        yield server
    clean_cached_config()
    reset_caches()


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """A real local Prefect server (temporary SQLite) for the session's flow runs."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
