"""Submit one cluster and record its jobs (upstream ``submitJobs``, reference §4.4).

Render the wrapper, pick a schedd at random, build the description with ``htcondor2``, run
``condor_submit`` once through the HTCondor adapter, parse the terse cluster range, then
record every job (``jobs`` rows, one ``JOB_SUBMITTED`` event each, and for an AWT job the
site's submission times) in ONE transaction opened only after condor_submit has returned.

Better than upstream on purpose: the terse answer is parsed strictly (upstream took
whatever preceded the first ``.`` as the cluster id, and recorded N jobs whatever HTCondor
said); a failed, timed-out or unparsable submit records nothing and raises ``SubmitError``
naming the schedd; secrets are registered for scrubbing and never logged.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import re
import secrets
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import insert, update

from justin_flows.adapters.calls import ExternalCallError
from justin_flows.adapters.htcondor import HTCondorAdapter
from justin_flows.db.engine import transaction
from justin_flows.db.models import Base, Site
from justin_flows.domain.submit_description import (
    DEFAULT_CONDOR_GROUP,
    SubmitDescription,
    SubmitDescriptionError,
    SubmitSpec,
    build_submit,
)
from justin_flows.factory.wrapper import WrapperError, WrapperValues, remove_wrapper, render_wrapper
from justin_flows.secrets import register_secret, scrub
from justin_flows.settings import Settings, get_settings

log = logging.getLogger(__name__)

JOB_SUBMITTED = 301  # modules/events_list.py (reference §0.2)
SECRET_BYTES = 64  # secrets.token_urlsafe(64), as upstream
_TERSE = re.compile(r"^(\d+)\.(\d+) - (\d+)\.(\d+)$")


class SubmitError(RuntimeError):
    """This cluster was not submitted, or was submitted but could not be recorded.

    Deliberately not an ``ExternalCallError``: no task-level retry helper may repeat it.
    """


@dataclass(frozen=True)
class ClusterRequest:
    """One cluster to submit (the arguments of upstream ``submitJobs``)."""

    workflow_id: int
    stage_id: int
    count: int
    desired_sites: Sequence[str]
    accounting_group_user: str
    jobscript_image: str
    accounting_group: str = DEFAULT_CONDOR_GROUP
    desired_entries: Sequence[str] = ()
    site_id: int | None = None  # AWT: the site tested; workflow jobs: unknown until they start
    awt: bool = False
    processors: int = 1
    rss_bytes: int = 2000 * 1048576
    wall_seconds: int = 80000
    gpus: int = 0
    gpus_min_bytes: int = 0
    gpus_min_runtime: float = 0.0
    gpus_min_capability: float = 0.0
    gpus_max_capability: float = 0.0
    classads: Sequence[tuple[str, str]] = ()


@dataclass
class SubmitResult:
    """What happened; ``cluster_id`` is None in dry-run (nothing ran, nothing recorded)."""

    schedd: str
    description: SubmitDescription
    dry_run: bool = False
    cluster_id: int | None = None
    jobsub_ids: list[str] = field(default_factory=list)
    justin_job_ids: list[int] = field(default_factory=list)
    submit_seconds: float = 0.0
    record_seconds: float = 0.0


def default_jobscript_image(settings: Settings | None = None) -> str:
    """``prefix/suffix:version`` (upstream's default jobscript image)."""
    jf = (settings or get_settings()).job_factory
    return f"{jf.jobscript_image_prefix}/{jf.jobscript_image_suffix}:{jf.jobscript_image_version}"


def parse_terse(output: str, expected: int) -> int:
    """The cluster id from ``condor_submit -terse`` output ``C.0 - C.N-1`` for N = ``expected``.

    Other lines (condor_submit's warnings, merged from stderr) are tolerated, but exactly
    one range line must be there, starting at proc 0, within one cluster, of N jobs.
    """
    ranges = [m for m in (_TERSE.match(line.strip()) for line in output.splitlines()) if m]
    if len(ranges) != 1:
        raise SubmitError(f"condor_submit answer is not one 'C.0 - C.N' range: {scrub(output.strip())[:200]!r}")
    first_cluster, first_proc, last_cluster, last_proc = (int(g) for g in ranges[0].groups())
    if first_cluster != last_cluster or first_proc != 0:
        raise SubmitError(f"condor_submit answered an odd range {ranges[0].group(0)!r}")
    if last_proc + 1 != expected:
        raise SubmitError(
            f"condor_submit queued {last_proc + 1} job(s) in cluster {first_cluster}, not {expected}"
        )
    return first_cluster


def _spec(request: ClusterRequest, settings: Settings, schedd: str, executable: Path) -> SubmitSpec:
    return SubmitSpec(
        instance=settings.instance,
        schedd=schedd,
        executable=str(executable),
        workflow_id=request.workflow_id,
        stage_id=request.stage_id,
        count=request.count,
        desired_sites=list(request.desired_sites),
        desired_entries=list(request.desired_entries),
        accounting_group=request.accounting_group,
        accounting_group_user=request.accounting_group_user,
        wrapper_job_image=settings.job_factory.wrapper_job_image,
        processors=request.processors,
        rss_bytes=request.rss_bytes,
        wall_seconds=request.wall_seconds,
        awt=request.awt,
        gpus=request.gpus,
        gpus_min_bytes=request.gpus_min_bytes,
        gpus_min_runtime=request.gpus_min_runtime,
        gpus_min_capability=request.gpus_min_capability,
        gpus_max_capability=request.gpus_max_capability,
        classads=list(request.classads),
    )


def submit_cluster(
    condor: HTCondorAdapter, request: ClusterRequest, *, rng: random.Random | None = None
) -> SubmitResult:
    """Submit ``request`` as one cluster and record its jobs; raise ``SubmitError`` if not done.

    The HTCondor knobs (schedds, dry run, keep wrapper files) are the adapter's settings, so a
    flow run can hand in a dry-run adapter without changing the process-wide settings.
    """
    settings = condor.settings
    schedds = settings.htcondor.schedds
    if not schedds:
        raise SubmitError("no schedds configured (htcondor.schedds is empty)")
    if request.count < 1:
        raise SubmitError(f"w{request.workflow_id}s{request.stage_id}: nothing to submit (count={request.count})")
    schedd = (rng or random.SystemRandom()).choice(schedds)
    cluster_secret = secrets.token_urlsafe(SECRET_BYTES)
    register_secret(cluster_secret)
    label = f"w{request.workflow_id}s{request.stage_id}"

    try:
        wrapper = render_wrapper(
            WrapperValues(
                job_secret=cluster_secret,
                instance=settings.instance,
                workflow_id=request.workflow_id,
                stage_id=request.stage_id,
                jobscript_image=request.jobscript_image,
                metacat_auth_server_url=settings.metacat.auth_server_url,
                metacat_server_outputs_url=settings.metacat.server_outputs_url,
            )
        )
    except WrapperError as exc:
        raise SubmitError(f"{label}: {exc}") from None
    try:
        try:
            description = build_submit(_spec(request, settings, schedd, wrapper))
        except SubmitDescriptionError as exc:
            raise SubmitError(f"{label}: {exc}") from None
        if settings.htcondor.dry_run:
            log.info("dry run: %s would submit %d job(s) to %s", label, request.count, schedd)
            return SubmitResult(schedd, description, dry_run=True)

        # condor_submit runs exactly once and is never retried: a time-out (or a lost
        # answer) may hide a cluster that was queued, and a second submit would queue it
        # twice. A failure records nothing; the next cycle plans again from the database.
        started = time.perf_counter()
        try:
            output = condor.submit(schedd, description.text)
        except ExternalCallError as exc:
            raise SubmitError(f"{label}: condor_submit to {schedd} failed: {exc}") from None
        submit_seconds = time.perf_counter() - started
    finally:
        if not settings.htcondor.keep_wrapper_files:
            remove_wrapper(wrapper)

    try:
        cluster_id = parse_terse(output, request.count)
    except SubmitError as exc:
        raise SubmitError(
            f"{label}: {exc}; nothing recorded (condor_submit exited 0, so check {schedd} for a stray cluster)"
        ) from None
    jobsub_ids = [f"{cluster_id}.{i}@{schedd}" for i in range(request.count)]
    started = time.perf_counter()
    try:
        job_ids = _record(request, jobsub_ids, cluster_secret, submit_seconds)
    except Exception as exc:  # noqa: BLE001 - the cluster is queued: say so, precisely
        raise SubmitError(
            f"{label}: cluster {cluster_id} was queued on {schedd} but recording its jobs failed "
            f"({scrub(type(exc).__name__ + ': ' + str(exc))[:300]}); its jobs will be refused by the allocator"
        ) from None
    record_seconds = time.perf_counter() - started
    log.info("%s: cluster %d of %d job(s) on %s", label, cluster_id, request.count, schedd)
    return SubmitResult(
        schedd, description, False, cluster_id, jobsub_ids, job_ids, submit_seconds, record_seconds
    )


def _record(request: ClusterRequest, jobsub_ids: list[str], cluster_secret: str, seconds: float) -> list[int]:
    """Every job's row and JOB_SUBMITTED event (and an AWT site's times), in ONE transaction."""
    now = dt.datetime.now(dt.timezone.utc)
    factory = socket.gethostname()
    rows = []
    # Per-job secrets go only into these rows (bound parameters, hidden from SQLAlchemy's
    # error messages), so they are not registered for scrubbing: 2,000 a cycle would only
    # make every scrub() slower.
    for jobsub_id in jobsub_ids:
        jobscript_secret = secrets.token_urlsafe(SECRET_BYTES)
        rows.append(
            {
                "jobsub_id": jobsub_id,
                "factory_name": factory,
                "workflow_id": request.workflow_id,
                "stage_id": request.stage_id,
                "site_id": request.site_id,
                "requested_processors": request.processors,
                "requested_gpus": request.gpus,
                "requested_rss_bytes": request.rss_bytes,
                "requested_wall_seconds": request.wall_seconds,
                "submitted_time": now,
                "justin_job_secret": cluster_secret,
                "jobscript_secret": jobscript_secret,
                "logs_tries_left": 10,
            }
        )
    with transaction() as session:
        jobs, events = Base.metadata.tables["jobs"], Base.metadata.tables["events"]  # Core: no ORM bookkeeping
        inserted = session.execute(
            insert(jobs).returning(jobs.c.justin_job_id, jobs.c.jobsub_id, sort_by_parameter_order=True), rows
        ).all()
        by_jobsub = {jobsub_id: job_id for job_id, jobsub_id in inserted}
        job_ids = [by_jobsub[j] for j in jobsub_ids]
        session.execute(
            insert(events),
            [
                {
                    "event_type_id": JOB_SUBMITTED,
                    "workflow_id": request.workflow_id,
                    "stage_id": request.stage_id,
                    "justin_job_id": job_id,
                    "site_id": request.site_id or 0,
                    "event_time": now,
                    "seconds": seconds,
                }
                for job_id in job_ids
            ],
        )
        if request.awt and request.site_id is not None:
            session.execute(
                update(Site)
                .where(Site.site_id == request.site_id)
                .values(last_submitted_time=now, last_awt_time=now)
            )
    return job_ids
