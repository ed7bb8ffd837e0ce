"""A test-only flow for the operator tests: it waits, then writes one row naming its flow run.

Deployed only from temporary copies of prefect.yaml (never from the real one). The row goes
to the external-call ledger (``external_calls``, service ``ops-test``) through
``flows.common.ledger_scope``, the path every project flow writes its ledger through, so a
test sees in PostgreSQL when each run really executed, and that it executed once.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path

from prefect import flow

from flows.common import ledger_scope
from justin_flows.ledger import LEDGER, CallRecord

SERVICE = "ops-test"


@flow(name="ops-sleeper")
def sleeper_flow(seconds: float = 5.0, until_file: str | None = None) -> dict[str, float]:
    """Wait, then record one ledger row for this flow run.

    Args:
        seconds: how long to sleep (0 to 600); with ``until_file``, the longest wait.
        until_file: wait until this file exists instead (the test releases the run).
    """
    if not 0 <= seconds <= 600:
        raise ValueError(f"seconds must be between 0 and 600, got {seconds}")
    with ledger_scope():  # entered first, as every project flow does
        started = dt.datetime.now(dt.timezone.utc)
        t0 = time.perf_counter()
        if until_file:
            while not Path(until_file).exists() and time.perf_counter() - t0 < seconds:
                time.sleep(0.1)
        else:
            time.sleep(seconds)
        LEDGER.record(
            CallRecord(
                service=SERVICE,
                operation=f"sleep (worker pid {os.getppid()})",
                attempt=1,
                outcome="ok",
                started_at=started,
                duration_ms=(time.perf_counter() - t0) * 1000,
            )
        )
    return {"waited": time.perf_counter() - t0}
