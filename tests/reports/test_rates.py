"""api-rates: numbers from a seeded ledger history equal the ones worked out by hand below.

History (every duration in ms; "err" = an attempt with outcome error):

alpha (interval 300 s -> 12 runs/h), newest run last:
  a1: rucio.ping 10, 20, 30;   rucio.list_rses 100
  a2: rucio.ping 40, err 50, 60; rucio.list_rses 200
  a3 (run outside a deployment, flow "flow-alpha"): rucio.ping 70
beta (cron "0 */2 * * *" -> 12 runs/day = 0.5 runs/h):
  b1: metacat.query 5;  htcondor.condor_submit 1000
  b2: metacat.query err 7, 9
delta (no schedule -> on demand, 0/h):  d1: git.clone 300
stray (not in prefect.yaml):             s1: http.GET 3
plus one call outside any flow run (not counted).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, insert, select

from justin_flows import rates
from justin_flows.db.engine import transaction
from justin_flows.db.models import ExternalCall
from justin_flows.rates_cli import rates_main
from tests.conftest import reset_caches

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc)

PREFECT_YAML = """\
name: test
deployments:
  - name: alpha
    entrypoint: flows/alpha.py:alpha_flow
    schedules:
      - {slug: a, interval: 300}
  - name: beta
    entrypoint: flows/beta.py:beta_flow
    schedules:
      - {slug: b, cron: "0 */2 * * *", timezone: UTC}
  - name: delta
    entrypoint: flows/delta.py:delta_flow
  - name: epsilon
    entrypoint: flows/delta.py:delta_flow
    schedules:
      - {slug: e-off, interval: 60, active: false}
      - {slug: e-on, interval: 600}
"""


@pytest.fixture
def prefect_yaml(tmp_path: Path) -> Path:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "alpha.py").write_text('from prefect import flow\n\n@flow(name="flow-alpha")\ndef alpha_flow():\n    pass\n')
    (flows / "beta.py").write_text("import prefect\n\n@prefect.flow\ndef beta_flow():\n    pass\n")
    (flows / "delta.py").write_text("from prefect import flow\n\n@flow(name='flow-delta')\ndef delta_flow():\n    pass\n")
    path = tmp_path / "prefect.yaml"
    path.write_text(PREFECT_YAML)
    return path


def _call(run: str | None, deployment: str | None, flow: str | None, service: str, operation: str,
          ms: float, at: dt.datetime, outcome: str = "ok", attempt: int = 1) -> dict[str, object]:
    return {
        "flow_run_id": run, "deployment_name": deployment, "flow_name": flow, "service": service,
        "operation": operation, "attempt": attempt, "outcome": outcome,
        "error": "RuntimeError: boom" if outcome == "error" else None, "started_at": at, "duration_ms": ms,
    }


@pytest.fixture
def history(db: Engine) -> dict[str, str]:
    ids = {name: str(uuid.uuid4()) for name in ("a1", "a2", "a3", "b1", "b2", "d1", "s1")}
    h = dt.timedelta(hours=1)
    a1, a2, a3 = NOW - 3 * h, NOW - 2 * h, NOW - h
    rows = [
        _call(ids["a1"], "alpha", "flow-alpha", "rucio", "ping", 10, a1),
        _call(ids["a1"], "alpha", "flow-alpha", "rucio", "ping", 20, a1),
        _call(ids["a1"], "alpha", "flow-alpha", "rucio", "ping", 30, a1),
        _call(ids["a1"], "alpha", "flow-alpha", "rucio", "list_rses", 100, a1),
        _call(ids["a2"], "alpha", "flow-alpha", "rucio", "ping", 40, a2),
        _call(ids["a2"], "alpha", "flow-alpha", "rucio", "ping", 50, a2, "error"),
        _call(ids["a2"], "alpha", "flow-alpha", "rucio", "ping", 60, a2, attempt=2),
        _call(ids["a2"], "alpha", "flow-alpha", "rucio", "list_rses", 200, a2),
        _call(ids["a3"], None, "flow-alpha", "rucio", "ping", 70, a3),
        _call(ids["b1"], "beta", "beta-flow", "metacat", "query", 5, a1),
        _call(ids["b1"], "beta", "beta-flow", "htcondor", "condor_submit", 1000, a1),
        _call(ids["b2"], "beta", "beta-flow", "metacat", "query", 7, a2, "error"),
        _call(ids["b2"], "beta", "beta-flow", "metacat", "query", 9, a2, attempt=2),
        _call(ids["d1"], "delta", "flow-delta", "git", "clone", 300, a1),
        _call(ids["s1"], "stray", "stray-flow", "http", "GET", 3, a1),
        _call(None, None, None, "rucio", "ping", 1, a1),
    ]
    with transaction() as s:
        s.execute(insert(ExternalCall), rows)
    return ids


def _by_op(rows: list[rates.RateRow]) -> dict[tuple[str, str, str], rates.RateRow]:
    return {(r.deployment, r.service, r.operation): r for r in rows}


def test_runs_per_hour_come_from_the_schedules_of_prefect_yaml(prefect_yaml: Path) -> None:
    schedules = rates.load_schedules(prefect_yaml)
    assert {k: v.runs_per_hour for k, v in schedules.items()} == {
        "alpha": 12.0, "beta": 0.5, "delta": 0.0, "epsilon": 6.0,  # inactive schedules do not count
    }
    assert schedules["delta"].schedule == "on demand"
    assert schedules["beta"].schedule == "cron 0 */2 * * * (UTC)"
    # flow names are read from the entrypoints' decorators (Prefect's default when unnamed)
    assert schedules["alpha"].flow_name == "flow-alpha"
    assert schedules["beta"].flow_name == "beta-flow"


@pytest.mark.parametrize(
    ("cron", "per_hour"),
    [("*/5 * * * *", 12.0), ("0 3 * * *", 1 / 24), ("*/10 * * * 1-5", 6 * 5 / 7), ("30 4 * * 0", 1 / (7 * 24)), ("0 0 1 * *", 12 / 8760), ("0 6 1-7 * *", 84 / 8760)],
)
def test_cron_schedules_count_their_fire_times(cron: str, per_hour: float) -> None:
    assert rates.cron_runs_per_hour(cron) == pytest.approx(per_hour)


def test_a_bad_schedule_is_refused_naming_the_deployment(tmp_path: Path) -> None:
    path = tmp_path / "prefect.yaml"
    path.write_text("deployments:\n  - name: broken\n    entrypoint: x.py:f\n    schedules: [{interval: -5}]\n")
    with pytest.raises(ValueError, match="deployment broken: interval -5"):
        rates.load_schedules(path)
    path.write_text("deployments:\n  - name: broken\n    schedules: [{cron: 'not a cron'}]\n")
    with pytest.raises(ValueError, match="deployment broken: cron 'not a cron'"):
        rates.load_schedules(path)


def test_rates_equal_the_hand_computed_numbers(history: dict[str, str], prefect_yaml: Path) -> None:
    rows, _, sample = rates.api_rates(50, prefect_yaml)
    got = _by_op(rows)
    assert set(got) == {
        ("alpha", "rucio", "ping"), ("alpha", "rucio", "list_rses"), ("beta", "metacat", "query"),
        ("beta", "htcondor", "condor_submit"), ("delta", "git", "clone"), ("stray", "http", "GET"),
    }
    assert sample.calls_without_run == 1

    ping = got[("alpha", "rucio", "ping")]  # a3 ran outside a deployment: counted under alpha by its flow
    assert (ping.runs, ping.calls_per_run_median, ping.calls_per_run_max) == (3, 3, 3)
    assert ping.calls_per_run_mean == pytest.approx(7 / 3)
    assert (ping.runs_per_hour, ping.calls_per_hour, ping.calls_per_day) == (12.0, pytest.approx(28.0), pytest.approx(672.0))
    assert (ping.attempts, ping.errors, ping.error_rate) == (7, 1, pytest.approx(1 / 7))
    assert (ping.p50_ms, ping.p95_ms) == (40.0, pytest.approx(67.0))  # 60 + 0.7 x (70 - 60)

    listing = got[("alpha", "rucio", "list_rses")]  # 1, 1, 0 per run
    assert (listing.calls_per_run_median, listing.calls_per_run_max) == (1, 1)
    assert (listing.calls_per_hour, listing.calls_per_day) == (pytest.approx(8.0), pytest.approx(192.0))
    assert (listing.error_rate, listing.p50_ms, listing.p95_ms) == (0.0, 150.0, pytest.approx(195.0))

    query = got[("beta", "metacat", "query")]  # 1, 2 per run at 0.5 runs/h
    assert (query.runs, query.calls_per_run_median, query.calls_per_run_max) == (2, 1.5, 2)
    assert (query.calls_per_hour, query.calls_per_day) == (pytest.approx(0.75), pytest.approx(18.0))
    assert (query.errors, query.attempts) == (1, 3)
    assert (query.p50_ms, query.p95_ms) == (7.0, pytest.approx(8.8))

    submit = got[("beta", "htcondor", "condor_submit")]  # 1, 0 per run
    assert (submit.calls_per_run_median, submit.calls_per_run_max, submit.calls_per_day) == (0.5, 1, pytest.approx(6.0))

    clone = got[("delta", "git", "clone")]  # on demand: calls per run, but none per hour
    assert (clone.calls_per_run_median, clone.runs_per_hour, clone.calls_per_hour) == (1, 0.0, 0.0)
    stray = got[("stray", "http", "GET")]
    assert (stray.runs_per_hour, stray.schedule) == (0.0, "on demand (not in prefect.yaml)")


def test_only_the_most_recent_runs_are_sampled(history: dict[str, str], prefect_yaml: Path) -> None:
    rows, _, sample = rates.api_rates(2, prefect_yaml)
    assert sample.runs["alpha"] == [history["a3"], history["a2"]]  # newest first, a1 left out
    got = _by_op(rows)
    ping = got[("alpha", "rucio", "ping")]  # 3 (a2), 1 (a3)
    assert (ping.calls_per_run_median, ping.calls_per_run_max, ping.calls_per_hour) == (2, 3, pytest.approx(24.0))
    assert (ping.attempts, ping.p50_ms) == (4, 55.0)
    listing = got[("alpha", "rucio", "list_rses")]  # 1 (a2), 0 (a3)
    assert (listing.calls_per_run_median, listing.calls_per_hour, listing.p95_ms) == (0.5, pytest.approx(6.0), 200.0)


def test_markdown_page_has_a_section_and_table_per_deployment(history: dict[str, str], prefect_yaml: Path) -> None:
    rows, schedules, sample = rates.api_rates(50, prefect_yaml)
    page = rates.render_markdown(rows, schedules, runs=50, sample=sample, generated_at=NOW)
    sections = [line for line in page.splitlines() if line.startswith("## ")]
    assert sections == ["## alpha", "## beta", "## delta", "## epsilon", "## stray", "## All deployments by service"]
    assert "| service | operation | calls/run | runs/h | calls/h | calls/day | errors | p50 ms | p95 ms |" in page
    assert "| rucio | ping | 3 / 3 | 12 | 28 | 672 | 14.3% (1/7) | 40 | 67 |" in page
    assert "| metacat | query | 1.5 / 2 | 0.5 | 0.75 | 18 | 33.3% (1/3) | 7 | 8.8 |" in page
    epsilon = page.split("## epsilon")[1].split("##")[0]
    assert "every 600 s (6 runs/h); 0 run(s) sampled" in epsilon and "No external calls recorded." in epsilon
    assert "| htcondor | condor_submit | 0.5 / 1 | 0.5 | 0.25 | 6 | 0 | 1000 | 1000 |" in page
    assert "| rucio | 36 | 864 | 11.1% (1/9) |" in page  # per-service total: 28 + 8 calls/h, 1 error in 9
    assert "1 call(s) recorded outside any flow run are not counted." in page


def test_cli_prints_the_table_and_writes_the_page(
    history: dict[str, str], prefect_yaml: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tmp_path / "rates.md"
    assert rates_main(["--runs", "2", "--prefect-yaml", str(prefect_yaml), "--markdown", str(page)]) == 0
    out = capsys.readouterr().out
    assert "alpha  [every 300 s; 2 run(s) sampled]" in out
    assert any(line.split()[:3] == ["rucio", "ping", "2"] and line.split()[4:7] == ["3", "12", "24"]
               for line in out.splitlines())
    assert page.read_text().startswith("# External API rates")
    with pytest.raises(SystemExit) as exc:
        rates_main(["--runs", "0"])
    assert exc.value.code == 2
    assert rates_main(["--prefect-yaml", str(tmp_path / "missing.yaml")]) == 2


def test_prune_deletes_only_rows_older_than_the_retention(db: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    ages = {"old-40d": 40, "old-31d": 31, "new-29d": 29, "new-1d": 1, "new-now": 0}
    with transaction() as s:
        s.execute(insert(ExternalCall), [
            _call(run, "alpha", "flow-alpha", "rucio", "ping", 1, NOW - dt.timedelta(days=days))
            for run, days in ages.items()
        ])
    assert rates.prune_ledger(30, now=NOW) == 2
    with transaction() as s:
        assert set(s.scalars(select(ExternalCall.flow_run_id))) == {"new-29d", "new-1d", "new-now"}
    assert rates.prune_ledger(30, now=NOW) == 0  # nothing left to prune
    monkeypatch.setenv("JUSTIN_LEDGER__RETENTION_DAYS", "10")  # the default comes from the settings
    reset_caches()
    try:
        assert rates.prune_ledger(now=NOW) == 1
    finally:
        monkeypatch.delenv("JUSTIN_LEDGER__RETENTION_DAYS")
        reset_caches()
    with transaction() as s:
        assert set(s.scalars(select(ExternalCall.flow_run_id))) == {"new-1d", "new-now"}


@pytest.mark.usefixtures("prefect_server")
def test_flow_prunes_and_publishes_the_table_and_page(db: Engine) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from flows.reports.api_rates import PAGE_KEY, TABLE_KEY, api_rates_flow

    now = dt.datetime.now(dt.timezone.utc)
    run = str(uuid.uuid4())
    with transaction() as s:
        s.execute(insert(ExternalCall), [
            _call(run, "finder", "finder", "rucio", "list_replicas", 12, now),
            _call(run, "finder", "finder", "rucio", "list_replicas", 14, now),
            _call("ancient", "finder", "finder", "rucio", "ping", 1, now - dt.timedelta(days=400)),
        ])
    state = api_rates_flow(runs=5, write_markdown=True, return_state=True)
    assert state.is_completed(), state.message
    result = state.result()
    assert result["pruned"] == 1 and result["deployments"] == ["finder"]
    with transaction() as s:
        assert s.scalar(select(func.count()).select_from(ExternalCall)) == 2

    async def read() -> dict[str, object]:
        async with get_client() as client:
            found = await client.read_artifacts(artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])))
            return {a.key: a.data for a in found if a.key}

    artifacts = asyncio.run(read())
    assert set(artifacts) == {TABLE_KEY, PAGE_KEY}
    table = artifacts[TABLE_KEY]
    assert "list_replicas" in str(table) and "120" in str(table)  # 2 calls/run x 60 runs/h (prefect.yaml)
    assert "## finder" in str(artifacts[PAGE_KEY])
