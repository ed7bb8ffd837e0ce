"""The read-only pages show exactly what the flows wrote, escaped, and never a secret column."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import httpx
import pytest
from sqlalchemy import delete, insert

from justin_flows.dashboard import queries
from justin_flows.db.engine import transaction
from justin_flows.db.migrate import upgrade
from justin_flows.db.models import ExternalCall, Storage
from tests.conftest import reset_caches
from tests.dashboard.conftest import (
    JOB_SECRET,
    JOBSCRIPT_SECRET,
    TestClient,
    log_in,
    seed_calls,
    seed_grid,
    seed_health,
)

HOUR = dt.timedelta(hours=1)


def cells(html: str, first_cell: str) -> list[str]:
    """The text of each cell in the table row whose first cell is ``first_cell``."""
    for row in re.findall(r"<tr>(.*?)</tr>", html, re.DOTALL):
        texts = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, re.DOTALL)]
        if texts and texts[0] == first_cell:
            return texts
    raise AssertionError(f"no row starting with {first_cell!r}")


@pytest.fixture
def session(client: TestClient, browser: httpx.Client) -> TestClient:
    assert log_in(client, browser, "/").status_code == 303
    return client


def this_hour(offset: int = 0) -> dt.datetime:
    now = dt.datetime.now(dt.timezone.utc).replace(minute=0, second=0, microsecond=0)
    return now - offset * HOUR + dt.timedelta(minutes=10)


def test_storages_page_shows_occupancy_and_flags(session: TestClient) -> None:
    seed_grid(rse_name="DUNE_US_FNAL_DISK_STAGE", site_name="US_FNAL-FermiGrid")
    html = session.get("/storages").text
    row = cells(html, "DUNE_US_FNAL_DISK_STAGE")
    assert row[:5] == ["DUNE_US_FNAL_DISK_STAGE", "45.7", "US_FNAL-FermiGrid", "North_America", "US"]
    assert row[5:11] == ["yes", "yes", "yes", "yes", "no", "root / root"]


def test_sites_page_lists_sites_with_entry_counts_and_entries(session: TestClient) -> None:
    seed_grid(site_name="US_Nebraska")
    html = session.get("/sites").text
    site = cells(html, "US_Nebraska")
    assert site[:9] == ["US_Nebraska", "yes", "North_America", "US", "Nebraska", "TEST-T2", "no", "no", "1"]
    entry = cells(html, "CMSHTPC_T2_US_Test_ce1")
    assert entry[:7] == ["CMSHTPC_T2_US_Test_ce1", "US_Nebraska", "ce1.test.example 9619", "8", "16384", "172800", "no"]


def test_jobs_page_shows_recent_jobs_and_never_their_secrets(session: TestClient) -> None:
    seed_grid(site_name="US_Wisconsin")
    html = session.get("/jobs").text
    row = cells(html, "1")
    assert row[1:8] == ["1234.0@justin-prod-sched01.dune.hep.ac.uk", "7.1", "finished", "US_Wisconsin",
                        "CMSHTPC_T2_US_Test_ce1", "1", "2000"]
    assert row[10] == "0"
    assert JOB_SECRET not in html and JOBSCRIPT_SECRET not in html


def test_rucio_health_page_shows_the_stored_value_and_each_runs_pings(session: TestClient) -> None:
    at = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=7)
    seed_health(json.dumps({"milliseconds": 420, "threshold_ms": 100000, "measured_at": at.isoformat(),
                            "error": None, "overloaded": False}), at)
    seed_calls([("rucio", "ping", "ok", at, 400.0, None), ("rucio", "ping", "ok", at + dt.timedelta(seconds=1), 420.0, None),
                ("rucio", "ping", "ok", at + dt.timedelta(seconds=2), 440.0, None),
                ("rucio", "list_rses", "ok", at, 5.0, None)], run_id="run-good")
    later = at + dt.timedelta(minutes=5)
    seed_calls([("rucio", "ping", "error", later, 30000.0, "ConnectionError: Rucio down")], run_id="run-bad")
    html = session.get("/rucio-health").text
    assert "Rucio healthy: average ping 420 ms &lt; 100000 ms" in html
    assert cells(html, f"{later:%Y-%m-%d %H:%M:%S}") == [
        f"{later:%Y-%m-%d %H:%M:%S}", "1", "1", "30000.0", "30000.0", "ConnectionError: Rucio down", "run-bad"]
    assert cells(html, f"{at:%Y-%m-%d %H:%M:%S}") == [
        f"{at:%Y-%m-%d %H:%M:%S}", "3", "0", "420.0", "440.0", "", "run-good"]  # list_rses is not a ping


def test_external_calls_page_counts_attempts_per_hour_and_service(session: TestClient) -> None:
    with transaction() as s:  # the login's own calls (counted in test_login) would share the hour
        s.execute(delete(ExternalCall))
    h0, h2 = this_hour(0), this_hour(2)
    seed_calls([("rucio", "ping", "ok", h0, 1.0, None)] * 3 + [("rucio", "list_rses", "error", h0, 1.0, "x")]
               + [("metacat", "query", "ok", h0, 1.0, None)] + [("git", "fetch", "ok", h2, 1.0, None)] * 2
               + [("rucio", "ping", "ok", h0 - dt.timedelta(days=3), 1.0, None)])  # outside 24 h
    html = session.get("/external-calls").text
    assert cells(html, "hour (UTC)") == ["hour (UTC)", "git", "metacat", "rucio", "all"]
    assert cells(html, f"{h0:%Y-%m-%d %H}:00") == [f"{h0:%Y-%m-%d %H}:00", "", "1", "4 (1)", "5"]
    assert cells(html, f"{h2:%Y-%m-%d %H}:00") == [f"{h2:%Y-%m-%d %H}:00", "2", "", "", "2"]
    assert cells(html, "total") == ["total", "2", "1", "4 (1)", ""]
    wider = session.get("/external-calls?hours=96").text
    assert cells(wider, "total")[3] == "5 (1)"
    assert session.get("/external-calls?hours=nonsense").status_code == 200


def test_overview_counts(session: TestClient) -> None:
    seed_grid()
    html = session.get("/").text
    assert cells(html, "storages") == ["storages", "1"]
    assert cells(html, "sites (enabled)") == ["sites (enabled)", "1 (1)"]
    assert "/dune, /dune/production" in html


def test_html_from_the_database_is_escaped(session: TestClient) -> None:
    with transaction() as s:
        s.execute(insert(Storage).values(rse_name='<script>alert("x")</script>', region="<b>EU</b>"))
    html = session.get("/storages").text
    assert "<script>" not in html and "<b>EU</b>" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html and "&lt;b&gt;EU&lt;/b&gt;" in html


def test_calls_per_hour_buckets_the_same_on_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sandbox runs on SQLite, where hours are cut with strftime instead of date_trunc."""
    url = f"sqlite:///{tmp_path / 'dashboard.db'}"
    upgrade(url)
    monkeypatch.setenv("JUSTIN_DATABASE_URL", url)
    reset_caches()
    try:
        h0, h1 = this_hour(0), this_hour(1)
        with transaction() as s:
            s.execute(insert(ExternalCall), [
                {"service": "rucio", "operation": "ping", "outcome": "ok", "started_at": h0, "duration_ms": 1.0},
                {"service": "rucio", "operation": "ping", "outcome": "error", "started_at": h0, "duration_ms": 1.0},
                {"service": "git", "operation": "fetch", "outcome": "ok", "started_at": h1, "duration_ms": 1.0},
            ])
        data = queries.calls_per_hour(24)
        assert data.services == ["git", "rucio"]
        assert data.rows == [
            {"hour": f"{h0:%Y-%m-%d %H}:00", "total": 2, "rucio": {"calls": 2, "errors": 1}},
            {"hour": f"{h1:%Y-%m-%d %H}:00", "total": 1, "git": {"calls": 1, "errors": 0}},
        ]
    finally:
        monkeypatch.undo()
        reset_caches()
