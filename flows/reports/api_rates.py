"""External API rates, daily: the live version of upstream's hand-written rates page (reference §10)."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from justin_flows import rates

TABLE_KEY = "api-rates"
PAGE_KEY = "api-rates-page"


@task(name="pruneLedger", cache_policy=NO_CACHE)
def prune_ledger() -> int:
    """Delete ledger rows older than ``ledger.retention_days`` so the table stays bounded."""
    deleted = rates.prune_ledger()
    get_run_logger().info("external-call ledger: %d row(s) past the retention period deleted", deleted)
    return deleted


@task(name="apiRates", cache_policy=NO_CACHE)
def compute(runs: int, write_markdown: bool) -> dict[str, Any]:
    rows, schedules, sample = rates.api_rates(runs)
    table = rates.rows_as_dicts(rows)
    per_hour = sum(r.calls_per_hour for r in rows)
    summary = (f"{len(rows)} (deployment, service, operation) rows over {len(sample.runs)} deployment(s), "
               f"last {runs} runs each; {per_hour:.1f} calls/h in all")
    if table:
        create_table_artifact(key=TABLE_KEY, table=table, description=summary)
    if write_markdown:
        page = rates.render_markdown(rows, schedules, runs=runs, sample=sample)
        create_markdown_artifact(key=PAGE_KEY, markdown=page, description="External API rates page")
    get_run_logger().info(summary)
    return {"rows": len(rows), "deployments": sorted(sample.runs), "calls_per_hour": round(per_hour, 2)}


@flow(name="api-rates", timeout_seconds=90000)
def api_rates_flow(runs: int = rates.DEFAULT_RUNS, write_markdown: bool = False) -> dict[str, Any]:
    """Calls per run, hour and day of every deployment and external service, from the ledger.

    Args:
        runs: recent runs of each deployment to sample.
        write_markdown: also publish the generated External API rates page as a Markdown artifact.
    """
    if not 1 <= runs <= 10000:
        raise ValueError(f"runs must be between 1 and 10000, got {runs}")
    pruned = prune_ledger()
    result = compute(runs, write_markdown)
    return {**result, "pruned": pruned}
