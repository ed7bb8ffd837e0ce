"""The site-to-storage distance ladder (upstream ``updateSitesStorages()`` in agents/justin-info-collector).

justIN computes a distance for every site and every storage (RSE), the MONTECARLO pseudo-RSE
and decommissioned RSEs included. The job factory prefers the storages nearest a site.
This module only computes the number. Reading ``sites``/``storages`` and writing
``sites_storages`` are the flow's job.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The rse_id of the MONTECARLO pseudo-RSE (the same value as ``justin_flows.db.models.MONTECARLO_RSE_ID``).
#: It is repeated here so that this module needs no database package.
MONTECARLO_RSE_ID = 1

DISTANCE_SAME = 0.0
DISTANCE_SAME_PREFIX = 10.0
DISTANCE_SAME_COUNTRY = 20.0
DISTANCE_SAME_REGION = 30.0
DISTANCE_CERN_OR_FNAL = 90.0
DISTANCE_OTHER = 100.0
DISTANCE_UNMATCHABLE = 101.0

#: RSE sites that are a fallback for every site (rule 9).
FALLBACK_RSE_SITES = frozenset({"CERN", "US_FNAL-FermiGrid"})

#: Site pairs that count as one place (rule 6). Compared case-insensitively.
PAIRED_SITES = frozenset({("nl_nikhef", "nl_surfsara"), ("nl_surfsara", "nl_nikhef")})


@dataclass(frozen=True)
class DistanceInputs:
    """The columns the ladder reads: one site and one storage.

    Attributes:
        site_name: ``sites.site_name`` of the site.
        site_country: ``sites.country`` of the site.
        site_region: ``sites.region`` of the site.
        rse_id: ``storages.rse_id``.
        rse_name: ``storages.rse_name``.
        rse_site_name: The ``site_name`` of the site the storage belongs to
            (``storages.site_id -> sites.site_name``), or ``None`` when it belongs to none.
        rse_country: ``storages.country`` (the RSE's ``country`` attribute).
        rse_region: ``storages.region``.
    """

    site_name: str
    site_country: str | None
    site_region: str | None
    rse_id: int
    rse_name: str | None
    rse_site_name: str | None
    rse_country: str | None
    rse_region: str | None

    def distance(self) -> float:
        """Apply the ladder: the first rule that matches gives the distance."""
        site = self.site_name or ""
        rse_site = self.rse_site_name or ""
        rse_name = self.rse_name or ""

        # 1. The storage is at the site, or it is MONTECARLO.
        if (rse_site and site == rse_site) or self.rse_id == MONTECARLO_RSE_ID:
            return DISTANCE_SAME
        # 2. Fermilab to Fermilab.
        if site.startswith("US_FNAL") and rse_site.startswith("US_FNAL"):
            return DISTANCE_SAME
        # 3. NERSC to NERSC.
        if site.startswith("US_NERSC") and "NERSC" in rse_name:
            return DISTANCE_SAME
        # 4. A NERSC storage is never used from anywhere else.
        if "NERSC" in rse_name:
            return DISTANCE_UNMATCHABLE
        # 5. The same name up to the first '-'.
        site_prefix = site.split("-")[0]
        rse_site_prefix = rse_site.split("-")[0]
        if site_prefix and rse_site_prefix and site_prefix == rse_site_prefix:
            return DISTANCE_SAME_PREFIX
        # 6. NIKHEF and SURFsara are neighbours (fixed on purpose: see site_storage_distance).
        if (site.casefold(), rse_site.casefold()) in PAIRED_SITES:
            return DISTANCE_SAME_PREFIX
        # 7. The same country.
        if self.site_country and self.site_country == self.rse_country:
            return DISTANCE_SAME_COUNTRY
        # 8. The same region.
        if self.site_region and self.site_region == self.rse_region:
            return DISTANCE_SAME_REGION
        # 9. Storage at CERN or FNAL.
        if rse_site in FALLBACK_RSE_SITES:
            return DISTANCE_CERN_OR_FNAL
        # 10. Anything else.
        return DISTANCE_OTHER


def site_storage_distance(
    site_name: str,
    site_country: str | None,
    site_region: str | None,
    rse_id: int,
    rse_name: str | None,
    rse_site_name: str | None,
    rse_country: str | None,
    rse_region: str | None,
) -> float:
    """The distance from a site to a storage (upstream ``updateSitesStorages``).

    The first matching rule wins. ``prefix(x)`` is ``x.split('-')[0]``.

    ====  =====================================================================  ========
    rule  condition                                                              distance
    ====  =====================================================================  ========
    1     site is the RSE's site, or ``rse_id`` is MONTECARLO (1)                0
    2     site and RSE site both start with ``US_FNAL``                          0
    3     site starts with ``US_NERSC`` and ``NERSC`` is in ``rse_name``         0
    4     ``NERSC`` is in ``rse_name``                                           101
    5     non-empty and equal ``prefix(site)`` and ``prefix(RSE site)``          10
    6     site and RSE site are NL_NIKHEF and NL_SURFsara, either way round      10
    7     non-empty site country equal to the RSE country                       20
    8     non-empty site region equal to the RSE region                         30
    9     RSE site is ``CERN`` or ``US_FNAL-FermiGrid``                          90
    10    otherwise                                                              100
    ====  =====================================================================  ========

    Rule 6 is an upstream bug, fixed on purpose. Upstream compares the names exactly with
    ``NL_SURFSARA``, but the site is really called ``NL_SURFsara`` (its GLIDEIN_DUNESite
    in osg-gfactory), so the rule never matched and the pair fell through to rule 7
    (distance 20). Here the names are compared case-insensitively.

    A ``None`` ``rse_site_name`` or ``rse_name`` (an RSE with no site, read through a LEFT
    JOIN) counts as ``''``.

    Returns:
        The distance, as a float.
    """
    return DistanceInputs(
        site_name=site_name,
        site_country=site_country,
        site_region=site_region,
        rse_id=rse_id,
        rse_name=rse_name,
        rse_site_name=rse_site_name,
        rse_country=rse_country,
        rse_region=rse_region,
    ).distance()
