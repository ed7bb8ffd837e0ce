"""The schema: migrations equal the models on PostgreSQL, upserts, the ledger table."""

from __future__ import annotations

import datetime as dt

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, create_engine, func, inspect, select, text

from justin_flows.db.engine import transaction, upsert
from justin_flows.db.migrate import upgrade
from justin_flows.db.models import Base, ExternalCall, KeyNameValue, Site
from justin_flows.ledger import CallRecord, Ledger, RunInfo
from justin_flows.testing.postgres import PostgresServer


def test_migrations_from_empty_to_head_equal_the_models_on_postgresql(pg_server: PostgresServer) -> None:
    url = pg_server.create_database("justin_migrations")
    try:
        upgrade(url)
        engine = create_engine(url)
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
            tables = set(inspect(conn).get_table_names())
        engine.dispose()
        assert diff == []
        assert {t.name for t in Base.metadata.sorted_tables} <= tables
        assert "alembic_version" in tables
    finally:
        pg_server.drop_database(url)


def test_migrations_also_build_an_sqlite_database(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'embedded.db'}"
    upgrade(url)
    engine = create_engine(url)
    assert "external_calls" in inspect(engine).get_table_names()
    with engine.begin() as conn:  # server-side defaults work on SQLite too
        conn.execute(text("INSERT INTO workflows (campaign_id, state, state_message, mql, refind_seconds) "
                          "VALUES (0, 'draft', '', '', 0)"))
        assert conn.execute(text("SELECT created FROM workflows WHERE workflow_id = 2")).scalar() is not None
    engine.dispose()


def test_upsert_inserts_then_updates_in_place(db: Engine) -> None:
    with transaction() as s:
        upsert(s, KeyNameValue.__table__, [{"key_name": "k", "key_value": "1"}], ["key_name"], ["key_value"])
    with transaction() as s:
        upsert(s, KeyNameValue.__table__, [{"key_name": "k", "key_value": "2"}], ["key_name"], ["key_value"])
    with transaction() as s:
        assert s.scalars(select(KeyNameValue.key_value)).all() == ["2"]


def test_a_failing_transaction_keeps_what_was_stored(db: Engine) -> None:
    with transaction() as s:
        s.add(Site(site_name="UK_Keep"))
    with pytest.raises(RuntimeError), transaction() as s:
        s.add(Site(site_name="UK_Lost"))
        s.flush()
        raise RuntimeError("bad input half way")
    with transaction() as s:
        assert s.scalars(select(Site.site_name)).all() == ["UK_Keep"]


def test_bad_enum_value_is_refused(db: Engine) -> None:
    from justin_flows.db.models import Workflow

    with pytest.raises(Exception, match="running|not among|is not a valid"), transaction() as s:
        s.add(Workflow(state="runnning"))  # type: ignore[arg-type]
        s.flush()


def test_ledger_flush_writes_one_row_per_attempt_with_the_run(db: Engine) -> None:
    ledger = Ledger()
    now = dt.datetime.now(dt.timezone.utc)
    ledger.record(CallRecord("rucio", "ping", 1, "ok", now, 1.5))
    ledger.record(CallRecord("rucio", "ping", 1, "error", now, 2.5, "ConnectionError: refused"))
    assert ledger.flush(db, RunInfo("run-1", "rucio-health", "rucio-health-300s")) == 2
    assert ledger.flush(db, RunInfo("run-1")) == 0
    with transaction() as s:
        rows = s.execute(select(ExternalCall.flow_run_id, ExternalCall.outcome, ExternalCall.error)).all()
        assert sorted(rows) == [("run-1", "error", "ConnectionError: refused"), ("run-1", "ok", None)]
        assert s.scalar(select(func.count()).select_from(ExternalCall)) == 2


def test_migrations_seed_montecarlo_and_the_awt_workflow_and_move_the_sequences(pg_server: PostgresServer) -> None:
    from sqlalchemy.orm import Session

    from justin_flows.db.models import Storage, Workflow

    url = pg_server.create_database("justin_seed")
    try:
        upgrade(url)
        engine = create_engine(url)
        with Session(engine) as s, s.begin():
            assert s.get(Storage, 1).rse_name == "MONTECARLO"  # type: ignore[union-attr]
            assert s.get(Workflow, 1) is not None
            s.add(Workflow(mql="files from test:ds"))
            s.add(Storage(rse_name="NEW_RSE"))
            s.flush()
            assert s.scalar(select(func.max(Workflow.workflow_id))) == 2
            assert s.scalar(select(Storage.rse_id).where(Storage.rse_name == "NEW_RSE")) == 2
        engine.dispose()
    finally:
        pg_server.drop_database(url)
