"""Logs dataset names and periods (reference §2.6) at a fixed clock, and account keys (§2.7)."""

from __future__ import annotations

import pytest

from justin_flows.domain.naming import (
    logs_dataset_did,
    logs_dataset_name,
    logs_period_start,
    logs_periods,
    principal_account_key,
)

BOUNDARY = 1_710_000_000


def test_name_matches_upstream_example() -> None:
    assert logs_dataset_name("MANCHESTER", BOUNDARY) == "logstgz-1710000000-MANCHESTER"
    assert logs_dataset_did("MANCHESTER", BOUNDARY) == "justin-logs:logstgz-1710000000-MANCHESTER"


def test_one_second_before_a_boundary_is_still_the_previous_period() -> None:
    assert logs_period_start(BOUNDARY - 1) == 1_709_000_000
    assert logs_periods(BOUNDARY - 1) == [1_709_000_000, 1_710_000_000, 1_711_000_000]


def test_exactly_at_a_boundary_starts_the_new_period() -> None:
    assert logs_period_start(BOUNDARY) == BOUNDARY
    assert logs_periods(BOUNDARY) == [1_710_000_000, 1_711_000_000, 1_712_000_000]


def test_fractional_seconds_round_down() -> None:
    assert logs_periods(BOUNDARY + 999_999.999) == [1_710_000_000, 1_711_000_000, 1_712_000_000]
    assert logs_periods(BOUNDARY - 0.001)[0] == 1_709_000_000


def test_a_name_needs_a_period_start() -> None:
    with pytest.raises(ValueError):
        logs_dataset_name("MANCHESTER", BOUNDARY + 1)


def test_principal_names_map_to_account_form() -> None:
    assert principal_account_key("amcnab@fnal.gov") == "amcnab_fnal_gov"
    assert principal_account_key("a..b--c") == "a_b_c"  # runs collapse to one '_'
    assert principal_account_key("dunepro") == "dunepro"
