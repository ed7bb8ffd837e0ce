"""The rucio-health flow against the real Rucio server, a real Prefect server and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, select

from flows.info_collector.rucio_health import rucio_health_flow
from justin_flows.collector import rucio_health
from justin_flows.db.engine import transaction
from justin_flows.db.models import ExternalCall, KeyNameValue
from justin_flows.testing.rucio_server import RucioServer

pytestmark = pytest.mark.usefixtures("prefect_server")


def ledger_rows(engine: Engine) -> list[tuple[str, str, int, str, str | None]]:
    with engine.connect() as conn:
        return [
            tuple(r)  # type: ignore[misc]
            for r in conn.execute(
                select(
                    ExternalCall.service, ExternalCall.operation, ExternalCall.attempt,
                    ExternalCall.outcome, ExternalCall.flow_run_id,
                ).order_by(ExternalCall.call_id)
            )
        ]


def test_healthy_rucio_is_recorded_with_three_pings_in_the_ledger(db: Engine, rucio_server: RucioServer) -> None:
    state = rucio_health_flow(return_state=True)
    assert state.is_completed(), state.message
    result = state.result()
    with transaction() as s:
        stored = dict(s.execute(select(KeyNameValue.key_name, KeyNameValue.key_value)).all())
        health = rucio_health.load(s)
    assert health is not None and not health.overloaded
    assert stored["ping_rucio_milliseconds"] == str(result["milliseconds"])
    rows = ledger_rows(db)
    assert [(svc, op, outcome) for svc, op, _, outcome, _ in rows] == [("rucio", "ping", "ok")] * 3
    assert {run_id for *_, run_id in rows} == {str(state.state_details.flow_run_id)}


def test_stopped_rucio_is_recorded_overloaded_after_three_attempts(db: Engine, stopped_rucio: RucioServer) -> None:
    state = rucio_health_flow(return_state=True)
    assert state.is_failed()
    assert "Rucio unreachable" in (state.message or "")
    with transaction() as s:
        health = rucio_health.load(s)
        ping_value = s.scalar(select(KeyNameValue.key_value).where(KeyNameValue.key_name == "ping_rucio_milliseconds"))
    assert health is not None and health.overloaded and health.milliseconds is None
    assert ping_value is None, "a failure must not be stored as a fake millisecond value"
    rows = ledger_rows(db)
    # one failed ping per attempt: the first failure ends an attempt, Prefect retries the task
    assert [(op, outcome) for _, op, _, outcome, _ in rows] == [("ping", "error")] * 3


def test_bad_parameter_is_refused_before_any_call(db: Engine, rucio_server: RucioServer) -> None:
    state = rucio_health_flow(pings=0, return_state=True)
    assert state.is_failed()
    assert "pings must be between 1 and 20" in (state.message or "")
    assert ledger_rows(db) == []
