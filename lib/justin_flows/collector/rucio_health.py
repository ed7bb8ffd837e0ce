"""testRucio (reference §2.1): measure Rucio's ping and store it for every gate to read."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from justin_flows.adapters.rucio import RucioAdapter
from justin_flows.db.engine import upsert
from justin_flows.db.models import KeyNameValue
from justin_flows.domain.health import RucioHealth

PING_KEY = "ping_rucio_milliseconds"  # upstream's key; written only for real measurements
HEALTH_KEY = "rucio_health"  # ours: the full measurement, failures included
PINGS = 3


def measure(rucio: RucioAdapter, threshold_ms: int, pings: int = PINGS) -> RucioHealth:
    """Ping ``pings`` times; raises on any failed ping (the caller decides on retries)."""
    ms = rucio.ping_milliseconds(pings)
    return RucioHealth(ms, threshold_ms, dt.datetime.now(dt.timezone.utc))


def failed(threshold_ms: int, error: str) -> RucioHealth:
    return RucioHealth(None, threshold_ms, dt.datetime.now(dt.timezone.utc), error)


def record(session: Session, health: RucioHealth) -> None:
    """Store ``health`` under ``rucio_health`` (and the ping under upstream's key if measured)."""
    rows = [{"key_name": HEALTH_KEY, "key_value": health.to_json(), "updated_time": health.measured_at}]
    if health.milliseconds is not None:
        rows.append({"key_name": PING_KEY, "key_value": str(health.milliseconds), "updated_time": health.measured_at})
    upsert(session, KeyNameValue.__table__, rows, ["key_name"], ["key_value", "updated_time"])


def load(session: Session) -> RucioHealth | None:
    """The latest stored measurement, or None if there is none yet."""
    value = session.scalar(select(KeyNameValue.key_value).where(KeyNameValue.key_name == HEALTH_KEY))
    return RucioHealth.from_json(value) if value else None


def backing_off(session: Session, window_seconds: float, now: dt.datetime | None = None) -> RucioHealth | None:
    """The stored measurement if it says overloaded/down and is younger than ``window_seconds``.

    Every flow shares this one state: the 300 s health flow and each gated flow's own pings
    write it, so one flow finding Rucio down spares Rucio the others' pings and work.
    """
    health = load(session)
    if health is not None and health.backing_off(now or dt.datetime.now(dt.timezone.utc), window_seconds):
        return health
    return None
