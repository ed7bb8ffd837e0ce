"""The OpenID provider double (CILogon), its keys stored by the real jwks collector, and a dashboard."""

from __future__ import annotations

import datetime as dt
import ssl
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import Engine, insert

with warnings.catch_warnings():  # Starlette 1.x asks for httpx2 for its TestClient; httpx works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from justin_flows.adapters.http import HTTPAdapter
from justin_flows.collector.jwks import update_jwks
from justin_flows.dashboard import DashboardConfig, create_app
from justin_flows.db.engine import transaction
from justin_flows.db.models import Entry, ExternalCall, Job, JobState, KeyNameValue, Site, Storage
from justin_flows.ledger import LEDGER
from justin_flows.testing.oidc_provider import Behaviour, OIDCProviderDouble, TestUser
from tests.conftest import reset_caches

PUBLIC_URL = "http://127.0.0.1:8765"  # TestClient never binds it; only the redirect URI uses it
SECURE_PUBLIC_URL = "https://dashboard.test"
JOB_SECRET = "job-secret-canary-5b1e9d"
JOBSCRIPT_SECRET = "jobscript-secret-canary-77aa01"


@pytest.fixture(scope="session")
def provider() -> Iterator[OIDCProviderDouble]:
    with OIDCProviderDouble(redirect_uris=[PUBLIC_URL + "/login/cilogon/login",
                                           SECURE_PUBLIC_URL + "/login/cilogon/login"]) as double:
        yield double


@pytest.fixture
def idp(db: Engine, provider: OIDCProviderDouble) -> Iterator[OIDCProviderDouble]:
    """Settings trust the provider's CA; its signing key is in jwt_keys via updateJwks."""
    provider.behaviour = Behaviour()
    provider.user = TestUser()
    provider.token_requests.clear()
    provider.requests.clear()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUSTIN_CILOGON__CA_FILE", str(provider.ca_file))
        mp.setenv("JUSTIN_CILOGON__OPENID_CONFIGURATION_URL", provider.configuration_url)
        mp.setenv("JUSTIN_INSTANCE", "test")
        reset_caches()
        with HTTPAdapter() as http:
            report = update_jwks(http)
        assert report.counts["stored"] == 1, report.errors
        LEDGER.drain()  # the jwks fetch is not part of what the dashboard tests count
        yield provider
    reset_caches()


def make_config(provider: OIDCProviderDouble, **overrides: object) -> DashboardConfig:
    values: dict[str, object] = {
        "public_url": PUBLIC_URL, "client_id": provider.client_id,
        "client_secret": SecretStr(provider.client_secret),
        "openid_configuration_url": provider.configuration_url, "insecure_loopback_http": True,
    }
    values.update(overrides)
    return DashboardConfig(**values)  # type: ignore[arg-type]


@pytest.fixture
def client(idp: OIDCProviderDouble) -> Iterator[TestClient]:
    config = make_config(idp)
    with TestClient(create_app(config), base_url=config.public_url, follow_redirects=False) as c:
        yield c


@pytest.fixture
def browser(idp: OIDCProviderDouble) -> Iterator[httpx.Client]:
    """The browser's side trip to the provider (it trusts the provider's CA)."""
    with httpx.Client(verify=ssl.create_default_context(cafile=str(idp.ca_file)), follow_redirects=False) as c:
        yield c


@dataclass
class LoginTrip:
    authorize_url: str
    authorize_params: dict[str, str]
    callback_path: str  # path and query of the provider's redirect back
    callback_params: dict[str, str]
    pre_login_cookie: str | None


def start_login(client: TestClient, browser: httpx.Client, next_path: str | None = "/storages") -> LoginTrip:
    """``/login`` on the dashboard, then the provider's auto-approval; stops before the callback."""
    response = client.get("/login", params={"next": next_path} if next_path is not None else None)
    assert response.status_code == 302, response.text
    authorize_url = response.headers["location"]
    cookie = response.cookies.get("justin_session") or response.cookies.get("__Host-justin_session")
    at_provider = browser.get(authorize_url)
    assert at_provider.status_code == 302, at_provider.text
    back = urlsplit(at_provider.headers["location"])
    return LoginTrip(
        authorize_url, {k: v[0] for k, v in parse_qs(urlsplit(authorize_url).query).items()},
        f"{back.path}?{back.query}", {k: v[0] for k, v in parse_qs(back.query).items()}, cookie,
    )


def log_in(client: TestClient, browser: httpx.Client, next_path: str | None = "/storages") -> httpx.Response:
    trip = start_login(client, browser, next_path)
    return client.get(trip.callback_path)


# --------------------------------------------------------------------------- seeded data


def seed_grid(*, rse_name: str = "DUNE_TEST_DISK", site_name: str = "US_TestSite") -> None:
    now = dt.datetime.now(dt.timezone.utc)
    with transaction() as s:
        site_id = s.execute(insert(Site).values(
            site_name=site_name, jobsub_site_name=site_name.removeprefix("US_"), wlcg_site_name="TEST-T2",
            region="North_America", country="US", enabled=True, last_osg_seen_time=now,
        ).returning(Site.site_id)).scalar_one()
        entry_id = s.execute(insert(Entry).values(
            entry_name="CMSHTPC_T2_US_Test_ce1", site_id=site_id, gatekeeper="ce1.test.example 9619",
            max_processors=8, max_rss_bytes=16 * 1024**3, max_wall_seconds=172800, last_osg_seen_time=now,
        ).returning(Entry.entry_id)).scalar_one()
        s.execute(insert(Storage).values(
            rse_name=rse_name, occupancy=0.4567, region="North_America", country="US", site_id=site_id,
            justin_write=True, last_rucio_seen_time=now,
        ))
        s.execute(insert(Job).values(
            jobsub_id="1234.0@justin-prod-sched01.dune.hep.ac.uk", workflow_id=7, stage_id=1, site_id=site_id,
            entry_id=entry_id, job_state=JobState.FINISHED, submitted_time=now - dt.timedelta(hours=2),
            finished_time=now - dt.timedelta(hours=1), justin_job_secret=JOB_SECRET, jobscript_secret=JOBSCRIPT_SECRET,
            jobscript_exit=0, requested_processors=1, requested_rss_bytes=2000 * 1048576,
        ))


def seed_calls(rows: list[tuple[str, str, str, dt.datetime, float, str | None]], run_id: str = "run-1") -> None:
    """(service, operation, outcome, started_at, duration_ms, error) rows in external_calls."""
    with transaction() as s:
        s.execute(insert(ExternalCall), [
            {"flow_run_id": run_id, "flow_name": "test", "service": svc, "operation": op, "attempt": 1,
             "outcome": outcome, "started_at": at, "duration_ms": ms, "error": err}
            for svc, op, outcome, at, ms, err in rows
        ])


def seed_health(value: str, when: dt.datetime) -> None:
    with transaction() as s:
        s.execute(insert(KeyNameValue).values(key_name="rucio_health", key_value=value, updated_time=when))
