"""Emptying the results database between tests and between trials (one place, one TRUNCATE)."""

from __future__ import annotations

from sqlalchemy import text

from justin_flows.db.engine import get_engine
from justin_flows.db.models import Base
from justin_flows.ledger import LEDGER


def empty_database() -> None:
    """Every table emptied and sequences restarted (migration 0002's reference rows too:
    tests seed what they rely on), and the in-memory ledger drained."""
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with get_engine().begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    LEDGER.drain()
