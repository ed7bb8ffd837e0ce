"""Canary secrets: representative flows run with a recognisable value in every secret setting,
and none of those values (nor the secrets made at run time) shows up anywhere an operator or
another user can read: log records of any logger at DEBUG, Prefect's stored logs, artifacts,
flow- and task-run states, any database row outside the secret columns, what condor_submit
was given, or ``justin-flows settings``."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from rucio.client import Client
from sqlalchemy import Engine, select, text
from sqlalchemy.engine import make_url

from justin_flows.admin import enable_storage
from justin_flows.db.engine import get_engine, transaction
from justin_flows.db.models import Base, File, Job
from justin_flows.domain.naming import LOGS_SCOPE
from justin_flows.testing.condor_standins import read_calls
from justin_flows.testing.git_repo import file_url, make_git_repo
from justin_flows.testing.metacat_double import MetaCatDouble
from justin_flows.testing.rucio_server import RucioServer
from tests.conftest import METACAT_PASSWORD, CondorStandins, reset_caches
from tests.factory.helpers import seed_factory_stage
from tests.finder.conftest import RucioSeed
from tests.reliability.seeding import seed_finder_workflow
from tests.rucio_seed import add_rse, add_scope, unique
from tests.shared_data import REPO_ROOT

pytestmark = pytest.mark.usefixtures("prefect_server")

DB_PASSWORD = "canary-db-pass-5b7e1d"
CILOGON_SECRET = "canary-cilogon-secret-93af"
METACAT_TOKEN_SETTING = "canary-metacat-token-2d8e"
BEARER_TOKEN = "canary-bearer-token-c41d"
GIT_PASSWORD = "canary-git-pass-6e0b"
#: The columns where a job's own secrets belong.
SECRET_COLUMNS = {("jobs", "justin_job_secret"), ("jobs", "jobscript_secret")}


class _Everything(logging.Handler):
    """Sees every record any logger handles (also those that do not propagate to the root)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []
        self._fmt = logging.Formatter()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string is still text to search
            message = f"{record.msg!r} % {record.args!r}"
        parts = [record.name, message]
        if record.exc_info:
            parts.append(self._fmt.formatException(record.exc_info))
        self.texts.append(" ".join(parts))


@pytest.fixture
def every_log_record(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> Iterator[_Everything]:
    """DEBUG for every logger (prefect's too), every record captured however it is routed."""
    handler = _Everything()
    original = logging.Logger.handle

    def handle(self: logging.Logger, record: logging.LogRecord) -> None:
        handler.handle(record)
        original(self, record)

    monkeypatch.setattr(logging.Logger, "handle", handle)
    caplog.set_level(logging.DEBUG)
    levels = {}
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger):
            levels[name] = logger.level
            logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


@dataclass
class Canaries:
    values: dict[str, str] = field(default_factory=dict)  # what -> value

    def add(self, what: str, value: str | bytes | None) -> None:
        if value:
            self.values[what] = value.decode() if isinstance(value, bytes) else value

    def find(self, where: str, texts: list[str], skip: frozenset[str] = frozenset()) -> list[str]:
        hits = []
        for what, value in self.values.items():
            if what in skip:
                continue
            for t in texts:
                if value in t:
                    at = t.index(value)
                    hits.append(f"{what} in {where}: ...{t[max(0, at - 80):at + len(value) + 20]!r}...")
                    break
        return hits


@pytest.fixture
def canary_settings(
    db: Engine, rucio_server: RucioServer, metacat_env: MetaCatDouble, condor_env: CondorStandins
) -> Iterator[Canaries]:
    """A canary in every secret setting (the MetaCat password already is one)."""
    canaries = Canaries()
    canaries.add("metacat password setting", METACAT_PASSWORD)
    url = make_url(os.environ["JUSTIN_DATABASE_URL"])
    with_password = url.set(password=DB_PASSWORD).render_as_string(hide_password=False)
    condor_env.token_file.write_text(BEARER_TOKEN + "\n")
    canaries.add("bearer token file contents", BEARER_TOKEN)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUSTIN_DATABASE_URL", with_password)
        mp.setenv("JUSTIN_CILOGON__CLIENT_SECRET", CILOGON_SECRET)
        mp.setenv("JUSTIN_CILOGON__CLIENT_ID", "justin-canary-client")
        mp.setenv("JUSTIN_METACAT__TOKEN", METACAT_TOKEN_SETTING)
        reset_caches()
        try:
            with get_engine().connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:  # noqa: BLE001
            pytest.skip(f"the test database refuses a password in the URL (not trust auth): {type(exc).__name__}")
        canaries.add("database URL password", DB_PASSWORD)
        canaries.add("CILogon client secret setting", CILOGON_SECRET)
        canaries.add("MetaCat token setting", METACAT_TOKEN_SETTING)
        yield canaries
        get_engine().dispose()
    reset_caches()


def _prefect_texts(flow_run_ids: list[str]) -> dict[str, list[str]]:
    """Stored logs, artifacts and flow/task run states and parameters, read back from the server."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()  # run logs are sent in the background: all of them first

    async def every(read_page: Any) -> list[Any]:
        items: list[Any] = []
        while page := await read_page(limit=200, offset=len(items)):
            items.extend(page)
        return items

    async def read() -> dict[str, list[str]]:
        async with get_client() as client:
            logs = await every(lambda **kw: client.read_logs(
                LogFilter(flow_run_id=LogFilterFlowRunId(any_=flow_run_ids)), **kw))  # type: ignore[arg-type]
            artifacts = await every(client.read_artifacts)
            runs = [await client.read_flow_run(i) for i in flow_run_ids]  # type: ignore[arg-type]
            tasks = await every(client.read_task_runs)
            states = []
            for r in runs:
                states.extend(await client.read_flow_run_states(r.id))
            return {
                "prefect logs": [f"{log.name} {log.message}" for log in logs],
                "artifacts": [json.dumps([a.key, a.description, a.data], default=str) for a in artifacts],
                "flow runs": [json.dumps([r.name, r.parameters, r.state_name, r.state.message if r.state else None],
                                         default=str) for r in runs],
                "flow run states": [f"{s.name} {s.message}" for s in states],
                "task runs": [f"{t.name} {t.state_name} {t.state.message if t.state else ''}" for t in tasks],
            }

    return asyncio.run(read())


def _database_texts() -> list[str]:
    texts = []
    with transaction() as s:
        for table in Base.metadata.sorted_tables:
            cols = [c for c in table.columns if (table.name, c.name) not in SECRET_COLUMNS]
            for row in s.execute(select(*cols)).all():
                texts.append(f"{table.name} {row!r}")
    return texts


def test_no_canary_secret_leaks_from_representative_flows(
    canary_settings: Canaries, every_log_record: _Everything, rucio_server: RucioServer,
    metacat_env: MetaCatDouble, condor_env: CondorStandins, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    from flows.finder.finder import finder_flow
    from flows.info_collector.jwks import jwks_flow
    from flows.info_collector.rucio_health import rucio_health_flow
    from flows.info_collector.sites import sites_flow
    from flows.info_collector.storages import storages_flow
    from flows.job_factory.factory import job_factory_flow
    from justin_flows.cli import main as cli

    canaries = canary_settings
    minted: list[str] = []
    mint = metacat_env.mint_token

    def spy(username: str, *args: Any, **kwargs: Any) -> str:
        token = mint(username, *args, **kwargs)
        minted.append(token)
        return token

    metacat_env.mint_token = spy  # type: ignore[method-assign]
    wid = seed_factory_stage(4)
    tag = unique("canary")
    rse = add_rse(Client(), unique("CANARY_").upper(), tmp_path / "rse",
                  attributes={"justin_test": tag, "country": "UK"}, protocols=[("file", 1, 1)],
                  limits={rucio_server.root_account: 10**9})  # fmt: skip
    finder = seed_finder_workflow(RucioSeed(), metacat_env, 3)
    gfactory = file_url(make_git_repo(REPO_ROOT / "tests" / "fixtures" / "gfactory" / "checkout", tmp_path / "gf"))
    states = []
    try:
        states.append(("rucio-health", rucio_health_flow(return_state=True)))
        states.append(("storages", storages_flow(rse_expression=f"justin_test={tag}", return_state=True)))
        enable_storage(rse)  # the second run makes its logs datasets: MetaCat login with the password
        add_scope(Client(), rucio_server.root_account, LOGS_SCOPE)
        states.append(("storages again", storages_flow(rse_expression=f"justin_test={tag}", return_state=True)))
        states.append(("sites", sites_flow(repo_url=gfactory, return_state=True)))
        states.append(("sites, credentials in the URL",
                       sites_flow(repo_url=f"https://justin:{GIT_PASSWORD}@127.0.0.1:9/gf.git", return_state=True)))
        states.append(("sites, refused URL with credentials",
                       sites_flow(repo_url=f"http://justin:{GIT_PASSWORD}@127.0.0.1:9/gf.git", return_state=True)))
        states.append(("finder", finder_flow(return_state=True)))
        states.append(("job factory", job_factory_flow(return_state=True)))
        os.environ["JUSTIN_CILOGON__OPENID_CONFIGURATION_URL"] = "https://127.0.0.1:9/.well-known/openid-configuration"
        reset_caches()
        states.append(("jwks, unreachable provider", jwks_flow(return_state=True)))
        os.environ["JUSTIN_METACAT__PASSWORD"] = "wrong-password-canary-77aa"  # a failing login
        reset_caches()
        canaries.add("wrong MetaCat password setting", "wrong-password-canary-77aa")
        with transaction() as s:
            s.execute(text("UPDATE storages SET rucio_write = true, justin_write = true"))
        states.append(("storages, MetaCat login refused", storages_flow(rse_expression=f"justin_test={tag}",
                                                                         return_state=True)))  # fmt: skip
        assert cli(["settings"]) == 0
    finally:
        os.environ.pop("JUSTIN_CILOGON__OPENID_CONFIGURATION_URL", None)
        os.environ["JUSTIN_METACAT__PASSWORD"] = METACAT_PASSWORD
        metacat_env.mint_token = mint  # type: ignore[method-assign]
        reset_caches()
    canaries.add("credentials in a repo URL", GIT_PASSWORD)

    # everything logged by the flows (from here on the test's own reads of the secrets are
    # logged too, by SQLAlchemy at DEBUG: they are not the project's)
    logged = list(every_log_record.texts)
    out, err = capsys.readouterr()
    logging.getLogger("sqlalchemy").setLevel(logging.WARNING)

    # the flows really ran, and really handled the secrets
    by_name = dict(states)
    for name in ("rucio-health", "storages", "storages again", "sites", "finder", "job factory"):
        assert by_name[name].is_completed(), (name, by_name[name].message)
    assert by_name["sites, credentials in the URL"].is_failed()
    assert by_name["jwks, unreachable provider"].is_failed()
    assert minted, "the storages group never logged in to MetaCat"
    with transaction() as s:
        assert len(s.scalars(select(File).where(File.workflow_id == finder.workflow_id)).all()) == 3
    for i, token in enumerate(minted):
        canaries.add(f"MetaCat session token {i}", token)
    rucio_token = Client().auth_token
    canaries.add("Rucio auth token", rucio_token)
    with transaction() as s:
        jobs = s.execute(select(Job.justin_job_secret, Job.jobscript_secret).where(Job.workflow_id == wid)).all()
    assert len(jobs) == 6
    canaries.add("cluster secret (justin_job_secret)", jobs[0][0])
    for i, (_, jobscript) in enumerate(jobs):
        canaries.add(f"jobscript secret {i}", jobscript)

    prefect = _prefect_texts([str(state.state_details.flow_run_id) for _, state in states])
    places = {
        "log records (any logger, DEBUG)": logged,
        "stdout/stderr": [out, err],
        "database rows (outside the jobs' secret columns)": _database_texts(),
        "condor stand-in calls (argv, submit descriptions, env)": [json.dumps(c) for c in read_calls(condor_env.state_dir)],
        "returned flow states": [f"{n} {s.name} {s.message} {s.data!r}" for n, s in states],
        **prefect,
    }
    assert len(logged) > 100 and prefect["artifacts"] and prefect["prefect logs"]
    # a credential an operator types into a flow parameter is stored by Prefect as typed (so
    # never put one there); what is checked is that it goes no further than the parameters
    typed = {"flow runs": frozenset({"credentials in a repo URL"})}
    leaks = [hit for where, texts in places.items()
             for hit in canaries.find(where, texts, typed.get(where, frozenset()))]  # fmt: skip
    assert not leaks, "secrets leaked:\n" + "\n".join(leaks)
    assert len(canaries.values) >= 12


def test_the_search_sees_a_canary_in_each_place_it_looks(every_log_record: _Everything, db: Engine) -> None:
    """The detector itself: a canary put in a run log, a non-propagating logger, an artifact, a
    task state and the flow's final state is found in each of those places."""
    from prefect import flow, get_run_logger, task
    from prefect.artifacts import create_table_artifact
    from prefect.states import Failed

    canary = "canary-self-check-0a1b2c"
    quiet = logging.getLogger("justin_flows.canary_self_check")
    quiet.propagate = False

    @task
    def leaky_task() -> None:
        raise RuntimeError(f"task failed with {canary}")

    @flow(name="canary-self-check")
    def leaky() -> Any:
        get_run_logger().info("run logger: %s", canary)
        quiet.warning("quiet logger: %s", canary)
        create_table_artifact(key="canary-self-check", table=[{"value": canary}])
        leaky_task(return_state=True)
        return Failed(message=f"flow failed with {canary}")

    state = leaky(return_state=True)
    canaries = Canaries({"self-check canary": canary})
    prefect = _prefect_texts([str(state.state_details.flow_run_id)])
    for where, texts in {"log records": every_log_record.texts, **prefect}.items():
        if where == "flow runs":  # the parameters: there are none
            continue
        assert canaries.find(where, texts), f"the search missed the canary in {where}"
