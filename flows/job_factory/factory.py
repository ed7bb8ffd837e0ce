"""The Job Factory every 60 s (reference §4.1, §4.3): Rucio health gate, then one cluster per stage."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.states import Completed, State

from flows.common import collector_task, finish, ledger_scope
from flows.info_collector.rucio_health import check_rucio
from justin_flows.adapters.htcondor import HTCondorAdapter
from justin_flows.factory import workflow_jobs as workflow_jobs_module
from justin_flows.settings import get_settings

workflow_jobs = collector_task(workflow_jobs_module.workflow_jobs, "workflowJobs")


def condor_adapter(dry_run: bool) -> HTCondorAdapter:
    settings = get_settings()
    if dry_run and not settings.htcondor.dry_run:
        settings = settings.model_copy(
            update={"htcondor": settings.htcondor.model_copy(update={"dry_run": True})}
        )
    return HTCondorAdapter(settings)


@flow(name="job-factory", timeout_seconds=180)
def job_factory_flow(dry_run: bool = False) -> State[Any]:
    """Submit jobs for running workflow stages, unless Rucio is overloaded or down.

    Args:
        dry_run: build every submit description and log it, but run no condor_submit
            and record no job.
    """
    with ledger_scope():
        health = check_rucio()
        if health.overloaded:
            get_run_logger().warning("no submission this cycle: %s", health.reason)
            return Completed(name="Skipped", message=f"no submission: {health.reason}")
        steps = [("workflowJobs", workflow_jobs(condor_adapter(dry_run), return_state=True))]
    return finish(steps)
