"""show-files by hand (reference §6.2): the files of an MQL query or a workflow, as a table."""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.common import ledger_scope
from flows.ui_commands.publish import answer, publish_table
from justin_flows.adapters.metacat import MetaCatAdapter
from justin_flows.ui.files import show_files
from justin_flows.ui.result import CommandResult


@task(name="showFilesCmd", cache_policy=NO_CACHE)
def show_files_task(
    mql: str | None, workflow_id: int | None, stage_id: int | None, file_did: str | None, limit: int | None
) -> CommandResult:
    with MetaCatAdapter() as metacat:
        result = show_files(
            metacat, mql=mql, workflow_id=workflow_id, stage_id=stage_id, file_did=file_did, limit=limit
        )
    title = f"Files of MQL `{mql}`" if mql is not None else f"Files of workflow {workflow_id}"
    publish_table(result, "show-files", title)
    return result


@flow(name="show-files", timeout_seconds=900)
def show_files_flow(
    mql: str | None = None,
    workflow_id: int | None = None,
    stage_id: int | None = None,
    file_did: str | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    """Files matching an MQL query (MetaCat) or recorded for a workflow (database).

    Args:
        mql: a MetaCat query; the first ``limit`` files are shown (default 100, as upstream).
        workflow_id: instead of mql, the workflow's files rows.
        stage_id: with workflow_id, only this stage.
        file_did: with workflow_id, only this file.
        limit: at most this many files (default: 100 for mql, all for workflow_id).
    """
    with ledger_scope():
        result = show_files_task(mql, workflow_id, stage_id, file_did, limit)
    return answer(result)
