"""awtJobsToSites (reference §4.2): an automated-test (AWT) job to every site.

Every site, disabled ones included (the test is how a site earns being enabled), gets one
CPU job, except ``US_NERSC-GPU`` and ``US_NERSC-CUSTOM`` (GPU/custom-only), plus one GPU job
when it has any GPU entry. Each job is its own ``submit_cluster`` call, hence its own random
schedd and cluster, as upstream. Not gated by Rucio health (the flow decides that).
"""

from __future__ import annotations

import random
import time

from sqlalchemy import exists, select

from justin_flows.adapters.htcondor import HTCondorAdapter
from justin_flows.db.engine import transaction
from justin_flows.db.models import Entry, Site
from justin_flows.domain.submit_description import SubmitDescriptionError, check_name
from justin_flows.factory.report import FactoryReport
from justin_flows.factory.submit import ClusterRequest, SubmitError, default_jobscript_image, submit_cluster
from justin_flows.settings import get_settings

NO_CPU_JOB_SITES = frozenset({"US_NERSC-GPU", "US_NERSC-CUSTOM"})
AWT_ACCOUNTING_GROUP = "group_dune.prod"
AWT_USER = "dunepro"
AWT_STAGE_ID = 1
AWT_PROCESSORS = 1
AWT_RSS_BYTES = 1073741824  # 1 GiB
AWT_WALL_SECONDS = 3600


def awt_jobs_to_sites(condor: HTCondorAdapter, *, rng: random.Random | None = None) -> FactoryReport:
    """awtJobsToSites (reference §4.2): one AWT cluster of one job per site and kind.

    Rows: site, kind (cpu/gpu), outcome (the jobsub id, or why not).
    """
    settings = get_settings()
    report = FactoryReport("awtJobsToSites")
    started = time.perf_counter()
    has_gpu_entries = exists().where(Entry.site_id == Site.site_id, Entry.entry_has_gpus.is_(True))
    with transaction() as session:
        sites = list(
            session.execute(
                select(Site.site_id, Site.site_name, Site.jobsub_site_name, has_gpu_entries.label("has_gpu"))
                .order_by(Site.site_name)
            )
        )
    image = default_jobscript_image(settings)
    report.timings["plan"] = time.perf_counter() - started

    for site in sites:
        kinds = ([] if site.site_name in NO_CPU_JOB_SITES else ["cpu"]) + (["gpu"] if site.has_gpu else [])
        for kind in kinds:
            row = {"site": site.site_name, "kind": kind}
            try:
                jobsub_site = check_name(f"jobsub site name of site {site.site_name!r}", site.jobsub_site_name)
            except SubmitDescriptionError as exc:
                report.error(f"AWT {kind} job for {site.site_name}: {exc}")
                report.count("refused")
                report.rows.append({**row, "outcome": f"refused: {exc}"})
                continue
            request = ClusterRequest(
                workflow_id=settings.job_factory.awt_workflow_id,
                stage_id=AWT_STAGE_ID,
                count=1,
                desired_sites=[jobsub_site],
                site_id=site.site_id,
                awt=True,
                accounting_group=AWT_ACCOUNTING_GROUP,
                accounting_group_user=AWT_USER,
                jobscript_image=image,
                processors=AWT_PROCESSORS,
                rss_bytes=AWT_RSS_BYTES,
                wall_seconds=AWT_WALL_SECONDS,
                gpus=1 if kind == "gpu" else 0,
            )
            try:
                result = submit_cluster(condor, request, rng=rng)
            except SubmitError as exc:
                report.error(f"AWT {kind} job for {site.site_name}: {exc}")
                report.count("failed")
                report.rows.append({**row, "outcome": f"failed: {exc}"})
                continue
            report.timings["submit"] += result.submit_seconds
            report.timings["record"] += result.record_seconds
            if result.dry_run:
                report.count("dry_run")
                outcome = f"dry run: to {result.schedd}"
            else:
                report.count(f"{kind}_jobs")
                outcome = result.jobsub_ids[0]
            report.rows.append({**row, "outcome": outcome})
    report.count("sites", len(sites))
    return report
