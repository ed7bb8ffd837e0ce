"""Output and logs dataset names and rules (reference §5.3, §5.4), abort codes (§5.1): pure."""

from __future__ import annotations

import pytest

from justin_flows.domain.job_aborts import AbortCode, job_state_for_abort
from justin_flows.domain.output_datasets import (
    LOGS_RULE_LIFETIME_SECONDS,
    destination_number,
    logs_dataset,
    logs_tgz_name,
    logs_tgz_prefix,
    numbered_dataset_name,
    output_datasets,
    parse_destination_number,
    per_rse_dataset,
    per_rse_dataset_name,
)


def test_per_rse_dataset_has_the_instance_and_no_user_prefix() -> None:
    assert per_rse_dataset_name("prod", 1234, 1, 1, "MANCHESTER") == "prod-w1234s1p1-MANCHESTER"
    spec = per_rse_dataset(scope="usertests", instance="prod", workflow_id=1234, stage_id=1, pattern_id=2,
                           rse="RAL_ECHO", lifetime_seconds=86400 * 3, metadata={})
    assert (spec.did, spec.kind) == ("usertests:prod-w1234s1p2-RAL_ECHO", "per-rse")
    assert (spec.rule_rse_expression, spec.rule_lifetime_seconds) == ("RAL_ECHO", 259200)


@pytest.mark.parametrize(("number_files", "expected"), [(0, "n001"), (999, "n001"), (1000, "n002"), (12345, "n013")])
def test_numbered_dataset_rolls_every_1000_files(number_files: int, expected: str) -> None:
    assert destination_number(number_files) == expected
    assert numbered_dataset_name("myrun-prod-w1s1p1", expected) == f"myrun-prod-w1s1p1{expected}"


def test_destination_number_accepts_the_string_or_a_counter() -> None:
    assert parse_destination_number("n001") == "n001"
    assert parse_destination_number(4) == "n004"
    assert parse_destination_number("n1000") == "n1000"
    for bad in ("001", "n01", "n000", 0, True, None, "n00x"):
        with pytest.raises(ValueError):
            parse_destination_number(bad)


def test_numbered_rule_only_with_an_rse_expression_overall_never() -> None:
    numbered, overall = output_datasets(scope="s", destination="prod-w1s1p1", number="n002", lifetime_seconds=600,
                                        rse_expression="", metadata={})
    assert (numbered.name, numbered.rule_rse_expression, numbered.rule_lifetime_seconds) == ("prod-w1s1p1n002", None, None)
    assert (overall.name, overall.rule_rse_expression) == ("prod-w1s1p1", None)
    numbered, _ = output_datasets(scope="s", destination="prod-w1s1p1", number="n002", lifetime_seconds=600,
                                  rse_expression="country=UK", metadata={})
    assert (numbered.rule_rse_expression, numbered.rule_lifetime_seconds) == ("country=UK", 600)


def test_destinations_with_a_colon_or_unsafe_characters_are_refused() -> None:
    for bad in ("scope:name", "a b", "x;y", ""):
        with pytest.raises(ValueError):
            output_datasets(scope="s", destination=bad, number="n001", lifetime_seconds=1, rse_expression="",
                            metadata={})


def test_logs_tgz_name_and_dataset() -> None:
    assert logs_tgz_name("123.4@justin-prod-sched01.dune.hep.ac.uk") == "123.4-justin-prod-sched01.dune.hep.ac.uk.logs.tgz"
    assert logs_tgz_prefix("123.4@sched.example") == "123.4-sched.example"
    spec = logs_dataset("MANCHESTER", 1_710_000_123.5)
    assert spec.did == "justin-logs:logstgz-1710000000-MANCHESTER"
    assert (spec.rule_rse_expression, spec.rule_lifetime_seconds) == ("MANCHESTER", LOGS_RULE_LIFETIME_SECONDS)
    for bad in ("123.4", "a/b@c", "1@x y", "1@x;y"):
        with pytest.raises(ValueError):
            logs_tgz_name(bad)


@pytest.mark.parametrize(
    ("code", "state"),
    [(324, "jobscript_error"), *[(c, "outputting_failed") for c in (313, 314, 315, 316, 317, 318, 319, 320, 321, 328)],
     (312, "aborted"), (322, "aborted"), (399, "aborted")],
)
def test_abort_codes_map_to_the_allocators_job_states(code: int, state: str) -> None:
    assert job_state_for_abort(code) == state


def test_abort_codes_keep_upstreams_numbers() -> None:
    assert (AbortCode.LOGS_UPLOAD, AbortCode.OUTPUT_UPLOAD, AbortCode.SILENT_UPLOAD_FAILURE) == (316, 320, 328)
