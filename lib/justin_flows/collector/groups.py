"""updateGroupsHTCondor (reference §2.3) and updateGroupsWLCG (reference §2.4).

The first two steps of the hourly storages group: the HTCondor accounting groups DUNE may
submit under, with their quotas, and the WLCG groups justIN knows about. Named quotas and
scopes refer to these rows, so neither function deletes anything (upstream never does).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select

from justin_flows.adapters.htcondor import HTCondorAdapter
from justin_flows.collector.report import CollectorReport
from justin_flows.db.engine import transaction, upsert
from justin_flows.db.models import CondorGroup, WlcgGroup
from justin_flows.domain.condor_userprio import parse_quotas
from justin_flows.settings import get_settings


def update_groups_htcondor(condor: HTCondorAdapter) -> CollectorReport:
    """Upsert every ``group_dune*`` group from ``condor_userprio -quotas -allusers``.

    One command per run (upstream: the same one). A failing command raises (the adapter's
    ``ExternalCallError``) before any write; an unusable line is reported by number and the
    other groups are stored. Quotas are bound parameters: upstream pasted them into SQL.
    """
    report = CollectorReport("updateGroupsHTCondor")
    output = condor.userprio_quotas()
    parsed = parse_quotas(output)
    for problem in parsed.problems:
        report.error(problem.describe())
        report.count("bad_lines")
    if not parsed.groups:
        report.error(f"condor_userprio -pool {condor.collector} listed no group_dune groups")

    now = dt.datetime.now(dt.timezone.utc)
    rows: list[dict[str, Any]] = [
        {"condor_group_name": g.name, "effective_quota": g.effective_quota,
         "config_quota": g.config_quota, "last_seen_time": now}
        for g in parsed.groups
    ]
    with transaction() as session:
        stored = {
            name: (eff, conf)
            for name, eff, conf in session.execute(
                select(CondorGroup.condor_group_name, CondorGroup.effective_quota, CondorGroup.config_quota)
            )
        }
        upsert(
            session, CondorGroup.__table__, rows, ["condor_group_name"],
            ["effective_quota", "config_quota", "last_seen_time"],
        )
    for g in parsed.groups:
        before = stored.get(g.name)
        if before is None:
            status = "new"
        else:
            status = "unchanged" if before == (g.effective_quota, g.config_quota) else "updated"
        report.count(status)
        report.rows.append({
            "condor_group_name": g.name, "effective_quota": g.effective_quota,
            "config_quota": g.config_quota, "status": status,
        })
    listed = {g.name for g in parsed.groups}
    for name in sorted(set(stored) - listed):
        report.count("not_listed")
        eff, conf = stored[name]
        report.rows.append({"condor_group_name": name, "effective_quota": eff, "config_quota": conf,
                            "status": "not listed (kept)"})
    return report


def update_groups_wlcg() -> CollectorReport:
    """Insert each configured WLCG group (``users_wlcg_groups``) that is not yet a row.

    No external calls. Settings have already lower-cased the names and refused quotes.
    """
    report = CollectorReport("updateGroupsWLCG")
    names = list(dict.fromkeys(get_settings().users_wlcg_groups))
    with transaction() as session:
        stored = set(session.scalars(select(WlcgGroup.wlcg_group_name)))
        upsert(session, WlcgGroup.__table__, [{"wlcg_group_name": n} for n in names], ["wlcg_group_name"])
    for name in names:
        status = "present" if name in stored else "inserted"
        report.count(status)
        report.rows.append({"wlcg_group_name": name, "status": status})
    for name in sorted(stored - set(names)):
        report.count("not_configured")
        report.rows.append({"wlcg_group_name": name, "status": "not configured (kept)"})
    return report
