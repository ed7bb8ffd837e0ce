"""workflowJobs (reference §4.3): one cluster per running stage that needs jobs, per cycle.

Read everything first in one read-only transaction (the running stages, their waiting jobs
and unallocated files, the entries that can reach their replicas, their ClassAds), close it,
then submit stage by stage; each cluster's jobs are recorded in their own transaction by
``submit_cluster``. A stage that cannot be planned or submitted is reported and the other
stages go on.

Better than upstream on purpose: ``Desired_Sites`` / ``Desired_Entries`` are sorted, so the
description does not depend on set order; one eligible-entries query serves every stage
and first reduces their unallocated files to distinct (stage, RSE) pairs (the same answer as
upstream's per-stage DISTINCT over the whole files x replicas x sites x entries join,
without multiplying rows or rescanning replicas per stage); names that could not be quoted
safely are refused with an error, not pasted in.
"""

from __future__ import annotations

import datetime as dt
import random
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, or_, select, tuple_
from sqlalchemy.orm import Session

from justin_flows.adapters.htcondor import HTCondorAdapter
from justin_flows.db.engine import transaction
from justin_flows.db.models import (
    CondorGroup,
    Entry,
    File,
    FileState,
    Job,
    JobState,
    NamedQuota,
    PrincipalName,
    Replica,
    Scope,
    Site,
    SiteStorage,
    Stage,
    StageClassad,
    StageSite,
    Storage,
    User,
    WlcgGroup,
    Workflow,
    WorkflowState,
)
from justin_flows.domain.job_planning import OVER_IDLE_CAP, TARGET_REACHED, StagePlan, plan_stage
from justin_flows.domain.submit_description import (
    DEFAULT_CONDOR_GROUP,
    SubmitDescriptionError,
    check_classad,
    check_name,
)
from justin_flows.factory.report import FactoryReport
from justin_flows.factory.submit import ClusterRequest, SubmitError, default_jobscript_image, submit_cluster
from justin_flows.settings import get_settings

PRODUCTION_WLCG_GROUP = "/dune/production"
SUBMITTED_WINDOW = dt.timedelta(days=1)
NO_ENTRIES = "no eligible entries"


@dataclass
class PlannedStage:
    """One running stage, what the plan says, and the cluster to submit (if any)."""

    workflow_id: int
    stage_id: int
    plan: StagePlan
    sites: list[str]
    request: ClusterRequest | None
    outcome: str

    def row(self) -> dict[str, Any]:
        return {
            "workflow": self.workflow_id,
            "stage": self.stage_id,
            "submitted": self.plan.submitted,
            "unallocated": self.plan.unallocated,
            "target": self.plan.target,
            "to_submit": self.plan.to_submit,
            "sites": ",".join(self.sites),
            "outcome": self.outcome,
        }


def _running_stages(session: Session, awt_workflow_id: int) -> list[Any]:
    """Upstream's stage selection: running workflows whose user and quota may process."""
    query = (
        select(
            Workflow.workflow_id,
            Stage.stage_id,
            Stage.max_distance,
            WlcgGroup.wlcg_group_name,
            Stage.processors,
            Stage.gpus,
            Stage.gpus_min_bytes,
            Stage.gpus_min_runtime,
            Stage.gpus_min_capability,
            Stage.gpus_max_capability,
            Stage.wall_seconds,
            Stage.rss_bytes,
            Scope.quota_id,
            PrincipalName.principal_name,
            CondorGroup.condor_group_name,
            Stage.jobscript_image,
        )
        .select_from(Workflow)
        .join(Stage, Stage.workflow_id == Workflow.workflow_id)
        .outerjoin(Scope, Scope.scope_id == Workflow.scope_id)
        .outerjoin(NamedQuota, NamedQuota.quota_id == Scope.quota_id)
        .outerjoin(WlcgGroup, WlcgGroup.wlcg_group_id == NamedQuota.wlcg_group_id)
        .outerjoin(User, User.user_id == Workflow.user_id)
        .outerjoin(PrincipalName, PrincipalName.pn_id == User.main_pn_id)
        .outerjoin(CondorGroup, CondorGroup.condor_group_id == Scope.condor_group_id)
        .where(
            Workflow.state == WorkflowState.RUNNING,
            Workflow.workflow_id != awt_workflow_id,
            User.processing_enabled.is_(True),
            NamedQuota.processing_enabled.is_(True),
        )
        .order_by(Workflow.workflow_id, Stage.stage_id)
    )
    return list(session.execute(query))


def _counts(session: Session, workflow_ids: list[int], now: dt.datetime) -> tuple[dict[tuple[int, int], int], ...]:
    """(submitted jobs of the last 24 h still waiting, unallocated files) per (workflow, stage)."""
    submitted = session.execute(
        select(Job.workflow_id, Job.stage_id, func.count())
        .where(
            Job.workflow_id.in_(workflow_ids),
            Job.job_state == JobState.SUBMITTED,
            Job.submitted_time > now - SUBMITTED_WINDOW,
        )
        .group_by(Job.workflow_id, Job.stage_id)
    )
    unallocated = session.execute(
        select(File.workflow_id, File.stage_id, func.count())
        .where(File.workflow_id.in_(workflow_ids), File.state == FileState.UNALLOCATED)
        .group_by(File.workflow_id, File.stage_id)
    )
    return ({(w, s): n for w, s, n in submitted}, {(w, s): n for w, s, n in unallocated})


def eligible_entries(
    session: Session, stages: list[Any], now: dt.datetime
) -> dict[tuple[int, int], list[tuple[str, str, str]]]:
    """(entry_name, jobsub_site_name, site_name) per (workflow, stage) that can run it.

    A stage's unallocated file qualifies through a replica that is accessible (NULL =
    forever; upstream's 9999-12-31), on a storage readable by Rucio and justIN and not
    decommissioned, within the stage's max_distance of an enabled site the stage allows
    (``stages_sites``), through an entry whose GPU-ness matches the stage and, unless the
    stage's quota is production, that may run an inner apptainer (``always_inner_apptainer``
    1 = unknown or 2 = always). One query for all ``stages``: the files x replicas join is
    reduced to distinct (stage, RSE) pairs first, in one pass.
    """
    if not stages:
        return {}
    keys = [(s.workflow_id, s.stage_id) for s in stages]
    production = [(s.workflow_id, s.stage_id) for s in stages if s.wlcg_group_name == PRODUCTION_WLCG_GROUP]
    stage_rses = (
        select(File.workflow_id, File.stage_id, Replica.rse_id)
        .join(Replica, Replica.file_id == File.file_id)
        .where(
            tuple_(File.workflow_id, File.stage_id).in_(keys),
            File.state == FileState.UNALLOCATED,
            or_(Replica.accessible_until.is_(None), Replica.accessible_until > now),
        )
        .distinct()
        .cte("stage_rses")
    )
    inner_apptainer = Entry.always_inner_apptainer != 0
    if production:
        inner_apptainer = or_(inner_apptainer, tuple_(stage_rses.c.workflow_id, stage_rses.c.stage_id).in_(production))
    query = (
        select(stage_rses.c.workflow_id, stage_rses.c.stage_id, Entry.entry_name, Site.jobsub_site_name, Site.site_name)
        .select_from(stage_rses)
        .join(Stage, and_(Stage.workflow_id == stage_rses.c.workflow_id, Stage.stage_id == stage_rses.c.stage_id))
        .join(Storage, Storage.rse_id == stage_rses.c.rse_id)
        .join(SiteStorage, and_(SiteStorage.rse_id == Storage.rse_id, SiteStorage.distance <= Stage.max_distance))
        .join(Entry, Entry.site_id == SiteStorage.site_id)
        .join(Site, Site.site_id == Entry.site_id)
        .join(
            StageSite,
            and_(
                StageSite.site_id == Site.site_id,
                StageSite.workflow_id == stage_rses.c.workflow_id,
                StageSite.stage_id == stage_rses.c.stage_id,
            ),
        )
        .where(
            Storage.rucio_read.is_(True),
            Storage.justin_read.is_(True),
            Storage.decommissioned.is_(False),
            Site.enabled.is_(True),
            Entry.entry_has_gpus == (Stage.gpus > 0),
            inner_apptainer,
        )
        .distinct()
    )
    found: dict[tuple[int, int], list[tuple[str, str, str]]] = defaultdict(list)
    for workflow_id, stage_id, entry_name, jobsub_site_name, site_name in session.execute(query):
        found[(workflow_id, stage_id)].append((entry_name, jobsub_site_name, site_name))
    return {key: sorted(rows) for key, rows in found.items()}


def _classads(session: Session, keys: list[tuple[int, int]]) -> dict[tuple[int, int], list[tuple[str, str]]]:
    if not keys:
        return {}
    rows = session.execute(
        select(StageClassad.workflow_id, StageClassad.stage_id, StageClassad.classad_name, StageClassad.classad_value)
        .where(StageClassad.workflow_id.in_(sorted({w for w, _ in keys})))
        .order_by(StageClassad.workflow_id, StageClassad.stage_id, StageClassad.classad_name)
    )
    found: dict[tuple[int, int], list[tuple[str, str]]] = defaultdict(list)
    for w, s, name, value in rows:
        found[(w, s)].append((name, value))
    return found


def _plan_one(
    stage: Any,
    plan: StagePlan,
    eligible: list[tuple[str, str, str]],
    classads: list[tuple[str, str]],
    report: FactoryReport,
) -> PlannedStage:
    label = f"workflow {stage.workflow_id} stage {stage.stage_id}"
    planned = PlannedStage(stage.workflow_id, stage.stage_id, plan, [], None, plan.reason)
    if not plan.submits:
        return planned

    entries: set[str] = set()
    sites: set[str] = set()
    for entry_name, jobsub_site_name, site_name in eligible:
        try:
            check_name(f"jobsub site name of site {site_name!r}", jobsub_site_name)
            check_name(f"entry of site {site_name!r}", entry_name)
        except SubmitDescriptionError as exc:
            report.error(f"{label}: {exc}; skipped")
            continue
        entries.add(entry_name)
        sites.add(jobsub_site_name)
    planned.sites = sorted(sites)
    if not sites:
        planned.outcome = NO_ENTRIES
        return planned

    try:
        if not stage.principal_name:
            raise SubmitDescriptionError("its user has no principal name")
        user = check_name("accounting group user", stage.principal_name.split("@", 1)[0])
        group = check_name("condor group", stage.condor_group_name or DEFAULT_CONDOR_GROUP)
        for name, value in classads:
            check_classad(name, value)
    except SubmitDescriptionError as exc:
        report.error(f"{label}: {exc}; not submitted")
        planned.outcome = f"refused: {exc}"
        return planned

    planned.request = ClusterRequest(
        workflow_id=stage.workflow_id,
        stage_id=stage.stage_id,
        count=plan.to_submit,
        desired_sites=planned.sites,
        desired_entries=sorted(entries),
        accounting_group=group,
        accounting_group_user=user,
        jobscript_image=stage.jobscript_image or default_jobscript_image(),
        processors=stage.processors,
        rss_bytes=stage.rss_bytes,
        wall_seconds=stage.wall_seconds,
        gpus=stage.gpus,
        gpus_min_bytes=stage.gpus_min_bytes,
        gpus_min_runtime=stage.gpus_min_runtime,
        gpus_min_capability=stage.gpus_min_capability,
        gpus_max_capability=stage.gpus_max_capability,
        classads=classads,
    )
    return planned


def plan_workflow_jobs(report: FactoryReport, now: dt.datetime | None = None) -> list[PlannedStage]:
    """The read phase of ``workflow_jobs``: every running stage and what it should get."""
    settings = get_settings().job_factory
    now = now or dt.datetime.now(dt.timezone.utc)
    with transaction() as session:
        stages = _running_stages(session, settings.awt_workflow_id)
        if not stages:
            return []
        submitted, unallocated = _counts(session, sorted({s.workflow_id for s in stages}), now)
        plans = {
            (s.workflow_id, s.stage_id): plan_stage(
                submitted.get((s.workflow_id, s.stage_id), 0),
                unallocated.get((s.workflow_id, s.stage_id), 0),
                max_submitted=settings.max_submitted,
                jobs_ratio=settings.jobs_ratio,
                jobs_per_cluster=settings.jobs_per_cluster,
            )
            for s in stages
        }
        wanted = [s for s in stages if plans[(s.workflow_id, s.stage_id)].submits]
        eligible = eligible_entries(session, wanted, now)
        classads = _classads(session, [(s.workflow_id, s.stage_id) for s in wanted])
    return [
        _plan_one(
            s,
            plans[(s.workflow_id, s.stage_id)],
            eligible.get((s.workflow_id, s.stage_id), []),
            classads.get((s.workflow_id, s.stage_id), []),
            report,
        )
        for s in stages
    ]


def workflow_jobs(condor: HTCondorAdapter, *, rng: random.Random | None = None) -> FactoryReport:
    """workflowJobs (reference §4.3): plan every running stage, then submit one cluster each.

    Returns a report whose rows are one per stage (workflow, stage, submitted, unallocated,
    target, to_submit, sites, outcome) and whose ``timings`` split plan/submit/record.
    """
    report = FactoryReport("workflowJobs")
    started = time.perf_counter()
    planned = plan_workflow_jobs(report)
    report.timings["plan"] = time.perf_counter() - started
    for stage in planned:
        report.count("stages")
        if stage.request is None:
            report.count(_outcome_key(stage.outcome))
        else:
            try:
                result = submit_cluster(condor, stage.request, rng=rng)
            except SubmitError as exc:
                report.error(f"workflow {stage.workflow_id} stage {stage.stage_id}: {exc}")
                report.count("failed")
                stage.outcome = f"failed: {exc}"
            else:
                report.timings["submit"] += result.submit_seconds
                report.timings["record"] += result.record_seconds
                if result.dry_run:
                    report.count("dry_run")
                    stage.outcome = f"dry run: {stage.request.count} job(s) to {result.schedd}"
                else:
                    report.count("clusters")
                    report.count("jobs", len(result.jobsub_ids))
                    stage.outcome = f"submitted cluster {result.cluster_id} on {result.schedd}"
        report.rows.append(stage.row())
    return report


def _outcome_key(outcome: str) -> str:
    if outcome.startswith("refused"):
        return "refused"
    return {
        OVER_IDLE_CAP: "skipped_idle_cap",
        TARGET_REACHED: "skipped_target",
        NO_ENTRIES: "no_entries",
    }.get(outcome, "skipped")
