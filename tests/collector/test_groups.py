"""updateGroupsHTCondor (reference §2.3) with the condor_userprio stand-in, and updateGroupsWLCG
(reference §2.4) from settings, both against PostgreSQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select

from justin_flows.adapters.calls import ExternalCallError
from justin_flows.adapters.htcondor import HTCondorAdapter
from justin_flows.collector.groups import update_groups_htcondor, update_groups_wlcg
from justin_flows.db.engine import transaction
from justin_flows.db.models import CondorGroup, WlcgGroup
from justin_flows.testing.condor_standins import install_condor_standins, read_calls, set_behaviour, set_userprio_rows
from tests.conftest import reset_caches

COLLECTORS = ["coll0.pool.example", "coll1.pool.example"]


@dataclass
class Condor:
    bin_dir: Path
    state_dir: Path
    token_file: Path


@pytest.fixture
def condor(db: Engine, tmp_path: Path) -> Iterator[Condor]:
    """The condor_userprio stand-in, named in settings as production names /usr/bin/condor_userprio."""
    standins = Condor(tmp_path / "bin", tmp_path / "state", tmp_path / "bearer-token")
    install_condor_standins(standins.bin_dir, standins.state_dir)
    standins.token_file.write_text("token\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUSTIN_HTCONDOR__CONDOR_USERPRIO", str(standins.bin_dir / "condor_userprio"))
        mp.setenv("JUSTIN_HTCONDOR__COLLECTORS", " ".join(COLLECTORS))
        mp.setenv("JUSTIN_HTCONDOR__BEARER_TOKEN_FILE", str(standins.token_file))
        reset_caches()
        yield standins
    reset_caches()


def condor_groups() -> dict[str, tuple[float, float, dt.datetime | None]]:
    with transaction() as s:
        return {
            r.condor_group_name: (r.effective_quota, r.config_quota, r.last_seen_time)
            for r in s.scalars(select(CondorGroup))
        }


def quotas(rows: dict[str, tuple[float, float, Any]]) -> dict[str, tuple[float, float]]:
    return {name: (eff, conf) for name, (eff, conf, _) in rows.items()}


def add_group(name: str, eff: float, conf: float) -> None:
    seen = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
    with transaction() as s:
        s.execute(insert(CondorGroup).values(condor_group_name=name, effective_quota=eff, config_quota=conf,
                                             last_seen_time=seen))


DEFAULT_QUOTAS = {
    "group_dune": (10000.0, 10000.0),
    "group_dune.prod": (7000.0, 7000.0),
    "group_dune.users": (3000.0, 3000.0),
}


def test_dune_groups_are_stored_exactly_from_one_userprio_call(condor: Condor) -> None:
    before = dt.datetime.now(dt.timezone.utc)
    report = update_groups_htcondor(HTCondorAdapter())
    after = dt.datetime.now(dt.timezone.utc)

    rows = condor_groups()
    assert quotas(rows) == DEFAULT_QUOTAS  # "<none>" and the headings are not groups
    assert all(before <= seen <= after for *_, seen in rows.values())  # type: ignore[operator]
    assert report.errors == []
    assert dict(report.counts) == {"new": 3}
    assert report.rows == [
        {"condor_group_name": "group_dune", "effective_quota": 10000.0, "config_quota": 10000.0, "status": "new"},
        {"condor_group_name": "group_dune.prod", "effective_quota": 7000.0, "config_quota": 7000.0, "status": "new"},
        {"condor_group_name": "group_dune.users", "effective_quota": 3000.0, "config_quota": 3000.0, "status": "new"},
    ]
    calls = read_calls(condor.state_dir)
    assert [c["argv"] for c in calls] == [["-pool", COLLECTORS[0], "-quotas", "-allusers"]]
    assert calls[0]["env"]["BEARER_TOKEN_FILE"] == str(condor.token_file)
    assert calls[0]["env"]["bearer_token_file_exists"] is True


def test_quotas_follow_the_pool_and_nothing_is_deleted(condor: Condor) -> None:
    update_groups_htcondor(HTCondorAdapter())
    first = condor_groups()
    set_userprio_rows(condor.state_dir, [
        {"group": "group_dune", "effective_quota": 12000.0, "config_quota": 11000.0,
         "surplus": "ByQuota", "subtree_quota": 12000.0, "weighted": 10},
        {"group": "group_dune.prod", "effective_quota": 7000.0, "config_quota": 7000.0,
         "surplus": "ByQuota", "subtree_quota": 7000.0, "weighted": 10},
        {"group": "group_dune.prod.mc", "effective_quota": 1234.5, "config_quota": 0.25,
         "surplus": "Regroup", "subtree_quota": 1234.5, "weighted": 3},
    ])
    report = update_groups_htcondor(HTCondorAdapter())
    rows = condor_groups()
    assert quotas(rows) == {
        "group_dune": (12000.0, 11000.0), "group_dune.prod": (7000.0, 7000.0),
        "group_dune.prod.mc": (1234.5, 0.25), "group_dune.users": (3000.0, 3000.0),
    }
    assert rows["group_dune.users"][2] == first["group_dune.users"][2]  # not listed: kept, not touched
    assert dict(report.counts) == {"updated": 1, "unchanged": 1, "new": 1, "not_listed": 1}
    assert [(r["condor_group_name"], r["status"]) for r in report.rows] == [
        ("group_dune", "updated"), ("group_dune.prod", "unchanged"), ("group_dune.prod.mc", "new"),
        ("group_dune.users", "not listed (kept)"),
    ]


def test_failing_userprio_raises_clearly_and_leaves_the_groups(condor: Condor) -> None:
    add_group("group_dune", 1.0, 2.0)
    before = condor_groups()
    set_behaviour(condor.state_dir, {"condor_userprio": {
        "exit_code": 1, "stdout": "", "stderr": "ERROR: failed to connect to the collector\n",
    }})
    with pytest.raises(ExternalCallError) as err:
        update_groups_htcondor(HTCondorAdapter())
    assert str(err.value) == (
        f"htcondor.condor_userprio failed after 1 attempt(s): CommandFailed: {condor.bin_dir}/condor_userprio "
        "exited 1: ERROR: failed to connect to the collector"
    )
    assert condor_groups() == before
    assert len(read_calls(condor.state_dir)) == 1  # an answer is final: not retried


def test_hanging_userprio_times_out_and_is_retried(condor: Condor) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUSTIN_HTCONDOR__COMMAND_TIMEOUT_SECONDS", "0.5")
        mp.setenv("JUSTIN_RETRY__ATTEMPTS", "2")
        reset_caches()
        condor_adapter = HTCondorAdapter()
    reset_caches()
    set_behaviour(condor.state_dir, {"condor_userprio": {"sleep": 5}})
    start = dt.datetime.now()
    with pytest.raises(ExternalCallError, match=r"failed after 2 attempt\(s\): TimeoutExpired"):
        update_groups_htcondor(condor_adapter)
    assert (dt.datetime.now() - start).total_seconds() < 4
    assert len(read_calls(condor.state_dir)) == 2
    assert condor_groups() == {}


def test_garbage_line_is_reported_by_number_and_the_good_lines_stored(condor: Condor) -> None:
    """Upstream pasted the quota text into SQL unquoted; here it is a per-line error."""
    set_userprio_rows(condor.state_dir, [
        {"group": "group_dune", "effective_quota": 10.0, "config_quota": 20.0,
         "surplus": "ByQuota", "subtree_quota": 10.0, "weighted": 1},
        {"group": "group_dune.bad", "effective_quota": "1;DELETE", "config_quota": 5.0,
         "surplus": "ByQuota", "subtree_quota": 5.0, "weighted": 1},
        {"group": "group_dune.users", "effective_quota": 30.0, "config_quota": 40.0,
         "surplus": "ByQuota", "subtree_quota": 30.0, "weighted": 1},
    ])
    report = update_groups_htcondor(HTCondorAdapter())
    assert quotas(condor_groups()) == {"group_dune": (10.0, 20.0), "group_dune.users": (30.0, 40.0)}
    assert len(report.errors) == 1
    assert report.errors[0].startswith("condor_userprio line 6 'group_dune.bad")
    assert report.errors[0].endswith("effective quota '1;DELETE' is not a number")
    assert dict(report.counts) == {"new": 2, "bad_lines": 1}


def test_output_without_dune_groups_is_reported_and_changes_nothing(condor: Condor) -> None:
    add_group("group_dune", 1.0, 2.0)
    before = condor_groups()
    set_behaviour(condor.state_dir, {"condor_userprio": {"stdout": "Can't connect to the negotiator\n"}})
    report = update_groups_htcondor(HTCondorAdapter())
    assert report.errors == [f"condor_userprio -pool {COLLECTORS[0]} listed no group_dune groups"]
    assert condor_groups() == before


def test_twice_gives_the_same_rows(condor: Condor) -> None:
    update_groups_htcondor(HTCondorAdapter())
    with transaction() as s:
        first_ids = dict(s.execute(select(CondorGroup.condor_group_name, CondorGroup.condor_group_id)).all())
    report = update_groups_htcondor(HTCondorAdapter())
    with transaction() as s:
        second_ids = dict(s.execute(select(CondorGroup.condor_group_name, CondorGroup.condor_group_id)).all())
    assert quotas(condor_groups()) == DEFAULT_QUOTAS
    assert second_ids == first_ids  # updated in place: named quotas keep pointing at the same ids
    assert dict(report.counts) == {"unchanged": 3}


# -- updateGroupsWLCG ------------------------------------------------------------------------


@pytest.fixture
def wlcg_settings(db: Engine) -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUSTIN_USERS_WLCG_GROUPS", "/dune /dune/production /DUNE/LowEnergy /dune")
        reset_caches()
        yield mp
    reset_caches()


def wlcg_groups() -> dict[str, int]:
    with transaction() as s:
        return dict(s.execute(select(WlcgGroup.wlcg_group_name, WlcgGroup.wlcg_group_id)).all())


def test_configured_wlcg_groups_are_inserted_once(wlcg_settings: pytest.MonkeyPatch) -> None:
    with transaction() as s:
        s.execute(insert(WlcgGroup).values(wlcg_group_name="/dune/retired"))
    first = update_groups_wlcg()
    after_first = wlcg_groups()
    assert set(after_first) == {"/dune", "/dune/production", "/dune/lowenergy", "/dune/retired"}
    assert first.rows == [
        {"wlcg_group_name": "/dune", "status": "inserted"},
        {"wlcg_group_name": "/dune/production", "status": "inserted"},
        {"wlcg_group_name": "/dune/lowenergy", "status": "inserted"},
        {"wlcg_group_name": "/dune/retired", "status": "not configured (kept)"},
    ]
    assert dict(first.counts) == {"inserted": 3, "not_configured": 1}

    second = update_groups_wlcg()
    assert wlcg_groups() == after_first  # same rows, same ids
    assert dict(second.counts) == {"present": 3, "not_configured": 1}
    assert second.errors == []
