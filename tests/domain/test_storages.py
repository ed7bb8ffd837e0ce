"""updateStorages' pure decisions (reference §2.5): schemes, decommissioning, occupancy."""

from __future__ import annotations

from typing import Any

import pytest

from justin_flows.domain.storages import (
    BIGINT_MAX,
    best_write_scheme,
    is_decommissioned,
    needs_pin,
    occupancy,
    quota_bytes,
    rucio_write,
    valid_rse_name,
    write_schemes,
)


def proto(scheme: str, lan: Any = None, wan: Any = None) -> dict[str, Any]:
    return {"scheme": scheme, "domains": {"lan": {"read": 1, "write": lan}, "wan": {"read": 1, "write": wan}}}


# -------------------------------------------------------------------- write schemes


def test_no_protocols_means_root_in_both_domains() -> None:
    assert write_schemes([]) == ("root", "root")


def test_lowest_positive_priority_wins_per_domain() -> None:
    protocols = [proto("https", lan=2, wan=3), proto("davs", lan=3, wan=1), proto("root", lan=0, wan=2)]
    assert write_schemes(protocols) == ("https", "davs")


def test_priority_zero_means_not_writable_even_if_it_is_the_only_one() -> None:
    assert write_schemes([proto("davs", lan=0, wan=0)]) == ("root", "root")


def test_tie_goes_to_the_alphabetically_smaller_scheme_whatever_the_order() -> None:
    one = [proto("https", lan=1, wan=1), proto("davs", lan=1, wan=1)]
    assert write_schemes(one) == ("davs", "davs")
    assert write_schemes(list(reversed(one))) == ("davs", "davs")
    assert write_schemes([proto("roots", wan=2), proto("root", wan=2)]) == ("root", "root")


def test_schemes_other_than_root_roots_https_davs_are_ignored() -> None:
    protocols = [proto("file", lan=1, wan=1), proto("srm", lan=1, wan=1), proto("roots", lan=5, wan=7)]
    assert write_schemes(protocols) == ("roots", "roots")


def test_missing_or_non_integer_priorities_are_skipped_not_fatal() -> None:
    protocols: list[dict[str, Any]] = [
        {"scheme": "https"},
        {"scheme": "davs", "domains": {"wan": {"write": None}}},
        {"scheme": "roots", "domains": {"lan": {"write": "1"}, "wan": {"write": 4}}},
        {"domains": {"lan": {"write": 1}}},
    ]
    assert best_write_scheme(protocols, "lan") == "root"
    assert best_write_scheme(protocols, "wan") == "roots"


# -------------------------------------------------------------------- decommissioned


@pytest.mark.parametrize(
    ("name", "rse_type", "attributes", "expected"),
    [
        ("SOME_DISK", "DISK", {}, False),
        ("SOME_DISK", "DISK", {"decommissioned": False}, False),
        ("SOME_DISK", "DISK", {"decommissioned": True}, True),
        ("SOME_TAPE", "TAPE", {}, True),
        ("FNAL_DCACHE", "TAPE", {}, False),  # the one tape RSE justIN uses
        ("FNAL_DCACHE", "TAPE", {"decommissioned": True}, True),
        ("FNAL_DCACHE_TEST", "TAPE", {}, True),  # only the exact name is exempt
        ("SOME_DISK", "DISK", {"decommissioned": "yes"}, False),  # only a true value counts
        ("SOME_DISK", None, {}, True),
    ],
)
def test_decommissioned_rule(name: str, rse_type: str | None, attributes: dict[str, Any], expected: bool) -> None:
    assert is_decommissioned(name, rse_type, attributes) is expected


def test_non_deterministic_rses_are_forced_read_only() -> None:
    assert rucio_write({"deterministic": True, "availability_write": True}) is True
    assert rucio_write({"deterministic": False, "availability_write": True}) is False
    assert rucio_write({"deterministic": True, "availability_write": False}) is False


def test_needs_pin_and_names() -> None:
    assert needs_pin("FNAL_DCACHE") and needs_pin("FNAL_DCACHE_PERSISTENT") and not needs_pin("CERN_PDUNE_EOS")
    assert valid_rse_name("UK_MANCHESTER-2") and not valid_rse_name("BAD NAME") and not valid_rse_name('X"')
    assert not valid_rse_name("") and not valid_rse_name(None)


# -------------------------------------------------------------------- occupancy


@pytest.mark.parametrize(
    ("used", "limit", "expected"),
    [
        (250, 1000, 0.25),
        (1500, 1000, 1.5),  # over quota stays above 1.0, so the allocator skips it
        (0, 1000, 0.0),
        (250, float("inf"), 0.0),  # unlimited
        (250, 0, 0.0),
        (250, None, 0.0),  # no limit for the account on this RSE
        (None, 1000, 0.0),  # no usage row
        ("x", 1000, 0.0),
        (float("nan"), 1000, 0.0),
    ],
)
def test_occupancy_is_used_over_limit_or_zero(used: Any, limit: Any, expected: float) -> None:
    assert occupancy(used, limit) == expected
    assert isinstance(occupancy(used, limit), float)


# -------------------------------------------------------------------- quota bytes


def test_quota_bytes_fit_a_signed_bigint() -> None:
    assert quota_bytes(float("inf")) == BIGINT_MAX == 2**63 - 1
    assert quota_bytes(2**64) == BIGINT_MAX
    assert quota_bytes(10**12) == 10**12
    assert quota_bytes(1234.0) == 1234
    assert quota_bytes(None) == 0
    with pytest.raises(ValueError):
        quota_bytes("lots")
