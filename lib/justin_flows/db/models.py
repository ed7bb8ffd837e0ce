"""SQLAlchemy models of the justIN tables the agents read or write (reference §8).

Names and meanings follow upstream's MariaDB schema so a justIN operator recognises them.
Deliberate differences: "unset" times are NULL instead of 1970-01-01, times are stored
timezone-aware in UTC, enum columns are VARCHAR with a CHECK (portable to SQLite), and
``external_calls`` (the external-call ledger) is ours.
"""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, MappedColumn, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

MONTECARLO_RSE_ID = 1
MONTECARLO_RSE_NAME = "MONTECARLO"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _utcnow_default() -> MappedColumn[dt.datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now())


def _when() -> MappedColumn[dt.datetime | None]:
    return mapped_column(DateTime(timezone=True), nullable=True)


def _str_enum(enum_cls: type[enum.Enum], name: str) -> Enum:
    return Enum(
        enum_cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=20,
        values_callable=lambda e: [m.value for m in e],
        validate_strings=True,
    )


class WorkflowState(str, enum.Enum):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    APPROVED = "approved"
    RUNNING = "running"
    PAUSED = "paused"
    CHECKING = "checking"
    FINISHED = "finished"
    DELETED = "deleted"
    FINISHING = "finishing"


class FileState(str, enum.Enum):
    FINDING = "finding"
    UNALLOCATED = "unallocated"
    ALLOCATED = "allocated"
    OUTPUTTING = "outputting"
    PROCESSED = "processed"
    NOTFOUND = "notfound"
    FAILED = "failed"
    RECORDED = "recorded"
    OUTPUT = "output"


class JobState(str, enum.Enum):
    SUBMITTED = "submitted"
    STARTED = "started"
    PROCESSING = "processing"
    OUTPUTTING = "outputting"
    FINISHED = "finished"
    NOTUSED = "notused"
    ABORTED = "aborted"
    STALLED = "stalled"
    JOBSCRIPT_ERROR = "jobscript_error"
    OUTPUTTING_FAILED = "outputting_failed"
    NONE_PROCESSED = "none_processed"


# --------------------------------------------------------------------------- grid picture


class Site(Base):
    __tablename__ = "sites"
    site_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_name: Mapped[str] = mapped_column(String(255), unique=True)
    jobsub_site_name: Mapped[str] = mapped_column(String(255), default="")
    wlcg_site_name: Mapped[str] = mapped_column(String(255), default="")
    region: Mapped[str] = mapped_column(String(255), default="")
    country: Mapped[str] = mapped_column(String(4), default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    only_on_request: Mapped[bool] = mapped_column(Boolean, default=False)
    only_production: Mapped[bool] = mapped_column(Boolean, default=False)
    always_inner_apptainer: Mapped[int] = mapped_column(Integer, default=1)
    last_osg_seen_time: Mapped[dt.datetime | None] = _when()
    last_submitted_time: Mapped[dt.datetime | None] = _when()
    last_awt_time: Mapped[dt.datetime | None] = _when()


class Entry(Base):
    __tablename__ = "entries"
    entry_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    entry_name: Mapped[str] = mapped_column(String(255), unique=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.site_id"), index=True)
    gatekeeper: Mapped[str] = mapped_column(String(255), default="")
    max_processors: Mapped[int] = mapped_column(Integer, default=1)
    max_rss_bytes: Mapped[int] = mapped_column(BigInteger, default=2147483648)
    max_wall_seconds: Mapped[int] = mapped_column(Integer, default=162450)
    entry_has_gpus: Mapped[bool] = mapped_column(Boolean, default=False)
    always_inner_apptainer: Mapped[int] = mapped_column(Integer, default=1)
    last_osg_seen_time: Mapped[dt.datetime | None] = _when()
    file_name: Mapped[str] = mapped_column(String(255), default="")
    raw_config: Mapped[str] = mapped_column(Text, default="")


class Storage(Base):
    __tablename__ = "storages"
    rse_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rse_name: Mapped[str] = mapped_column(String(255), unique=True)
    decommissioned: Mapped[bool] = mapped_column(Boolean, default=False)
    occupancy: Mapped[float] = mapped_column(Float, default=0.0)
    region: Mapped[str] = mapped_column(String(255), default="")
    country: Mapped[str] = mapped_column(String(255), default="")
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.site_id"), nullable=True)
    rucio_write: Mapped[bool] = mapped_column(Boolean, default=True)
    rucio_read: Mapped[bool] = mapped_column(Boolean, default=True)
    justin_write: Mapped[bool] = mapped_column(Boolean, default=False)
    justin_read: Mapped[bool] = mapped_column(Boolean, default=True)
    needs_pin: Mapped[bool] = mapped_column(Boolean, default=False)
    lan_write_scheme: Mapped[str] = mapped_column(String(16), default="root")
    wan_write_scheme: Mapped[str] = mapped_column(String(16), default="root")
    last_rucio_seen_time: Mapped[dt.datetime | None] = _when()


class SiteStorage(Base):
    __tablename__ = "sites_storages"
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.site_id"), primary_key=True)
    rse_id: Mapped[int] = mapped_column(ForeignKey("storages.rse_id"), primary_key=True, index=True)
    distance: Mapped[float] = mapped_column(Float, default=100.0)
    read_result: Mapped[int] = mapped_column(Integer, default=255)
    write_result: Mapped[int] = mapped_column(Integer, default=255)


class CondorGroup(Base):
    __tablename__ = "condor_groups"
    condor_group_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    condor_group_name: Mapped[str] = mapped_column(String(255), unique=True)
    effective_quota: Mapped[float] = mapped_column(Float, default=0.0)
    config_quota: Mapped[float] = mapped_column(Float, default=0.0)
    last_seen_time: Mapped[dt.datetime | None] = _when()


class WlcgGroup(Base):
    __tablename__ = "wlcg_groups"
    wlcg_group_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    wlcg_group_name: Mapped[str] = mapped_column(String(255), unique=True)


class User(Base):
    __tablename__ = "users"
    user_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    main_pn_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    processing_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_time: Mapped[dt.datetime] = _utcnow_default()


class PrincipalName(Base):
    __tablename__ = "principal_names"
    pn_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    principal_name: Mapped[str] = mapped_column(String(255), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.user_id"), index=True)


class NamedQuota(Base):
    __tablename__ = "named_quotas"
    quota_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    quota_name: Mapped[str] = mapped_column(String(255), unique=True)
    wlcg_group_id: Mapped[int | None] = mapped_column(ForeignKey("wlcg_groups.wlcg_group_id"), nullable=True)
    condor_group_id: Mapped[int | None] = mapped_column(
        ForeignKey("condor_groups.condor_group_id"), nullable=True
    )
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.user_id"), nullable=True)
    processing_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    for_justin: Mapped[bool] = mapped_column(Boolean, default=False)
    max_files_per_workflow: Mapped[int] = mapped_column(Integer, default=10000)
    max_running_jobs: Mapped[int] = mapped_column(Integer, default=2000)
    running_jobs: Mapped[int] = mapped_column(Integer, default=0)


class Scope(Base):
    __tablename__ = "scopes"
    scope_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scope_name: Mapped[str] = mapped_column(String(255), unique=True)
    quota_id: Mapped[int | None] = mapped_column(ForeignKey("named_quotas.quota_id"), nullable=True)
    condor_group_id: Mapped[int | None] = mapped_column(
        ForeignKey("condor_groups.condor_group_id"), nullable=True
    )


class StorageQuota(Base):
    __tablename__ = "storages_quotas"
    quota_id: Mapped[int] = mapped_column(ForeignKey("named_quotas.quota_id"), primary_key=True)
    rse_id: Mapped[int] = mapped_column(ForeignKey("storages.rse_id"), primary_key=True)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_limit: Mapped[int] = mapped_column(BigInteger, default=0)
    last_seen_time: Mapped[dt.datetime | None] = _when()


class JwtKey(Base):
    __tablename__ = "jwt_keys"
    jwks_kid: Mapped[str] = mapped_column(String(255), primary_key=True)
    jwks_n: Mapped[str] = mapped_column(Text)
    jwks_e: Mapped[str] = mapped_column(String(255))
    jwks_alg: Mapped[str] = mapped_column(String(32))
    jwks_use: Mapped[str] = mapped_column(String(32))
    jwks_kty: Mapped[str] = mapped_column(String(32))
    last_seen_time: Mapped[dt.datetime | None] = _when()


class KeyNameValue(Base):
    __tablename__ = "keys_names_values"
    key_name: Mapped[str] = mapped_column(String(255), primary_key=True)
    key_value: Mapped[str] = mapped_column(Text)
    updated_time: Mapped[dt.datetime | None] = _when()


# --------------------------------------------------------------------------- workflows


class Workflow(Base):
    __tablename__ = "workflows"
    workflow_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[WorkflowState] = mapped_column(_str_enum(WorkflowState, "workflow_state"), default=WorkflowState.DRAFT)
    state_message: Mapped[str] = mapped_column(Text, default="")
    scope_id: Mapped[int | None] = mapped_column(ForeignKey("scopes.scope_id"), nullable=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.user_id"), nullable=True)
    mql: Mapped[str] = mapped_column(Text, default="")
    created: Mapped[dt.datetime] = _utcnow_default()
    submitted: Mapped[dt.datetime | None] = _when()
    started: Mapped[dt.datetime | None] = _when()
    checking: Mapped[dt.datetime | None] = _when()
    finished: Mapped[dt.datetime | None] = _when()
    refind_seconds: Mapped[int] = mapped_column(Integer, default=0)
    refind_end_time: Mapped[dt.datetime | None] = _when()
    refind_next_time: Mapped[dt.datetime | None] = _when()


class Stage(Base):
    __tablename__ = "stages"
    workflow_id: Mapped[int] = mapped_column(ForeignKey("workflows.workflow_id"), primary_key=True)
    stage_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stage_priority: Mapped[int] = mapped_column(Integer, default=50)
    processors: Mapped[int] = mapped_column(Integer, default=1)
    gpus: Mapped[int] = mapped_column(Integer, default=0)
    gpus_min_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    gpus_min_runtime: Mapped[float] = mapped_column(Float, default=0.0)
    gpus_min_capability: Mapped[float] = mapped_column(Float, default=0.0)
    gpus_max_capability: Mapped[float] = mapped_column(Float, default=0.0)
    inputs_per_job: Mapped[int] = mapped_column(Integer, default=1)
    jobscript_git: Mapped[str] = mapped_column(String(255), default="")
    jobscript_image: Mapped[str] = mapped_column(String(255), default="")
    wall_seconds: Mapped[int] = mapped_column(Integer, default=80000)
    rss_bytes: Mapped[int] = mapped_column(BigInteger, default=2000 * 1048576)
    max_distance: Mapped[float] = mapped_column(Float, default=0.0)
    output_rse_expression: Mapped[str] = mapped_column(String(255), default="")


class StageOutput(Base):
    __tablename__ = "stages_outputs"
    workflow_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stage_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pattern_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    file_pattern: Mapped[str] = mapped_column(String(255))
    destination: Mapped[str] = mapped_column(String(255))
    lifetime_seconds: Mapped[int] = mapped_column(Integer, default=86400)
    rse_expression: Mapped[str] = mapped_column(String(255), default="")
    number_files: Mapped[int] = mapped_column(Integer, default=0)
    for_next_stage: Mapped[bool] = mapped_column(Boolean, default=False)


class StageSite(Base):
    __tablename__ = "stages_sites"
    workflow_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stage_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.site_id"), primary_key=True)


class StageOutputStorage(Base):
    __tablename__ = "stages_output_storages"
    workflow_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stage_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rse_id: Mapped[int] = mapped_column(ForeignKey("storages.rse_id"), primary_key=True)
    preferred: Mapped[bool] = mapped_column(Boolean, default=False)


class StageClassad(Base):
    __tablename__ = "stages_classads"
    workflow_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stage_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    classad_name: Mapped[str] = mapped_column(String(255), primary_key=True)
    classad_value: Mapped[str] = mapped_column(String(255))


class WorkflowDataset(Base):
    __tablename__ = "workflows_datasets"
    workflow_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stage_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_did: Mapped[str] = mapped_column(String(512), primary_key=True)


class File(Base):
    __tablename__ = "files"
    __table_args__ = (
        UniqueConstraint("workflow_id", "stage_id", "file_did"),
        Index("ix_files_workflow_stage_state", "workflow_id", "stage_id", "state"),
    )
    file_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workflow_id: Mapped[int] = mapped_column(ForeignKey("workflows.workflow_id"))
    stage_id: Mapped[int] = mapped_column(Integer, default=1)
    file_did: Mapped[str] = mapped_column(String(512))
    state: Mapped[FileState] = mapped_column(_str_enum(FileState, "file_state"), default=FileState.FINDING)
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    justin_job_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    allocations: Mapped[int] = mapped_column(Integer, default=0)
    max_allocations: Mapped[int] = mapped_column(Integer, default=6)
    creator_justin_job_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    processed_time: Mapped[dt.datetime | None] = _when()
    # ours: where an output file was stored, its checksum and how long storing it took
    adler32: Mapped[str | None] = mapped_column(String(8), nullable=True)
    output_rse_id: Mapped[int | None] = mapped_column(ForeignKey("storages.rse_id"), nullable=True)
    output_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)


class Replica(Base):
    __tablename__ = "replicas"
    __table_args__ = (UniqueConstraint("rse_id", "file_id"),)
    replica_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    file_id: Mapped[int] = mapped_column(ForeignKey("files.file_id"), index=True)
    rse_id: Mapped[int] = mapped_column(ForeignKey("storages.rse_id"))
    workflow_id: Mapped[int] = mapped_column(Integer)
    stage_id: Mapped[int] = mapped_column(Integer)
    wan_pfn: Mapped[str] = mapped_column(Text)
    lan_pfn: Mapped[str] = mapped_column(Text, default="")
    accessible_until: Mapped[dt.datetime | None] = _when()


# --------------------------------------------------------------------------- jobs


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_workflow_stage_state", "workflow_id", "stage_id", "job_state"),)
    justin_job_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    jobsub_id: Mapped[str] = mapped_column(String(255), unique=True)
    factory_name: Mapped[str] = mapped_column(String(255), default="")
    workflow_id: Mapped[int] = mapped_column(Integer)
    stage_id: Mapped[int] = mapped_column(Integer)
    site_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    entry_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    job_state: Mapped[JobState] = mapped_column(_str_enum(JobState, "job_state"), default=JobState.SUBMITTED)
    requested_processors: Mapped[int] = mapped_column(Integer, default=1)
    requested_gpus: Mapped[int] = mapped_column(Integer, default=0)
    requested_rss_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    requested_wall_seconds: Mapped[int] = mapped_column(Integer, default=0)
    submitted_time: Mapped[dt.datetime] = _utcnow_default()
    finished_time: Mapped[dt.datetime | None] = _when()
    justin_job_secret: Mapped[str] = mapped_column(String(255))
    jobscript_secret: Mapped[str] = mapped_column(String(255))
    jobscript_exit: Mapped[int | None] = mapped_column(Integer, nullable=True)
    abort_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    logs_tries_left: Mapped[int] = mapped_column(Integer, default=10)


class Event(Base):
    __tablename__ = "events"
    event_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_type_id: Mapped[int] = mapped_column(Integer, index=True)
    workflow_id: Mapped[int] = mapped_column(Integer, default=0)
    stage_id: Mapped[int] = mapped_column(Integer, default=0)
    file_id: Mapped[int] = mapped_column(Integer, default=0)
    justin_job_id: Mapped[int] = mapped_column(Integer, default=0, index=True)
    site_id: Mapped[int] = mapped_column(Integer, default=0)
    entry_id: Mapped[int] = mapped_column(Integer, default=0)
    rse_id: Mapped[int] = mapped_column(Integer, default=0)
    event_time: Mapped[dt.datetime] = _utcnow_default()
    seconds: Mapped[float] = mapped_column(Float, default=0.0)


# --------------------------------------------------------------------------- ours


class ExternalCall(Base):
    """One attempt of one call to an external service: the external-call ledger."""

    __tablename__ = "external_calls"
    __table_args__ = (Index("ix_external_calls_service_started", "service", "started_at"),)
    call_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    flow_run_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    flow_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    deployment_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    service: Mapped[str] = mapped_column(String(32))
    operation: Mapped[str] = mapped_column(String(128))
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    outcome: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    duration_ms: Mapped[float] = mapped_column(Float)
