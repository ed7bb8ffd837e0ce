"""updateSites (reference §2.10) against PostgreSQL, reading gfactory checkouts served as local git repositories.

Each test copies a checkout into ``tmp_path``, commits it with GitPython and lets
``update_sites`` clone it over ``file://`` through the real git adapter: the same code path
as production, with no network.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from git import Repo
from sqlalchemy import Engine, insert, select, update

from justin_flows.adapters.git import GitAdapter
from justin_flows.collector.sites import GfactoryCloneError, update_sites
from justin_flows.db.engine import transaction
from justin_flows.db.models import Entry, Site
from justin_flows.domain.gfactory import MIB, parse_gfactory
from justin_flows.ledger import LEDGER
from justin_flows.testing.git_repo import commit_all, file_url, make_git_repo
from tests.conftest import reset_caches
from tests.shared_data import shared_path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "gfactory"
CHECKOUT = FIXTURES / "checkout"
MALFORMED = FIXTURES / "malformed"


# ---------------------------------------------------------------------------------------------- helpers


SITE_COLUMNS = ("jobsub_site_name", "wlcg_site_name", "country", "region", "only_production", "only_on_request",
                "enabled")
ENTRY_COLUMNS = ("gatekeeper", "max_processors", "max_rss_bytes", "max_wall_seconds", "entry_has_gpus", "file_name")


def sites_in_db() -> dict[str, tuple[Any, ...]]:
    with transaction() as s:
        rows = s.execute(select(Site.site_name, *(getattr(Site, c) for c in SITE_COLUMNS))).all()
    return {r[0]: tuple(r[1:]) for r in rows}


def entries_in_db() -> dict[str, tuple[Any, ...]]:
    """entry_name -> (site_name, gatekeeper, max_processors, max_rss_bytes, max_wall_seconds, entry_has_gpus, file_name)."""
    with transaction() as s:
        rows = s.execute(
            select(Entry.entry_name, Site.site_name, *(getattr(Entry, c) for c in ENTRY_COLUMNS)).join(
                Site, Entry.site_id == Site.site_id
            )
        ).all()
    return {r[0]: tuple(r[1:]) for r in rows}


def full_state() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every column of every site and entry row, ``last_osg_seen_time`` left out."""
    with transaction() as s:
        sites = [dict(r._mapping) for r in s.execute(select(Site.__table__).order_by(Site.site_id))]
        entries = [dict(r._mapping) for r in s.execute(select(Entry.__table__).order_by(Entry.entry_id))]
    for row in (*sites, *entries):
        row.pop("last_osg_seen_time")
    return sites, entries


def seen_times(model: type[Site] | type[Entry]) -> dict[str, dt.datetime | None]:
    name = model.site_name if model is Site else model.entry_name  # type: ignore[union-attr]
    with transaction() as s:
        return dict(s.execute(select(name, model.last_osg_seen_time)).tuples().all())


@pytest.fixture
def synthetic_repo(tmp_path: Path) -> Repo:
    return make_git_repo(CHECKOUT, tmp_path / "gfactory")


# ----------------------------------------------------------------------------- (a) the reference fixture


def test_reference_checkout_gives_the_rows_of_expected_json(db: Engine, tmp_path: Path) -> None:
    """The shared osg-gfactory slice, cloned over file://, stores exactly EXPECTED.json's 16 sites and 19 entries."""
    source = shared_path("fixtures", "osg-gfactory")
    expected = json.loads((source / "EXPECTED.json").read_text(encoding="utf-8"))
    repo = make_git_repo(source, tmp_path / "osg-gfactory", exclude=("README.md",))

    report = update_sites(GitAdapter(), repo_url=file_url(repo), extra_entries={})

    assert report.errors == []
    assert report.commit == repo.head.commit.hexsha
    assert (report.counts["sites_added"], report.counts["entries_added"]) == (16, 19)
    assert (report.counts["sites_changed"], report.counts["entries_changed"]) == (0, 0)
    assert report.counts["entry_records"] == expected["counts"]["entry_records"] == 25

    sites = sites_in_db()
    assert sorted(sites) == expected["site_names"]
    assert sites == {
        name: (s["jobsub_site_name"], s["wlcg_site_name"], s["country"], s["region"], s["only_production"],
               s["only_on_request"], False)  # every new site starts disabled
        for name, s in expected["sites"].items()
    }
    entries = entries_in_db()
    assert entries == {
        name: (e["site_name"], e["gatekeeper"], e["max_processors"], e["max_rss_bytes"], e["max_wall_seconds"],
               e["entry_has_gpus"], e["file_name"])
        for name, e in expected["entries"].items()
    }
    per_site: dict[str, list[str]] = {}
    for name, values in entries.items():
        per_site.setdefault(values[0], []).append(name)
    assert {k: sorted(v) for k, v in per_site.items()} == {k: s["entries"] for k, s in expected["sites"].items()}
    # the file order decides CMSHTPC_T2_CH_CERN_ce505: 20-local-itb.xml is read last
    assert entries["CMSHTPC_T2_CH_CERN_ce505"][1:5] == ("ce505.cern.ch", 8, 21223178240, 171000)
    assert {r["kind"] for r in report.rows} == {"site", "entry"} and len(report.rows) == 16 + 19


# ---------------------------------------------------------------------------- (b) the synthetic checkout

SYNTHETIC_SITES = {
    "UK_Testshire": ("Testshire", "TESTSHIRE-GRID", "UK", "Europe", False, False, False),
    "US_Sampleton": ("Sampleton", "SAMPLETON-GPU", "US", "North_America", False, False, False),
    "NL_Polder": ("Polder", "POLDER-FIRST", "NL", "Europe", False, False, False),
}
SYNTHETIC_ENTRIES = {
    "TEST_UK_Testshire_ce01": ("UK_Testshire", "ce01.testshire.example", 8, 16000 * MIB, 172800, False, "10-alpha.xml"),
    "TEST_UK_Testshire_ce02_defaults": ("UK_Testshire", "ce02.testshire.example", 1, 2000 * MIB, 86400, False,
                                        "10-alpha.xml"),
    "TEST_UK_Testshire_auto": ("UK_Testshire", "ce03.testshire.example", 1, 2000 * MIB, 3600, False, "10-alpha.xml"),
    "TEST_US_Sampleton_gpu": ("US_Sampleton", "gpu.sampleton.example", 4, 32000 * MIB, 86000, True, "10-alpha.xml"),
    "TEST_NL_Polder_arc": ("NL_Polder", "arc.polder.example:8443", 1, 4000 * MIB, 86400, False, "10-alpha.xml"),
    "TEST_NL_Polder_dup": ("NL_Polder", "dup.polder.example", 4, 8000 * MIB, 3600, False, "20-beta.xml"),
    "TEST_US_Sampleton_twice": ("US_Sampleton", "ce3.sampleton.example", 1, 2500 * MIB, 86400, False,
                                "OSG_autoconf/20-delta.auto.yml"),
    "TEST_NL_Polder_yaml_ok": ("NL_Polder", "ce.polder.example", 2, 4000 * MIB, 129600, False,
                               "OSG_autoconf/10-gamma.auto.yml"),
    "TEST_NL_Polder_yaml_disabled": ("NL_Polder", "ce.polder.example", 1, 4000 * MIB, 129600, False,
                                     "OSG_autoconf/10-gamma.auto.yml"),
    "TEST_US_Sampleton_yaml_gpu": ("US_Sampleton", "ce3.sampleton.example", 6, 12000 * MIB, 7200, True,
                                   "OSG_autoconf/20-delta.auto.yml"),
}


def test_synthetic_checkout_exact_rows(db: Engine, synthetic_repo: Repo) -> None:
    before = dt.datetime.now(dt.timezone.utc)
    report = update_sites(GitAdapter(), repo_url=file_url(synthetic_repo), extra_entries={})
    after = dt.datetime.now(dt.timezone.utc)

    assert report.errors == []
    assert report.commit == synthetic_repo.head.commit.hexsha
    assert sites_in_db() == SYNTHETIC_SITES
    assert entries_in_db() == SYNTHETIC_ENTRIES
    # raw_config is stored byte for byte as parsed (bound parameters: no escaping of quotes or backslashes)
    parsed = parse_gfactory(CHECKOUT)
    with transaction() as s:
        raw = dict(s.execute(select(Entry.entry_name, Entry.raw_config)).tuples().all())
        inner = set(s.execute(select(Site.always_inner_apptainer)).scalars()) | set(
            s.execute(select(Entry.always_inner_apptainer)).scalars()
        )
    assert raw == {name: e.raw_config for name, e in parsed.entries.items()}
    assert 'value="&quot;long&quot;"' in raw["TEST_UK_Testshire_ce01"]
    assert inner == {1}  # schema default "unknown", never set by updateSites
    for when in (*seen_times(Site).values(), *seen_times(Entry).values()):
        assert when is not None and before <= when <= after

    want = {
        "sites_added": 3, "sites_changed": 0, "sites_unchanged": 0,
        "entries_added": 10, "entries_changed": 0, "entries_unchanged": 0,
        "files_read": 5, "files_unusable": 0, "entry_records": 12,
    }
    assert {k: report.counts[k] for k in want} == want
    added = {(r["kind"], r["name"], r["site"], r["change"]) for r in report.rows}
    assert added == {("site", n, n, "added") for n in SYNTHETIC_SITES} | {
        ("entry", n, v[0], "added") for n, v in SYNTHETIC_ENTRIES.items()
    }
    gpu = next(r for r in report.rows if r["name"] == "TEST_US_Sampleton_gpu")
    assert gpu["details"] == "gpu.sampleton.example, 4 processor(s), 32000 MiB, 86000 s, GPUs; from 10-alpha.xml"
    assert "disabled until an admin enables it" in next(r for r in report.rows if r["name"] == "NL_Polder")["details"]
    assert commit_prefix(report.summary()) == synthetic_repo.head.commit.hexsha[:12]


def commit_prefix(summary: str) -> str:
    return summary.rsplit(" at ", 1)[1].rstrip("]")


def test_malformed_files_are_named_in_errors_while_good_files_load(db: Engine, tmp_path: Path) -> None:
    repo = make_git_repo(MALFORMED, tmp_path / "malformed")
    report = update_sites(GitAdapter(), repo_url=file_url(repo), extra_entries={})

    assert sites_in_db() == {
        "DE_Badburg": ("Badburg", "", "DE", "Europe", False, False, False),
        "DE_Goodburg": ("Goodburg", "", "DE", "Europe", False, False, False),
    }
    assert entries_in_db() == {
        "TEST_DE_Badburg_fine": ("DE_Badburg", "fine.badburg.example", 2, 2000 * MIB, 86400, False,
                                 "13-bad-values.xml"),
        "TEST_DE_Goodburg_ce": ("DE_Goodburg", "ce.goodburg.example", 1, 2000 * MIB, 86400, False, "20-good.xml"),
        "TEST_DE_Badburg_yaml_fine": ("DE_Badburg", "ce.badburg.example", 1, 2500 * MIB, 86400, False,
                                      "OSG_autoconf/11-null-blocks.yml"),
        "TEST_DE_Badburg_yaml_auto": ("DE_Badburg", "ce2.badburg.example", 3, 2500 * MIB, 86400, False,
                                      "OSG_autoconf/12-bad-values.yml"),
        "TEST_DE_Badburg_yaml_nullattrs": ("DE_Badburg", "ce2.badburg.example", 3, 2500 * MIB, 86400, False,
                                           "OSG_autoconf/12-bad-values.yml"),
        "TEST_DE_Goodburg_yaml": ("DE_Goodburg", "ce2.goodburg.example", 1, 2500 * MIB, 86400, False,
                                  "OSG_autoconf/20-good.yml"),
    }
    unusable = ["10-bad-entity.xml", "11-truncated.xml", "12-empty.xml", "14-no-entries.xml",
                "OSG_autoconf/10-list.yml", "OSG_autoconf/13-empty.yml", "OSG_autoconf/14-syntax.yml",
                "OSG_autoconf/15-comments-only.yml"]
    named = [e.split(": ", 1)[0] for e in report.errors]
    assert sorted(set(named)) == sorted(
        [*unusable, "13-bad-values.xml", "OSG_autoconf/11-null-blocks.yml", "OSG_autoconf/12-bad-values.yml"]
    )
    assert "12-empty.xml: file is empty" in report.errors
    assert ("13-bad-values.xml: entry TEST_DE_Badburg_lots: GLIDEIN_CPUS='lots' is not a whole number; "
            "entry skipped") in report.errors
    assert (report.counts["files_read"], report.counts["files_unusable"]) == (13, 8)
    assert (report.counts["sites_added"], report.counts["entries_added"]) == (2, 6)


# -------------------------------------------------------------------------------- (c) extra entries

EXTRA = {
    "TEST_US_Bigiron_cpu": "site_name=US_Bigiron jobsub_site_name=Bigiron max_rss_bytes=4294967296 "
                           "max_wall_seconds=43200 max_processors=64 only_production=True",
    "TEST_US_Bigiron_gpu": "site_name=US_Bigiron jobsub_site_name=Bigiron max_rss_bytes=8589934592\n"
                           "max_wall_seconds=3600 max_processors=4 entry_has_gpus=true gatekeeper=gpu.bigiron.example",
    "TEST_US_Bigiron_broken": "site_name=US_Bigiron jobsub_site_name=Bigiron max_processors=lots",
}


@pytest.fixture
def extra_entries_in_settings() -> Iterator[None]:
    """``JUSTIN_SITES__EXTRA_ENTRIES`` set for one test; the settings cache is reset on both sides."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUSTIN_SITES__EXTRA_ENTRIES", json.dumps(EXTRA))
        reset_caches()
        yield
    reset_caches()


@pytest.mark.usefixtures("extra_entries_in_settings")
def test_extra_entries_come_from_the_settings(db: Engine, synthetic_repo: Repo) -> None:
    report = update_sites(GitAdapter(), repo_url=file_url(synthetic_repo))

    sites = sites_in_db()
    # wlcg_site_name defaults to site_name; the site flags come from the first extra entry of the site
    assert sites["US_Bigiron"] == ("Bigiron", "US_Bigiron", "US", "North_America", True, False, False)
    assert {k: v for k, v in sites.items() if k != "US_Bigiron"} == SYNTHETIC_SITES
    entries = entries_in_db()
    assert entries["TEST_US_Bigiron_cpu"] == ("US_Bigiron", "TEST_US_Bigiron_cpu", 64, 4294967296, 43200, False, "")
    assert entries["TEST_US_Bigiron_gpu"] == ("US_Bigiron", "gpu.bigiron.example", 4, 8589934592, 3600, True, "")
    assert "TEST_US_Bigiron_broken" not in entries
    assert len(entries) == len(SYNTHETIC_ENTRIES) + 2
    assert [e for e in report.errors if "TEST_US_Bigiron_broken" in e] == report.errors
    assert report.errors[0].startswith("[extra_entries] entry TEST_US_Bigiron_broken: ")
    assert report.counts["extra_entries"] == 2


@pytest.mark.usefixtures("extra_entries_in_settings")
def test_an_explicit_empty_extra_entries_overrides_the_settings(db: Engine, synthetic_repo: Repo) -> None:
    update_sites(GitAdapter(), repo_url=file_url(synthetic_repo), extra_entries={})
    assert "US_Bigiron" not in sites_in_db()


# ---------------------------------------------------------------------------------- (d) idempotence


def test_a_second_run_changes_nothing_and_reports_nothing_added_or_changed(db: Engine, synthetic_repo: Repo) -> None:
    first = update_sites(GitAdapter(), repo_url=file_url(synthetic_repo), extra_entries={})
    state = full_state()
    times = seen_times(Entry)

    second = update_sites(GitAdapter(), repo_url=file_url(synthetic_repo), extra_entries={})

    assert full_state() == state
    assert first.counts["entries_added"] == 10
    assert {k: second.counts[k] for k in ("sites_added", "sites_changed", "entries_added", "entries_changed")} == {
        "sites_added": 0, "sites_changed": 0, "entries_added": 0, "entries_changed": 0,
    }
    assert (second.counts["sites_unchanged"], second.counts["entries_unchanged"]) == (3, 10)
    assert second.rows == []
    assert all(new > times[name] for name, new in seen_times(Entry).items())  # seen again: the time moves on
    assert [(r.service, r.operation, r.outcome) for r in LEDGER.drain()] == [("git", "clone", "ok")] * 2


# ------------------------------------------------------------ (e) admins' choices and vanished rows


def test_admin_enabled_site_stays_enabled_and_vanished_entries_keep_their_rows(
    db: Engine, synthetic_repo: Repo
) -> None:
    update_sites(GitAdapter(), repo_url=file_url(synthetic_repo), extra_entries={})
    with transaction() as s:
        s.execute(update(Site).where(Site.site_name == "UK_Testshire").values(enabled=True, always_inner_apptainer=2))
    old_times = seen_times(Entry)

    root = Path(synthetic_repo.working_tree_dir or "")
    (root / "OSG_autoconf" / "10-gamma.auto.yml").unlink()  # TEST_NL_Polder_yaml_ok and _yaml_disabled leave
    delta = root / "OSG_autoconf" / "20-delta.auto.yml"
    delta.write_text(delta.read_text(encoding="utf-8").replace('value: "6"', 'value: "8"'), encoding="utf-8")
    sha = commit_all(synthetic_repo, "drop gamma, more processors for yaml_gpu")

    report = update_sites(GitAdapter(), repo_url=file_url(synthetic_repo), extra_entries={})

    assert report.commit == sha
    with transaction() as s:
        testshire = s.execute(
            select(Site.enabled, Site.always_inner_apptainer).where(Site.site_name == "UK_Testshire")
        ).one()
    assert tuple(testshire) == (True, 2)
    assert sites_in_db()["US_Sampleton"][-1] is False
    entries = entries_in_db()
    assert entries["TEST_US_Sampleton_yaml_gpu"][2] == 8
    # the vanished entries are still there, unchanged, with the time they were last seen
    for name in ("TEST_NL_Polder_yaml_ok", "TEST_NL_Polder_yaml_disabled"):
        assert entries[name] == SYNTHETIC_ENTRIES[name]
    new_times = seen_times(Entry)
    assert new_times["TEST_NL_Polder_yaml_ok"] == old_times["TEST_NL_Polder_yaml_ok"]
    assert new_times["TEST_NL_Polder_yaml_disabled"] == old_times["TEST_NL_Polder_yaml_disabled"]
    assert new_times["TEST_US_Sampleton_yaml_gpu"] > old_times["TEST_US_Sampleton_yaml_gpu"]

    assert (report.counts["entries_changed"], report.counts["entries_unchanged"], report.counts["entries_not_seen"]) \
        == (1, 7, 2)
    assert report.rows == [{
        "kind": "entry", "name": "TEST_US_Sampleton_yaml_gpu", "site": "US_Sampleton", "change": "changed",
        "details": "max_processors: 6 -> 8; raw_config",
    }]


def test_an_entry_that_moves_site_is_reported_with_both_site_names(db: Engine, synthetic_repo: Repo) -> None:
    update_sites(GitAdapter(), repo_url=file_url(synthetic_repo), extra_entries={})
    root = Path(synthetic_repo.working_tree_dir or "")
    beta = root / "20-beta.xml"
    beta.write_text(
        beta.read_text(encoding="utf-8").replace('value="NL_Polder"', 'value="UK_Testshire"'), encoding="utf-8"
    )
    commit_all(synthetic_repo, "move the dup entry")

    report = update_sites(GitAdapter(), repo_url=file_url(synthetic_repo), extra_entries={})

    assert entries_in_db()["TEST_NL_Polder_dup"][0] == "UK_Testshire"
    row = next(r for r in report.rows if r["name"] == "TEST_NL_Polder_dup")
    assert row["details"] == "site: 'NL_Polder' -> 'UK_Testshire'; raw_config"


# ------------------------------------------------------------------------------- (f) clone failures


def test_a_failed_clone_raises_naming_the_repository_and_leaves_the_database_untouched(
    db: Engine, synthetic_repo: Repo, tmp_path: Path
) -> None:
    update_sites(GitAdapter(), repo_url=file_url(synthetic_repo), extra_entries={})
    state = full_state()
    times = seen_times(Site)
    LEDGER.drain()
    missing = tmp_path / "no-such-repository"

    with pytest.raises(GfactoryCloneError) as caught:
        update_sites(GitAdapter(), repo_url=str(missing), extra_entries={})

    message = str(caught.value)
    assert str(missing) in message
    assert "does not exist" in message and "sites and entries left unchanged" in message
    assert full_state() == state and seen_times(Site) == times
    # not a transient error: one attempt, recorded in the ledger
    assert [(r.service, r.operation, r.attempt, r.outcome) for r in LEDGER.drain()] == [("git", "clone", 1, "error")]


def test_credentials_in_the_url_never_reach_the_error_or_the_ledger(db: Engine) -> None:
    """upstream had no clone errors at all (the exit code was ignored); ours must not leak the URL's userinfo."""
    secret_url = "https://alice:pa55word-42@127.0.0.1:9/osg-gfactory.git"  # port 9: connection refused at once

    with pytest.raises(GfactoryCloneError) as caught:
        update_sites(GitAdapter(), repo_url=secret_url, extra_entries={})

    texts = [str(caught.value), repr(caught.value), str(caught.value.__cause__)]
    texts += [r.error or "" for r in LEDGER.drain()]
    assert "https://***@127.0.0.1:9/osg-gfactory.git" in texts[0]
    assert all("pa55word" not in t and "alice" not in t for t in texts)
    assert len(texts) == 3 + 3  # connection refused is transient: three attempts
    assert sites_in_db() == {}


def test_an_empty_repository_checkout_writes_nothing_and_says_so(db: Engine, tmp_path: Path) -> None:
    """A clone with no DUNE entry at all (wrong repository or branch) is an error, never a silent empty list."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "README.md").write_text("not a gfactory\n", encoding="utf-8")
    repo = make_git_repo(tmp_path / "src", tmp_path / "repo")
    with transaction() as s:
        s.execute(insert(Site).values(site_name="UK_Kept", enabled=True))

    report = update_sites(GitAdapter(), repo_url=file_url(repo), extra_entries={})

    assert report.errors[-1].startswith("no DUNE entry found in file://")
    assert "OSG_autoconf/: directory is missing" in report.errors
    assert sites_in_db() == {"UK_Kept": ("", "", "", "", False, False, True)}


def test_the_branch_option_is_honoured(db: Engine, synthetic_repo: Repo) -> None:
    synthetic_repo.git.checkout("-q", "-b", "trimmed")
    root = Path(synthetic_repo.working_tree_dir or "")
    (root / "10-alpha.xml").unlink()
    sha = commit_all(synthetic_repo, "trimmed")
    synthetic_repo.git.checkout("-q", "-")  # the default branch keeps 10-alpha.xml

    report = update_sites(GitAdapter(), repo_url=file_url(synthetic_repo), branch="trimmed", extra_entries={})

    assert report.commit == sha
    assert "TEST_UK_Testshire_ce01" not in entries_in_db()
    assert "UK_Testshire" not in sites_in_db()
    assert "branch trimmed" in report.summary()
