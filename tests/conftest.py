"""Session-wide real services for the tests: PostgreSQL, Rucio, MetaCat, a Prefect server.

Each service starts once per test session, only when a test asks for it, and is torn
down at the end. Tests isolate themselves by truncating the results database (``db``)
and by unique names in Rucio and MetaCat.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine

from justin_flows.db.engine import get_engine
from justin_flows.db.migrate import upgrade
from justin_flows.settings import get_settings
from justin_flows.testing.condor_standins import install_condor_standins
from justin_flows.testing.metacat_double import MetaCatDouble
from justin_flows.testing.postgres import PostgresServer
from justin_flows.testing.rucio_server import RucioServer
from tests.results_db import empty_database

# fast retries in tests; the policy (3 attempts) itself stays as in production
os.environ.setdefault("JUSTIN_RETRY__BACKOFF_SECONDS", "0.05")
os.environ.setdefault("JUSTIN_RETRY__MAX_BACKOFF_SECONDS", "0.2")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


METACAT_USER = "justin-agent"
METACAT_PASSWORD = "agent-password-canary-1e9c"


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
    """The results database, emptied before the test (the reference rows of migration 0002 too:
    tests seed what they rely on)."""
    empty_database()
    yield get_engine()


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


@pytest.fixture
def stopped_rucio(rucio_server: RucioServer) -> Iterator[RucioServer]:
    """The session's Rucio server, stopped for this test and restarted (same port and data) after."""
    rucio_server.stop()
    try:
        yield rucio_server
    finally:
        rucio_server.restart()


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """A real local Prefect server (temporary SQLite) for the session's flow runs."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def metacat_double() -> Iterator[MetaCatDouble]:
    """The MetaCat protocol double for the session, with the agents' user and namespaces."""
    with MetaCatDouble() as double:
        double.add_user(METACAT_USER, METACAT_PASSWORD)
        double.seed_dataset("justin-logs:namespace-seed")  # creates the justin-logs namespace
        yield double


def metacat_settings(double: MetaCatDouble) -> dict[str, str]:
    """The JUSTIN_METACAT__* settings for the agents' user on ``double`` (password login)."""
    return {
        "JUSTIN_METACAT__AUTH_SERVER_URL": double.auth_url,
        "JUSTIN_METACAT__SERVER_INPUTS_URL": double.server_url,
        "JUSTIN_METACAT__SERVER_OUTPUTS_URL": double.server_url,
        "JUSTIN_METACAT__USERNAME": METACAT_USER,
        "JUSTIN_METACAT__LOGIN_METHOD": "password",
        "JUSTIN_METACAT__PASSWORD": METACAT_PASSWORD,
    }


@pytest.fixture
def metacat_env(metacat_double: MetaCatDouble, tmp_home: Path) -> Iterator[MetaCatDouble]:
    """Settings pointing at the double (password login), for code that builds its own adapter."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in metacat_settings(metacat_double).items():
            mp.setenv(key, value)
        reset_caches()
        yield metacat_double
    reset_caches()


@dataclass
class CondorStandins:
    bin_dir: Path
    state_dir: Path
    token_file: Path


@pytest.fixture
def condor_env(tmp_path: Path) -> Iterator[CondorStandins]:
    """condor_submit and condor_userprio stand-ins named in the settings."""
    standins = CondorStandins(tmp_path / "condor-bin", tmp_path / "condor-state", tmp_path / "bearer-token")
    install_condor_standins(standins.bin_dir, standins.state_dir)
    standins.token_file.write_text("test-bearer-token\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUSTIN_HTCONDOR__CONDOR_SUBMIT", str(standins.bin_dir / "condor_submit"))
        mp.setenv("JUSTIN_HTCONDOR__CONDOR_USERPRIO", str(standins.bin_dir / "condor_userprio"))
        mp.setenv("JUSTIN_HTCONDOR__SCHEDDS", "schedd01.test.invalid schedd02.test.invalid")
        mp.setenv("JUSTIN_HTCONDOR__COLLECTORS", "collector.test.invalid")
        mp.setenv("JUSTIN_HTCONDOR__BEARER_TOKEN_FILE", str(standins.token_file))
        reset_caches()
        yield standins
    reset_caches()
