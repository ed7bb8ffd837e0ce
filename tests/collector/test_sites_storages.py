"""updateSitesStorages (reference §2.11) against PostgreSQL: every site x every storage gets its distance."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, insert, select

from justin_flows.collector.sites_storages import update_sites_storages
from justin_flows.db.engine import transaction
from justin_flows.db.models import MONTECARLO_RSE_ID, Site, SiteStorage, Storage

# site_id: (site_name, country, region)
SITES: dict[int, tuple[str, str, str]] = {
    1: ("UK_Testshire", "UK", "Europe"),
    2: ("NL_NIKHEF", "NL", "Europe"),
    3: ("US_FNAL-FermiGrid", "US", "North_America"),
    4: ("US_NERSC-CPU", "US", "North_America"),
    5: ("CERN", "CERN", "Europe"),
    6: ("BR_Sampa", "BR", "South_America"),
    7: ("NL_SURFsara", "NL", "Europe"),
    8: ("US_FNAL-Test", "US", "North_America"),
    9: ("UK_Testshire-GPU", "UK", "Europe"),
    10: ("Somewhere", "", ""),
}
# rse_id: (rse_name, site_id, country, region, decommissioned)
STORAGES: dict[int, tuple[str, int | None, str, str, bool]] = {
    MONTECARLO_RSE_ID: ("MONTECARLO", None, "", "", False),
    2: ("TESTSHIRE_DISK", 1, "UK", "Europe", False),
    3: ("SURFSARA_DISK", 7, "NL", "Europe", False),
    4: ("FNAL_DCACHE", 3, "US", "North_America", False),
    5: ("NERSC_SCRATCH", 4, "US", "North_America", False),
    6: ("CERN_EOS", 5, "CH", "Europe", False),
    7: ("TESTSHIRE_OLD", 1, "UK", "Europe", True),
    8: ("ORPHAN_DISK", None, "IN", "South_Asia", False),
    9: ("BLANK_DISK", None, "", "", False),
}
# Worked out by hand from the ladder, one row per site, columns = rse_id 1..9.
EXPECTED: dict[int, tuple[float, ...]] = {
    #    MC  TESTSH SURF  FNAL NERSC CERN  OLD  ORPH  BLANK
    1:  (0,  0,    30,   90,  101,  30,   0,   100,  100),  # UK_Testshire
    2:  (0,  30,   10,   90,  101,  30,   30,  100,  100),  # NL_NIKHEF: SURFsara is a neighbour (10, not 20)
    3:  (0,  100,  100,  0,   101,  90,   100, 100,  100),  # US_FNAL-FermiGrid
    4:  (0,  100,  100,  20,  0,    90,   100, 100,  100),  # US_NERSC-CPU
    5:  (0,  30,   30,   90,  101,  0,    30,  100,  100),  # CERN
    6:  (0,  100,  100,  90,  101,  90,   100, 100,  100),  # BR_Sampa
    7:  (0,  30,   0,    90,  101,  30,   30,  100,  100),  # NL_SURFsara
    8:  (0,  100,  100,  0,   101,  90,   100, 100,  100),  # US_FNAL-Test: FNAL to FNAL is 0, not the prefix's 10
    9:  (0,  10,   30,   90,  101,  30,   10,  100,  100),  # UK_Testshire-GPU: same prefix
    10: (0,  100,  100,  90,  101,  90,   100, 100,  100),  # Somewhere: an empty country or region never matches
}


@pytest.fixture
def grid(db: Engine) -> None:
    with transaction() as s:
        s.execute(insert(Site), [
            {"site_id": i, "site_name": n, "country": c, "region": r} for i, (n, c, r) in SITES.items()
        ])
        s.execute(insert(Storage), [
            {"rse_id": i, "rse_name": n, "site_id": site, "country": c, "region": r, "decommissioned": d}
            for i, (n, site, c, r, d) in STORAGES.items()
        ])


def distances() -> dict[tuple[int, int], float]:
    with transaction() as s:
        rows = s.execute(select(SiteStorage.site_id, SiteStorage.rse_id, SiteStorage.distance)).all()
    return {(site, rse): d for site, rse, d in rows}


def expected_pairs() -> dict[tuple[int, int], float]:
    return {(site, rse): float(d) for site, row in EXPECTED.items() for rse, d in zip(sorted(STORAGES), row)}


@pytest.mark.usefixtures("grid")
def test_every_site_and_storage_get_the_ladder_distance_including_montecarlo_and_decommissioned() -> None:
    report = update_sites_storages()

    assert distances() == expected_pairs()
    assert (report.counts["sites"], report.counts["storages"], report.counts["pairs"]) == (10, 9, 90)
    assert report.counts["distance_101"] == 9  # the NERSC storage from every site but US_NERSC-CPU (0)
    assert report.errors == []
    rows = {r["site"]: r["nearby_storages"] for r in report.rows}
    assert rows["NL_NIKHEF"] == "SURFSARA_DISK (10), CERN_EOS (30), TESTSHIRE_DISK (30), TESTSHIRE_OLD (30)"
    assert rows["BR_Sampa"] == "-"


@pytest.mark.usefixtures("grid")
def test_nikhef_and_surfsara_are_neighbours_upstream_spelling_bug_fixed() -> None:
    """Upstream compared with 'NL_SURFSARA', so the pair fell through to the same-country 20; it is 10 here."""
    update_sites_storages()
    got = distances()
    assert got[(2, 3)] == 10.0  # NL_NIKHEF -> SURFSARA_DISK (at NL_SURFsara)


@pytest.mark.usefixtures("grid")
def test_a_second_run_leaves_the_same_rows_and_keeps_the_awt_results() -> None:
    with transaction() as s:
        # a stale distance and AWT results for one pair, as if written by an older run and AWT jobs
        s.execute(insert(SiteStorage).values(site_id=2, rse_id=3, distance=55.0, read_result=0, write_result=0))
    update_sites_storages()
    first = all_rows()
    second_report = update_sites_storages()

    assert all_rows() == first
    assert {(site, rse): d for site, rse, d, _, _ in first} == expected_pairs()
    assert [(r, w) for site, rse, _, r, w in first if (site, rse) == (2, 3)] == [(0, 0)]
    assert {(r, w) for site, rse, _, r, w in first if (site, rse) != (2, 3)} == {(255, 255)}
    assert second_report.counts["pairs"] == 90


def all_rows() -> list[tuple[Any, ...]]:
    with transaction() as s:
        return [
            tuple(r)
            for r in s.execute(
                select(SiteStorage.site_id, SiteStorage.rse_id, SiteStorage.distance, SiteStorage.read_result,
                       SiteStorage.write_result).order_by(SiteStorage.site_id, SiteStorage.rse_id)
            )
        ]


def test_no_sites_or_no_storages_writes_nothing(db: Engine) -> None:
    with transaction() as s:
        s.execute(insert(Storage).values(rse_id=MONTECARLO_RSE_ID, rse_name="MONTECARLO"))
    report = update_sites_storages()
    assert distances() == {}
    assert (report.counts["sites"], report.counts["storages"], report.counts["pairs"]) == (0, 1, 0)
