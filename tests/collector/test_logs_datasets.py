"""updateLogsDatasets (reference §2.6) against real Rucio, the MetaCat double and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rucio.client import Client
from rucio.common.exception import DataIdentifierNotFound
from sqlalchemy import Engine, insert

from justin_flows.adapters.metacat import MetaCatAdapter
from justin_flows.adapters.rucio import RucioAdapter
from justin_flows.collector.logs_datasets import RULE_LIFETIME_SECONDS, update_logs_datasets
from justin_flows.db.engine import transaction
from justin_flows.db.models import Storage
from justin_flows.ledger import LEDGER
from justin_flows.testing.metacat_double import MetaCatDouble
from justin_flows.testing.rucio_server import RucioServer
from tests.conftest import reset_caches
from tests.rucio_seed import add_rse, add_scope, calls, unique

NOW = 1_710_000_000 - 1  # one second before a period boundary
PERIODS = (1_709_000_000, 1_710_000_000, 1_711_000_000)


@pytest.fixture(scope="module")
def metacat_double() -> Iterator[MetaCatDouble]:
    with MetaCatDouble() as double:
        double.add_user("justin-agent", "agent-password")
        double.seed_dataset("justin-logs:namespace-seed")  # creates the justin-logs namespace
        yield double


@pytest.fixture
def metacat(metacat_double: MetaCatDouble, monkeypatch: pytest.MonkeyPatch) -> Iterator[MetaCatAdapter]:
    for key, value in {
        "AUTH_SERVER_URL": metacat_double.auth_url,
        "SERVER_INPUTS_URL": metacat_double.server_url,
        "SERVER_OUTPUTS_URL": metacat_double.server_url,
        "USERNAME": "justin-agent",
        "LOGIN_METHOD": "password",
        "PASSWORD": "agent-password",
    }.items():
        monkeypatch.setenv(f"JUSTIN_METACAT__{key}", value)
    reset_caches()
    with MetaCatAdapter() as adapter:
        yield adapter
    reset_caches()


@pytest.fixture
def client(rucio_server: RucioServer) -> Client:
    client = Client()
    add_scope(client, "root", "justin-logs")
    return client


@pytest.fixture
def rses(db: Engine, client: Client, tmp_path: Path) -> dict[str, str]:
    """A writable RSE (with a quota for root, so rules work) plus rows that must be left out."""
    writable = add_rse(client, unique("LOGS_").upper(), tmp_path, protocols=[("file", 1, 1)], limits={"root": -1})
    names = {"writable": writable, "not_justin": unique("NOTJ_").upper(), "gone": unique("GONE_").upper()}
    with transaction() as s:
        # MONTECARLO made writable on purpose: rse_id 1 must be excluded by its id alone
        s.execute(insert(Storage).values(rse_id=1, rse_name="MONTECARLO", rucio_write=True, justin_write=True))
        s.execute(insert(Storage).values(rse_id=2, rse_name=writable, rucio_write=True, justin_write=True))
        s.execute(insert(Storage).values(rse_id=3, rse_name=names["not_justin"], rucio_write=True, justin_write=False))
        s.execute(insert(Storage).values(rse_id=4, rse_name=names["gone"], rucio_write=True, justin_write=True,
                                         decommissioned=True))
    LEDGER.drain()
    return names


def dataset_names(rse: str) -> list[str]:
    return [f"logstgz-{t}-{rse}" for t in PERIODS]


def rules_of(client: Client, name: str) -> list[dict[str, Any]]:
    return list(client.list_replication_rules({"scope": "justin-logs", "name": name}))


def test_three_periods_get_dataset_and_one_rule_each_then_nothing_more(
    rses: dict[str, str], client: Client, metacat: MetaCatAdapter, metacat_double: MetaCatDouble
) -> None:
    rse = rses["writable"]
    report = update_logs_datasets(RucioAdapter(), metacat, now=NOW)

    assert report.errors == []
    assert [(r["did"], r["dataset"], r["rule"]) for r in report.rows] == [
        (f"justin-logs:{n}", "created", "added") for n in dataset_names(rse)
    ]
    for name in dataset_names(rse):
        assert client.get_did("justin-logs", name)["type"] == "DATASET"
        assert metacat_double.get_dataset_record(f"justin-logs:{name}") is not None
        (rule,) = rules_of(client, name)
        assert (rule["copies"], rule["rse_expression"], rule["account"]) == (1, rse, "root")
        lifetime = (rule["expires_at"] - rule["created_at"]).total_seconds()
        assert abs(lifetime - RULE_LIFETIME_SECONDS) < 60
    # a created dataset cannot have rules yet, so no rule listing; one MetaCat login
    assert calls() == {"get_did": 3, "add_dataset": 3, "add_replication_rule": 3}
    assert calls("metacat") == {"login": 1, "create_dataset": 3}

    LEDGER.drain()
    again = update_logs_datasets(RucioAdapter(), metacat, now=NOW)

    assert again.errors == []
    assert [(r["dataset"], r["rule"]) for r in again.rows] == [("existing", "existing")] * 3
    assert all(len(rules_of(client, n)) == 1 for n in dataset_names(rse))
    assert calls() == {"get_did": 3, "list_replication_rules": 3}
    assert calls("metacat") == {}  # nothing to create: no login either


def test_the_window_moves_at_the_boundary(rses: dict[str, str], client: Client, metacat: MetaCatAdapter) -> None:
    update_logs_datasets(RucioAdapter(), metacat, now=NOW)
    LEDGER.drain()

    report = update_logs_datasets(RucioAdapter(), metacat, now=NOW + 1)  # exactly 1_710_000_000

    assert [(r["period_start"], r["dataset"]) for r in report.rows] == [
        (1_710_000_000, "existing"), (1_711_000_000, "existing"), (1_712_000_000, "created"),
    ]
    assert len(rules_of(client, f"logstgz-1712000000-{rses['writable']}")) == 1


def test_half_made_datasets_are_completed(
    rses: dict[str, str], client: Client, metacat: MetaCatAdapter, metacat_double: MetaCatDouble
) -> None:
    first, second, third = dataset_names(rses["writable"])
    metacat_double.seed_dataset(f"justin-logs:{first}")  # MetaCat only: "already exists" is fine
    client.add_dataset("justin-logs", second)  # Rucio dataset without its rule

    report = update_logs_datasets(RucioAdapter(), metacat, now=NOW)

    assert report.errors == []
    assert [(r["dataset"], r["rule"]) for r in report.rows] == [
        ("created", "added"), ("existing", "added"), ("created", "added"),
    ]
    assert all(len(rules_of(client, n)) == 1 for n in (first, second, third))
    assert metacat_double.get_dataset_record(f"justin-logs:{second}") is None  # upstream: no MetaCat step
    assert calls("metacat") == {"login": 1, "create_dataset": 2}  # the first answered "already exists"


def test_metacat_refusal_skips_that_dataset_until_the_next_run(
    rses: dict[str, str], client: Client, metacat: MetaCatAdapter, metacat_double: MetaCatDouble
) -> None:
    metacat_double.fail_next("create_dataset", 403)  # final, not retried; whichever item comes first

    report = update_logs_datasets(RucioAdapter(), metacat, now=NOW)

    assert len(report.errors) == 1 and "creating the MetaCat dataset failed" in report.errors[0]
    failed = [r for r in report.rows if r["rule"] == "failed"]
    assert len(failed) == 1 and failed[0]["did"] in report.errors[0]
    name = failed[0]["did"].split(":", 1)[1]
    with pytest.raises(DataIdentifierNotFound):
        client.get_did("justin-logs", name)
    assert sum(1 for r in report.rows if r["rule"] == "added") == 2

    retry = update_logs_datasets(RucioAdapter(), metacat, now=NOW)

    assert retry.errors == []
    assert [(r["did"], r["dataset"], r["rule"]) for r in retry.rows if r["dataset"] == "created"] == [
        (failed[0]["did"], "created", "added")
    ]
    assert len(rules_of(client, name)) == 1


def test_no_writable_rse_means_no_call(db: Engine, rucio_server: RucioServer, metacat: MetaCatAdapter) -> None:
    report = update_logs_datasets(RucioAdapter(), metacat, now=dt.datetime(2024, 3, 9).timestamp())

    assert report.rows == [] and report.errors == []
    assert calls() == {} and calls("metacat") == {}


def test_a_dry_run_creates_nothing_and_says_what_is_missing(
    rses: dict[str, str], client: Client, metacat: MetaCatAdapter, metacat_double: MetaCatDouble
) -> None:
    rse = rses["writable"]
    first = dataset_names(rse)[0]
    client.add_dataset("justin-logs", first)  # one dataset exists, without its rule

    report = update_logs_datasets(RucioAdapter(), metacat, now=NOW, dry_run=True)

    assert not report.errors, report.errors
    assert sorted((r["did"], r["dataset"], r["rule"]) for r in report.rows) == sorted(
        [(f"justin-logs:{first}", "existing", "would-add")]
        + [(f"justin-logs:{name}", "would-create", "would-add") for name in dataset_names(rse)[1:]]
    )
    assert rules_of(client, first) == [], "no rule added"
    for name in dataset_names(rse)[1:]:
        with pytest.raises(DataIdentifierNotFound):
            client.get_did("justin-logs", name)
        assert metacat_double.get_dataset_record(f"justin-logs:{name}") is None
    assert {c.operation for c in LEDGER.drain()} <= {"get_did", "list_replication_rules"}, "reads only"
