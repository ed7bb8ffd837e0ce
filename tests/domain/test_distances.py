"""The site-to-storage distance ladder (upstream ``updateSitesStorages``), rung by rung."""

from __future__ import annotations

from typing import Any

import pytest

from justin_flows.domain.distances import (
    MONTECARLO_RSE_ID,
    DistanceInputs,
    site_storage_distance,
)

# A site and a storage that share nothing: every rule misses, so the ladder gives 100.
FAR: dict[str, Any] = {
    "site_name": "BR_Somewhere",
    "site_country": "BR",
    "site_region": "South_America",
    "rse_id": 42,
    "rse_name": "FAR_DISK",
    "rse_site_name": "IN_Elsewhere",
    "rse_country": "IN",
    "rse_region": "South_Asia",
}


def distance(**changes: Any) -> float:
    return site_storage_distance(**{**FAR, **changes})


def test_rule_10_nothing_in_common_is_100() -> None:
    assert distance() == 100.0


def test_result_is_a_float() -> None:
    assert isinstance(distance(), float)
    assert isinstance(distance(rse_id=MONTECARLO_RSE_ID), float)


def test_rule_1_storage_at_the_site_is_0() -> None:
    assert distance(rse_site_name="BR_Somewhere") == 0.0


def test_rule_1_montecarlo_is_0_from_any_site() -> None:
    assert MONTECARLO_RSE_ID == 1
    assert distance(rse_id=1, rse_name="MONTECARLO", rse_site_name=None, rse_country="", rse_region="") == 0.0
    # MONTECARLO comes before the NERSC rules, whatever its name says.
    assert distance(rse_id=1, rse_name="NERSC_LOOKALIKE") == 0.0


def test_rule_2_fermilab_to_fermilab_is_0() -> None:
    assert distance(site_name="US_FNAL-FermiGrid", rse_site_name="US_FNAL-Enstore") == 0.0
    assert distance(site_name="US_FNAL_T1", rse_site_name="US_FNAL-dCache") == 0.0


def test_rule_2_needs_both_ends_at_fermilab() -> None:
    # Only the site is at Fermilab: the ladder goes on (here to the region rule).
    assert distance(site_name="US_FNAL-FermiGrid", site_country="US", site_region="North_America",
                    rse_site_name="CA_Maple", rse_country="CA", rse_region="North_America") == 30.0
    assert distance(site_name="US_FNAL-FermiGrid", rse_site_name=None) == 100.0


def test_rule_3_nersc_site_to_nersc_storage_is_0() -> None:
    assert distance(site_name="US_NERSC-Perlmutter", rse_name="NERSC_DISK", rse_site_name="US_NERSC") == 0.0


def test_rule_4_nersc_storage_from_elsewhere_is_unmatchable_101() -> None:
    assert distance(rse_name="NERSC_DISK") == 101.0
    # Even from the same country, and before the prefix rule.
    assert distance(site_name="US_Sampleton", site_country="US", site_region="North_America",
                    rse_name="NERSC_TAPE", rse_site_name="US_Sampleton-Annex", rse_country="US",
                    rse_region="North_America") == 101.0


def test_rule_4_is_about_the_storage_name_only() -> None:
    """Reference §2.11 rule 4 tests only ``'NERSC' in rse_name``.

    A US_NERSC site and a storage without NERSC in its name go on down the ladder, here to
    the country rule.
    """
    assert distance(site_name="US_NERSC-Perlmutter", site_country="US", site_region="North_America",
                    rse_name="SAMPLETON_DISK", rse_site_name="US_Sampleton", rse_country="US",
                    rse_region="North_America") == 20.0


def test_rule_5_same_prefix_before_the_first_dash_is_10() -> None:
    assert distance(site_name="UK_Testshire-East", rse_site_name="UK_Testshire-West") == 10.0
    assert distance(site_name="UK_Testshire", rse_site_name="UK_Testshire-Disk") == 10.0


def test_rule_5_ignores_empty_prefixes() -> None:
    assert distance(site_name="-odd", rse_site_name="-odder") == 100.0
    assert distance(site_name="BR_Somewhere", rse_site_name=None) == 100.0


@pytest.mark.parametrize(
    ("site_name", "rse_site_name"),
    [
        ("NL_NIKHEF", "NL_SURFsara"),
        ("NL_SURFsara", "NL_NIKHEF"),
        ("NL_NIKHEF", "NL_SURFSARA"),
        ("NL_SURFSARA", "NL_NIKHEF"),
    ],
)
def test_rule_6_nikhef_surfsara_pair_is_10_upstream_bug_fixed_on_purpose(site_name: str, rse_site_name: str) -> None:
    """An upstream bug, fixed on purpose.

    Upstream compares the names exactly with ``NL_SURFSARA``, but the real site is
    ``NL_SURFsara``, so upstream never used rule 6 and the pair fell through to rule 7 (20).
    Here the comparison ignores case.
    """
    assert distance(site_name=site_name, site_country="NL", site_region="Europe",
                    rse_site_name=rse_site_name, rse_country="NL", rse_region="Europe") == 10.0


def test_rule_6_only_that_pair() -> None:
    assert distance(site_name="NL_NIKHEF", site_country="NL", site_region="Europe",
                    rse_site_name="NL_Polder", rse_country="NL", rse_region="Europe") == 20.0


def test_rule_7_same_country_is_20() -> None:
    assert distance(rse_country="BR", rse_region="South_America") == 20.0


def test_rule_7_empty_country_never_matches() -> None:
    assert distance(site_country="", rse_country="", site_region="", rse_region="") == 100.0
    assert distance(site_country=None, rse_country=None, site_region=None, rse_region=None) == 100.0


def test_rule_8_same_region_is_30() -> None:
    assert distance(site_name="UK_Testshire", site_country="UK", site_region="Europe",
                    rse_site_name="DE_Goodburg", rse_country="DE", rse_region="Europe") == 30.0


def test_rule_8_empty_region_never_matches() -> None:
    assert distance(site_region="", rse_region="") == 100.0


@pytest.mark.parametrize("rse_site_name", ["CERN", "US_FNAL-FermiGrid"])
def test_rule_9_storage_at_cern_or_fnal_is_90(rse_site_name: str) -> None:
    assert distance(rse_site_name=rse_site_name, rse_country="XX", rse_region="Nowhere") == 90.0


def test_rule_9_comes_after_country_and_region() -> None:
    assert distance(site_name="DE_Goodburg", site_country="DE", site_region="Europe",
                    rse_site_name="CERN", rse_country="CERN", rse_region="Europe") == 30.0


def test_missing_rse_name_and_site_count_as_empty() -> None:
    assert distance(rse_name=None, rse_site_name=None) == 100.0


def test_dataclass_gives_the_same_answer() -> None:
    inputs = DistanceInputs(**{**FAR, "rse_country": "BR"})
    assert inputs.distance() == site_storage_distance(**{**FAR, "rse_country": "BR"}) == 20.0


def test_montecarlo_id_matches_the_database_model() -> None:
    models = pytest.importorskip("justin_flows.db.models")
    assert models.MONTECARLO_RSE_ID == MONTECARLO_RSE_ID
