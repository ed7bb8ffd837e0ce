"""Every knob the justIN flows read, in one typed object.

Values come from environment variables prefixed ``JUSTIN_`` (nested groups use ``__``,
e.g. ``JUSTIN_RUCIO__ACCOUNT``), then from an optional TOML file named by
``JUSTIN_CONFIG_FILE``, then from the defaults below (upstream justIN's defaults,
reference §0.1, where they make sense). Secrets are ``SecretStr`` and never printed.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

_HOSTNAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789.-")


def _split_words(value: Any) -> Any:
    """Accept a space/comma separated string where a list is expected (upstream style)."""
    if isinstance(value, str):
        return [w for w in value.replace(",", " ").split() if w]
    return value


class RetryPolicy(BaseModel):
    """How often one external call is tried, and how long to wait between tries."""

    attempts: int = Field(3, ge=1, le=10, description="total attempts per call (upstream: 3)")
    backoff_seconds: float = Field(1.0, ge=0, description="first wait; doubles each retry")
    max_backoff_seconds: float = Field(30.0, ge=0)
    jitter: float = Field(0.5, ge=0, le=1, description="fraction of the wait randomised")


class RucioSettings(BaseModel):
    """Rucio client configuration. The client itself reads ``config_file`` (rucio.cfg)."""

    config_file: Path | None = Field(None, description="rucio.cfg for the client; None = client default lookup")
    account: str = Field("dunepro", description="account the agents act as (upstream rucioProductionUser)")
    production_dn: str = "/C=UK/O=eScience/OU=Manchester/L=HEP/CN=justin-jobs-production.dune.hep.ac.uk"
    timeout_seconds: float = Field(60.0, gt=0)
    overload_milliseconds: int = Field(
        100000, gt=0, description="average ping at or above this gates Rucio-heavy work"
    )
    max_in_flight: int = Field(4, ge=1, le=64, description="concurrent Rucio calls per flow run")
    unhealthy_backoff_seconds: float = Field(
        300.0, ge=0, description="after Rucio was found overloaded or down, gated flows leave it alone this long"
    )


class MetaCatSettings(BaseModel):
    """MetaCat servers: justIN queries one and declares into another."""

    auth_server_url: str = "https://metacat.fnal.gov:8143/auth/dune"
    server_inputs_url: str = "https://metacat.fnal.gov:9443/dune_meta_prod/app"
    server_outputs_url: str = "https://metacat.fnal.gov:9443/dune_meta_prod/app"
    username: str = "dunepro"
    login_method: str = Field("x509", pattern="^(x509|password|token)$")
    password: SecretStr | None = None
    token: SecretStr | None = None
    timeout_seconds: float = Field(120.0, gt=0)
    ca_path: Path | None = Field(
        None, description="CA bundle or c_rehash'd directory for the MetaCat servers; None = system store"
    )
    max_in_flight: int = Field(4, ge=1, le=64, description="concurrent MetaCat calls per flow run")

    @field_validator("auth_server_url", "server_inputs_url", "server_outputs_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        # the client keys its token library by the exact URL; a trailing "/" breaks it
        return value.rstrip("/")


class HTCondorSettings(BaseModel):
    """Schedds and collector the factory submits to; commands and their token file."""

    schedds: Annotated[list[str], NoDecode] = ["justin-prod-sched01.dune.hep.ac.uk", "justin-prod-sched02.dune.hep.ac.uk"]
    collectors: Annotated[list[str], NoDecode] = ["dunegpcoll01.fnal.gov", "dunegpcoll02.fnal.gov"]
    bearer_token_file: Path = Path("/etc/justin-secrets/bearer-token-file")
    condor_submit: str = "condor_submit"
    condor_userprio: str = "condor_userprio"
    command_timeout_seconds: float = Field(60.0, gt=0)
    keep_wrapper_files: bool = False
    dry_run: bool = Field(False, description="build submit descriptions but never run condor_submit")

    _split = field_validator("schedds", "collectors", mode="before")(_split_words)

    @field_validator("schedds", "collectors")
    @classmethod
    def _hostnames(cls, hosts: list[str]) -> list[str]:
        lowered = [h.lower() for h in hosts]
        bad = [h for h in lowered if not h or set(h) - _HOSTNAME_CHARS]
        if bad:
            raise ValueError(f"not a host name: {bad!r}")
        return lowered


class CILogonSettings(BaseModel):
    """OpenID provider used for the JWKS refresh and the dashboard login."""

    openid_configuration_url: str = "https://cilogon.org/dune/.well-known/openid-configuration"
    client_id: str | None = None
    client_secret: SecretStr | None = None
    ca_file: Path | None = Field(None, description="CA bundle for HTTPS; None = system store")
    timeout_seconds: float = Field(30.0, gt=0)


class ProxySettings(BaseModel):
    """X.509 proxies (reference §1): where they come from and where they go."""

    secrets_dir: Path = Path("/etc/justin-secrets")
    production_proxy: Path = Path("/tmp/justin-jobs-production.proxy.pem")
    no_roles_proxy: Path = Path("/tmp/justin-jobs-no-roles.proxy.pem")
    valid_hours: int = Field(168, gt=0)
    voms_proxy_init: str = "voms-proxy-init"
    default_proxy: Path | None = Field(
        None, description="copy of the production proxy for grid clients; None = $X509_USER_PROXY, else /tmp/x509up_u<uid>"
    )
    min_valid_hours: float = Field(24.0, gt=0, description="a new proxy must stay valid this long to replace the old one")
    command_timeout_seconds: float = Field(120.0, gt=0)


class SitesSettings(BaseModel):
    """Where the site list comes from (reference §2.10)."""

    gfactory_repo_url: str = "https://github.com/opensciencegrid/osg-gfactory.git"
    gfactory_branch: str | None = None
    extra_entries: dict[str, str] = Field(default_factory=dict)
    unseen_sites_expire_days: int = 7
    clone_timeout_seconds: float = Field(300.0, gt=0, description="deadline of the whole gfactory clone")


class JobFactorySettings(BaseModel):
    """Job factory limits (reference §4)."""

    jobs_per_cluster: int = Field(192, ge=1)
    max_submitted: int = Field(2000, ge=0)
    jobs_ratio: float = Field(1.5, gt=0)
    awt_workflow_id: int = 1
    wrapper_job_image: str = "/cvmfs/singularity.opensciencegrid.org/fermilab/fnal-wn-sl7:latest"
    jobscript_image_prefix: str = "/cvmfs/singularity.opensciencegrid.org/fermilab"
    jobscript_image_suffix: str = "fnal-wn-sl7"
    jobscript_image_version: str = "latest"


class UISettings(BaseModel):
    """The UI-service commands (show-jobscript, show-files, show-replicas)."""

    github_raw_base_url: str = Field("https://raw.githubusercontent.com", pattern=r"^https://")
    replicas_chunk_size: int = Field(500, ge=1, le=5000)


class DashboardSettings(BaseModel):
    """The read-only dashboard (reference §7); its public URL is ``dashboard_url``."""

    session_seconds: int = Field(86400, ge=300)
    insecure_loopback_http: bool = Field(False, description="tests/laptops only: http://127.0.0.1 without Secure cookies")


class LedgerSettings(BaseModel):
    """The external-call ledger."""

    enabled: bool = True
    retention_days: int = Field(30, ge=1)


class Settings(BaseSettings):
    """All settings. ``get_settings()`` returns the process-wide instance."""

    model_config = SettingsConfigDict(
        env_prefix="JUSTIN_",
        env_nested_delimiter="__",
        extra="ignore",
        toml_file=None,
    )

    database_url: SecretStr = Field(
        SecretStr("sqlite:///justin-flows.db"),
        description="SQLAlchemy URL of the results database (PostgreSQL in production)",
    )
    instance: str = Field("dev", pattern=r"^[a-z0-9]+$", description="instance name used in dataset names")
    users_wlcg_groups: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["/dune", "/dune/production"])
    justin_jobs_user: str = "dunepro"
    agents_username: str = "dunejustin"
    dashboard_url: str = "https://justin-dev.dune.hep.ac.uk"
    retry: RetryPolicy = RetryPolicy()
    rucio: RucioSettings = RucioSettings()
    metacat: MetaCatSettings = MetaCatSettings()
    htcondor: HTCondorSettings = HTCondorSettings()
    cilogon: CILogonSettings = CILogonSettings()
    proxies: ProxySettings = ProxySettings()
    sites: SitesSettings = SitesSettings()
    job_factory: JobFactorySettings = JobFactorySettings()
    ledger: LedgerSettings = LedgerSettings()
    ui: UISettings = UISettings()
    dashboard: DashboardSettings = DashboardSettings()

    _split_groups = field_validator("users_wlcg_groups", mode="before")(_split_words)

    @field_validator("users_wlcg_groups")
    @classmethod
    def _groups(cls, groups: list[str]) -> list[str]:
        bad = [g for g in groups if '"' in g or "'" in g or not g.startswith("/")]
        if bad:
            raise ValueError(f"WLCG groups must start with '/' and hold no quotes: {bad!r}")
        return [g.lower() for g in groups]

    @field_validator("dashboard_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("JUSTIN_CONFIG_FILE")
        if config_file:
            path = Path(config_file)
            if not path.is_file():
                raise FileNotFoundError(f"JUSTIN_CONFIG_FILE={config_file} does not exist")
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once (tests call ``get_settings.cache_clear()``)."""
    return Settings()
