"""updateNamedQuotas (reference §2.7): one ``named_quotas`` row per Rucio account.

A named quota is a Rucio account that justIN workflows can charge. It is ``for_justin``
when justIN's production certificate (``settings.rucio.production_dn``) is one of the
account's X.509 identities, i.e. when justIN's jobs can write as that account; its
``user_id`` links it to the justIN user whose principal name maps to the account name.

Deliberate differences from upstream, each for a reason:

* **Two listing calls plus one per candidate, not one per account.** Upstream calls
  ``list_identities`` for (nearly) every account, every hour. Here ``list_accounts()`` gives
  every account and ``list_accounts(identity=DN)`` the few holding an identity *named* like
  the DN; only those candidates get ``list_identities``, to check that the identity really is
  of type X509 (the server's filter ignores the type). ``for_justin`` comes out the same.
* **One failing account is skipped** (its row is left as it was, with an error) instead
  of aborting the whole function uncommitted.
* **for_justin is computed for every account**, also known accounts without a user.
* Upstream's special case that never makes the account ``amcnab`` for_justin is a one-off
  hack for one person's account and is left out.
* "No user" and "no WLCG group" are NULL, not 0. A known account that maps to a user gets
  that user (upstream rewrites the row's existing ``user_id``, so a quota created before its
  user stays unlinked); as upstream, its ``wlcg_group_id`` is cleared.

Kept from upstream: nothing happens without the ``group_dune`` HTCondor group and the
``/dune`` WLCG group; the ``usertests`` quota (``/dune``, ``group_dune``, for_justin) is
ensured; new quotas get ``group_dune``; accounts gone from Rucio keep their rows.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from justin_flows.adapters.calls import ExternalCallError
from justin_flows.adapters.rucio import RucioAdapter
from justin_flows.collector.report import CollectorReport
from justin_flows.concurrency import bounded_map
from justin_flows.db.engine import transaction, upsert
from justin_flows.db.models import CondorGroup, NamedQuota, PrincipalName, WlcgGroup
from justin_flows.domain.naming import principal_account_key

FUNCTION = "updateNamedQuotas"
USERTESTS = "usertests"  # upstream defaultScopeName: any /dune member may write there
DUNE_CONDOR_GROUP = "group_dune"
DUNE_WLCG_GROUP = "/dune"
X509 = "X509"


def update_named_quotas(rucio: RucioAdapter) -> CollectorReport:
    """Insert or refresh one named quota per active Rucio account."""
    report = CollectorReport(FUNCTION)
    settings = rucio.settings.rucio
    with transaction() as session:
        condor_group_id = session.scalar(
            select(CondorGroup.condor_group_id).where(CondorGroup.condor_group_name == DUNE_CONDOR_GROUP)
        )
        wlcg_group_id = session.scalar(
            select(WlcgGroup.wlcg_group_id).where(WlcgGroup.wlcg_group_name == DUNE_WLCG_GROUP)
        )
        principals = session.execute(
            select(PrincipalName.principal_name, PrincipalName.user_id).order_by(PrincipalName.pn_id)
        ).tuples().all()
    if condor_group_id is None or wlcg_group_id is None:
        missing = [n for n, i in ((DUNE_CONDOR_GROUP, condor_group_id), (DUNE_WLCG_GROUP, wlcg_group_id)) if i is None]
        report.error(f"no {' and no '.join(missing)} group in the database yet; named quotas not updated")
        return report
    users: dict[str, int] = {}
    for principal_name, user_id in principals:
        users.setdefault(principal_account_key(principal_name), user_id)

    for_justin: dict[str, bool] = {}
    try:
        accounts = [a["account"] for a in rucio.list_accounts()]
        candidates = {a["account"] for a in rucio.list_accounts(identity=settings.production_dn)}
    except ExternalCallError as exc:
        report.error(f"listing Rucio accounts failed, only {USERTESTS} ensured: {exc}")
        accounts, candidates = [], set()
    for account in accounts:
        for_justin[account] = False

    def has_production_x509(account: str) -> bool:
        return any(
            i.get("type") == X509 and i.get("identity") == settings.production_dn
            for i in rucio.list_identities(account)
        )

    checked = [a for a in accounts if a in candidates]
    for outcome in bounded_map(has_production_x509, checked, max_workers=settings.max_in_flight):
        if outcome.error is not None:
            report.error(
                f"account {outcome.item}: reading its identities failed, its quota left as it was: {outcome.error}"
            )
            del for_justin[outcome.item]
        else:
            for_justin[outcome.item] = bool(outcome.value)

    with transaction() as session:
        upsert(
            session,
            NamedQuota.__table__,
            [{
                "quota_name": USERTESTS, "wlcg_group_id": wlcg_group_id, "condor_group_id": condor_group_id,
                "processing_enabled": True, "for_justin": True,
            }],
            ["quota_name"],
        )
        known = set(session.scalars(select(NamedQuota.quota_name).where(NamedQuota.quota_name.in_(list(for_justin)))))
        with_user: list[dict[str, Any]] = []
        without_user: list[dict[str, Any]] = []
        for account, justin in for_justin.items():
            row: dict[str, Any] = {"quota_name": account, "condor_group_id": condor_group_id, "for_justin": justin}
            matched = users.get(account)
            if matched is not None:
                with_user.append({**row, "user_id": matched, "wlcg_group_id": None})
            else:
                without_user.append({**row, "user_id": None})
        upsert(session, NamedQuota.__table__, with_user, ["quota_name"], ["user_id", "wlcg_group_id", "for_justin"])
        upsert(session, NamedQuota.__table__, without_user, ["quota_name"], ["user_id", "for_justin"])

    for account, justin in sorted(for_justin.items()):
        report.rows.append({
            "quota_name": account,
            "user_id": users.get(account),
            "for_justin": justin,
            "new": account not in known,
        })
    report.count("accounts", len(accounts))
    report.count("inserted", len(set(for_justin) - known))
    report.count("updated", len(set(for_justin) & known))
    report.count("for_justin", sum(for_justin.values()))
    return report
