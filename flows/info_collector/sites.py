"""The Info Collector's hourly sites group (reference §2.10, §2.11)."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.states import State

from flows.common import collector_task, finish, ledger_scope
from justin_flows.adapters.git import GitAdapter
from justin_flows.collector import sites, sites_storages
from justin_flows.domain.validation import validate_branch, validate_repo_url

update_sites = collector_task(sites.update_sites, "updateSites")
update_sites_storages = collector_task(sites_storages.update_sites_storages, "updateSitesStorages")


@flow(name="info-collector-sites", timeout_seconds=7200)
def sites_flow(repo_url: str | None = None, branch: str | None = None) -> State[Any]:
    """Sites and entries from the OSG gfactory repository, then site-storage distances.

    Args:
        repo_url: gfactory git repository to read (default: the settings' URL).
        branch: branch or tag to check out (default: the repository's default branch).
    """
    if repo_url is not None:
        validate_repo_url(repo_url)
    if branch is not None:
        validate_branch(branch)
    with ledger_scope():
        steps = [("updateSites", update_sites(GitAdapter(), repo_url=repo_url, branch=branch, return_state=True))]
        # distances only make sense once the sites are in
        if steps[0][1].is_completed():
            steps.append(("updateSitesStorages", update_sites_storages(return_state=True)))
    return finish(steps)
