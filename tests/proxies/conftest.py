"""A ``voms-proxy-init`` stand-in, real host credentials from a test grid CA, and settings."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from justin_flows.adapters.calls import ExternalService
from justin_flows.adapters.voms import SERVICE, VOMSAdapter, is_transient
from justin_flows.ledger import Ledger
from justin_flows.settings import get_settings
from justin_flows.testing.x509 import GridCA, UserCredential, install_voms_proxy_init_standin, make_grid_ca
from tests.conftest import reset_caches

PRODUCTION = "justin-jobs-production.dune.hep.ac.uk"
NO_ROLES = "justin-jobs-no-roles.dune.hep.ac.uk"


@dataclass
class VomsEnv:
    ca: GridCA
    users: dict[str, UserCredential]  # by credential stem
    standin: Path
    state_dir: Path
    secrets_dir: Path
    out_dir: Path
    production_proxy: Path
    no_roles_proxy: Path
    default_proxy: Path

    def adapter(self, ledger: Ledger | None = None, *, timeout_seconds: float = 30.0) -> VOMSAdapter:
        settings = get_settings()
        service = ExternalService(SERVICE, settings.retry, is_transient, ledger=ledger or Ledger())
        return VOMSAdapter(settings, service, timeout_seconds=timeout_seconds)


@pytest.fixture(scope="session")
def grid_credentials() -> tuple[GridCA, dict[str, UserCredential]]:
    ca = make_grid_ca()
    return ca, {stem: ca.issue_user(stem) for stem in (PRODUCTION, NO_ROLES)}


@pytest.fixture
def voms_env(tmp_path: Path, grid_credentials: tuple[GridCA, dict[str, UserCredential]]) -> Iterator[VomsEnv]:
    ca, users = grid_credentials
    secrets_dir = tmp_path / "justin-secrets"
    for stem, user in users.items():
        user.write(secrets_dir, stem)
    out_dir = tmp_path / "tmp"
    out_dir.mkdir()
    env = VomsEnv(
        ca=ca, users=users,
        standin=install_voms_proxy_init_standin(tmp_path / "bin", tmp_path / "voms-state"),
        state_dir=tmp_path / "voms-state", secrets_dir=secrets_dir, out_dir=out_dir,
        production_proxy=out_dir / "justin-jobs-production.proxy.pem",
        no_roles_proxy=out_dir / "justin-jobs-no-roles.proxy.pem",
        default_proxy=out_dir / "x509up_u4242",
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUSTIN_PROXIES__VOMS_PROXY_INIT", str(env.standin))
        mp.setenv("JUSTIN_PROXIES__SECRETS_DIR", str(secrets_dir))
        mp.setenv("JUSTIN_PROXIES__PRODUCTION_PROXY", str(env.production_proxy))
        mp.setenv("JUSTIN_PROXIES__NO_ROLES_PROXY", str(env.no_roles_proxy))
        mp.setenv("X509_USER_PROXY", str(env.default_proxy))  # grid clients' default proxy path
        reset_caches()
        yield env
    reset_caches()
