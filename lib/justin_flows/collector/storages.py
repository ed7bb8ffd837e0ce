"""updateStorages (reference §2.5): mirror Rucio's RSEs into ``storages``.

Jobs choose output RSEs from this table (writability, occupancy, write scheme) and the
site-storage distances are computed from its country, region and site. The pure decisions
live in ``justin_flows.domain.storages``; this module gathers from Rucio, then writes once.

Deliberate differences from upstream, each for a reason:

* **Account limits: one call per run.** Upstream asks ``get_account_limits(dunepro, rse,
  'local')`` once per RSE; ``get_local_account_limits(account)`` returns the limits of every
  RSE in one answer, so N RSEs cost one limits call instead of N.
* **Decommissioned RSEs cost one call (their attributes), not three.** Their occupancy and
  write schemes are read only by the output-RSE choice and the finder, which both exclude
  decommissioned storages, so ``get_protocols`` and ``get_rse_usage`` are skipped and the
  stored ``occupancy``/``*_write_scheme`` are left as they were (defaults on a new row).
  The attributes are still needed: they tell whether the RSE is decommissioned at all.
* **A failed protocols call keeps the stored schemes** instead of resetting both to ``root``
  (upstream's ``[]`` fallback), so one bad answer cannot redirect every job's writes.
* ``site_id`` is NULL, not 0, when the ``site`` attribute is missing or names no known site;
  ``last_rucio_seen_time`` is stamped for every RSE seen (ours, for operators).
* With ``rse_expression`` only the matching RSEs are refreshed. ``list_rses(expression)``
  yields names only, so each RSE's description comes from ``get_rse``.

Kept from upstream: MONTECARLO (rse_id 1) is ensured first and never updated, new RSEs
start with ``justin_write`` false (an admin enables them), ``justin_write``/``justin_read``
are never touched otherwise, and RSEs that vanished from Rucio are never deleted.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import or_, select, text
from sqlalchemy.orm import Session

from justin_flows.adapters.calls import ExternalCallError
from justin_flows.adapters.rucio import RucioAdapter
from justin_flows.collector.report import CollectorReport
from justin_flows.concurrency import bounded_map
from justin_flows.db.engine import transaction, upsert
from justin_flows.db.models import MONTECARLO_RSE_ID, MONTECARLO_RSE_NAME, Site, Storage
from justin_flows.domain import storages as rules
from justin_flows.domain.regions import country_region

FUNCTION = "updateStorages"
USAGE_SOURCE = "rucio"  # upstream's source: bytes Rucio has registered on the RSE

#: The pseudo-storage of Monte Carlo stages (upstream inserts it with INSERT IGNORE).
MONTECARLO_ROW: Mapping[str, Any] = {
    "rse_id": MONTECARLO_RSE_ID,
    "rse_name": MONTECARLO_RSE_NAME,
    "occupancy": 1.0,
    "rucio_write": False,
    "rucio_read": True,
    "justin_write": False,
    "justin_read": True,
}

# After an explicit rse_id=1 the PostgreSQL sequence still starts at 1: move it past the
# largest id (never backwards, in case it is already further on).
_SYNC_SEQUENCE = text(
    "SELECT setval(s.seq, GREATEST((SELECT MAX(rse_id) FROM storages),"
    " COALESCE(pg_sequence_last_value(s.seq), 1)))"
    " FROM (SELECT CAST(pg_get_serial_sequence('storages', 'rse_id') AS regclass) AS seq) AS s"
)


@dataclass
class _Seen:
    """What Rucio told us about one RSE: column values plus per-call problems."""

    name: str
    values: dict[str, Any]
    site: str | None
    used: Any = None
    errors: list[str] = field(default_factory=list)

    @property
    def wants_occupancy(self) -> bool:
        return not self.values["decommissioned"]


def update_storages(rucio: RucioAdapter, *, rse_expression: str | None = None) -> CollectorReport:
    """Refresh ``storages`` from Rucio (all RSEs, or those matching ``rse_expression``)."""
    report = CollectorReport(FUNCTION)
    settings = rucio.settings.rucio
    now = dt.datetime.now(dt.timezone.utc)

    seen: list[_Seen] = []
    try:
        listed = rucio.list_rses(rse_expression)
    except ExternalCallError as exc:
        report.error(f"listing RSEs failed, no RSE refreshed: {exc}")
        listed = []

    candidates: list[dict[str, Any]] = []
    for rse in listed:
        if not isinstance(rse, dict):  # a malformed listing: one bad item, not a crash
            report.error(f"list_rses answered {str(rse)[:80]!r}, not an RSE description; skipped")
            continue
        name = rse.get("rse")
        if not rules.valid_rse_name(name):
            report.error(f"RSE {name!r}: name has characters other than letters, digits, '_' and '-'; skipped")
        elif name == MONTECARLO_RSE_NAME:
            report.error(f"RSE {name}: the name is reserved for justIN's Monte Carlo pseudo-storage; skipped")
        else:
            candidates.append(rse)

    def gather(rse: dict[str, Any]) -> _Seen:
        return _gather(rucio, rse, fetch_rse=bool(rse_expression), now=now)

    for outcome in bounded_map(gather, candidates, max_workers=settings.max_in_flight):
        if outcome.error is not None:
            report.error(f"RSE {outcome.item['rse']}: {outcome.error}; skipped")
            continue
        assert outcome.value is not None
        seen.append(outcome.value)
        report.errors.extend(f"RSE {outcome.value.name}: {e}" for e in outcome.value.errors)

    limits: dict[str, Any] = {}
    if any(s.wants_occupancy for s in seen):
        try:
            limits = rucio.get_local_account_limits(settings.account)
        except ExternalCallError as exc:
            report.error(f"account limits of {settings.account} unavailable, occupancy 0.0 for every RSE: {exc}")
    for s in seen:
        if s.wants_occupancy:
            s.values["occupancy"] = rules.occupancy(s.used, limits.get(s.name))

    with transaction() as session:
        _ensure_montecarlo(session, report)
        if seen:
            _write(session, seen, report)
            report.rows = _rows(session, seen)

    report.count("rses_seen", len(seen))
    return report


def _gather(rucio: RucioAdapter, rse: dict[str, Any], *, fetch_rse: bool, now: dt.datetime) -> _Seen:
    """Per-RSE calls: description (with an expression), attributes, then protocols and usage."""
    name: str = rse["rse"]
    if fetch_rse:
        rse = rucio.get_rse(name)
    attributes = rucio.list_rse_attributes(name)
    decommissioned = rules.is_decommissioned(name, rse.get("rse_type"), attributes)
    country = attributes.get("country")
    country = country if isinstance(country, str) else ""
    site = attributes.get("site")
    seen = _Seen(
        name=name,
        values={
            "rse_name": name,
            "justin_write": False,  # only used on insert: new RSEs wait for an admin
            "decommissioned": decommissioned,
            "rucio_read": bool(rse.get("availability_read")),
            "rucio_write": rules.rucio_write(rse),
            "country": country,
            "region": country_region(country),
            "needs_pin": rules.needs_pin(name),
            "last_rucio_seen_time": now,
        },
        site=site if isinstance(site, str) and site else None,
    )
    if decommissioned:
        return seen
    try:
        lan, wan = rules.write_schemes(rucio.get_protocols(name))
    except ExternalCallError as exc:
        seen.errors.append(f"protocols unavailable, write schemes left as stored: {exc}")
    else:
        seen.values["lan_write_scheme"], seen.values["wan_write_scheme"] = lan, wan
    try:
        usage = rucio.get_rse_usage(name, source=USAGE_SOURCE)
    except ExternalCallError as exc:
        seen.errors.append(f"usage unavailable, occupancy 0.0: {exc}")
    else:
        seen.used = usage[0].get("used") if usage else None
    return seen


def _ensure_montecarlo(session: Session, report: CollectorReport) -> None:
    """Insert MONTECARLO as rse_id 1 unless present; leave it alone when it is."""
    holders = session.execute(
        select(Storage.rse_id, Storage.rse_name).where(
            or_(Storage.rse_id == MONTECARLO_RSE_ID, Storage.rse_name == MONTECARLO_RSE_NAME)
        )
    ).all()
    if (MONTECARLO_RSE_ID, MONTECARLO_RSE_NAME) in [tuple(h) for h in holders]:
        return
    if holders:
        report.error(
            "MONTECARLO cannot be rse_id 1: "
            + ", ".join(f"rse_id {i} is {n}" for i, n in holders)
            + "; left as it is"
        )
        return
    upsert(session, Storage.__table__, [dict(MONTECARLO_ROW)], ["rse_id"])
    if session.get_bind().dialect.name == "postgresql":
        session.execute(_SYNC_SEQUENCE)
    report.count("montecarlo_inserted")


def _write(session: Session, seen: list[_Seen], report: CollectorReport) -> None:
    names = [s.name for s in seen]
    site_names = {s.site for s in seen if s.site}
    site_ids = dict(
        session.execute(select(Site.site_name, Site.site_id).where(Site.site_name.in_(site_names))).tuples().all()
    ) if site_names else {}
    existing = set(session.scalars(select(Storage.rse_name).where(Storage.rse_name.in_(names))))

    # one statement per column set: decommissioned RSEs and failed calls leave columns alone
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for s in seen:
        row = {**s.values, "site_id": site_ids.get(s.site) if s.site else None}
        groups[tuple(sorted(row))].append(row)
    for keys, rows in groups.items():
        update = [k for k in keys if k not in ("rse_name", "justin_write")]
        upsert(session, Storage.__table__, rows, ["rse_name"], update)

    report.count("inserted", len(set(names) - existing))
    report.count("updated", len(set(names) & existing))
    report.count("decommissioned", sum(1 for s in seen if s.values["decommissioned"]))


def _rows(session: Session, seen: list[_Seen]) -> list[dict[str, Any]]:
    """The operator's table: what is stored now for every RSE seen in this run."""
    attribute_site = {s.name: s.site for s in seen}
    stored = session.execute(
        select(
            Storage.rse_name, Storage.occupancy, Storage.rucio_read, Storage.rucio_write, Storage.justin_write,
            Storage.lan_write_scheme, Storage.wan_write_scheme, Storage.decommissioned, Site.site_name,
        )
        .outerjoin(Site, Site.site_id == Storage.site_id)
        .where(Storage.rse_name.in_(list(attribute_site)))
        .order_by(Storage.rse_name)
    ).all()
    rows = []
    for r in stored:
        wanted = attribute_site[r.rse_name]
        site = r.site_name or (f"{wanted} (unknown site)" if wanted else "")
        rows.append(
            {
                "rse_name": r.rse_name,
                "occupancy": round(r.occupancy, 4),
                "rucio_read": r.rucio_read,
                "rucio_write": r.rucio_write,
                "justin_write": r.justin_write,
                "lan_write_scheme": r.lan_write_scheme,
                "wan_write_scheme": r.wan_write_scheme,
                "decommissioned": r.decommissioned,
                "site": site,
            }
        )
    return rows
