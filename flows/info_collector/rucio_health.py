"""Rucio health every 300 s (upstream info collector ``testRucio``)."""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.common import ledger_scope, with_retries
from justin_flows.adapters.rucio import RucioAdapter
from justin_flows.collector import rucio_health
from justin_flows.db.engine import transaction
from justin_flows.domain.health import RucioHealth
from justin_flows.ledger import describe_error
from justin_flows.settings import get_settings


@task(cache_policy=NO_CACHE)
def ping_rucio(pings: int = rucio_health.PINGS) -> RucioHealth:
    """Average of ``pings`` pings; any failed ping fails the attempt (retried as a whole)."""
    return rucio_health.measure(RucioAdapter(), get_settings().rucio.overload_milliseconds, pings)


@task(cache_policy=NO_CACHE)
def record_rucio_health(health: RucioHealth) -> None:
    with transaction() as session:
        rucio_health.record(session, health)


def rucio_backoff() -> RucioHealth | None:
    """The shared health state when it says "leave Rucio alone for now", else None (no calls)."""
    with transaction() as session:
        health = rucio_health.backing_off(session, get_settings().rucio.unhealthy_backoff_seconds)
    if health is not None:
        get_run_logger().warning(
            "backing off Rucio until %.0f s after the last measurement (%s): %s",
            get_settings().rucio.unhealthy_backoff_seconds, health.measured_at.isoformat(), health.reason,
        )
    return health


def check_rucio(pings: int = rucio_health.PINGS, *, probe: bool = False) -> RucioHealth:
    """Rucio's health for a gate: the shared state while it says back off, else measured and recorded.

    ``probe=True`` (the health flow) always measures: it is what ends a back-off. A failed
    measurement is recorded as overloaded, not raised.
    """
    if not probe and (stored := rucio_backoff()) is not None:
        return stored
    state = with_retries(ping_rucio)(pings, return_state=True)
    if state.is_completed():
        health = state.result()
    else:
        exc = state.result(raise_on_failure=False)
        health = rucio_health.failed(get_settings().rucio.overload_milliseconds, describe_error(exc))
    record_rucio_health(health)
    get_run_logger().info(health.reason)
    return health


@flow(name="rucio-health", timeout_seconds=900)
def rucio_health_flow(pings: int = rucio_health.PINGS) -> dict[str, object]:
    """Ping Rucio ``pings`` times and store the average; fails (red in the UI) when Rucio is unhealthy.

    Args:
        pings: pings to average, 1 to 20 (upstream: 3).
    """
    if not 1 <= pings <= 20:
        raise ValueError(f"pings must be between 1 and 20, got {pings}")
    with ledger_scope():
        health = check_rucio(pings, probe=True)
    if health.overloaded:
        raise RuntimeError(health.reason)
    return {"milliseconds": health.milliseconds, "threshold_ms": health.threshold_ms}
