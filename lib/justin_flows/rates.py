"""External API rates from the external-call ledger: the live version of upstream's hand-written
"External API rates" page (reference §10 lists where that page is wrong).

For every deployment and every (service, operation) seen in its recent runs: calls per run
(median, max and mean over the last N runs of that deployment), runs per hour from the
deployment's schedules in ``prefect.yaml``, hence calls per hour and per day, the error rate
and p50/p95 latency. Definitions, so the numbers can be checked by hand:

* a **call** is one attempt in the ledger (a retried call counts once per attempt: that is
  what the service receives);
* **calls per run** counts, for each of the deployment's N most recent runs (by their last
  call), the calls of that operation, 0 for a run that made none;
* **calls per hour** = mean calls per run x runs per hour (the mean, so an operation made in
  one run out of ten still counts), **per day** = 24 x that;
* **error rate** = attempts with outcome ``error`` / all attempts, over the same runs;
* **p50/p95** = percentiles of ``duration_ms`` over the same attempts, linear interpolation
  between closest ranks (``statistics.quantiles(method="inclusive")``);
* **runs per hour**: an ``interval`` schedule runs 3600/interval times an hour; a ``cron`` (or
  ``rrule``) schedule by its fire times counted over a fixed reference week (over a year
  when it depends on the day of the month or the month), divided by the hours; several active
  schedules add up; none (or only inactive ones) means on demand, 0/h.

Calls recorded outside any flow run (``flow_run_id`` NULL) belong to no run and are left
out (their number is reported). ``prune_ledger`` deletes ledger rows older than the
retention period (``settings.ledger.retention_days``); the api-rates flow runs it daily.
"""

from __future__ import annotations

import ast
import datetime as dt
import math
import os
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

import yaml
from sqlalchemy import CursorResult, delete, func, select

from justin_flows.db.engine import transaction
from justin_flows.db.models import ExternalCall

DEFAULT_RUNS = 50
ON_DEMAND = "on demand"
_REFERENCE_WEEK_START = (2026, 1, 5)  # a Monday: cron counts do not depend on today's date
_MAX_CRON_FIRES = 50_000
_ID_BATCH = 500

# --------------------------------------------------------------------------- schedules


@dataclass(frozen=True)
class DeploymentSchedule:
    """One deployment of ``prefect.yaml`` and how often its schedules start it."""

    deployment: str
    flow_name: str | None
    entrypoint: str
    runs_per_hour: float
    schedule: str  # e.g. "every 300 s", "cron 0 3 * * * (UTC)", "on demand"


def default_prefect_yaml() -> Path:
    """The deployments file: ``$JUSTIN_FLOWS_ROOT/prefect.yaml`` (the checkout a worker runs
    from), else the repository's own, else ``./prefect.yaml``."""
    root = os.environ.get("JUSTIN_FLOWS_ROOT")
    if root:
        return Path(root) / "prefect.yaml"
    repo = Path(__file__).resolve().parents[2] / "prefect.yaml"
    return repo if repo.is_file() else Path("prefect.yaml")


def load_schedules(path: Path | None = None) -> dict[str, DeploymentSchedule]:
    """Every deployment of ``path`` (default ``default_prefect_yaml()``) by deployment name.

    A schedule that cannot be read raises ``ValueError`` naming the deployment and the file.
    """
    path = path or default_prefect_yaml()
    config = yaml.safe_load(path.read_text()) or {}
    deployments = config.get("deployments") or []
    if not isinstance(deployments, list):
        raise ValueError(f"{path}: 'deployments' is not a list")
    out: dict[str, DeploymentSchedule] = {}
    for item in deployments:
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            raise ValueError(f"{path}: a deployment without a name: {item!r}")
        name = item["name"]
        entrypoint = str(item.get("entrypoint") or "")
        schedules = list(item.get("schedules") or [])
        if item.get("schedule"):  # the older single-schedule key
            schedules.append(item["schedule"])
        try:
            rate, text = schedules_rate(schedules)
        except ValueError as exc:
            raise ValueError(f"{path}: deployment {name}: {exc}") from None
        out[name] = DeploymentSchedule(
            deployment=name,
            flow_name=flow_name_of(path.parent, entrypoint),
            entrypoint=entrypoint,
            runs_per_hour=rate,
            schedule=text,
        )
    return out


def schedules_rate(schedules: Sequence[Any]) -> tuple[float, str]:
    """Runs per hour of a deployment's schedules (active ones added up) and a description."""
    total = 0.0
    texts = []
    for schedule in schedules:
        if not isinstance(schedule, Mapping):
            raise ValueError(f"schedule {schedule!r} is not a mapping")
        if schedule.get("active", True) is False:
            continue
        rate, text = schedule_rate(schedule)
        total += rate
        texts.append(text)
    return total, (" + ".join(texts) if texts else ON_DEMAND)


def schedule_rate(schedule: Mapping[str, Any]) -> tuple[float, str]:
    """Runs per hour of one ``prefect.yaml`` schedule: interval, cron or rrule."""
    timezone = str(schedule.get("timezone") or "UTC")
    if schedule.get("interval") is not None:
        interval = schedule["interval"]
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not interval > 0:
            raise ValueError(f"interval {interval!r} is not a positive number of seconds")
        return 3600.0 / float(interval), f"every {interval:g} s"
    if schedule.get("cron"):
        cron = str(schedule["cron"])
        day_or = bool(schedule.get("day_or", True))
        return cron_runs_per_hour(cron, timezone, day_or), f"cron {cron} ({timezone})"
    if schedule.get("rrule"):
        rule = str(schedule["rrule"])
        return rrule_runs_per_hour(rule, timezone), f"rrule {rule}"
    raise ValueError(f"schedule {dict(schedule)!r} has no interval, cron or rrule")


def _croniter() -> Any:
    try:
        from croniter import croniter  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        from prefect._vendor.croniter import croniter  # the copy Prefect ships and schedules with
    return croniter


def cron_runs_per_hour(cron: str, timezone: str = "UTC", day_or: bool = True) -> float:
    """Average runs per hour of a cron expression.

    Fire times are counted over a reference week when the day-of-month and month fields are
    ``*`` (the schedule then repeats weekly, so the count is exact), else over the year 2026.
    """
    croniter = _croniter()
    if not croniter.is_valid(cron):
        raise ValueError(f"cron {cron!r} is not a valid cron expression")
    fields = cron.split()
    weekly = len(fields) >= 5 and fields[2] in ("*", "?") and fields[3] in ("*", "?")
    zone = ZoneInfo(timezone)
    start = dt.datetime(*_REFERENCE_WEEK_START, tzinfo=zone) if weekly else dt.datetime(2026, 1, 1, tzinfo=zone)
    end = start + dt.timedelta(days=7 if weekly else 365)
    it = croniter(cron, start - dt.timedelta(seconds=1), day_or=day_or)
    count, last = 0, start
    while count < _MAX_CRON_FIRES:
        when = it.get_next(dt.datetime)
        if when >= end:
            return count / ((end - start).total_seconds() / 3600.0)
        count, last = count + 1, when
    # very frequent: the rate over the fires counted so far
    return count / max((last - start).total_seconds() / 3600.0, 1e-9)


def rrule_runs_per_hour(rule: str, timezone: str = "UTC") -> float:
    """Average runs per hour of an RFC 5545 rule: fires over a reference week, or over a
    year when it fires less than daily."""
    from dateutil import rrule as du

    start = dt.datetime(*_REFERENCE_WEEK_START, tzinfo=ZoneInfo(timezone))
    try:
        parsed = du.rrulestr(rule, dtstart=start, forceset=True)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"rrule {rule!r} is not valid: {exc}") from None
    for days in (7, 366):
        end = start + dt.timedelta(days=days)
        fires = [d for d in parsed.between(start, end, inc=True) if d < end]
        if len(fires) >= days or days == 366:
            return len(fires) / (days * 24.0)
    return 0.0  # pragma: no cover


def flow_name_of(root: Path, entrypoint: str) -> str | None:
    """The Prefect flow name of ``path.py:function``, read from the source (nothing imported):
    ``@flow(name=...)``, else Prefect's default (the function name with ``-`` for ``_``)."""
    path_text, sep, function = entrypoint.rpartition(":")
    if not sep or not function:
        return None
    try:
        tree = ast.parse((root / path_text).read_text())
    except (OSError, SyntaxError, ValueError):
        return None
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == function:
            for decorator in node.decorator_list:
                target = decorator.func if isinstance(decorator, ast.Call) else decorator
                if not (isinstance(target, ast.Name) and target.id == "flow") and not (
                    isinstance(target, ast.Attribute) and target.attr == "flow"
                ):
                    continue
                if isinstance(decorator, ast.Call):
                    for keyword in decorator.keywords:
                        if keyword.arg == "name" and isinstance(keyword.value, ast.Constant):
                            return str(keyword.value.value)
                return function.replace("_", "-")
    return None


# --------------------------------------------------------------------------- ledger samples


@dataclass(frozen=True)
class CallSample:
    """One ledger attempt, as far as the rates need it."""

    flow_run_id: str
    service: str
    operation: str
    outcome: str
    duration_ms: float


@dataclass(frozen=True)
class RunRef:
    """One flow run seen in the ledger, and which deployment it belongs to."""

    flow_run_id: str
    deployment_name: str | None
    flow_name: str | None
    last_call: dt.datetime


@dataclass
class LedgerSample:
    """The recent runs of every deployment and their attempts."""

    runs: dict[str, list[str]] = field(default_factory=dict)  # deployment key -> run ids, newest first
    flow_names: dict[str, str | None] = field(default_factory=dict)  # deployment key -> flow name
    calls: list[CallSample] = field(default_factory=list)
    calls_without_run: int = 0


def deployment_key(run: RunRef, schedules: Mapping[str, DeploymentSchedule]) -> str:
    """Which deployment a run belongs to: its deployment name; for a run started outside a
    deployment (the sandbox, a test) the deployment of its flow, else the flow's name."""
    if run.deployment_name:
        return run.deployment_name
    for schedule in schedules.values():
        if run.flow_name and schedule.flow_name == run.flow_name:
            return schedule.deployment
    return run.flow_name or "(unnamed flow)"


def read_ledger(runs: int, schedules: Mapping[str, DeploymentSchedule]) -> LedgerSample:
    """The ``runs`` most recent runs (by their last call) of every deployment, with their calls."""
    if runs < 1:
        raise ValueError(f"runs must be at least 1, got {runs}")
    sample = LedgerSample()
    with transaction() as session:
        listed = session.execute(
            select(
                ExternalCall.flow_run_id,
                ExternalCall.deployment_name,
                ExternalCall.flow_name,
                func.max(ExternalCall.started_at),
            )
            .where(ExternalCall.flow_run_id.is_not(None))
            .group_by(ExternalCall.flow_run_id, ExternalCall.deployment_name, ExternalCall.flow_name)
        ).tuples().all()
        sample.calls_without_run = session.scalar(
            select(func.count()).select_from(ExternalCall).where(ExternalCall.flow_run_id.is_(None))
        ) or 0
        by_key: dict[str, list[RunRef]] = defaultdict(list)
        for run_id, deployment_name, flow_name, last in listed:
            ref = RunRef(str(run_id), deployment_name, flow_name, last)
            by_key[deployment_key(ref, schedules)].append(ref)
        chosen: list[str] = []
        for key, refs in by_key.items():
            # a run with calls under two names (never expected) is counted once
            newest = sorted({r.flow_run_id: r for r in refs}.values(), key=lambda r: (r.last_call, r.flow_run_id),
                            reverse=True)[:runs]
            sample.runs[key] = [r.flow_run_id for r in newest]
            sample.flow_names[key] = next((r.flow_name for r in newest if r.flow_name), None)
            chosen.extend(sample.runs[key])
        for start in range(0, len(chosen), _ID_BATCH):
            batch = chosen[start : start + _ID_BATCH]
            for run_id, service, operation, outcome, duration in session.execute(
                select(
                    ExternalCall.flow_run_id, ExternalCall.service, ExternalCall.operation,
                    ExternalCall.outcome, ExternalCall.duration_ms,
                ).where(ExternalCall.flow_run_id.in_(batch))
            ).tuples():
                sample.calls.append(CallSample(str(run_id), service, operation, outcome, float(duration)))
    return sample


# --------------------------------------------------------------------------- the rates (pure)


@dataclass(frozen=True)
class RateRow:
    """Calls of one (service, operation) by one deployment, per run, hour and day."""

    deployment: str
    flow_name: str | None
    schedule: str
    service: str
    operation: str
    runs: int  # runs in the sample
    calls_per_run_median: float
    calls_per_run_max: int
    calls_per_run_mean: float
    runs_per_hour: float
    calls_per_hour: float
    calls_per_day: float
    attempts: int
    errors: int
    error_rate: float
    p50_ms: float
    p95_ms: float

    def as_dict(self) -> dict[str, Any]:
        """A flat, rounded row for a Prefect table artifact or JSON."""
        return {
            "deployment": self.deployment,
            "service": self.service,
            "operation": self.operation,
            "calls_per_run_median": self.calls_per_run_median,
            "calls_per_run_max": self.calls_per_run_max,
            "calls_per_run_mean": round(self.calls_per_run_mean, 3),
            "runs_per_hour": round(self.runs_per_hour, 4),
            "calls_per_hour": round(self.calls_per_hour, 2),
            "calls_per_day": round(self.calls_per_day, 1),
            "error_rate": round(self.error_rate, 4),
            "errors": self.errors,
            "attempts": self.attempts,
            "p50_ms": round(self.p50_ms, 1),
            "p95_ms": round(self.p95_ms, 1),
            "runs_sampled": self.runs,
            "schedule": self.schedule,
        }


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100), linear between closest ranks; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (position - low))


def compute_rates(sample: LedgerSample, schedules: Mapping[str, DeploymentSchedule]) -> list[RateRow]:
    """One ``RateRow`` per (deployment, service, operation) in ``sample``, sorted by them."""
    run_key = {run_id: key for key, ids in sample.runs.items() for run_id in ids}
    per_op: dict[tuple[str, str, str], list[CallSample]] = defaultdict(list)
    for call in sample.calls:
        key = run_key.get(call.flow_run_id)
        if key is not None:
            per_op[(key, call.service, call.operation)].append(call)
    rows = []
    for (key, service, operation), calls in sorted(per_op.items()):
        run_ids = sample.runs[key]
        per_run = dict.fromkeys(run_ids, 0)
        for call in calls:
            per_run[call.flow_run_id] += 1
        counts = list(per_run.values())
        schedule = schedules.get(key)
        rate = schedule.runs_per_hour if schedule else 0.0
        mean = statistics.fmean(counts)
        errors = sum(1 for c in calls if c.outcome == "error")
        durations = [c.duration_ms for c in calls]
        rows.append(
            RateRow(
                deployment=key,
                flow_name=sample.flow_names.get(key) or (schedule.flow_name if schedule else None),
                schedule=schedule.schedule if schedule else f"{ON_DEMAND} (not in prefect.yaml)",
                service=service,
                operation=operation,
                runs=len(run_ids),
                calls_per_run_median=float(statistics.median(counts)),
                calls_per_run_max=max(counts),
                calls_per_run_mean=mean,
                runs_per_hour=rate,
                calls_per_hour=mean * rate,
                calls_per_day=mean * rate * 24,
                attempts=len(calls),
                errors=errors,
                error_rate=errors / len(calls),
                p50_ms=percentile(durations, 50),
                p95_ms=percentile(durations, 95),
            )
        )
    return rows


def api_rates(
    runs: int = DEFAULT_RUNS, prefect_yaml: Path | None = None
) -> tuple[list[RateRow], dict[str, DeploymentSchedule], LedgerSample]:
    """Read the schedules and the ledger, and compute every row."""
    schedules = load_schedules(prefect_yaml)
    sample = read_ledger(runs, schedules)
    return compute_rates(sample, schedules), schedules, sample


# --------------------------------------------------------------------------- output


def _num(value: float, digits: int = 2) -> str:
    if math.isnan(value):
        return "-"
    text = f"{value:.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _per_run(row: RateRow) -> str:
    return f"{_num(row.calls_per_run_median, 1)} / {row.calls_per_run_max}"


def _errors(row: RateRow) -> str:
    return f"{row.error_rate * 100:.1f}% ({row.errors}/{row.attempts})" if row.errors else "0"


TABLE_HEADER = ("service", "operation", "calls/run", "runs/h", "calls/h", "calls/day", "errors", "p50 ms", "p95 ms")


def table_cells(row: RateRow) -> tuple[str, ...]:
    """One row of the per-deployment table, as text."""
    return (
        row.service,
        row.operation,
        _per_run(row),
        _num(row.runs_per_hour, 3),
        _num(row.calls_per_hour, 2),
        _num(row.calls_per_day, 1),
        _errors(row),
        _num(row.p50_ms, 1),
        _num(row.p95_ms, 1),
    )


def _sections(
    rows: Sequence[RateRow], schedules: Mapping[str, DeploymentSchedule]
) -> list[tuple[str, list[RateRow]]]:
    """Deployments in ``prefect.yaml`` order (also those without calls), then any others."""
    by_key: dict[str, list[RateRow]] = defaultdict(list)
    for row in rows:
        by_key[row.deployment].append(row)
    order = list(schedules) + sorted(k for k in by_key if k not in schedules)
    return [(key, by_key.get(key, [])) for key in order]


def render_markdown(
    rows: Sequence[RateRow],
    schedules: Mapping[str, DeploymentSchedule],
    *,
    runs: int,
    sample: LedgerSample | None = None,
    generated_at: dt.datetime | None = None,
) -> str:
    """The External API rates page: one section per deployment (agent), one table each, and
    a per-service total at the end. Generated from the ledger and ``prefect.yaml`` only."""
    generated_at = generated_at or dt.datetime.now(dt.timezone.utc)
    lines = [
        "# External API rates",
        "",
        f"Generated {generated_at:%Y-%m-%d %H:%M} UTC by `justin-flows api-rates` from the external-call "
        f"ledger (the last {runs} runs of each deployment) and the schedules in `prefect.yaml`. "
        "Do not edit by hand.",
        "",
        "calls/run is median / max over the sampled runs; calls/h = mean calls per run x runs/h; "
        "a call is one attempt (retries count); errors are failed attempts / all attempts; "
        "p50 and p95 are attempt latencies in milliseconds.",
        "",
    ]
    for key, section in _sections(rows, schedules):
        schedule = schedules.get(key)
        flow_name = (section[0].flow_name if section else None) or (schedule.flow_name if schedule else None)
        lines.append(f"## {key}")
        lines.append("")
        sampled = section[0].runs if section else 0
        what = schedule.schedule if schedule else f"{ON_DEMAND} (not in prefect.yaml)"
        rate = schedule.runs_per_hour if schedule else 0.0
        detail = f"Flow `{flow_name}`; " if flow_name else ""
        lines.append(f"{detail}schedule: {what} ({_num(rate, 3)} runs/h); {sampled} run(s) sampled.")
        lines.append("")
        if not section:
            lines.append("No external calls recorded.")
            lines.append("")
            continue
        lines.append("| " + " | ".join(TABLE_HEADER) + " |")
        lines.append("|" + "|".join(["---"] * 2 + ["---:"] * (len(TABLE_HEADER) - 2)) + "|")
        for row in section:
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in table_cells(row)) + " |")
        total_h = sum(r.calls_per_hour for r in section)
        lines.append("")
        lines.append(f"All services: {_num(total_h, 2)} calls/h, {_num(total_h * 24, 1)} calls/day.")
        lines.append("")
    lines.append("## All deployments by service")
    lines.append("")
    lines.append("| service | calls/h | calls/day | errors |")
    lines.append("|---|---:|---:|---:|")
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for row in rows:
        totals[row.service][0] += row.calls_per_hour
        totals[row.service][1] += row.errors
        totals[row.service][2] += row.attempts
    for service, (per_hour, errors, attempts) in sorted(totals.items()):
        share = f"{errors / attempts * 100:.1f}% ({int(errors)}/{int(attempts)})" if errors else "0"
        lines.append(f"| {service} | {_num(per_hour, 2)} | {_num(per_hour * 24, 1)} | {share} |")
    if sample is not None and sample.calls_without_run:
        lines.append("")
        lines.append(f"{sample.calls_without_run} call(s) recorded outside any flow run are not counted.")
    return "\n".join(lines) + "\n"


def render_text(rows: Sequence[RateRow], schedules: Mapping[str, DeploymentSchedule]) -> str:
    """The same tables as aligned plain text, for a terminal."""
    out: list[str] = []
    for key, section in _sections(rows, schedules):
        schedule = schedules.get(key)
        what = schedule.schedule if schedule else f"{ON_DEMAND} (not in prefect.yaml)"
        out.append(f"{key}  [{what}; {section[0].runs if section else 0} run(s) sampled]")
        if not section:
            out.append("  no external calls recorded")
            out.append("")
            continue
        cells = [TABLE_HEADER, *(table_cells(r) for r in section)]
        widths = [max(len(c[i]) for c in cells) for i in range(len(TABLE_HEADER))]
        for i, c in enumerate(cells):
            out.append("  " + "  ".join(v.ljust(w) if j < 2 else v.rjust(w) for j, (v, w) in enumerate(zip(c, widths))))
            if i == 0:
                out.append("  " + "  ".join("-" * w for w in widths))
        out.append("")
    return "\n".join(out)


# --------------------------------------------------------------------------- retention


def prune_ledger(older_than_days: int | None = None, *, now: dt.datetime | None = None) -> int:
    """Delete ledger rows that started more than ``older_than_days`` (default: the setting
    ``ledger.retention_days``) before ``now``; return how many were deleted."""
    if older_than_days is None:
        from justin_flows.settings import get_settings

        older_than_days = get_settings().ledger.retention_days
    if older_than_days < 1:
        raise ValueError(f"older_than_days must be at least 1, got {older_than_days}")
    cutoff = (now or dt.datetime.now(dt.timezone.utc)) - dt.timedelta(days=older_than_days)
    with transaction() as session:
        result = cast(CursorResult[Any], session.execute(delete(ExternalCall).where(ExternalCall.started_at < cutoff)))
        return int(result.rowcount or 0)


def rows_as_dicts(rows: Iterable[RateRow]) -> list[dict[str, Any]]:
    return [r.as_dict() for r in rows]
