"""The Finder every 60 s (reference §3): start submitted workflows, find files and replicas."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.states import State

from flows.common import collector_task, finish, ledger_scope
from flows.info_collector.rucio_health import check_rucio
from justin_flows.adapters.metacat import MetaCatAdapter
from justin_flows.adapters.rucio import RucioAdapter
from justin_flows.finder import files, replicas, submitted
from justin_flows.finder import finish as finishing

find_submitted_workflows = collector_task(submitted.find_submitted_workflows, "findSubmittedWorkflows")
find_files = collector_task(files.find_files, "findFiles")
find_replicas = collector_task(replicas.find_replicas, "findReplicas")
find_workflows_to_finish = collector_task(finishing.find_workflows_to_finish, "findWorkflowsToFinish")


@flow(name="finder", timeout_seconds=180)
def finder_flow(replica_chunk_size: int = 500) -> State[Any]:
    """Files from MetaCat or Rucio for running workflows, then their replicas, chunked.

    Args:
        replica_chunk_size: files per ``list_replicas`` call (upstream: 500).
    """
    if not 1 <= replica_chunk_size <= 5000:
        raise ValueError(f"replica_chunk_size must be between 1 and 5000, got {replica_chunk_size}")
    with ledger_scope():
        steps = [("findSubmittedWorkflows", find_submitted_workflows(return_state=True))]
        health = check_rucio()
        note = None
        if health.overloaded:
            note = f"files and replicas not searched: {health.reason}"
            get_run_logger().warning(note)
        else:
            rucio = RucioAdapter()
            with MetaCatAdapter() as metacat:
                steps.append(("findFiles", find_files(metacat, rucio, return_state=True)))
            steps.append(("findReplicas", find_replicas(rucio, chunk_size=replica_chunk_size, return_state=True)))
        steps.append(("findWorkflowsToFinish", find_workflows_to_finish(return_state=True)))
    return finish(steps, note)
