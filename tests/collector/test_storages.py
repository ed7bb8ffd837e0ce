"""updateStorages (reference §2.5) against the real Rucio server and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from rucio.client import Client
from sqlalchemy import Engine, insert, select, update

from justin_flows.adapters.calls import ExternalCallError
from justin_flows.adapters.rucio import RucioAdapter
from justin_flows.collector.storages import update_storages
from justin_flows.db.engine import transaction
from justin_flows.db.models import Site, Storage
from justin_flows.ledger import LEDGER
from justin_flows.testing.rucio_server import RucioServer
from tests.rucio_seed import add_rse, add_scope, calls, unique

COLUMNS = (
    "rse_id", "rse_name", "decommissioned", "occupancy", "region", "country", "site_id", "rucio_write",
    "rucio_read", "justin_write", "justin_read", "needs_pin", "lan_write_scheme", "wan_write_scheme",
)
MONTECARLO = {
    "rse_id": 1, "rse_name": "MONTECARLO", "decommissioned": False, "occupancy": 1.0, "region": "", "country": "",
    "site_id": None, "rucio_write": False, "rucio_read": True, "justin_write": False, "justin_read": True,
    "needs_pin": False, "lan_write_scheme": "root", "wan_write_scheme": "root",
}


def stored() -> dict[str, dict[str, Any]]:
    with transaction() as s:
        return {r.rse_name: {c: getattr(r, c) for c in COLUMNS} for r in s.scalars(select(Storage))}


def seen_times() -> dict[str, dt.datetime | None]:
    with transaction() as s:
        return dict(s.execute(select(Storage.rse_name, Storage.last_rucio_seen_time)).tuples().all())


@pytest.fixture
def client(rucio_server: RucioServer) -> Client:
    return Client()


@pytest.fixture
def grid(db: Engine, client: Client, rucio_server: RucioServer, tmp_path: Path) -> dict[str, Any]:
    """Four tagged RSEs covering the rules, a known site, and 250 bytes (limit 1000) on one."""
    tag = unique("t")
    site = unique("UK_Site")
    with transaction() as s:
        site_id = s.execute(insert(Site).values(site_name=site).returning(Site.site_id)).scalar_one()
    base = {"justin_test": tag}
    disk = add_rse(
        client, unique("DISK_").upper(), tmp_path,
        attributes={**base, "site": site, "country": "UK", "decommissioned": False},
        protocols=[("file", 1, 1), ("https", 1, 3), ("davs", 2, 1), ("root", 0, 2)],
        limits={"root": 1000},
    )
    odd = add_rse(
        client, unique("ODD_").upper(), tmp_path, deterministic=False,
        attributes={**base, "site": unique("NO_SUCH_SITE"), "country": "US"},
        protocols=[("file", 1, 1)],
    )
    client.update_rse(odd, {"availability_read": False})
    gone = add_rse(
        client, unique("GONE_").upper(), tmp_path,
        attributes={**base, "decommissioned": True, "country": "XX"},
        protocols=[("https", 1, 1)], limits={"root": 1000},
    )
    tape = add_rse(client, unique("TAPE_").upper(), tmp_path, rse_type="TAPE", attributes=base,
                   protocols=[("root", 1, 1)])
    # real usage: 250 bytes registered on the disk RSE, counted by the abacus daemon
    scope = unique("s")
    add_scope(client, "root", scope)
    client.add_replicas(disk, [{"scope": scope, "name": "f1", "bytes": 250, "adler32": "0cc737eb"}])
    LEDGER.drain()
    return {"tag": tag, "expr": f"justin_test={tag}", "site_id": site_id, "site": site,
            "disk": disk, "odd": odd, "gone": gone, "tape": tape}


@pytest.fixture
def counted(grid: dict[str, Any], rucio_server: RucioServer) -> dict[str, Any]:
    """The grid after the abacus daemon counted its usage (until then Rucio reports 0 bytes)."""
    rucio_server.run_daemon_once("rucio-abacus-rse")
    return grid


def expected_rows(grid: dict[str, Any]) -> dict[str, dict[str, Any]]:
    common = {"justin_write": False, "justin_read": True, "needs_pin": False}
    return {
        "MONTECARLO": MONTECARLO,
        grid["disk"]: {
            **common, "rse_name": grid["disk"], "decommissioned": False, "occupancy": 0.25, "region": "Europe",
            "country": "UK", "site_id": grid["site_id"], "rucio_write": True, "rucio_read": True,
            "lan_write_scheme": "https", "wan_write_scheme": "davs",
        },
        grid["odd"]: {  # non-deterministic: read-only; unknown site: NULL; file only: root
            **common, "rse_name": grid["odd"], "decommissioned": False, "occupancy": 0.0,
            "region": "North_America", "country": "US", "site_id": None, "rucio_write": False,
            "rucio_read": False, "lan_write_scheme": "root", "wan_write_scheme": "root",
        },
        grid["gone"]: {  # decommissioned: schemes and occupancy never fetched, defaults stay
            **common, "rse_name": grid["gone"], "decommissioned": True, "occupancy": 0.0, "region": "",
            "country": "XX", "site_id": None, "rucio_write": True, "rucio_read": True,
            "lan_write_scheme": "root", "wan_write_scheme": "root",
        },
        grid["tape"]: {
            **common, "rse_name": grid["tape"], "decommissioned": True, "occupancy": 0.0, "region": "",
            "country": "", "site_id": None, "rucio_write": True, "rucio_read": True,
            "lan_write_scheme": "root", "wan_write_scheme": "root",
        },
    }


def without_ids(rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {k: {c: v for c, v in r.items() if c != "rse_id" or k == "MONTECARLO"} for k, r in rows.items()}


def test_rses_are_stored_with_upstream_rules_and_one_limits_call(counted: dict[str, Any]) -> None:
    grid = counted
    before = dt.datetime.now(dt.timezone.utc)
    report = update_storages(RucioAdapter(), rse_expression=grid["expr"])

    assert report.errors == []
    rows = stored()
    assert without_ids(rows) == expected_rows(grid)
    # MONTECARLO took rse_id 1 explicitly; the sequence still hands out fresh ids after it
    assert sorted(r["rse_id"] for r in rows.values()) == [1, 2, 3, 4, 5]
    times = seen_times()
    assert times["MONTECARLO"] is None
    assert all(t is not None and t >= before for n, t in times.items() if n != "MONTECARLO")
    # per-RSE calls for the four RSEs, protocols/usage only for the two in service, limits once
    assert calls() == {
        "list_rses": 1, "get_rse": 4, "list_rse_attributes": 4, "get_protocols": 2, "get_rse_usage": 2,
        "get_local_account_limits": 1,
    }
    assert report.counts["inserted"] == 4 and report.counts["montecarlo_inserted"] == 1
    assert {r["rse_name"]: r["site"] for r in report.rows}[grid["disk"]] == grid["site"]
    assert {r["rse_name"]: r["occupancy"] for r in report.rows}[grid["disk"]] == 0.25
    assert {r["rse_name"]: r["site"] for r in report.rows}[grid["odd"]].endswith("(unknown site)")


def test_without_expression_every_rse_comes_from_one_listing(counted: dict[str, Any], client: Client) -> None:
    update_storages(RucioAdapter(), rse_expression=counted["expr"])
    by_expression = stored()
    LEDGER.drain()

    report = update_storages(RucioAdapter())

    everything = {r["rse"] for r in client.list_rses()}
    rows = stored()
    assert set(rows) == everything | {"MONTECARLO"}
    assert {n: rows[n] for n in by_expression} == by_expression
    # the listing already describes each RSE: no get_rse at all
    assert calls()["list_rses"] == 1 and "get_rse" not in calls()
    assert calls()["list_rse_attributes"] == len(everything) and calls()["get_local_account_limits"] == 1
    assert report.counts["rses_seen"] == len(everything)


def test_second_run_changes_nothing_and_keeps_admin_choices(grid: dict[str, Any]) -> None:
    update_storages(RucioAdapter(), rse_expression=grid["expr"])
    with transaction() as s:  # an admin enables the disk; a decommissioned RSE keeps an old value
        s.execute(update(Storage).where(Storage.rse_name == grid["disk"]).values(justin_write=True))
        s.execute(update(Storage).where(Storage.rse_name == grid["gone"]).values(occupancy=0.7))
    first, first_times = stored(), seen_times()

    report = update_storages(RucioAdapter(), rse_expression=grid["expr"])

    assert report.errors == []
    assert stored() == first
    assert first[grid["disk"]]["justin_write"] is True and first[grid["gone"]]["occupancy"] == 0.7
    later = seen_times()
    for name in (grid["disk"], grid["odd"], grid["gone"], grid["tape"]):
        was, now = first_times[name], later[name]
        assert was is not None and now is not None and now > was
    assert report.counts["updated"] == 4 and report.counts["inserted"] == 0
    assert "montecarlo_inserted" not in report.counts


def test_rse_changes_in_rucio_are_followed_and_vanished_rses_kept(counted: dict[str, Any], client: Client) -> None:
    grid = counted
    update_storages(RucioAdapter(), rse_expression=grid["expr"])
    client.add_rse_attribute(grid["disk"], "decommissioned", True)
    client.delete_rse_attribute(grid["odd"], "justin_test")  # no longer matches the expression

    update_storages(RucioAdapter(), rse_expression=grid["expr"])

    rows = stored()
    assert rows[grid["disk"]]["decommissioned"] is True
    assert rows[grid["disk"]]["occupancy"] == 0.25  # left as measured while in service
    assert grid["odd"] in rows  # not seen this time, never deleted


class FailingRucio(RucioAdapter):
    """The real adapter, except that chosen per-RSE calls fail as a broken server would."""

    def __init__(self, fail: dict[str, str]) -> None:
        super().__init__()
        self.fail = fail  # operation -> RSE name

    def _maybe_fail(self, operation: str, rse: str) -> None:
        if self.fail.get(operation) == rse:
            raise ExternalCallError("rucio", operation, 3, RuntimeError("injected server failure"))

    def list_rse_attributes(self, rse: str) -> dict[str, Any]:
        self._maybe_fail("list_rse_attributes", rse)
        return super().list_rse_attributes(rse)

    def get_protocols(self, rse: str) -> list[dict[str, Any]]:
        self._maybe_fail("get_protocols", rse)
        return super().get_protocols(rse)


def test_one_failing_rse_is_skipped_and_failed_protocols_keep_schemes(grid: dict[str, Any]) -> None:
    update_storages(RucioAdapter(), rse_expression=grid["expr"])
    first = stored()

    report = update_storages(
        FailingRucio({"list_rse_attributes": grid["odd"], "get_protocols": grid["disk"]}),
        rse_expression=grid["expr"],
    )

    assert len(report.errors) == 2
    assert any(grid["odd"] in e and "list_rse_attributes" in e and "skipped" in e for e in report.errors)
    assert any(grid["disk"] in e and "write schemes left as stored" in e for e in report.errors)
    assert stored() == first  # disk keeps https/davs rather than falling back to root
    assert report.counts["rses_seen"] == 3


def test_rse_id_1_held_by_another_storage_is_reported_and_the_rest_stored(grid: dict[str, Any]) -> None:
    with transaction() as s:
        s.execute(insert(Storage).values(rse_name="EARLY_BIRD"))  # takes rse_id 1 from the sequence

    report = update_storages(RucioAdapter(), rse_expression=grid["expr"])

    assert report.errors == ["MONTECARLO cannot be rse_id 1: rse_id 1 is EARLY_BIRD; left as it is"]
    rows = stored()
    assert "MONTECARLO" not in rows and rows["EARLY_BIRD"]["rse_id"] == 1
    assert {grid["disk"], grid["odd"], grid["gone"], grid["tape"]} <= set(rows)


def test_unmatched_expression_is_an_error_not_a_crash(db: Engine, rucio_server: RucioServer) -> None:
    report = update_storages(RucioAdapter(), rse_expression=f"justin_test={unique('none')}")

    assert len(report.errors) == 1 and "listing RSEs failed" in report.errors[0]
    assert without_ids(stored()) == {"MONTECARLO": MONTECARLO}
