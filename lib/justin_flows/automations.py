"""Prefect automations for the justIN deployments, generated from ``prefect.yaml``.

Upstream's agents had no alerting of their own: a stopped agent was noticed when jobs
stopped flowing. Here every scheduled deployment gets three automations, each derived from
its schedule's period P so they can never drift from ``prefect.yaml``:

* **no completed run in 2 x P**: a proactive trigger expecting one flow-run event whose
  state type is ``COMPLETED`` (``Completed`` and custom names such as the job factory's
  ``Skipped``) from that deployment within 2 x P;
* **three failed runs in a row**: a compound trigger requiring, within one window W, three
  flow-run events of state type ``FAILED`` or ``CRASHED`` (``Failed``, ``TimedOut``,
  ``Crashed``) *and* no completed run. W = 2 x G + P, where G = ceil(T / P) x P is the
  longest gap between two runs that each fail at the run timeout T = min(3 x P, P + 3600),
  so three slow failures in a row always fit, and a success in between never counts;
* **a run late by more than P**: per flow run, after ``prefect.flow-run.Late`` a proactive
  trigger expecting the run to leave ``Late`` (Pending, Running or a final state) within P.

The action is ``do-nothing`` unless a notification or webhook block id is given: safe to
create on a CI or sandbox server. Usage (``python -m justin_flows.automations``)::

    write [--out automations] [--prefect-yaml prefect.yaml] [--notify-block-id UUID | --webhook-block-id UUID]
    check [--out automations]      # exit 1 when the shipped files differ from prefect.yaml
    apply [--out automations]      # replace same-named automations on PREFECT_API_URL

``prefect automation create --from-file automations/<file>.yaml`` also accepts each file.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

#: Tag every justIN deployment carries (prefect.yaml) and every automation here gets.
TAG = "justin"
NAME_PREFIX = "justin"
FILES = {
    "no-completed-run": "no-completed-run.yaml",
    "failed-in-a-row": "failed-in-a-row.yaml",
    "late-runs": "late-runs.yaml",
}
MAX_TIMEOUT_EXTRA_SECONDS = 3600
#: Flow-run events that show a run left ``Late``.
LEFT_LATE = (
    "prefect.flow-run.Pending", "prefect.flow-run.Running", "prefect.flow-run.Completed",
    "prefect.flow-run.Failed", "prefect.flow-run.Crashed", "prefect.flow-run.Cancelling",
    "prefect.flow-run.Cancelled", "prefect.flow-run.TimedOut", "prefect.flow-run.Skipped",
)  # fmt: skip


@dataclass(frozen=True)
class ScheduledDeployment:
    name: str
    entrypoint: str
    tags: tuple[str, ...]
    period_seconds: int  # the shortest schedule period of the deployment


def schedule_period(schedule: Mapping[str, Any]) -> int:
    """Seconds between two runs of one ``prefect.yaml`` schedule (interval, or cron's shortest gap)."""
    if "interval" in schedule:
        seconds = float(schedule["interval"])
        if not seconds > 0:
            raise ValueError(f"schedule {schedule.get('slug')!r}: interval must be > 0, got {schedule['interval']!r}")
        return int(seconds)
    if "cron" in schedule:
        from cronsim import CronSim

        it = CronSim(str(schedule["cron"]), dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc))
        fires = [next(it) for _ in range(400)]  # > a year of a daily cron; a week of 30-min ones
        return int(min((b - a).total_seconds() for a, b in zip(fires, fires[1:])))
    raise ValueError(f"schedule {schedule.get('slug')!r} has neither interval nor cron (rrule is not supported)")


def run_timeout(period_seconds: int) -> int:
    """The run timeout a deployment of this period gets: min(3 x P, P + 3600)."""
    return min(3 * period_seconds, period_seconds + MAX_TIMEOUT_EXTRA_SECONDS)


def load_scheduled_deployments(prefect_yaml: Path) -> list[ScheduledDeployment]:
    """The deployments of ``prefect_yaml`` that have at least one schedule, in file order."""
    document = yaml.safe_load(prefect_yaml.read_text(encoding="utf-8"))
    found = []
    for deployment in document.get("deployments") or []:
        schedules = deployment.get("schedules") or []
        if not schedules:
            continue
        found.append(
            ScheduledDeployment(
                name=str(deployment["name"]),
                entrypoint=str(deployment["entrypoint"]),
                tags=tuple(deployment.get("tags") or ()),
                period_seconds=min(schedule_period(s) for s in schedules),
            )
        )
    return found


def _human(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def _flow_runs_of(deployment: ScheduledDeployment) -> dict[str, Any]:
    """Flow runs of this deployment (matched by name and by the justin tag)."""
    return {
        "match_related": [
            {"prefect.resource.role": "deployment", "prefect.resource.name": deployment.name},
            {"prefect.resource.role": "tag", "prefect.resource.id": f"prefect.tag.{TAG}"},
        ],
    }


def failure_window(period_seconds: int) -> int:
    """W of the failed-in-a-row trigger (see the module docstring)."""
    gap = math.ceil(run_timeout(period_seconds) / period_seconds) * period_seconds
    return 2 * gap + period_seconds


def build_automations(
    deployments: Sequence[ScheduledDeployment], actions: Sequence[Mapping[str, Any]] | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Automation documents (Prefect 3 ``AutomationCore`` fields) by kind, for ``deployments``."""
    acts = [dict(a) for a in (actions or [{"type": "do-nothing"}])]
    out: dict[str, list[dict[str, Any]]] = {kind: [] for kind in FILES}
    for d in deployments:
        if TAG not in d.tags:
            raise ValueError(f"deployment {d.name} lacks the {TAG!r} tag the automations match on")
        p = d.period_seconds
        completed = {
            "type": "event",
            "posture": "Proactive",
            "match": {"prefect.resource.id": "prefect.flow-run.*", "prefect.state-type": "COMPLETED"},
            **_flow_runs_of(d),
            "expect": ["prefect.flow-run.*"],
            "threshold": 1,
            "within": 2 * p,
        }
        out["no-completed-run"].append({
            "name": f"{NAME_PREFIX}: {d.name}: no completed run in {_human(2 * p)}",
            "description": f"{d.name} runs every {_human(p)} ({d.entrypoint}) and has not completed for twice "
                           "that: worker down, deployment paused, or every run failing or cancelled.",
            "tags": [TAG], "enabled": True, "trigger": completed, "actions": copy.deepcopy(acts),
        })  # fmt: skip
        window = failure_window(p)
        failures = {
            "type": "event",
            "posture": "Reactive",
            "match": {"prefect.resource.id": "prefect.flow-run.*", "prefect.state-type": ["FAILED", "CRASHED"]},
            **_flow_runs_of(d),
            "expect": ["prefect.flow-run.*"],
            "threshold": 3,
            "within": window,
        }
        out["failed-in-a-row"].append({
            "name": f"{NAME_PREFIX}: {d.name}: three failed runs in a row",
            "description": f"Three runs of {d.name} failed, crashed or timed out within {_human(window)} "
                           "with no completed run among them.",
            "tags": [TAG], "enabled": True,
            "trigger": {"type": "compound", "require": "all", "within": window,
                        "triggers": [failures, {**copy.deepcopy(completed), "within": window}]},
            "actions": copy.deepcopy(acts),
        })  # fmt: skip
        out["late-runs"].append({
            "name": f"{NAME_PREFIX}: {d.name}: run late by more than {_human(p)}",
            "description": f"A scheduled run of {d.name} was marked Late and had not started {_human(p)} "
                           "later (no worker polling the justin-process pool, or the pool is paused).",
            "tags": [TAG], "enabled": True,
            "trigger": {
                "type": "event",
                "posture": "Proactive",
                "match": {"prefect.resource.id": "prefect.flow-run.*"},
                **_flow_runs_of(d),
                "after": ["prefect.flow-run.Late"],
                "expect": list(LEFT_LATE),
                "for_each": ["prefect.resource.id"],
                "threshold": 1,
                "within": p,
            },
            "actions": copy.deepcopy(acts),
        })  # fmt: skip
    return out


def actions_for(notify_block_id: str | None = None, webhook_block_id: str | None = None) -> list[dict[str, Any]]:
    """The automations' action: a notification block, a webhook block, or nothing."""
    if notify_block_id and webhook_block_id:
        raise ValueError("give a notification block or a webhook block, not both")
    if notify_block_id:
        return [{
            "type": "send-notification", "block_document_id": notify_block_id,
            "subject": "justIN: {{ automation.name }}",
            "body": "{{ automation.description }}\nEvent: {{ event.event }} on {{ event.resource.name }}",
        }]  # fmt: skip
    if webhook_block_id:
        return [{"type": "call-webhook", "block_document_id": webhook_block_id,
                 "payload": '{"automation": "{{ automation.name }}"}'}]  # fmt: skip
    return [{"type": "do-nothing"}]


HEADER = (
    "# Generated by `python -m justin_flows.automations write` from prefect.yaml: do not edit by hand.\n"
    "# Create on a server with `prefect automation create --from-file <this file>` or the `apply` command.\n"
)


def render(documents: Sequence[Mapping[str, Any]]) -> str:
    return HEADER + yaml.safe_dump({"automations": list(documents)}, sort_keys=False, width=110)


def rendered_files(prefect_yaml: Path, actions: Sequence[Mapping[str, Any]] | None = None) -> dict[str, str]:
    """File name -> contents of every automations file for ``prefect_yaml``."""
    built = build_automations(load_scheduled_deployments(prefect_yaml), actions)
    return {FILES[kind]: render(docs) for kind, docs in built.items()}


def load_files(folder: Path) -> list[dict[str, Any]]:
    """Every automation document in the shipped files, in file order."""
    docs: list[dict[str, Any]] = []
    for file_name in FILES.values():
        docs.extend(yaml.safe_load((folder / file_name).read_text(encoding="utf-8"))["automations"])
    return docs


async def apply(documents: Sequence[Mapping[str, Any]]) -> list[str]:
    """Create ``documents`` on the configured Prefect server, replacing automations of the same names."""
    from prefect.client.orchestration import get_client
    from prefect.events.schemas.automations import AutomationCore

    validated = [AutomationCore.model_validate(d) for d in documents]
    ids = []
    async with get_client() as client:
        for automation in validated:
            for old in await client.read_automations_by_name(automation.name):
                await client.delete_automation(old.id)
            ids.append(str(await client.create_automation(automation)))
    return ids


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m justin_flows.automations", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["write", "check", "apply"])
    parser.add_argument("--prefect-yaml", type=Path, default=Path("prefect.yaml"))
    parser.add_argument("--out", type=Path, default=Path("automations"))
    parser.add_argument("--notify-block-id", help="send-notification with this block document id")
    parser.add_argument("--webhook-block-id", help="call-webhook with this block document id")
    args = parser.parse_args(argv)
    try:
        files = rendered_files(args.prefect_yaml, actions_for(args.notify_block_id, args.webhook_block_id))
    except (OSError, ValueError, KeyError) as exc:
        print(f"automations: {args.prefect_yaml}: {exc}", file=sys.stderr)
        return 2
    if args.command == "write":
        args.out.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (args.out / name).write_text(text, encoding="utf-8")
        print(f"wrote {', '.join(sorted(files))} to {args.out}")
        return 0
    if args.command == "check":
        stale = [n for n, t in files.items() if not (args.out / n).is_file() or (args.out / n).read_text() != t]
        if stale:
            print(f"automations out of date with {args.prefect_yaml}: {', '.join(stale)} (run `write`)", file=sys.stderr)
            return 1
        return 0
    import asyncio

    ids = asyncio.run(apply([d for text in files.values() for d in yaml.safe_load(text)["automations"]]))
    print(f"{len(ids)} automation(s) created")
    return 0


if __name__ == "__main__":
    sys.exit(main())
