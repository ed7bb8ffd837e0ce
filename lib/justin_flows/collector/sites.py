"""updateSites (reference §2.10): DUNE's sites and entries from the OSG gfactory repository.

Upstream clones osg-gfactory in full with ``os.system`` (ignoring the exit code, so a failed
clone silently meant "no sites this hour"), parses it and INSERTs or UPDATEs every site and
entry by name with string-built SQL. Here: one shallow clone through the git adapter (a
failure raises, naming the URL without credentials, and changes nothing), the parsing in
``justin_flows.domain.gfactory``, then one transaction of two upserts by natural key with
bound parameters (so ``raw_config`` is stored as it is, with none of upstream's escaping).

Kept from upstream on purpose: ``enabled`` is never written (a new site stays disabled until
an admin enables it, and an admin's choice survives every run); nothing is deleted (sites and
entries that left the repository keep their row and their last ``last_osg_seen_time``, which
is how the dashboard hides them after ``unseen_sites_expire_days``).
"""

from __future__ import annotations

import datetime as dt
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import BigInteger, Integer, String, Table, select
from sqlalchemy.orm import Session

from justin_flows.adapters.calls import ExternalCallError
from justin_flows.adapters.git import GitAdapter, redact_credentials
from justin_flows.collector.report import CollectorReport
from justin_flows.db.engine import transaction, upsert
from justin_flows.db.models import Entry, Site
from justin_flows.domain.gfactory import AUTOCONF_DIR, EXTRA_ENTRIES_SOURCE, MIB, GfactoryResult, parse_gfactory
from justin_flows.settings import get_settings

#: Site columns written from the parse (besides the key and ``last_osg_seen_time``). Never ``enabled``.
SITE_FIELDS = ("jobsub_site_name", "wlcg_site_name", "only_production", "only_on_request", "country", "region")
#: Entry columns written from the parse (besides the key and ``last_osg_seen_time``).
ENTRY_FIELDS = (
    "gatekeeper",
    "site_id",
    "max_processors",
    "max_rss_bytes",
    "max_wall_seconds",
    "entry_has_gpus",
    "file_name",
    "raw_config",
)

_INT32_MAX = 2**31 - 1
_INT64_MAX = 2**63 - 1


class GfactoryCloneError(RuntimeError):
    """The gfactory repository could not be cloned, so no site or entry was written."""


@dataclass
class SitesReport(CollectorReport):
    """``CollectorReport`` plus which repository and commit the sites were read from."""

    repo_url: str = ""  # credentials redacted
    branch: str | None = None
    commit: str | None = None

    def summary(self) -> str:
        source = f"{self.repo_url}" + (f" branch {self.branch}" if self.branch else "")
        return f"{super().summary()} [{source} at {self.commit[:12] if self.commit else 'no commit'}]"


def update_sites(
    git: GitAdapter,
    *,
    repo_url: str | None = None,
    branch: str | None = None,
    extra_entries: Mapping[str, str] | None = None,
) -> SitesReport:
    """Clone the gfactory repository once, parse it and upsert ``sites`` and ``entries`` (upstream ``updateSites``).

    Args:
        git: The git adapter (one clone per call).
        repo_url: Repository to clone; default ``settings.sites.gfactory_repo_url``.
        branch: Branch or tag; default ``settings.sites.gfactory_branch`` (None = the default branch).
        extra_entries: ``[extra_entries]`` items; default ``settings.sites.extra_entries``.

    Returns:
        Counts of sites and entries added, changed, unchanged and not seen this time, one
        error per unusable file or entry (each names it; good files still load), and one
        row per added or changed site or entry.

    Raises:
        GfactoryCloneError: The clone failed (after the adapter's retries). Nothing is written.
    """
    settings = get_settings().sites
    url = repo_url or settings.gfactory_repo_url
    branch = branch or settings.gfactory_branch or None
    extras = settings.extra_entries if extra_entries is None else extra_entries
    report = SitesReport("updateSites", repo_url=redact_credentials(url), branch=branch)
    for what in ("sites_added", "sites_changed", "sites_unchanged", "entries_added", "entries_changed",
                 "entries_unchanged"):
        report.count(what, 0)

    with tempfile.TemporaryDirectory(prefix="justin-gfactory-") as tmp:
        checkout = Path(tmp) / "osg-gfactory"
        try:
            report.commit = git.clone(url, checkout, branch=branch)
        except ExternalCallError as exc:
            where = report.repo_url + (f" (branch {branch})" if branch else "")
            raise GfactoryCloneError(
                f"cannot clone the gfactory repository {where}: {_git_reason(exc)}; sites and entries left unchanged"
            ) from exc
        result = parse_gfactory(checkout, dict(extras) if extras else None)

    _count_sources(report, result)
    if not result.entries:
        report.error(f"no DUNE entry found in {report.repo_url} at {report.commit}; sites and entries left unchanged")
        return report
    now = dt.datetime.now(dt.timezone.utc)
    with transaction() as session:
        _write(session, result, now, report)
    return report


def _git_reason(exc: ExternalCallError) -> str:
    """git's own ``fatal:`` line when there is one, else the whole (credential-free) description."""
    text = redact_credentials(str(exc))
    fatal = re.findall(r"fatal: .*", text)
    return f"{fatal[-1].strip()} (after {exc.attempts} attempt(s))" if fatal else text


def _count_sources(report: SitesReport, result: GfactoryResult) -> None:
    for source in result.reports:
        if source.file_name == EXTRA_ENTRIES_SOURCE:
            report.count("extra_entries", source.accepted)
        elif source.file_name != f"{AUTOCONF_DIR}/":
            report.count("files_read")
            if source.error:
                report.count("files_unusable")
        report.count("entry_records", source.accepted)
        report.count("entry_records_skipped", sum(source.skipped.values()))
    for message in result.messages:  # file errors and skipped entries; each names its file
        report.error(message)


def _unstorable(table: Table, row: Mapping[str, Any]) -> str | None:
    """Why ``row`` cannot be stored in ``table`` (a value too long or too big), or None."""
    for name, value in row.items():
        column_type = table.c[name].type
        if isinstance(value, str):
            if "\x00" in value:
                return f"{name} contains a NUL character"
            length = getattr(column_type, "length", None) if isinstance(column_type, String) else None
            if length is not None and len(value) > length:
                return f"{name} is {len(value)} characters long, at most {length} fit"
        elif isinstance(value, int) and not isinstance(value, bool) and isinstance(column_type, Integer):
            limit = _INT64_MAX if isinstance(column_type, BigInteger) else _INT32_MAX
            if not 0 <= value <= limit:
                return f"{name}={value} is out of range (0..{limit})"
    return None


def _changes(
    old: Any, new: Mapping[str, Any], fields: tuple[str, ...], show: Callable[[str, Any], str]
) -> list[str]:
    """``field: old -> new`` for each field that differs (``raw_config`` only by name)."""
    out = []
    for name in fields:
        before = getattr(old, name)
        if before != new[name]:
            label = "site" if name == "site_id" else name
            out.append(name if name == "raw_config" else f"{label}: {show(name, before)} -> {show(name, new[name])}")
    return out


def _write(session: Session, result: GfactoryResult, now: dt.datetime, report: SitesReport) -> None:
    site_table: Table = Site.__table__  # type: ignore[assignment]
    entry_table: Table = Entry.__table__  # type: ignore[assignment]
    old_sites = {r.site_name: r for r in session.execute(select(Site.site_name, Site.site_id, *_cols(Site, SITE_FIELDS)))}
    old_entries = {
        r.entry_name: r for r in session.execute(select(Entry.entry_name, *_cols(Entry, ENTRY_FIELDS)))
    }
    old_site_names = {r.site_id: name for name, r in old_sites.items()}

    site_rows: list[dict[str, Any]] = []
    for site in result.sites.values():
        row = {"site_name": site.site_name, **{f: getattr(site, f) for f in SITE_FIELDS}, "last_osg_seen_time": now}
        problem = _unstorable(site_table, row)
        if problem:
            report.error(f"site {site.site_name!r}: {problem}; the site and its {len(site.entries)} entries skipped")
            continue
        site_rows.append(row)
    upsert(session, site_table, site_rows, ["site_name"], [*SITE_FIELDS, "last_osg_seen_time"])
    names = [row["site_name"] for row in site_rows]
    site_ids: dict[str, int] = dict(
        session.execute(select(Site.site_name, Site.site_id).where(Site.site_name.in_(names))).tuples().all()
    ) if names else {}
    site_names = {**old_site_names, **{site_id: name for name, site_id in site_ids.items()}}

    entry_rows: list[dict[str, Any]] = []
    for entry in result.entries.values():
        site_id = site_ids.get(entry.site_name)
        if site_id is None:
            report.error(f"entry {entry.entry_name!r}: its site {entry.site_name!r} was skipped; entry skipped")
            continue
        row = {
            "entry_name": entry.entry_name,
            "gatekeeper": entry.gatekeeper,
            "site_id": site_id,
            "max_processors": entry.max_processors,
            "max_rss_bytes": entry.max_rss_bytes,
            "max_wall_seconds": entry.max_wall_seconds,
            "entry_has_gpus": entry.entry_has_gpus,
            "file_name": entry.file_name,
            "raw_config": entry.raw_config,
            "last_osg_seen_time": now,
        }
        problem = _unstorable(entry_table, row)
        if problem:
            source = entry.file_name or EXTRA_ENTRIES_SOURCE
            report.error(f"{source}: entry {entry.entry_name!r}: {problem}; entry skipped")
            continue
        entry_rows.append(row)
    upsert(session, entry_table, entry_rows, ["entry_name"], [*ENTRY_FIELDS, "last_osg_seen_time"])

    def show_entry(name: str, value: Any) -> str:
        return repr(site_names.get(value, value)) if name == "site_id" else repr(value)

    rows: list[dict[str, Any]] = []
    for row in site_rows:
        old = old_sites.get(row["site_name"])
        if old is None:
            report.count("sites_added")
            details = (f"jobsub {row['jobsub_site_name']!r}, wlcg {row['wlcg_site_name']!r}, "
                       f"{row['country'] or '?'}/{row['region'] or '?'}; disabled until an admin enables it")
            rows.append(_row("site", row["site_name"], row["site_name"], "added", details))
        elif changes := _changes(old, row, SITE_FIELDS, lambda _n, v: repr(v)):
            report.count("sites_changed")
            rows.append(_row("site", row["site_name"], row["site_name"], "changed", "; ".join(changes)))
        else:
            report.count("sites_unchanged")
    for row in entry_rows:
        site_name = site_names[row["site_id"]]
        old = old_entries.get(row["entry_name"])
        if old is None:
            report.count("entries_added")
            details = (f"{row['gatekeeper']}, {row['max_processors']} processor(s), {row['max_rss_bytes'] // MIB} MiB, "
                       f"{row['max_wall_seconds']} s{', GPUs' if row['entry_has_gpus'] else ''}; "
                       f"from {row['file_name'] or EXTRA_ENTRIES_SOURCE}")
            rows.append(_row("entry", row["entry_name"], site_name, "added", details))
        elif changes := _changes(old, row, ENTRY_FIELDS, show_entry):
            report.count("entries_changed")
            rows.append(_row("entry", row["entry_name"], site_name, "changed", "; ".join(changes)))
        else:
            report.count("entries_unchanged")
    seen_sites = {row["site_name"] for row in site_rows}
    seen_entries = {row["entry_name"] for row in entry_rows}
    report.count("sites_not_seen", sum(1 for name in old_sites if name not in seen_sites))
    report.count("entries_not_seen", sum(1 for name in old_entries if name not in seen_entries))
    report.rows.extend(rows)


def _cols(model: type[Site] | type[Entry], names: tuple[str, ...]) -> list[Any]:
    return [getattr(model, name) for name in names]


def _row(kind: str, name: str, site_name: str, change: str, details: str) -> dict[str, Any]:
    return {"kind": kind, "name": name, "site": site_name, "change": change, "details": details}
