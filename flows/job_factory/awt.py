"""Automated-test jobs to every site every 21600 s (reference §4.2). Not gated by Rucio."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.states import State

from flows.common import collector_task, finish, ledger_scope
from flows.job_factory.factory import condor_adapter
from justin_flows.factory import awt

awt_jobs_to_sites = collector_task(awt.awt_jobs_to_sites, "awtJobsToSites")


@flow(name="awt-jobs", timeout_seconds=25200)
def awt_flow(dry_run: bool = False) -> State[Any]:
    """One CPU job per site (and one GPU job where the site has GPU entries).

    Args:
        dry_run: build the submit descriptions but run no condor_submit and record nothing.
    """
    with ledger_scope():
        steps = [("awtJobsToSites", awt_jobs_to_sites(condor_adapter(dry_run), return_state=True))]
    return finish(steps)
