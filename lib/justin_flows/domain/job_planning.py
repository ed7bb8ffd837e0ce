"""How many jobs one stage gets this cycle (upstream ``workflowJobs``, reference §4.3).

Pure arithmetic, no database: the caller counts the stage's recently submitted jobs still
waiting and its unallocated files, and this module says how many to submit and why not.
The three knobs come from ``get_settings().job_factory`` (upstream constants 2000, 1.5, 192).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

OVER_IDLE_CAP = "over the idle cap"
TARGET_REACHED = "target <= submitted"


@dataclass(frozen=True)
class StagePlan:
    """The decision for one stage; ``to_submit`` is 0 when ``reason`` says why not."""

    submitted: int
    unallocated: int
    target: int
    to_submit: int
    reason: str

    @property
    def submits(self) -> bool:
        return self.to_submit > 0


def _exact(ratio: float | int | Decimal | Fraction) -> Fraction:
    """``ratio`` as an exact fraction of what the operator wrote (1.5 -> 3/2, 0.1 -> 1/10).

    ``Fraction(0.1)`` would be the binary float's value (slightly above 1/10), which can push
    ``ceil`` up by one job on exact multiples; the shortest decimal ``repr`` is what was meant.
    """
    if isinstance(ratio, float):
        if not math.isfinite(ratio):
            raise ValueError(f"jobs_ratio must be finite, not {ratio!r}")
        return Fraction(Decimal(repr(ratio)))
    return Fraction(ratio)


def jobs_target(unallocated_count: int, jobs_ratio: float | int | Decimal | Fraction = 1.5) -> int:
    """ceil(ratio x unallocated) in exact arithmetic (upstream: ``int(n*1.5 + 0.9999)``)."""
    if unallocated_count < 0:
        raise ValueError(f"unallocated_count must be >= 0, not {unallocated_count}")
    ratio = _exact(jobs_ratio)
    if ratio <= 0:
        raise ValueError(f"jobs_ratio must be > 0, not {jobs_ratio!r}")
    product = ratio * unallocated_count
    return -((-product.numerator) // product.denominator)  # ceil without floats


def plan_stage(
    submitted_count: int,
    unallocated_count: int,
    *,
    max_submitted: int = 2000,
    jobs_ratio: float | int | Decimal | Fraction = 1.5,
    jobs_per_cluster: int = 192,
) -> StagePlan:
    """Jobs to submit for one stage this cycle: at most one cluster of ``jobs_per_cluster``.

    * more than ``max_submitted`` jobs still waiting from the last 24 h: none (upstream's
      test is strict, so the waiting count can reach ``max_submitted + jobs_per_cluster``);
    * target = ceil(``jobs_ratio`` x unallocated files); target <= waiting: none;
    * otherwise min(``jobs_per_cluster``, target - waiting).
    """
    if submitted_count < 0:
        raise ValueError(f"submitted_count must be >= 0, not {submitted_count}")
    if max_submitted < 0 or jobs_per_cluster < 1:
        raise ValueError(f"bad limits: max_submitted={max_submitted}, jobs_per_cluster={jobs_per_cluster}")
    target = jobs_target(unallocated_count, jobs_ratio)
    if submitted_count > max_submitted:
        return StagePlan(submitted_count, unallocated_count, target, 0, OVER_IDLE_CAP)
    if target <= submitted_count:
        return StagePlan(submitted_count, unallocated_count, target, 0, TARGET_REACHED)
    to_submit = min(jobs_per_cluster, target - submitted_count)
    return StagePlan(submitted_count, unallocated_count, target, to_submit, f"submit {to_submit}")
