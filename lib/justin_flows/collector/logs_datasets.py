"""updateLogsDatasets (reference §2.6): keep every writable RSE's logs datasets ready.

Each job's ``logs.tgz`` goes into ``justin-logs:logstgz-<period>-<RSE>`` (§5.4). For the
current 10^6 s period and the next two, every RSE that justIN may write to gets the dataset
in MetaCat and Rucio, and one Rucio rule (1 copy on that RSE, lifetime 4,000,000 s), so
wrapper jobs never have to create either. Nothing is written to the database.

Deliberate differences from upstream, each for a reason:

* **A failed MetaCat creation skips the dataset** (upstream ignores MetaCat's exit code and
  creates the Rucio DID anyway). Once the Rucio DID exists, a later run never retries
  MetaCat, so the two catalogues would stay apart for good; skipping retries both next hour.
  "Already exists" counts as success in either catalogue.
* **A failed rule listing adds no rule** (upstream treats it as "no rules" and may add a
  second rule); the next run tries again.
* **No rule listing for a dataset created in this run**: it cannot have rules yet.
* One MetaCat login per run (the adapter keeps its token), and none at all when every
  dataset already exists; upstream logs in before every MetaCat command.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from justin_flows.adapters.calls import ExternalCallError
from justin_flows.adapters.metacat import MetaCatAdapter
from justin_flows.adapters.rucio import RucioAdapter
from justin_flows.collector.report import CollectorReport
from justin_flows.concurrency import bounded_map
from justin_flows.db.engine import transaction
from justin_flows.db.models import MONTECARLO_RSE_ID, Storage
from justin_flows.domain.naming import LOGS_SCOPE, logs_dataset_name, logs_periods

FUNCTION = "updateLogsDatasets"
RULE_COPIES = 1
RULE_LIFETIME_SECONDS = 4_000_000


class _ItemFailed(RuntimeError):
    """One dataset could not be made ready; the message says which step and why."""

    def __init__(self, message: str, dataset: str = "failed") -> None:
        super().__init__(message)
        self.dataset = dataset  # the dataset's state when the step failed


@dataclass(frozen=True)
class _Item:
    rse: str
    period_start: int

    @property
    def name(self) -> str:
        return logs_dataset_name(self.rse, self.period_start)

    @property
    def did(self) -> str:
        return f"{LOGS_SCOPE}:{self.name}"


def update_logs_datasets(
    rucio: RucioAdapter, metacat: MetaCatAdapter, *, now: float | None = None, dry_run: bool = False
) -> CollectorReport:
    """Ensure the logs datasets and rules of the current and next two periods.

    ``now`` (seconds since the epoch) fixes the clock, e.g. for a manual run or a test.
    ``dry_run`` only looks: rows say ``would-create`` / ``would-add`` and nothing is created.
    """
    report = CollectorReport(FUNCTION)
    now = time.time() if now is None else now
    with transaction() as session:
        rses = list(
            session.scalars(
                select(Storage.rse_name)
                .where(
                    ~Storage.decommissioned,
                    Storage.rse_id != MONTECARLO_RSE_ID,
                    Storage.rucio_write,
                    Storage.justin_write,
                )
                .order_by(Storage.rse_name)
            )
        )
    items = [_Item(rse, period) for period in logs_periods(now) for rse in rses]

    def ensure(item: _Item) -> dict[str, Any]:
        return _ensure(rucio, metacat, item, dry_run)

    for outcome in bounded_map(ensure, items, max_workers=rucio.settings.rucio.max_in_flight):
        item = outcome.item
        if outcome.error is not None:
            report.error(f"{item.did}: {outcome.error}")
            report.rows.append(_row(item, getattr(outcome.error, "dataset", "failed"), "failed"))
            report.count("failed")
            continue
        assert outcome.value is not None
        row = outcome.value
        report.rows.append(row)
        report.count(f"datasets_{row['dataset']}")
        report.count(f"rules_{row['rule']}")
    report.count("rses", len(rses))
    return report


def _row(item: _Item, dataset: str, rule: str) -> dict[str, Any]:
    return {"did": item.did, "rse": item.rse, "period_start": item.period_start, "dataset": dataset, "rule": rule}


def _ensure(rucio: RucioAdapter, metacat: MetaCatAdapter, item: _Item, dry_run: bool = False) -> dict[str, Any]:
    from metacat.webapi.webapi import AlreadyExistsError
    from rucio.common.exception import DataIdentifierAlreadyExists, DataIdentifierNotFound, DuplicateRule

    created = False
    try:
        rucio.get_did(LOGS_SCOPE, item.name)
        dataset = "existing"
    except ExternalCallError as exc:
        if not isinstance(exc.cause, DataIdentifierNotFound):
            raise _ItemFailed(f"checking the Rucio dataset failed: {exc}") from exc
        if dry_run:
            return _row(item, "would-create", "would-add")
        try:
            metacat.create_dataset(item.did)
        except ExternalCallError as mexc:
            if not isinstance(mexc.cause, AlreadyExistsError):
                raise _ItemFailed(f"creating the MetaCat dataset failed, Rucio dataset not created: {mexc}") from mexc
        try:
            created = bool(rucio.add_dataset(LOGS_SCOPE, item.name))
        except ExternalCallError as rexc:
            if not isinstance(rexc.cause, DataIdentifierAlreadyExists):
                raise _ItemFailed(f"creating the Rucio dataset failed, no rule added: {rexc}") from rexc
        dataset = "created"

    if not created:
        try:
            rules = rucio.list_replication_rules({"scope": LOGS_SCOPE, "name": item.name})
        except ExternalCallError as exc:
            raise _ItemFailed(f"listing rules failed, no rule added (to avoid a second one): {exc}", dataset) from exc
        if rules:
            return _row(item, dataset, "existing")
    if dry_run:
        return _row(item, dataset, "would-add")
    try:
        rucio.add_replication_rule(
            dids=[{"scope": LOGS_SCOPE, "name": item.name}],
            copies=RULE_COPIES,
            rse_expression=item.rse,
            lifetime=RULE_LIFETIME_SECONDS,
        )
    except ExternalCallError as exc:
        if isinstance(exc.cause, DuplicateRule):  # a retry after a lost answer: the rule is there
            return _row(item, dataset, "existing")
        raise _ItemFailed(f"adding the rule failed: {exc}", dataset) from exc
    return _row(item, dataset, "added")
