"""The Info Collector's hourly storages group, in upstream's order (reference §2.0)."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.states import State

from flows.common import collector_task, finish, ledger_scope
from flows.info_collector.rucio_health import rucio_backoff
from justin_flows.adapters.htcondor import HTCondorAdapter
from justin_flows.adapters.metacat import MetaCatAdapter
from justin_flows.adapters.rucio import RucioAdapter
from justin_flows.collector import groups, logs_datasets, named_quotas, scopes, storages, storages_quotas
from justin_flows.domain.validation import validate_rse_expression

update_groups_htcondor = collector_task(groups.update_groups_htcondor, "updateGroupsHTCondor")
update_groups_wlcg = collector_task(groups.update_groups_wlcg, "updateGroupsWLCG")
update_storages = collector_task(storages.update_storages, "updateStorages")
update_logs_datasets = collector_task(logs_datasets.update_logs_datasets, "updateLogsDatasets")
update_named_quotas = collector_task(named_quotas.update_named_quotas, "updateNamedQuotas")
update_scopes = collector_task(scopes.update_scopes, "updateScopes")
update_storages_quotas = collector_task(storages_quotas.update_storages_quotas, "updateStoragesQuotas")


@flow(name="info-collector-storages", timeout_seconds=7200)
def storages_flow(rse_expression: str | None = None, dry_run: bool = False) -> State[Any]:
    """Groups, storages, logs datasets, named quotas, scopes and storage quotas, hourly.

    Args:
        rse_expression: limit the storages step to RSEs matching this Rucio expression
            (e.g. ``site=UK_Manchester``); the other steps always cover everything.
        dry_run: create no logs dataset or rule in Rucio/MetaCat (the flow's only writes to
            external services), just report what is missing; the database is still updated.
    """
    if rse_expression is not None:
        validate_rse_expression(rse_expression)
    with ledger_scope():
        steps = [
            ("updateGroupsHTCondor", update_groups_htcondor(HTCondorAdapter(), return_state=True)),
            ("updateGroupsWLCG", update_groups_wlcg(return_state=True)),
        ]
        if (trouble := rucio_backoff()) is not None:  # hundreds of Rucio calls would only add load
            return finish(steps, note=f"Rucio steps skipped: {trouble.reason}")
        rucio = RucioAdapter()
        with MetaCatAdapter() as metacat:
            steps += [
                ("updateStorages", update_storages(rucio, rse_expression=rse_expression, return_state=True)),
                ("updateLogsDatasets", update_logs_datasets(rucio, metacat, dry_run=dry_run, return_state=True)),
                ("updateNamedQuotas", update_named_quotas(rucio, return_state=True)),
                ("updateScopes", update_scopes(rucio, return_state=True)),
                ("updateStoragesQuotas", update_storages_quotas(rucio, return_state=True)),
            ]
    return finish(steps)
