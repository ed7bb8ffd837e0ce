"""plan_stage: upstream workflowJobs' arithmetic (reference §4.3), in exact integers."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest

from justin_flows.domain.job_planning import OVER_IDLE_CAP, TARGET_REACHED, jobs_target, plan_stage


def test_target_is_ceil_of_one_and_a_half_times_unallocated() -> None:
    assert jobs_target(3) == 5  # 4.5 -> 5
    assert jobs_target(2) == 3  # exact: no +1 from float fuzz
    assert jobs_target(1) == 2
    assert jobs_target(0) == 0
    plan = plan_stage(0, 3)
    assert (plan.target, plan.to_submit, plan.reason) == (5, 5, "submit 5")


def test_target_has_no_float_error_where_floats_have_one() -> None:
    # 0.1 * 30 == 3.0000000000000004 in floats, so math.ceil would give 4
    assert jobs_target(30, 0.1) == 3
    assert jobs_target(7, 0.7) == 5  # 4.9 -> 5, and 10 * 0.7 == 7 exactly:
    assert jobs_target(10, 0.7) == 7
    assert jobs_target(3, Decimal("1.5")) == 5
    assert jobs_target(3, Fraction(3, 2)) == 5
    assert jobs_target(3, 2) == 6


def test_target_is_exact_for_big_numbers() -> None:
    n = 10**18 + 1  # 1.5 * n is not representable as a float
    assert jobs_target(n) == (3 * n + 1) // 2
    assert jobs_target(n) != int(n * 1.5 + 0.9999)  # upstream's formula loses it


def test_one_cluster_is_capped_at_192() -> None:
    plan = plan_stage(0, 1000)
    assert (plan.target, plan.to_submit) == (1500, 192)


def test_to_submit_is_target_minus_waiting_jobs() -> None:
    plan = plan_stage(100, 100)
    assert (plan.target, plan.to_submit, plan.submits) == (150, 50, True)


def test_idle_cap_is_strict_upstream_style() -> None:
    at_cap = plan_stage(2000, 10**6)
    assert (at_cap.to_submit, at_cap.reason) == (192, "submit 192")  # 2000 is not > 2000
    over = plan_stage(2001, 10**6)
    assert (over.to_submit, over.reason, over.submits) == (0, OVER_IDLE_CAP, False)
    assert over.reason == "over the idle cap"


def test_nothing_when_target_at_or_below_waiting_jobs() -> None:
    equal = plan_stage(3, 2)  # target 3 <= 3 waiting
    assert (equal.target, equal.to_submit, equal.reason) == (3, 0, TARGET_REACHED)
    assert equal.reason == "target <= submitted"
    assert plan_stage(5, 2).to_submit == 0
    assert plan_stage(0, 0).reason == TARGET_REACHED  # no files, no jobs


def test_knobs_are_parameters() -> None:
    plan = plan_stage(10, 100, max_submitted=5, jobs_ratio=2, jobs_per_cluster=40)
    assert plan.reason == OVER_IDLE_CAP
    plan = plan_stage(10, 100, max_submitted=50, jobs_ratio=2, jobs_per_cluster=40)
    assert (plan.target, plan.to_submit) == (200, 40)


@pytest.mark.parametrize(
    "args, kwargs",
    [
        ((-1, 0), {}),
        ((0, -1), {}),
        ((0, 1), {"jobs_ratio": 0}),
        ((0, 1), {"jobs_ratio": float("nan")}),
        ((0, 1), {"jobs_per_cluster": 0}),
        ((0, 1), {"max_submitted": -1}),
    ],
)
def test_bad_inputs_are_refused(args: tuple[int, int], kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        plan_stage(*args, **kwargs)  # type: ignore[arg-type]
