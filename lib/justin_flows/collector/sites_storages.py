"""updateSitesStorages (reference §2.11): the distance from every site to every storage.

The job factory prefers storages near a site, so after each ``updateSites`` run every
site x storage pair (MONTECARLO and decommissioned RSEs included, as upstream) gets the
distance of the ladder in ``justin_flows.domain.distances`` (where upstream's NL_SURFsara
spelling bug is fixed on purpose). No external calls. Upstream ran one SELECT and one
INSERT or UPDATE per pair; here it is one query for the sites, one for the storages (with
their site's name) and one bulk upsert, so ``read_result``/``write_result`` (AWT's) are kept.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.orm import aliased

from justin_flows.collector.report import CollectorReport
from justin_flows.db.engine import transaction, upsert
from justin_flows.db.models import MONTECARLO_RSE_ID, Site, SiteStorage, Storage
from justin_flows.domain.distances import DISTANCE_CERN_OR_FNAL, site_storage_distance

#: Rows per INSERT statement (3 bound parameters each), well below every driver's limit.
UPSERT_CHUNK_ROWS = 5000


def update_sites_storages() -> CollectorReport:
    """Compute and upsert ``sites_storages.distance`` for every site x storage (upstream ``updateSitesStorages``).

    Returns:
        Counts of sites, storages, pairs and pairs per distance; one row per site listing
        its nearby storages (distance below 90, MONTECARLO left out) for the artifact.
    """
    report = CollectorReport("updateSitesStorages")
    rse_site = aliased(Site)
    with transaction() as session:
        sites = session.execute(
            select(Site.site_id, Site.site_name, Site.country, Site.region).order_by(Site.site_name)
        ).all()
        storages = session.execute(
            select(Storage.rse_id, Storage.rse_name, Storage.country, Storage.region, rse_site.site_name)
            .outerjoin(rse_site, Storage.site_id == rse_site.site_id)
            .order_by(Storage.rse_name)
        ).all()

        pairs: list[dict[str, Any]] = []
        nearby: dict[str, list[tuple[float, str]]] = defaultdict(list)
        for site in sites:
            for rse in storages:
                distance = site_storage_distance(
                    site.site_name, site.country, site.region,
                    rse.rse_id, rse.rse_name, rse.site_name, rse.country, rse.region,
                )
                pairs.append({"site_id": site.site_id, "rse_id": rse.rse_id, "distance": distance})
                report.count(f"distance_{distance:g}")
                if distance < DISTANCE_CERN_OR_FNAL and rse.rse_id != MONTECARLO_RSE_ID:
                    nearby[site.site_name].append((distance, rse.rse_name))

        table: Table = SiteStorage.__table__  # type: ignore[assignment]
        for start in range(0, len(pairs), UPSERT_CHUNK_ROWS):
            upsert(session, table, pairs[start : start + UPSERT_CHUNK_ROWS], ["site_id", "rse_id"], ["distance"])

    report.count("sites", len(sites))
    report.count("storages", len(storages))
    report.count("pairs", len(pairs))
    report.rows.extend(
        {
            "site": site.site_name,
            "nearby_storages": ", ".join(f"{name} ({d:g})" for d, name in sorted(nearby[site.site_name])) or "-",
        }
        for site in sites
    )
    return report
