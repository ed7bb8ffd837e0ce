"""updateNamedQuotas (§2.7) and updateScopes (§2.8) against the real Rucio server and PostgreSQL.

The Rucio server is shared by the whole session, so it holds accounts of other tests too;
each test uses its own production DN so only its own accounts can be for_justin.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from rucio.client import Client
from sqlalchemy import Engine, insert, select

from justin_flows.adapters.calls import ExternalCallError
from justin_flows.adapters.rucio import RucioAdapter
from justin_flows.collector.named_quotas import update_named_quotas
from justin_flows.collector.scopes import update_scopes
from justin_flows.db.engine import transaction
from justin_flows.db.models import CondorGroup, NamedQuota, PrincipalName, Scope, User, WlcgGroup
from justin_flows.ledger import LEDGER
from justin_flows.testing.rucio_server import RucioServer
from tests.conftest import reset_caches
from tests.rucio_seed import add_scope, calls, unique

QUOTA_COLUMNS = ("quota_name", "wlcg_group_id", "condor_group_id", "user_id", "processing_enabled", "for_justin")


@pytest.fixture
def production_dn(rucio_server: RucioServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    dn = f"/DC=org/DC=example/CN=justin-production-{unique('')}"
    monkeypatch.setenv("JUSTIN_RUCIO__PRODUCTION_DN", dn)
    reset_caches()
    yield dn
    reset_caches()


@pytest.fixture
def client(rucio_server: RucioServer) -> Client:
    return Client()


def quotas() -> dict[str, dict[str, Any]]:
    with transaction() as s:
        return {q.quota_name: {c: getattr(q, c) for c in QUOTA_COLUMNS} for q in s.scalars(select(NamedQuota))}


def scopes() -> dict[str, tuple[int | None, int | None]]:
    with transaction() as s:
        return {r.scope_name: (r.quota_id, r.condor_group_id) for r in s.scalars(select(Scope))}


@pytest.fixture
def world(db: Engine, client: Client, production_dn: str) -> dict[str, Any]:
    """Groups, one justIN user, and three fresh Rucio accounts:

    * ``prod``: holds the production DN as an X.509 identity, and is a justIN user's account;
    * ``fake``: holds a *userpass* identity whose name is the DN (not a certificate);
    * ``plain``: no identity at all.
    """
    tag = unique("")[:8]
    prod, fake, plain = f"jp{tag}_fnal_gov", f"jf{tag}", f"jn{tag}"
    for account in (prod, fake, plain):
        client.add_account(account, "USER", f"{account}@example.org")
    client.add_identity(prod, production_dn, "X509", f"{prod}@example.org")
    client.add_identity(fake, production_dn, "USERPASS", f"{fake}@example.org", password="not-a-cert-1234")
    with transaction() as s:
        group_dune = s.execute(insert(CondorGroup).values(condor_group_name="group_dune")
                               .returning(CondorGroup.condor_group_id)).scalar_one()
        mcsim = s.execute(insert(CondorGroup).values(condor_group_name="group_dune.prod.mcsim")
                          .returning(CondorGroup.condor_group_id)).scalar_one()
        dune = s.execute(insert(WlcgGroup).values(wlcg_group_name="/dune")
                         .returning(WlcgGroup.wlcg_group_id)).scalar_one()
        user_id = s.execute(insert(User).values(processing_enabled=True).returning(User.user_id)).scalar_one()
        s.execute(insert(PrincipalName).values(principal_name=f"jp{tag}@fnal.gov", user_id=user_id))
    LEDGER.drain()
    return {"prod": prod, "fake": fake, "plain": plain, "group_dune": group_dune, "mcsim": mcsim,
            "dune": dune, "user_id": user_id}


def expected_quotas(world: dict[str, Any]) -> dict[str, dict[str, Any]]:
    g = world["group_dune"]
    return {
        "usertests": {"quota_name": "usertests", "wlcg_group_id": world["dune"], "condor_group_id": g,
                      "user_id": None, "processing_enabled": True, "for_justin": True},
        world["prod"]: {"quota_name": world["prod"], "wlcg_group_id": None, "condor_group_id": g,
                        "user_id": world["user_id"], "processing_enabled": True, "for_justin": True},
        world["fake"]: {"quota_name": world["fake"], "wlcg_group_id": None, "condor_group_id": g,
                        "user_id": None, "processing_enabled": True, "for_justin": False},
        world["plain"]: {"quota_name": world["plain"], "wlcg_group_id": None, "condor_group_id": g,
                         "user_id": None, "processing_enabled": True, "for_justin": False},
    }


# ------------------------------------------------------------------------------- named quotas


def test_every_account_gets_a_quota_and_only_a_production_certificate_makes_it_for_justin(
    world: dict[str, Any], client: Client
) -> None:
    report = update_named_quotas(RucioAdapter())

    assert report.errors == []
    rows = quotas()
    ours = {k: v for k, v in rows.items() if k in expected_quotas(world)}
    assert ours == expected_quotas(world)
    all_accounts = {a["account"] for a in client.list_accounts()}
    assert set(rows) == all_accounts | {"usertests"}  # every active account, others' tests' too
    assert rows["root"]["for_justin"] is False
    # two listings, then identities only for the two accounts holding something named like the DN,
    # however many accounts the server has
    assert len(all_accounts) > 3
    assert calls() == {"list_accounts": 2, "list_identities": 2}
    assert report.counts["inserted"] == len(all_accounts) and report.counts["for_justin"] == 1


def test_second_run_changes_nothing(world: dict[str, Any]) -> None:
    update_named_quotas(RucioAdapter())
    first = quotas()

    report = update_named_quotas(RucioAdapter())

    assert report.errors == [] and quotas() == first
    assert report.counts["inserted"] == 0


def test_known_quotas_follow_rucio_and_their_user(world: dict[str, Any]) -> None:
    with transaction() as s:  # stale rows: prod created before its user existed, plain once for justIN
        s.execute(insert(NamedQuota).values(quota_name=world["prod"], wlcg_group_id=world["dune"],
                                            condor_group_id=world["mcsim"], for_justin=False))
        s.execute(insert(NamedQuota).values(quota_name=world["plain"], wlcg_group_id=world["dune"],
                                            condor_group_id=world["mcsim"], user_id=world["user_id"],
                                            for_justin=True, processing_enabled=False))

    update_named_quotas(RucioAdapter())

    rows = quotas()
    assert rows[world["prod"]] == {**expected_quotas(world)[world["prod"]], "condor_group_id": world["mcsim"]}
    # no user matches: user cleared; for_justin recomputed; WLCG group and admin's flags kept
    assert rows[world["plain"]] == {
        "quota_name": world["plain"], "wlcg_group_id": world["dune"], "condor_group_id": world["mcsim"],
        "user_id": None, "processing_enabled": False, "for_justin": False,
    }


class IdentitiesFailFor(RucioAdapter):
    """The real adapter, except that list_identities fails for one account."""

    def __init__(self, account: str) -> None:
        super().__init__()
        self.account = account

    def list_identities(self, account: str) -> list[dict[str, Any]]:
        if account == self.account:
            raise ExternalCallError("rucio", "list_identities", 3, RuntimeError("injected server failure"))
        return super().list_identities(account)


def test_failing_identities_skip_only_that_account(world: dict[str, Any]) -> None:
    with transaction() as s:
        s.execute(insert(NamedQuota).values(quota_name=world["fake"], for_justin=True))

    report = update_named_quotas(IdentitiesFailFor(world["fake"]))

    assert len(report.errors) == 1 and world["fake"] in report.errors[0]
    rows = quotas()
    assert rows[world["fake"]]["for_justin"] is True  # left as it was, not guessed
    assert rows[world["prod"]] == expected_quotas(world)[world["prod"]]
    assert rows[world["plain"]] == expected_quotas(world)[world["plain"]]


def test_missing_groups_mean_no_rucio_call(db: Engine, rucio_server: RucioServer, production_dn: str) -> None:
    report = update_named_quotas(RucioAdapter())

    assert report.errors == ["no group_dune and no /dune group in the database yet; named quotas not updated"]
    assert quotas() == {} and calls() == {}


# ------------------------------------------------------------------------------- scopes


@pytest.fixture
def quota_ids(world: dict[str, Any], client: Client) -> dict[str, Any]:
    """Named quotas as updateNamedQuotas leaves them, plus scopes owned by the accounts."""
    update_named_quotas(RucioAdapter())
    tag = world["prod"][2:10]
    owned = {"one": f"p1{tag}", "two": f"p2{tag}", "other": f"x{tag}"}
    add_scope(client, world["prod"], owned["one"])
    add_scope(client, world["prod"], owned["two"])
    add_scope(client, world["plain"], owned["other"])  # plain is not for_justin: never asked
    with transaction() as s:
        ids = dict(s.execute(select(NamedQuota.quota_name, NamedQuota.quota_id)).tuples().all())
    LEDGER.drain()
    return {**owned, "ids": ids}


def test_scopes_of_for_justin_quotas_are_stored_with_their_quota(
    world: dict[str, Any], quota_ids: dict[str, Any]
) -> None:
    ids, g = quota_ids["ids"], world["group_dune"]
    with transaction() as s:  # "two" once belonged elsewhere and has an admin-set group
        s.execute(insert(Scope).values(scope_name=quota_ids["two"], quota_id=ids[world["plain"]],
                                       condor_group_id=world["mcsim"]))
        s.execute(insert(Scope).values(scope_name="leftover", quota_id=ids[world["plain"]]))

    report = update_scopes(RucioAdapter())

    assert report.errors == []
    assert scopes() == {
        "usertests": (ids["usertests"], g),
        quota_ids["one"]: (ids[world["prod"]], g),
        quota_ids["two"]: (ids[world["prod"]], world["mcsim"]),  # moved, group kept
        "leftover": (ids[world["plain"]], None),  # never deleted
    }
    assert calls() == {"list_scopes_for_account": 1}  # prod only: usertests needs no call
    assert {r["scope_name"]: r["state"] for r in report.rows} == {
        "usertests": "new", quota_ids["one"]: "new", quota_ids["two"]: "updated",
    }

    again = update_scopes(RucioAdapter())

    assert again.errors == [] and again.counts["unchanged"] == 3
    assert len(scopes()) == 4


def test_usertests_from_another_account_is_ignored(
    world: dict[str, Any], quota_ids: dict[str, Any], client: Client
) -> None:
    add_scope(client, world["prod"], "usertests")  # the shared server may already have it
    owns_usertests = "usertests" in client.list_scopes_for_account(world["prod"])

    report = update_scopes(RucioAdapter())

    assert report.errors == []  # not even reported as a second owner: it is simply not prod's to give
    assert scopes()["usertests"] == (quota_ids["ids"]["usertests"], world["group_dune"])
    assert owns_usertests or "usertests" in client.list_scopes()


def test_a_failing_account_is_reported_and_the_others_still_stored(
    world: dict[str, Any], quota_ids: dict[str, Any]
) -> None:
    ids = quota_ids["ids"]
    with transaction() as s:  # a for_justin quota whose account Rucio does not know
        s.execute(insert(NamedQuota).values(quota_name=unique("ghost"), for_justin=True))
        s.execute(insert(Scope).values(scope_name=quota_ids["one"], quota_id=ids[world["plain"]]))

    report = update_scopes(RucioAdapter())

    assert len(report.errors) == 1 and "ghost" in report.errors[0] and "AccountNotFound" in report.errors[0]
    assert scopes()[quota_ids["one"]] == (ids[world["prod"]], world["group_dune"])
