"""What every flow shares: the ledger flush and the retry policy as Prefect task options."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from prefect import Task, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import deployment, flow_run
from prefect.states import Completed, Failed, State

from justin_flows.adapters.calls import ExternalCallError
from justin_flows.collector.report import CollectorReport
from justin_flows.db.engine import get_engine
from justin_flows.ledger import LEDGER, RunInfo
from justin_flows.settings import get_settings

T = TypeVar("T", bound=Task[Any, Any])


def _retry_transient_only(task: Task[Any, Any], task_run: Any, state: Any) -> bool:
    """Retry a task only when its last external call failed transiently."""
    try:
        state.result()
    except ExternalCallError as exc:
        return exc.attempts < 2 and _is_transient_cause(exc)
    except Exception:
        return False
    return False


def _is_transient_cause(exc: ExternalCallError) -> bool:
    from justin_flows.adapters import git, htcondor, http, metacat, rucio, voms

    checks = {m.SERVICE: m.is_transient for m in (rucio, metacat, htcondor, http, git, voms)}
    check = checks.get(exc.service)
    return bool(check and check(exc.cause))


def with_retries(task: T) -> T:
    """``task`` with the settings' retry policy: N attempts in all, backoff and jitter.

    Used for tasks whose whole body is the smallest unit that is safe to repeat and whose
    external calls are made with ``attempts=1`` (so attempts are not multiplied).
    """
    policy = get_settings().retry
    delays = [min(policy.backoff_seconds * 2**i, policy.max_backoff_seconds) for i in range(policy.attempts - 1)]
    return task.with_options(
        retries=policy.attempts - 1,
        retry_delay_seconds=delays,
        retry_jitter_factor=policy.jitter or None,
        retry_condition_fn=_retry_transient_only,
    )


def _deployment_name() -> str | None:
    try:
        return deployment.name  # asks the API (once per process) for a deployment's run
    except Exception:  # noqa: BLE001 - a restarting server must not fail the run or drop its rows
        return None


def run_info() -> RunInfo:
    """Who the ledger rows belong to; never raises (the deployment name is None if unknown)."""
    return RunInfo(
        flow_run_id=str(flow_run.id) if flow_run.id else None,
        flow_name=flow_run.flow_name,
        deployment_name=_deployment_name(),
    )


@contextmanager
def ledger_scope() -> Iterator[None]:
    """Write this run's external-call records to the database when the flow body ends.

    The run's identity is read on entry and, if the Prefect API could not name the
    deployment then, once more at the end: a server that is restarting at either moment
    costs at most the deployment name, never the rows.
    """
    info = run_info()
    try:
        yield
    finally:
        try:
            if info.deployment_name is None and deployment.id:
                info = run_info()
            written = LEDGER.flush(get_engine(), info)
            get_run_logger().info("external-call ledger: %d call attempt(s) recorded", written)
        except Exception as exc:  # never hide the flow's own outcome behind a ledger failure
            get_run_logger().warning("could not write the external-call ledger: %s", type(exc).__name__)


def artifact_key(name: str) -> str:
    """Prefect artifact keys allow lower-case letters, digits and dashes only."""
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


def collector_task(fn: Callable[..., CollectorReport], name: str) -> Task[..., dict[str, Any]]:
    """A thin Prefect task around a collector function: run it, publish its table, log errors.

    No Prefect retries here: each external call inside is already tried three times by its
    adapter, and repeating a whole collector function would repeat hundreds of calls.
    """

    @task(name=name, cache_policy=NO_CACHE)
    def run(*args: Any, **kwargs: Any) -> dict[str, Any]:
        logger = get_run_logger()
        report = fn(*args, **kwargs)
        for error in report.errors:
            logger.warning("%s: %s", name, error)
        if report.rows:
            create_table_artifact(key=artifact_key(name), table=report.rows, description=report.summary())
        logger.info(report.summary())
        return {"function": name, "counts": dict(report.counts), "errors": report.errors}

    return run


def finish(results: Sequence[tuple[str, State[Any]]], note: str | None = None) -> State[Any]:
    """The flow's final state: Failed naming each failed task, else Completed with a summary."""
    failed = [name for name, state in results if not state.is_completed()]
    summaries = [state.result() for _, state in results if state.is_completed()]
    item_errors = sum(len(s["errors"]) for s in summaries)
    if failed:
        message = f"failed: {', '.join(failed)}; others completed ({item_errors} item error(s))"
        return Failed(message=message + (f"; {note}" if note else ""))
    message = f"{len(summaries)} step(s) completed" + (f", {item_errors} item error(s) reported" if item_errors else "")
    if note:
        message += f"; {note}"
    return Completed(message=message, data=summaries)
