"""updateStoragesQuotas (reference §2.9): each for_justin quota's bytes and limit per RSE.

The allocator only offers an output RSE to a workflow while its quota there has
``bytes + 10 GB < bytes_limit`` (§5.2), so this table gates every output.

Calls: ``get_local_account_usage`` once per distinct Rucio account of the for_justin quotas
(``usertests`` is charged to ``settings.rucio.account``, upstream's dunepro), fanned out
with bounded concurrency. Upstream calls once per quota, so dunepro is asked twice when
both ``usertests`` and ``dunepro`` are for_justin.

``inf`` limits become 2^63-1 (our columns are signed BIGINT; upstream's 2^64-1 would not
fit). As upstream, rows not refreshed for 24 hours are deleted: this is upstream's own
expiry, so a quota whose account stopped answering stops offering its RSEs after a day
(rows with no ``last_seen_time`` at all count as never seen). A failing account is
reported and its rows are left until then.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any, cast

from sqlalchemy import CursorResult, delete, or_, select

from justin_flows.adapters.rucio import RucioAdapter
from justin_flows.collector.report import CollectorReport
from justin_flows.concurrency import bounded_map
from justin_flows.db.engine import transaction, upsert
from justin_flows.db.models import NamedQuota, Storage, StorageQuota
from justin_flows.domain.storages import quota_bytes

FUNCTION = "updateStoragesQuotas"
USERTESTS = "usertests"
EXPIRY = dt.timedelta(hours=24)


def update_storages_quotas(rucio: RucioAdapter) -> CollectorReport:
    """Store usage and limits per (quota, RSE) and expire rows unseen for 24 hours."""
    report = CollectorReport(FUNCTION)
    settings = rucio.settings.rucio
    with transaction() as session:
        quotas = session.execute(
            select(NamedQuota.quota_id, NamedQuota.quota_name)
            .where(NamedQuota.for_justin)
            .order_by(NamedQuota.quota_id)
        ).tuples().all()
    quotas_of: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for quota_id, quota_name in quotas:
        account = settings.account if quota_name == USERTESTS else quota_name
        quotas_of[account].append((quota_id, quota_name))

    usages: dict[str, list[dict[str, Any]]] = {}
    for outcome in bounded_map(rucio.get_local_account_usage, list(quotas_of), max_workers=settings.max_in_flight):
        if outcome.error is not None:
            names = ", ".join(name for _, name in quotas_of[outcome.item])
            report.error(
                f"account {outcome.item} (quota {names}): reading its usage failed, "
                f"its rows kept until they expire: {outcome.error}"
            )
        else:
            usages[outcome.item] = outcome.value or []

    now = dt.datetime.now(dt.timezone.utc)
    with transaction() as session:
        rse_ids = dict(session.execute(select(Storage.rse_name, Storage.rse_id)).tuples().all())
        rows: list[dict[str, Any]] = []
        for account, usage in usages.items():
            for entry in usage:
                rse = entry.get("rse")
                rse_id = rse_ids.get(rse) if isinstance(rse, str) else None
                if rse_id is None:
                    report.count("unknown_rse")
                    continue
                try:
                    used, limit = quota_bytes(entry.get("bytes")), quota_bytes(entry.get("bytes_limit"))
                except (TypeError, ValueError) as exc:
                    report.error(f"account {account} at {rse}: unreadable usage {entry!r}: {exc}; skipped")
                    continue
                for quota_id, quota_name in quotas_of[account]:
                    rows.append({
                        "quota_id": quota_id, "rse_id": rse_id, "bytes": used, "bytes_limit": limit,
                        "last_seen_time": now,
                    })
                    report.rows.append({"quota_name": quota_name, "account": account, "rse_name": rse,
                                        "bytes": used, "bytes_limit": limit})
        upsert(
            session, StorageQuota.__table__, rows, ["quota_id", "rse_id"], ["bytes", "bytes_limit", "last_seen_time"]
        )
        expired = delete(StorageQuota).where(
            or_(StorageQuota.last_seen_time.is_(None), StorageQuota.last_seen_time < now - EXPIRY)
        )
        deleted = cast(CursorResult[Any], session.execute(expired)).rowcount
    report.rows.sort(key=lambda r: (r["quota_name"], r["rse_name"]))
    report.count("stored", len(rows))
    report.count("expired_deleted", deleted or 0)
    return report
