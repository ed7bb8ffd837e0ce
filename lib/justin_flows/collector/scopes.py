"""updateScopes (reference §2.8): the Rucio scopes justIN can write, and their quotas.

For each ``for_justin`` named quota, the scopes its Rucio account owns become ``scopes``
rows charged to that quota, with the quota's HTCondor group unless the scope has one
already. The ``usertests`` quota owns just the ``usertests`` scope (no Rucio call), and
``usertests`` coming from any other account is ignored.

Calls: ``list_scopes_for_account`` once per for_justin quota other than ``usertests``, fanned
out with bounded concurrency (upstream: the same calls, one after another; ``list_scopes()``
is not needed). A failing account is skipped with an error and its scopes keep their rows.
As upstream, scopes are never deleted.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from justin_flows.adapters.rucio import RucioAdapter
from justin_flows.collector.report import CollectorReport
from justin_flows.concurrency import bounded_map
from justin_flows.db.engine import transaction, upsert
from justin_flows.db.models import NamedQuota, Scope

FUNCTION = "updateScopes"
USERTESTS = "usertests"


def update_scopes(rucio: RucioAdapter) -> CollectorReport:
    """Insert new scopes of for_justin accounts and re-point moved ones to their quota."""
    report = CollectorReport(FUNCTION)
    with transaction() as session:
        quotas = session.execute(
            select(NamedQuota.quota_id, NamedQuota.quota_name, NamedQuota.condor_group_id)
            .where(NamedQuota.for_justin)
            .order_by(NamedQuota.quota_id)
        ).tuples().all()

    def scopes_of(quota: tuple[int, str, int | None]) -> list[str]:
        name = quota[1]
        if name == USERTESTS:
            return [USERTESTS]
        return [s for s in rucio.list_scopes_for_account(name) if s != USERTESTS]

    wanted: dict[str, tuple[int, int | None]] = {}  # scope -> (quota_id, quota's condor group)
    owners: dict[str, str] = {}
    for outcome in bounded_map(scopes_of, quotas, max_workers=rucio.settings.rucio.max_in_flight):
        quota_id, quota_name, condor_group_id = outcome.item
        if outcome.error is not None:
            report.error(
                f"quota {quota_name}: listing its scopes failed, its scopes left as they were: {outcome.error}"
            )
            continue
        assert outcome.value is not None
        for scope in outcome.value:
            if scope in wanted:  # Rucio gives a scope one owner; never store two
                report.error(f"scope {scope} listed for both {owners[scope]} and {quota_name}; kept {owners[scope]}")
                continue
            wanted[scope] = (quota_id, condor_group_id)
            owners[scope] = quota_name

    if not wanted:
        report.count("scopes", 0)
        return report
    with transaction() as session:
        existing = {
            name: (quota_id, condor_group_id)
            for name, quota_id, condor_group_id in session.execute(
                select(Scope.scope_name, Scope.quota_id, Scope.condor_group_id).where(
                    Scope.scope_name.in_(list(wanted))
                )
            ).tuples()
        }
        rows: list[dict[str, Any]] = []
        for scope, (quota_id, quota_group) in sorted(wanted.items()):
            old = existing.get(scope)
            # an HTCondor group already set on the scope (e.g. by an admin) is kept
            group = old[1] if old is not None and old[1] is not None else quota_group
            rows.append({"scope_name": scope, "quota_id": quota_id, "condor_group_id": group})
            state = "new" if old is None else ("unchanged" if old == (quota_id, group) else "updated")
            report.count(state)
            report.rows.append({"scope_name": scope, "quota_name": owners[scope], "condor_group_id": group,
                                "state": state})
        upsert(session, Scope.__table__, rows, ["scope_name"], ["quota_id", "condor_group_id"])
    report.count("scopes", len(wanted))
    return report
