"""Read-only queries behind the dashboard pages: what the flows wrote, never a secret column.

Each function runs its SELECTs in one short transaction and returns plain rows (dicts) for
the templates. Times are UTC. Works on PostgreSQL and on the sandbox's SQLite.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.orm import Session, aliased

from justin_flows.collector import rucio_health
from justin_flows.db.engine import transaction
from justin_flows.db.models import Entry, ExternalCall, Job, KeyNameValue, Site, Storage
from justin_flows.domain.health import RucioHealth

MAX_HOURS = 7 * 24
RECENT_JOBS = 100
HEALTH_RUNS = 200


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)


def when(value: dt.datetime | None) -> str:
    """A time as ``YYYY-MM-DD HH:MM:SS`` UTC, or an empty string."""
    value = _utc(value)
    return f"{value:%Y-%m-%d %H:%M:%S}" if value else ""


def _since(hours: int) -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=hours)


def clamp_hours(hours: int) -> int:
    return max(1, min(MAX_HOURS, hours))


# --------------------------------------------------------------------------- Rucio health


@dataclass(frozen=True)
class RucioHealthPage:
    current: RucioHealth | None
    current_updated: str
    history: list[dict[str, Any]]


def rucio_health_history(hours: int = 48) -> RucioHealthPage:
    """The stored measurement (``keys_names_values`` ``rucio_health``) and, from the ledger,
    every measurement run's pings (``external_calls`` service ``rucio``, operation ``ping``)."""
    since = _since(clamp_hours(hours))
    errors = func.sum(case((ExternalCall.outcome == "error", 1), else_=0))
    with transaction() as session:
        row = session.execute(
            select(KeyNameValue.key_value, KeyNameValue.updated_time).where(KeyNameValue.key_name == rucio_health.HEALTH_KEY)
        ).first()
        runs = session.execute(
            select(
                ExternalCall.flow_run_id,
                func.min(ExternalCall.started_at).label("started"),
                func.count().label("pings"),
                errors.label("errors"),
                func.avg(ExternalCall.duration_ms).label("avg_ms"),
                func.max(ExternalCall.duration_ms).label("max_ms"),
                func.max(ExternalCall.error).label("error"),
            )
            .where(ExternalCall.service == "rucio", ExternalCall.operation == "ping", ExternalCall.started_at >= since)
            .group_by(ExternalCall.flow_run_id)
            .order_by(func.min(ExternalCall.started_at).desc())
            .limit(HEALTH_RUNS)
        ).all()
    current = RucioHealth.from_json(row.key_value) if row else None
    history = [
        {
            "started": when(r.started),
            "flow_run_id": r.flow_run_id or "",
            "pings": int(r.pings),
            "errors": int(r.errors or 0),
            "avg_ms": round(float(r.avg_ms), 1) if r.avg_ms is not None else None,
            "max_ms": round(float(r.max_ms), 1) if r.max_ms is not None else None,
            "error": r.error or "",
        }
        for r in runs
    ]
    return RucioHealthPage(current, when(row.updated_time) if row else "", history)


# --------------------------------------------------------------------------- storages, sites


def storages() -> list[dict[str, Any]]:
    with transaction() as session:
        rows = session.execute(
            select(Storage, Site.site_name).outerjoin(Site, Site.site_id == Storage.site_id).order_by(Storage.rse_name)
        ).all()
    return [
        {
            "rse_name": s.rse_name,
            "occupancy_percent": round(100 * (s.occupancy or 0.0), 1),
            "decommissioned": s.decommissioned,
            "rucio_read": s.rucio_read, "rucio_write": s.rucio_write,
            "justin_read": s.justin_read, "justin_write": s.justin_write,
            "needs_pin": s.needs_pin,
            "region": s.region, "country": s.country,
            "site_name": site_name or "",
            "lan_write_scheme": s.lan_write_scheme, "wan_write_scheme": s.wan_write_scheme,
            "last_rucio_seen_time": when(s.last_rucio_seen_time),
        }
        for s, site_name in rows
    ]


def sites() -> list[dict[str, Any]]:
    entries_per_site = (
        select(Entry.site_id, func.count().label("entries")).group_by(Entry.site_id).subquery()
    )
    with transaction() as session:
        rows = session.execute(
            select(Site, func.coalesce(entries_per_site.c.entries, 0))
            .outerjoin(entries_per_site, entries_per_site.c.site_id == Site.site_id)
            .order_by(Site.site_name)
        ).all()
    return [
        {
            "site_name": s.site_name, "enabled": s.enabled, "region": s.region, "country": s.country,
            "jobsub_site_name": s.jobsub_site_name, "wlcg_site_name": s.wlcg_site_name,
            "only_on_request": s.only_on_request, "only_production": s.only_production,
            "entries": int(n), "last_osg_seen_time": when(s.last_osg_seen_time),
            "last_submitted_time": when(s.last_submitted_time),
        }
        for s, n in rows
    ]


def entries() -> list[dict[str, Any]]:
    with transaction() as session:
        rows = session.execute(
            select(Entry, Site.site_name).join(Site, Site.site_id == Entry.site_id).order_by(Site.site_name, Entry.entry_name)
        ).all()
    return [
        {
            "entry_name": e.entry_name, "site_name": site_name, "gatekeeper": e.gatekeeper,
            "max_processors": e.max_processors, "max_rss_mib": e.max_rss_bytes // 1048576,
            "max_wall_seconds": e.max_wall_seconds, "gpus": e.entry_has_gpus,
            "last_osg_seen_time": when(e.last_osg_seen_time),
        }
        for e, site_name in rows
    ]


# --------------------------------------------------------------------------- jobs


def recent_jobs(limit: int = RECENT_JOBS) -> list[dict[str, Any]]:
    """The latest jobs; the job and jobscript secrets are never selected."""
    site, entry = aliased(Site), aliased(Entry)
    with transaction() as session:
        rows = session.execute(
            select(
                Job.justin_job_id, Job.jobsub_id, Job.workflow_id, Job.stage_id, Job.job_state,
                Job.submitted_time, Job.finished_time, Job.requested_processors, Job.requested_rss_bytes,
                Job.jobscript_exit, Job.abort_code, site.site_name, entry.entry_name,
            )
            .outerjoin(site, site.site_id == Job.site_id)
            .outerjoin(entry, entry.entry_id == Job.entry_id)
            .order_by(Job.submitted_time.desc(), Job.justin_job_id.desc())
            .limit(max(1, min(limit, 1000)))
        ).all()
    return [
        {
            "justin_job_id": r.justin_job_id, "jobsub_id": r.jobsub_id,
            "workflow_stage": f"{r.workflow_id}.{r.stage_id}",
            "state": r.job_state.value if hasattr(r.job_state, "value") else str(r.job_state),
            "site_name": r.site_name or "", "entry_name": r.entry_name or "",
            "processors": r.requested_processors, "rss_mib": (r.requested_rss_bytes or 0) // 1048576,
            "submitted_time": when(r.submitted_time), "finished_time": when(r.finished_time),
            "jobscript_exit": "" if r.jobscript_exit is None else r.jobscript_exit,
            "abort_code": "" if r.abort_code is None else r.abort_code,
        }
        for r in rows
    ]


# --------------------------------------------------------------------------- external calls


def _hour(session: Session) -> ColumnElement[Any]:
    if session.get_bind().dialect.name == "postgresql":
        return func.to_char(func.date_trunc("hour", func.timezone("UTC", ExternalCall.started_at)), "YYYY-MM-DD HH24:00")
    return func.strftime("%Y-%m-%d %H:00", ExternalCall.started_at)


@dataclass(frozen=True)
class CallsPerHour:
    services: list[str]
    rows: list[dict[str, Any]]  # {"hour": ..., "total": n, "<service>": {"calls", "errors"}}
    totals: dict[str, dict[str, int]]


def calls_per_hour(hours: int = 24) -> CallsPerHour:
    """Call attempts per UTC hour and service from ``external_calls``, newest hour first."""
    since = _since(clamp_hours(hours))
    errors = func.sum(case((ExternalCall.outcome == "error", 1), else_=0))
    with transaction() as session:
        hour = _hour(session).label("hour")
        rows = session.execute(
            select(hour, ExternalCall.service, func.count().label("calls"), errors.label("errors"))
            .where(ExternalCall.started_at >= since)
            .group_by(hour, ExternalCall.service)
            .order_by(hour.desc(), ExternalCall.service)
        ).all()
    services = sorted({r.service for r in rows})
    by_hour: dict[str, dict[str, Any]] = {}
    totals = {s: {"calls": 0, "errors": 0} for s in services}
    for r in rows:
        line = by_hour.setdefault(r.hour, {"hour": r.hour, "total": 0})
        line[r.service] = {"calls": int(r.calls), "errors": int(r.errors or 0)}
        line["total"] += int(r.calls)
        totals[r.service]["calls"] += int(r.calls)
        totals[r.service]["errors"] += int(r.errors or 0)
    return CallsPerHour(services, list(by_hour.values()), totals)


def overview() -> dict[str, Any]:
    """Counts for the front page."""
    with transaction() as session:
        return {
            "storages": session.scalar(select(func.count()).select_from(Storage)) or 0,
            "sites": session.scalar(select(func.count()).select_from(Site)) or 0,
            "enabled_sites": session.scalar(select(func.count()).select_from(Site).where(Site.enabled)) or 0,
            "entries": session.scalar(select(func.count()).select_from(Entry)) or 0,
            "jobs": session.scalar(select(func.count()).select_from(Job)) or 0,
            "calls_24h": session.scalar(
                select(func.count()).select_from(ExternalCall).where(ExternalCall.started_at >= _since(24))
            ) or 0,
        }
