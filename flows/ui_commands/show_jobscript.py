"""show-jobscript by hand (reference §6.1): a jobscript from GitHub, TLS verified, as an artifact."""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.common import ledger_scope
from flows.ui_commands.publish import answer, publish_text
from justin_flows.adapters.http import HTTPAdapter
from justin_flows.settings import get_settings
from justin_flows.ui.jobscripts import configured_base_url, show_jobscript, show_stage_jobscript
from justin_flows.ui.result import CommandResult


@task(name="showJobscriptCmd", cache_policy=NO_CACHE)
def show_jobscript_task(
    jobscript_git: str | None, workflow_id: int | None, stage_id: int | None, base_url: str
) -> CommandResult:
    if workflow_id is not None or stage_id is not None:
        if jobscript_git is not None or workflow_id is None or stage_id is None:
            raise ValueError("give either jobscript_git, or workflow_id with stage_id")
        return show_stage_jobscript(workflow_id, stage_id)
    if jobscript_git is None:
        raise ValueError("give jobscript_git as ORG/REPO/PATH:TAG")
    with HTTPAdapter() as http:
        result = show_jobscript(http, jobscript_git, base_url=base_url)
    publish_text(result, "show-jobscript", f"Jobscript `{jobscript_git}`")
    return result


@flow(name="show-jobscript", timeout_seconds=300)
def show_jobscript_flow(
    jobscript_git: str | None = None,
    workflow_id: int | None = None,
    stage_id: int | None = None,
    base_url: str | None = None,
) -> dict[str, Any]:
    """Fetch ``ORG/REPO/PATH:TAG`` from raw GitHub (certificate verified) and show it.

    Args:
        jobscript_git: ORG/REPO/PATH:TAG; TAG (branch, tag or commit) is mandatory.
        workflow_id: with stage_id, the stage's stored jobscript (not available: no such table).
        stage_id: see workflow_id.
        base_url: the raw file server; empty means the configured one (raw.githubusercontent.com).
    """
    with ledger_scope():
        result = show_jobscript_task(jobscript_git, workflow_id, stage_id, base_url or configured_base_url(get_settings()))
    return answer(result)
