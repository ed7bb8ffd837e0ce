"""Names and rules of the datasets a job's outputs and logs go into (reference §5.3, §5.4).

Each output file ends up in three datasets of the workflow's scope, in Rucio and in MetaCat
under the same ``scope:name``:

* the **per-RSE** dataset ``<instance>-w<W>s<S>p<P>-<RSE>`` (no user prefix), with a rule of
  one copy on that RSE for the pattern's lifetime: it is what keeps the replica alive;
* the **numbered** dataset ``<destination>n%03d`` (no separator), rolling every 1000 files of
  the stage's patterns sharing the destination, with a rule on the stage's RSE expression
  only when one was given;
* the **overall** dataset ``<destination>``, with no rule.

A job's ``logs.tgz`` goes into ``justin-logs:logstgz-<period>-<RSE>`` with a 4,000,000 s rule
on that RSE. Rules are always ``copies=1``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from justin_flows.domain.naming import LOGS_SCOPE, logs_dataset_name, logs_period_start

FILES_PER_NUMBERED_DATASET = 1000  # upstream filesPerNumberedDestination
RULE_COPIES = 1
LOGS_RULE_LIFETIME_SECONDS = 4_000_000
#: MetaCat's catch-all dataset every output and logs.tgz is declared into.
ALL_FILES_DATASET = "dune:all"

_NUMBER = re.compile(r"^n(\d{3,})$")
_JOBSUB_ID = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+$")
_DATASET_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset to have in MetaCat and Rucio, with its rule (if any) and MetaCat metadata."""

    scope: str
    name: str
    kind: str  # "per-rse", "numbered", "overall" or "logs"
    rule_rse_expression: str | None = None
    rule_lifetime_seconds: int | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def did(self) -> str:
        return f"{self.scope}:{self.name}"


def destination_number(number_files: int) -> str:
    """``n%03d`` of the numbered dataset holding the next file: n001 for files 0-999, n002..."""
    if number_files < 0:
        raise ValueError(f"number_files must be >= 0, got {number_files}")
    return "n%03d" % (1 + number_files // FILES_PER_NUMBERED_DATASET)


def parse_destination_number(value: object) -> str:
    """The allocator's ``destination_number``: ``'n001'`` as given, or a counter >= 1 as ``n%03d``."""
    if isinstance(value, bool):
        raise ValueError(f"destination_number {value!r} is not n%03d or a counter")
    if isinstance(value, int):
        if value < 1:
            raise ValueError(f"destination_number {value} must be at least 1")
        return "n%03d" % value
    if isinstance(value, str) and _NUMBER.match(value) and int(value[1:]) >= 1:
        return value
    raise ValueError(f"destination_number {value!r} is not n%03d (e.g. n001) or a counter >= 1")


def check_dataset_name(name: str) -> str:
    """A dataset name justIN makes: ``[A-Za-z0-9_.-]``, no ``:`` (reference §5.3)."""
    if not _DATASET_NAME.match(name):
        raise ValueError(f"dataset name {name!r} is not [A-Za-z0-9_.-] (at most 200 characters)")
    return name


def per_rse_dataset_name(instance: str, workflow_id: int, stage_id: int, pattern_id: int, rse: str) -> str:
    """``<instance>-w<W>s<S>p<P>-<RSE>``, e.g. ``prod-w1234s1p1-MANCHESTER``."""
    return f"{instance}-w{workflow_id}s{stage_id}p{pattern_id}-{rse}"


def numbered_dataset_name(destination: str, number: str) -> str:
    """``<destination><nNNN>`` with no separator, e.g. ``prod-w1234s1p1n001``."""
    return destination + parse_destination_number(number)


def logs_tgz_name(jobsub_id: str) -> str:
    """``<jobsub id with @ → ->.logs.tgz``, e.g. ``123.4-sched01.example.org.logs.tgz``."""
    if not _JOBSUB_ID.match(jobsub_id):
        raise ValueError(f"jobsub id {jobsub_id!r} is not <cluster>.<proc>@<schedd>")
    return jobsub_id.replace("@", "-") + ".logs.tgz"


def logs_tgz_prefix(jobsub_id: str) -> str:
    """The directory every logs.tgz entry sits under: the jobsub id with ``@`` → ``-``."""
    return logs_tgz_name(jobsub_id).removesuffix(".logs.tgz")


def logs_dataset(rse: str, now: float) -> DatasetSpec:
    """The logs dataset of ``rse`` for the period holding ``now``, with its 4,000,000 s rule."""
    return DatasetSpec(
        LOGS_SCOPE,
        logs_dataset_name(rse, logs_period_start(now)),
        "logs",
        rule_rse_expression=rse,
        rule_lifetime_seconds=LOGS_RULE_LIFETIME_SECONDS,
    )


def dataset_metadata(workflow_fields: Mapping[str, Any]) -> dict[str, Any]:
    """MetaCat dataset metadata: ``{"dune.workflow": {...}}`` (workflow, stage, pattern...)."""
    return {"dune.workflow": {k: v for k, v in workflow_fields.items() if v is not None}}


def output_datasets(
    *,
    scope: str,
    destination: str,
    number: str,
    lifetime_seconds: int,
    rse_expression: str,
    metadata: Mapping[str, Any],
) -> tuple[DatasetSpec, DatasetSpec]:
    """The numbered and overall datasets of one pattern (the RSE-independent two)."""
    check_dataset_name(destination)
    numbered = DatasetSpec(
        scope,
        check_dataset_name(numbered_dataset_name(destination, number)),
        "numbered",
        rule_rse_expression=rse_expression or None,
        rule_lifetime_seconds=lifetime_seconds if rse_expression else None,
        metadata=metadata,
    )
    overall = DatasetSpec(scope, destination, "overall", metadata=metadata)
    return numbered, overall


def per_rse_dataset(
    *,
    scope: str,
    instance: str,
    workflow_id: int,
    stage_id: int,
    pattern_id: int,
    rse: str,
    lifetime_seconds: int,
    metadata: Mapping[str, Any],
) -> DatasetSpec:
    """The per-RSE dataset of one pattern, with its rule of one copy on ``rse``."""
    name = check_dataset_name(per_rse_dataset_name(instance, workflow_id, stage_id, pattern_id, rse))
    return DatasetSpec(
        scope, name, "per-rse", rule_rse_expression=rse, rule_lifetime_seconds=lifetime_seconds, metadata=metadata
    )
