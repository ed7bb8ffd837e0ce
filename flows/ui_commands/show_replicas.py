"""show-replicas by hand (reference §6.3): where an MQL query's or a workflow's files are, as a table."""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.common import ledger_scope
from flows.ui_commands.publish import answer, publish_table
from justin_flows.adapters.metacat import MetaCatAdapter
from justin_flows.adapters.rucio import RucioAdapter
from justin_flows.ui.replicas import DEFAULT_CHUNK_SIZE, show_replicas
from justin_flows.ui.result import CommandResult


@task(name="showReplicasCmd", cache_policy=NO_CACHE)
def show_replicas_task(
    mql: str | None,
    workflow_id: int | None,
    stage_id: int | None,
    file_did: str | None,
    rse_name: str | None,
    limit: int | None,
    chunk_size: int,
) -> CommandResult:
    with MetaCatAdapter() as metacat:
        result = show_replicas(
            metacat, RucioAdapter(), mql=mql, workflow_id=workflow_id, stage_id=stage_id,
            file_did=file_did, rse_name=rse_name, limit=limit, chunk_size=chunk_size,
        )
    title = f"Replicas of MQL `{mql}`" if mql is not None else f"Replicas of workflow {workflow_id}"
    publish_table(result, "show-replicas", title)
    return result


@flow(name="show-replicas", timeout_seconds=1800)
def show_replicas_flow(
    mql: str | None = None,
    workflow_id: int | None = None,
    stage_id: int | None = None,
    file_did: str | None = None,
    rse_name: str | None = None,
    limit: int | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> dict[str, Any]:
    """Replicas (root, WAN) of an MQL query's files from Rucio, or a workflow's from the database.

    Args:
        mql: a MetaCat query (or ``monte-carlo N``); one query, then list_replicas in chunks.
        workflow_id: instead of mql, the workflow's replicas rows (at most 100 unless limit).
        stage_id: with workflow_id, only this stage.
        file_did: with workflow_id, only this file.
        rse_name: with workflow_id, only this RSE.
        limit: mql: at most this many files (default all); workflow_id: replicas (default 100).
        chunk_size: files per list_replicas call (default 500).
    """
    with ledger_scope():
        result = show_replicas_task(mql, workflow_id, stage_id, file_did, rse_name, limit, chunk_size)
    return answer(result)
