"""updateStoragesQuotas (reference §2.9) against the real Rucio server and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from rucio.client import Client
from sqlalchemy import Engine, insert, select

from justin_flows.adapters.rucio import RucioAdapter
from justin_flows.collector.storages_quotas import update_storages_quotas
from justin_flows.db.engine import transaction
from justin_flows.db.models import NamedQuota, Storage, StorageQuota
from justin_flows.domain.storages import BIGINT_MAX
from justin_flows.ledger import LEDGER
from justin_flows.testing.rucio_server import RucioServer
from tests.rucio_seed import add_rse, add_scope, calls, unique


def stored() -> dict[tuple[str, str], tuple[int, int]]:
    with transaction() as s:
        rows = s.execute(
            select(NamedQuota.quota_name, Storage.rse_name, StorageQuota.bytes, StorageQuota.bytes_limit)
            .join(NamedQuota, NamedQuota.quota_id == StorageQuota.quota_id)
            .join(Storage, Storage.rse_id == StorageQuota.rse_id)
        ).tuples().all()
    return {(q, r): (b, lim) for q, r, b, lim in rows}


@pytest.fixture
def world(db: Engine, rucio_server: RucioServer, tmp_path: Path) -> dict[str, Any]:
    """Account ``acct`` with a 1234-byte rule and a limit of 10^6 on ``known``;
    root unlimited there; a second RSE Rucio knows but the database does not."""
    client = Client()
    acct = unique("q")
    client.add_account(acct, "USER", f"{acct}@example.org")
    known = add_rse(client, unique("QK_").upper(), tmp_path, protocols=[("file", 1, 1)],
                    limits={acct: 10**6, "root": -1})
    stranger = add_rse(client, unique("QS_").upper(), tmp_path, protocols=[("file", 1, 1)], limits={acct: 5})
    scope = unique("s")
    add_scope(client, "root", scope)
    client.add_replicas(known, [{"scope": scope, "name": "f", "bytes": 1234, "adler32": "0cc737eb"}])
    client.add_replication_rule([{"scope": scope, "name": "f"}], 1, known, account=acct)
    old = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=25)
    recent = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=23)
    with transaction() as s:
        rse_id = {n: s.execute(insert(Storage).values(rse_name=n).returning(Storage.rse_id)).scalar_one()
                  for n in (known, "OLD_RSE", "RECENT_RSE", "UNSET_RSE")}
        quota_id = {n: s.execute(insert(NamedQuota).values(quota_name=n, for_justin=j)
                                 .returning(NamedQuota.quota_id)).scalar_one()
                    for n, j in (("usertests", True), ("root", True), (acct, True), ("notjustin", False))}
        for rse, seen in (("OLD_RSE", old), ("RECENT_RSE", recent), ("UNSET_RSE", None)):
            s.execute(insert(StorageQuota).values(quota_id=quota_id[acct], rse_id=rse_id[rse], bytes=1,
                                                  bytes_limit=2, last_seen_time=seen))
    LEDGER.drain()
    return {"acct": acct, "known": known, "stranger": stranger}


@pytest.fixture
def counted(world: dict[str, Any], rucio_server: RucioServer) -> dict[str, Any]:
    """The world after the abacus daemon counted account usage (until then Rucio reports 0)."""
    rucio_server.run_daemon_once("rucio-abacus-account")
    return world


def test_usage_and_limits_are_stored_per_quota_and_stale_rows_expire(counted: dict[str, Any]) -> None:
    world = counted
    acct, known = world["acct"], world["known"]
    report = update_storages_quotas(RucioAdapter())

    assert report.errors == []
    assert stored() == {
        (acct, known): (1234, 10**6),
        ("root", known): (0, BIGINT_MAX),  # unlimited (inf) fits a signed BIGINT
        ("usertests", known): (0, BIGINT_MAX),  # usertests is charged to the agents' account
        (acct, "RECENT_RSE"): (1, 2),  # not seen this time, but seen within 24 h
    }
    assert report.counts["expired_deleted"] == 2  # 25 h old, and never seen
    # root once for both usertests and root; notjustin never asked
    assert calls() == {"get_local_account_usage": 2}
    assert {(r["quota_name"], r["rse_name"]) for r in report.rows} == {
        (acct, known), ("root", known), ("usertests", known),
    }


def test_second_run_changes_nothing_but_the_seen_time(world: dict[str, Any]) -> None:
    update_storages_quotas(RucioAdapter())
    first = stored()
    with transaction() as s:
        seen_first = max(t for t in s.scalars(select(StorageQuota.last_seen_time)) if t is not None)

    report = update_storages_quotas(RucioAdapter())

    assert report.errors == [] and stored() == first
    with transaction() as s:
        seen_again = max(t for t in s.scalars(select(StorageQuota.last_seen_time)) if t is not None)
    assert seen_again > seen_first and report.counts["expired_deleted"] == 0


def test_an_unknown_account_is_reported_and_the_others_stored(world: dict[str, Any]) -> None:
    with transaction() as s:
        s.execute(insert(NamedQuota).values(quota_name=unique("ghost"), for_justin=True))

    report = update_storages_quotas(RucioAdapter())

    assert len(report.errors) == 1 and "ghost" in report.errors[0]
    assert (world["acct"], world["known"]) in stored()
