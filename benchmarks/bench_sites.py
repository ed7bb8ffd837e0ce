"""Benchmark: the hourly sites group on a generated gfactory repository of 1,000 entries (§2.10, §2.11).

The repository (a local git repo) holds 800 entries in eight root XML files and 200 in two
``OSG_autoconf`` YAML files: 200 sites of five entries each, plus a few entries for other VOs
that are skipped. The project runs update_sites + update_sites_storages; the baseline clones
the repository in full, parses it with minidom/PyYAML and writes row by row (a SELECT, then
an INSERT or UPDATE per site, entry and site-storage pair) into its own database holding the
same storages. The only external call on either side is one git clone. Each side runs twice;
the second, steady-state run (every row exists, as every hour) is the one timed.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import baselines
from harness import BenchServices, Measurement, Result, say
from sqlalchemy import create_engine, func, insert, select

SITES = 200
ENTRIES_PER_SITE = 5
COUNTRIES = ["UK", "US", "FR", "CH", "DE", "NL", "IT", "ES", "CZ", "BR"]


def site_name(s: int) -> str:
    return f"{COUNTRIES[s % 10]}_Site{s:03d}"


def _xml_entry(s: int, e: int, vo: str = "DUNE") -> str:
    return (
        f'      <entry name="BENCH_{site_name(s)}_ce{e}" enabled="True" gatekeeper="ce{e}.site{s:03d}.bench.invalid '
        f'ce{e}.site{s:03d}.bench.invalid:9619" gridtype="condor">\n'
        "         <attrs>\n"
        f'            <attr name="GLIDEIN_DUNESite" value="{site_name(s)}"/>\n'
        f'            <attr name="GLIDEIN_Site" value="Site{s:03d}"/>\n'
        f'            <attr name="GLIDEIN_ResourceName" value="SITE{s:03d}-CE{e}"/>\n'
        f'            <attr name="GLIDEIN_Supported_VOs" value="OTHERVO,{vo}"/>\n'
        f'            <attr name="GLIDEIN_CPUS" value="{1 + e}"/>\n'
        f'            <attr name="GLIDEIN_MaxMemMBs" value="{2000 * (1 + e)}"/>\n'
        '            <attr name="GLIDEIN_Max_Walltime" value="172800"/>\n'
        "         </attrs>\n"
        "      </entry>\n"
    )


def make_repo(dest: Path) -> str:
    from justin_flows.testing.git_repo import file_url, make_git_repo

    src = dest.parent / "gfactory-src"
    (src / "OSG_autoconf").mkdir(parents=True)
    xml_sites = range(0, 160)  # 160 sites x 5 = 800 XML entries
    for f in range(8):
        body = "".join(_xml_entry(s, e) for s in xml_sites[f * 20 : (f + 1) * 20] for e in range(ENTRIES_PER_SITE))
        body += _xml_entry(900 + f, 0, vo="CMS")  # another VO's entry: skipped
        (src / f"10-bench-{f}.xml").write_text(
            f'<?xml version="1.0" encoding="UTF-8"?>\n<glidein>\n   <entries>\n{body}   </entries>\n</glidein>\n'
        )
    for f in range(2):  # 40 sites x 5 = 200 YAML entries
        lines = []
        for s in range(160 + f * 20, 160 + (f + 1) * 20):
            lines.append(f"Site{s:03d}-CE:")
            for e in range(ENTRIES_PER_SITE):
                lines += [
                    f"  ce{e}.site{s:03d}.bench.invalid:", "    BEST_FIT:", f"      BENCH_{site_name(s)}_yaml{e}:",
                    "        attrs:",
                    f"          GLIDEIN_DUNESite: {{value: {site_name(s)}}}",
                    f"          GLIDEIN_Site: {{value: Site{s:03d}}}",
                    f"          GLIDEIN_Supported_VOs: {{value: {'DUNEGPU' if e == 0 else 'DUNE'}}}",
                    f"          GLIDEIN_CPUS: {{value: {1 + e}}}",
                ]
        (src / "OSG_autoconf" / f"10-bench-{f}.auto.yml").write_text("\n".join(lines) + "\n")
    return file_url(make_git_repo(src, dest))


def run(services: BenchServices) -> list[Result]:
    from justin_flows.adapters.git import GitAdapter
    from justin_flows.collector import sites, sites_storages
    from justin_flows.db.engine import transaction
    from justin_flows.db.models import Entry, Site, SiteStorage, Storage

    say(f"sites group: gfactory repository of {SITES * ENTRIES_PER_SITE} entries")
    with tempfile.TemporaryDirectory(prefix="bench-gfactory-") as tmp:
        url = make_repo(Path(tmp) / "osg-gfactory")
        baseline_engine = create_engine(services.baseline_db_url)
        with transaction() as s:  # the baseline's database holds the same storages
            storages = [dict(r._mapping) for r in s.execute(
                select(Storage.rse_id, Storage.rse_name, Storage.country, Storage.region, Storage.decommissioned))]
        with baseline_engine.begin() as conn:
            present = set(conn.execute(select(Storage.rse_id)).scalars())  # MONTECARLO, from the migrations
            missing = [row for row in storages if row["rse_id"] not in present]
            if missing:
                conn.execute(insert(Storage.__table__), missing)

        def project() -> Any:
            report = sites.update_sites(GitAdapter(), repo_url=url)
            distances = sites_storages.update_sites_storages()
            if report.errors or distances.errors:
                raise RuntimeError(f"sites: {(report.errors + distances.errors)[:3]}")
            return report

        results_measured: dict[str, Measurement] = {}
        for label, fn in (("baseline", lambda: baselines.sites_group(url, baseline_engine)), ("project", project)):
            fn()  # first run: every row is new
            value, m = services.measure(fn)
            if label == "baseline":
                m.calls, m.detail["sql_statements"] = value[0], value[1]
            else:
                m.calls = m.detail.get("ledger", 0)
            results_measured[label] = m
            say(f"  {label}: {m.calls} git clone(s), steady-state run {m.seconds:.2f} s")
        with transaction() as s:
            counts = [s.scalar(select(func.count()).select_from(t)) for t in (Site, Entry, SiteStorage)]
        with baseline_engine.connect() as conn:
            base_counts = [conn.scalar(select(func.count()).select_from(t)) for t in (Site, Entry, SiteStorage)]
        baseline_engine.dispose()
    if counts[:2] != [SITES, SITES * ENTRIES_PER_SITE] or counts != base_counts:
        raise RuntimeError(f"sites benchmark: project rows {counts}, baseline rows {base_counts}")
    project_m, base_m = results_measured["project"], results_measured["baseline"]
    return [Result(
        "sites group, 1,000 gfactory entries", project_m, base_m,
        target="calls <= base",
        met=project_m.calls <= base_m.calls,
        notes=[f"both store {counts[0]} sites, {counts[1]} entries, {counts[2]} site-storage pairs; the baseline "
               f"needs {base_m.detail['sql_statements']} SQL statements (one git clone each side; project: shallow)"],
    )]
