"""One engine per process, built from settings, and the transaction helper every writer uses."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from sqlalchemy import Engine, Table, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.dml import Insert

from justin_flows.settings import get_settings


@lru_cache(maxsize=8)
def get_engine(url: str | None = None) -> Engine:
    """A pooled engine for ``url`` (default: settings' database URL), cached per process."""
    url = url or get_settings().database_url.get_secret_value()
    engine = create_engine(url, pool_pre_ping=True, hide_parameters=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


@contextmanager
def transaction(engine: Engine | None = None) -> Iterator[Session]:
    """A session whose work commits as one unit, or rolls back entirely on any error."""
    factory = sessionmaker(bind=engine or get_engine(), expire_on_commit=False)
    with factory.begin() as session:
        yield session


def upsert(
    session: Session,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    conflict: Sequence[str],
    update: Sequence[str] | None = None,
) -> None:
    """INSERT ... ON CONFLICT (``conflict``) DO UPDATE ``update`` (or DO NOTHING), one statement.

    Uses the dialect's own ON CONFLICT so concurrent writers never race a read-then-write.
    """
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    insert_fn = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}.get(dialect)
    if insert_fn is None:
        raise NotImplementedError(f"upsert is not implemented for the {dialect} dialect")
    stmt: Insert = insert_fn(table).values(list(rows))
    if update:
        stmt = stmt.on_conflict_do_update(  # type: ignore[attr-defined]
            index_elements=list(conflict), set_={c: stmt.excluded[c] for c in update}  # type: ignore[attr-defined]
        )
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=list(conflict))  # type: ignore[attr-defined]
    session.execute(stmt)
