"""Operator actions the factory needs rows for: create a workflow, enable a site or storage.

Upstream does these through the justIN web UI and ``justin`` command (``createWorkflow`` /
``createStage`` in services/justin-wsgi-ui, reference §4.3, §5.3). Here they are plain
functions, used by the ``justin-flows`` CLI, the sandbox and the tests. ``create_workflow``
makes the minimum related rows (user and principal name, scope, named quota, WLCG and
HTCondor group links) when they are missing, so the job factory finds the workflow; it
never changes rows that exist (a disabled user or quota stays disabled).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, insert, select, update
from sqlalchemy.orm import Session

from justin_flows.db.engine import transaction, upsert
from justin_flows.db.models import (
    Base,
    CondorGroup,
    NamedQuota,
    PrincipalName,
    Scope,
    Site,
    Stage,
    StageOutput,
    StageSite,
    Storage,
    User,
    WlcgGroup,
    Workflow,
    WorkflowState,
)
from justin_flows.domain.validation import validate_rse_expression
from justin_flows.settings import get_settings

DEFAULT_RSS_BYTES = 2000 * 1048576  # createStage defaults (reference §4.3)
DEFAULT_WALL_SECONDS = 80000
DEFAULT_LIFETIME_SECONDS = 86400
STAGE_ID = 1

_SCOPE = re.compile(r"^[A-Za-z0-9_.-]{1,25}$")  # Rucio scope names
_PRINCIPAL = re.compile(r"^[A-Za-z0-9_.-]+(@[A-Za-z0-9_.-]+)?$")
_GROUP = re.compile(r"^[A-Za-z0-9_./-]+$")
_PATTERN = re.compile(r"^[A-Za-z0-9_.*?\[\]+=-]{1,255}$")
_PREFIX = re.compile(r"^[A-Za-z0-9_.-]*$")
_URL = re.compile(r"^https://[A-Za-z0-9_.:/%+=~-]+$")


class AdminError(ValueError):
    """An operator request that cannot be done; the message names what was wrong."""


class UnknownNameError(AdminError, LookupError):
    """A site, storage... name that is not in the database."""


@dataclass(frozen=True)
class OutputPattern:
    """One stage output: files matching ``pattern`` go to ``destination`` (§5.3)."""

    pattern: str
    destination: str
    lifetime_seconds: int = DEFAULT_LIFETIME_SECONDS
    rse_expression: str = ""


def _output_pattern(item: OutputPattern | Sequence[object]) -> OutputPattern:
    if isinstance(item, OutputPattern):
        out = item
    else:
        values = list(item)
        if not 2 <= len(values) <= 4:
            raise AdminError(f"output pattern {item!r}: give (pattern, destination[, lifetime_seconds[, rse_expression]])")
        out = OutputPattern(*values)  # type: ignore[arg-type]
    if not isinstance(out.pattern, str) or not _PATTERN.match(out.pattern):
        raise AdminError(f"output pattern {out.pattern!r} is not a file glob of [A-Za-z0-9_.*?[]+=-]")
    if not isinstance(out.destination, str) or not (
        _URL.match(out.destination) or _PREFIX.match(re.sub(r"\$JUSTIN_(WORKFLOW_ID|STAGE_ID|SCOPE)", "", out.destination))
    ):
        raise AdminError(
            f"output destination {out.destination!r}: give a dataset name prefix [A-Za-z0-9_.-] or an https:// URL"
        )
    if isinstance(out.lifetime_seconds, bool) or not isinstance(out.lifetime_seconds, int) or out.lifetime_seconds <= 0:
        raise AdminError(f"output lifetime {out.lifetime_seconds!r} must be a positive number of seconds")
    if out.rse_expression:
        try:
            validate_rse_expression(out.rse_expression)
        except ValueError as exc:
            raise AdminError(str(exc)) from None
    return out


def destination_dataset(destination: str, *, instance: str, workflow_id: int, stage_id: int, pattern_id: int,
                        scope: str) -> str:
    """The stage output's overall dataset (§5.3): ``[<prefix>-]<instance>-w<W>s<S>p<P>``.

    The prefix may use ``$JUSTIN_WORKFLOW_ID``, ``$JUSTIN_STAGE_ID`` and ``$JUSTIN_SCOPE``.
    An https:// (WebDAV scratch) destination is kept as given.
    """
    if destination.startswith("https://"):
        return destination
    prefix = (
        destination.replace("$JUSTIN_WORKFLOW_ID", str(workflow_id))
        .replace("$JUSTIN_STAGE_ID", str(stage_id))
        .replace("$JUSTIN_SCOPE", scope)
    )
    name = f"{instance}-w{workflow_id}s{stage_id}p{pattern_id}"
    return f"{prefix}-{name}" if prefix else name


def _positive_int(name: str, value: int, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise AdminError(f"{name} must be an integer >= {minimum}, not {value!r}")
    return value


def _table(model: type[Base]) -> Table:
    return Base.metadata.tables[model.__tablename__]


def _one_id(value: Any) -> int:
    if value is None:  # pragma: no cover - the row was just inserted or found
        raise AdminError("a row vanished while it was being linked; try again")
    return int(value)


def _id_of(session: Session, column: Any, key_column: Any, key: str) -> int:
    return _one_id(session.scalar(select(column).where(key_column == key)))


def _ensure_user(session: Session, principal_name: str) -> int:
    user_id = session.scalar(select(PrincipalName.user_id).where(PrincipalName.principal_name == principal_name))
    if user_id is None:
        new_user = _one_id(session.scalar(insert(User).values(processing_enabled=True).returning(User.user_id)))
        upsert(session, _table(PrincipalName), [{"principal_name": principal_name, "user_id": new_user}],
               ["principal_name"])
        user_id = session.scalar(select(PrincipalName.user_id).where(PrincipalName.principal_name == principal_name))
    pn_id = session.scalar(select(PrincipalName.pn_id).where(PrincipalName.principal_name == principal_name))
    session.execute(update(User).where(User.user_id == user_id, User.main_pn_id.is_(None)).values(main_pn_id=pn_id))
    return _one_id(user_id)


def _ensure_scope(session: Session, scope: str, user_id: int, quota_name: str, wlcg_group: str,
                  condor_group: str) -> int:
    """The scope's id, linked to a named quota (with a WLCG group) and an HTCondor group."""
    upsert(session, _table(WlcgGroup), [{"wlcg_group_name": wlcg_group}], ["wlcg_group_name"])
    wlcg_id = _id_of(session, WlcgGroup.wlcg_group_id, WlcgGroup.wlcg_group_name, wlcg_group)
    upsert(session, _table(CondorGroup), [{"condor_group_name": condor_group}], ["condor_group_name"])
    condor_id = _id_of(session, CondorGroup.condor_group_id, CondorGroup.condor_group_name, condor_group)
    upsert(session, _table(Scope), [{"scope_name": scope}], ["scope_name"])
    row = session.execute(select(Scope.scope_id, Scope.quota_id).where(Scope.scope_name == scope)).one()
    quota_id = row.quota_id
    if quota_id is None:
        upsert(session, _table(NamedQuota),
               [{"quota_name": quota_name, "user_id": user_id, "wlcg_group_id": wlcg_id, "condor_group_id": condor_id,
                 "processing_enabled": True}],
               ["quota_name"])
        quota_id = _id_of(session, NamedQuota.quota_id, NamedQuota.quota_name, quota_name)
        session.execute(update(Scope).where(Scope.scope_id == row.scope_id).values(quota_id=quota_id))
    session.execute(
        update(NamedQuota).where(NamedQuota.quota_id == quota_id, NamedQuota.wlcg_group_id.is_(None))
        .values(wlcg_group_id=wlcg_id)
    )
    session.execute(
        update(Scope).where(Scope.scope_id == row.scope_id, Scope.condor_group_id.is_(None))
        .values(condor_group_id=condor_id)
    )
    return int(row.scope_id)


def create_workflow(
    mql: str,
    *,
    scope: str,
    processors: int = 1,
    rss_bytes: int = DEFAULT_RSS_BYTES,
    wall_seconds: int = DEFAULT_WALL_SECONDS,
    max_distance: float = 0.0,
    gpus: int = 0,
    output_patterns: Sequence[OutputPattern | Sequence[object]] = (),
    sites: Sequence[str] | None = None,
    state: str = WorkflowState.RUNNING.value,
    principal_name: str = "dunepro",
    jobscript_image: str = "",
    wlcg_group: str = "/dune",
    condor_group: str = "group_dune",
) -> int:
    """Create a workflow with one stage (createWorkflow + createStage); return its id.

    ``sites`` (site names) limits the stage to those sites; None allows every site that is
    not ``only_on_request`` (disabled ones too, so enabling a site later lets it run).
    """
    if not isinstance(mql, str) or not mql.strip() or "\0" in mql:
        raise AdminError("mql must be a non-empty query")
    if not _SCOPE.match(scope):
        raise AdminError(f"scope {scope!r} is not a Rucio scope name ([A-Za-z0-9_.-], at most 25)")
    _positive_int("processors", processors)
    _positive_int("rss_bytes", rss_bytes, 1048576)
    _positive_int("wall_seconds", wall_seconds)
    _positive_int("gpus", gpus, 0)
    if isinstance(max_distance, bool) or not isinstance(max_distance, (int, float)) or not (
        math.isfinite(max_distance) and max_distance >= 0
    ):
        raise AdminError(f"max_distance must be a number >= 0, not {max_distance!r}")
    try:
        workflow_state = WorkflowState(state)
    except ValueError:
        raise AdminError(f"state {state!r} is not one of {[s.value for s in WorkflowState]}") from None
    if not _PRINCIPAL.match(principal_name):
        raise AdminError(f"principal name {principal_name!r} is not name[@domain] of [A-Za-z0-9_.-]")
    for kind, group in (("WLCG group", wlcg_group), ("condor group", condor_group)):
        if not _GROUP.match(group):
            raise AdminError(f"{kind} {group!r} is not [A-Za-z0-9_./-]")
    if jobscript_image and not re.match(r"^[A-Za-z0-9_.:/@%+=,~-]+$", jobscript_image):
        raise AdminError(f"jobscript image {jobscript_image!r} has unsafe characters")
    outputs = [_output_pattern(o) for o in output_patterns]
    instance = get_settings().instance
    now = dt.datetime.now(dt.timezone.utc)

    with transaction() as session:
        if sites is None:
            site_ids = list(session.scalars(select(Site.site_id).where(Site.only_on_request.is_(False))))
        else:
            found = {
                name: site_id
                for name, site_id in session.execute(
                    select(Site.site_name, Site.site_id).where(Site.site_name.in_(list(sites)))
                )
            }
            unknown = sorted(set(sites) - set(found))
            if unknown:
                raise UnknownNameError(f"unknown site(s) {unknown}; known sites come from the sites flow")
            site_ids = sorted(set(found.values()))
        user_id = _ensure_user(session, principal_name)
        scope_id = _ensure_scope(session, scope, user_id, principal_name.split("@", 1)[0], wlcg_group, condor_group)
        running = workflow_state == WorkflowState.RUNNING
        workflow_id = _one_id(
            session.scalar(
                insert(Workflow)
                .values(
                    state=workflow_state, scope_id=scope_id, user_id=user_id, mql=mql.strip(), submitted=now,
                    started=now if running else None, refind_next_time=now if running else None,
                )
                .returning(Workflow.workflow_id)
            )
        )
        session.execute(
            insert(Stage).values(
                workflow_id=workflow_id, stage_id=STAGE_ID, processors=processors, gpus=gpus,
                wall_seconds=wall_seconds, rss_bytes=rss_bytes, max_distance=float(max_distance),
                jobscript_image=jobscript_image,
            )
        )
        if outputs:
            session.execute(
                insert(StageOutput),
                [
                    {
                        "workflow_id": workflow_id, "stage_id": STAGE_ID, "pattern_id": i,
                        "file_pattern": o.pattern,
                        "destination": destination_dataset(o.destination, instance=instance, workflow_id=workflow_id,
                                                           stage_id=STAGE_ID, pattern_id=i, scope=scope),
                        "lifetime_seconds": o.lifetime_seconds, "rse_expression": o.rse_expression,
                    }
                    for i, o in enumerate(outputs, start=1)
                ],
            )
        if site_ids:
            session.execute(
                insert(StageSite),
                [{"workflow_id": workflow_id, "stage_id": STAGE_ID, "site_id": s} for s in site_ids],
            )
    return workflow_id


def enable_site(name: str) -> int:
    """Let justIN send workflow jobs to site ``name`` (``sites.enabled``); return its id."""
    with transaction() as session:
        site_id = session.scalar(update(Site).where(Site.site_name == name).values(enabled=True).returning(Site.site_id))
    if site_id is None:
        raise UnknownNameError(f"unknown site {name!r} (sites are added by the sites flow)")
    return int(site_id)


def enable_storage(rse_name: str) -> int:
    """Let justIN write outputs to storage ``rse_name`` (``storages.justin_write``); return its id."""
    with transaction() as session:
        rse_id = session.scalar(
            update(Storage).where(Storage.rse_name == rse_name).values(justin_write=True).returning(Storage.rse_id)
        )
    if rse_id is None:
        raise UnknownNameError(f"unknown storage {rse_name!r} (storages are added by the storages flow)")
    return int(rse_id)
