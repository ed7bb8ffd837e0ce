"""The external-call ledger: one record per attempt of every call to an external service.

Adapters record into the process-wide ``LEDGER`` in memory (cheap: no I/O on the call
path); the flow writes the batch to the ``external_calls`` table once per run with
``flush()``. The api-rates report and the dashboard are computed from these rows.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, insert

from justin_flows.db.models import ExternalCall
from justin_flows.secrets import scrub

MAX_ERROR_CHARS = 500


@dataclass(frozen=True)
class CallRecord:
    service: str
    operation: str
    attempt: int
    outcome: str  # "ok" or "error"
    started_at: dt.datetime
    duration_ms: float
    error: str | None = None


@dataclass
class RunInfo:
    """Which flow run the records belong to (filled in by the flow layer)."""

    flow_run_id: str | None = None
    flow_name: str | None = None
    deployment_name: str | None = None


def describe_error(exc: BaseException) -> str:
    """A short, secret-free description of ``exc`` for ledger rows and logs."""
    text = f"{type(exc).__name__}: {exc}"
    return scrub(text)[:MAX_ERROR_CHARS]


@dataclass
class Ledger:
    """Thread-safe in-memory buffer of call records."""

    _records: list[CallRecord] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, record: CallRecord) -> None:
        with self._lock:
            self._records.append(record)

    def snapshot(self) -> list[CallRecord]:
        with self._lock:
            return list(self._records)

    def drain(self) -> list[CallRecord]:
        with self._lock:
            records, self._records = self._records, []
        return records

    def flush(self, engine: Engine, run: RunInfo) -> int:
        """Write every buffered record in one INSERT; return how many were written."""
        records = self.drain()
        if not records:
            return 0
        rows: list[dict[str, Any]] = [
            {
                "flow_run_id": run.flow_run_id,
                "flow_name": run.flow_name,
                "deployment_name": run.deployment_name,
                "service": r.service,
                "operation": r.operation,
                "attempt": r.attempt,
                "outcome": r.outcome,
                "error": r.error,
                "started_at": r.started_at,
                "duration_ms": r.duration_ms,
            }
            for r in records
        ]
        try:
            with engine.begin() as conn:
                conn.execute(insert(ExternalCall), rows)
        except Exception:
            with self._lock:  # keep them for the next flush rather than lose them
                self._records[:0] = records
            raise
        return len(rows)


LEDGER = Ledger()
