"""Parsing an osg-gfactory checkout (upstream ``buildSites``, ``processOneFileXML``/``YAML``, ``addExtraEntries``).

(a) The reference fixture in ``../shared`` must give exactly what upstream gives
    (EXPECTED.json). These tests skip when ``../shared`` is absent.
(b)-(e) Synthetic fixtures owned by the project (``tests/fixtures/gfactory/``, invented names)
    cover the same logic, the malformed cases, the UTF-8 reading and the file order.
"""

from __future__ import annotations

import configparser
import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from justin_flows.domain.gfactory import (
    EXTRA_ENTRIES_SOURCE,
    MIB,
    Entry,
    ExtraEntry,
    FileReport,
    GfactoryResult,
    build_sites,
    parse_extra_entries,
    parse_gfactory,
    parse_xml_file,
    parse_yaml_file,
)
from justin_flows.domain.regions import COUNTRY_REGIONS
from tests.shared_data import shared_path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "gfactory"
CHECKOUT = FIXTURES / "checkout"
MALFORMED = FIXTURES / "malformed"
REPO_ROOT = Path(__file__).resolve().parents[2]

ENTRY_FIELDS = ("site_name", "file_name", "gatekeeper", "max_processors", "max_rss_bytes", "max_wall_seconds",
                "entry_has_gpus")


def counts(report: FileReport) -> dict[str, int]:
    """A report in EXPECTED.json's per_file form: reason counts, 'accepted' if any, and 'total'."""
    out: dict[str, int] = dict(report.skipped)
    if report.accepted:
        out["accepted"] = report.accepted
    out["total"] = report.total
    return out


def entry_fields(entry: Entry) -> dict[str, Any]:
    return {name: getattr(entry, name) for name in ENTRY_FIELDS}


# ---------------------------------------------------------------------------------------
# (a) The reference fixture against EXPECTED.json


@pytest.fixture(scope="module")
def reference() -> tuple[GfactoryResult, dict[str, Any]]:
    directory = shared_path("fixtures", "osg-gfactory")
    expected = json.loads((directory / "EXPECTED.json").read_text(encoding="utf-8"))
    return parse_gfactory(directory), expected


def test_reference_reads_the_expected_files_in_order(reference: tuple[GfactoryResult, dict[str, Any]]) -> None:
    result, expected = reference
    assert [r.file_name for r in result.reports] == expected["files_read"]
    assert all(r.error is None and r.problems == () for r in result.reports)


def test_reference_per_file_counts(reference: tuple[GfactoryResult, dict[str, Any]]) -> None:
    result, expected = reference
    assert {r.file_name: counts(r) for r in result.reports} == expected["per_file"]


def test_reference_sites(reference: tuple[GfactoryResult, dict[str, Any]]) -> None:
    result, expected = reference
    assert sorted(result.sites) == expected["site_names"] == sorted(expected["sites"])
    records_per_site = Counter(record.site_name for record in result.records)
    got = {
        name: {
            "jobsub_site_name": site.jobsub_site_name,
            "wlcg_site_name": site.wlcg_site_name,
            "country": site.country,
            "region": site.region,
            "only_production": site.only_production,
            "only_on_request": site.only_on_request,
            "entry_records": records_per_site[name],
            "entries": sorted(entry.entry_name for entry in site.entries),
        }
        for name, site in result.sites.items()
    }
    assert got == expected["sites"]


def test_reference_entries_and_their_occurrences(reference: tuple[GfactoryResult, dict[str, Any]]) -> None:
    result, expected = reference
    assert sorted(result.entries) == sorted(expected["entries"])
    for name, want in expected["entries"].items():
        entry = result.entries[name]
        assert entry_fields(entry) == {f: want[f] for f in ENTRY_FIELDS}, name
        occurrences = [entry_fields(r) for r in result.records if r.entry_name == name]
        if "occurrences" in want:
            assert occurrences == want["occurrences"], name
            values = {json.dumps({k: v for k, v in o.items() if k != "file_name"}, sort_keys=True) for o in occurrences}
            assert (len(values) > 1) == want["values_differ_between_occurrences"], name
            # Only two copies in the same group (XML or YAML) depend on the order of files.
            groups = Counter(o["file_name"].startswith("OSG_autoconf/") for o in occurrences)
            assert (max(groups.values()) > 1) == want["final_depends_on_listdir_order"], name
        else:
            assert occurrences == [entry_fields(entry)], name


def test_reference_counts(reference: tuple[GfactoryResult, dict[str, Any]]) -> None:
    result, expected = reference
    names = Counter(record.entry_name for record in result.records)
    entries = result.entries.values()
    xml_reports = [r for r in result.reports if not r.file_name.startswith("OSG_autoconf/")]
    yaml_reports = [r for r in result.reports if r.file_name.startswith("OSG_autoconf/")]
    assert {
        "sites": len(result.sites),
        "entry_records": len(result.records),
        "unique_entries": len(result.entries),
        "duplicate_entry_names": sum(1 for n in names.values() if n > 1),
        "unique_entries_with_gpus": sum(e.entry_has_gpus for e in entries),
        "sites_with_gpu_entries": sum(any(e.entry_has_gpus for e in s.entries) for s in result.sites.values()),
        "unique_entries_from_xml": sum(not e.file_name.startswith("OSG_autoconf/") for e in entries),
        "unique_entries_from_yaml": sum(e.file_name.startswith("OSG_autoconf/") for e in entries),
        "xml_entry_elements_total": sum(r.total for r in xml_reports),
        "yaml_entries_total": sum(r.total for r in yaml_reports),
    } == expected["counts"]
    dependent = sorted(
        name
        for name in names
        if max(Counter(r.file_name.startswith("OSG_autoconf/") for r in result.records if r.entry_name == name).values())
        > 1
    )
    assert dependent == expected["order_dependent_entries"]


def test_reference_cpus_auto_and_empty_memory_fall_back_to_defaults(
    reference: tuple[GfactoryResult, dict[str, Any]],
) -> None:
    """EXPECTED.json: GLIDEIN_CPUS=auto and GLIDEIN_MaxMemMBs="" keep the entry, with the XML defaults."""
    result, _ = reference
    xml_copy = next(
        r for r in result.records if r.entry_name == "CMSHTPC_T2_US_Caltech_cit_op" and r.file_name.endswith(".xml")
    )
    assert (xml_copy.max_processors, xml_copy.max_rss_bytes) == (1, 2000 * MIB)


# ---------------------------------------------------------------------------------------
# (b) Synthetic checkout: the same logic on the project's own fixtures


@pytest.fixture(scope="module")
def checkout() -> GfactoryResult:
    return parse_gfactory(CHECKOUT)


def test_reads_top_level_xml_then_autoconf_yml_sorted_and_nothing_else(checkout: GfactoryResult) -> None:
    assert [r.file_name for r in checkout.reports] == [
        "10-alpha.xml",
        "20-beta.xml",
        "30-empty-entries.xml",
        "OSG_autoconf/10-gamma.auto.yml",
        "OSG_autoconf/20-delta.auto.yml",
    ]
    # README.md, *.xml.disabled, OSG_autoconf/*.xml, OSG_autoconf/*.yaml and OSG_autoconf/etc/ are never read.
    assert not [name for name in checkout.entries if name.startswith("TEST_IGNORED")]
    assert checkout.messages == []


def test_per_file_counts(checkout: GfactoryResult) -> None:
    assert {r.file_name: counts(r) for r in checkout.reports} == {
        "10-alpha.xml": {"accepted": 6, "disabled": 1, "cream": 1, "no_DUNE_VO": 1, "no_GLIDEIN_DUNESite": 1,
                         "no_GLIDEIN_Site": 1, "total": 11},
        "20-beta.xml": {"accepted": 2, "total": 2},
        "30-empty-entries.xml": {"total": 0},
        "OSG_autoconf/10-gamma.auto.yml": {"accepted": 2, "no_attrs": 2, "no_DUNE_VO": 1, "no_GLIDEIN_DUNESite": 1,
                                           "no_GLIDEIN_Site": 1, "no_BEST_FIT_section": 3, "total": 10},
        "OSG_autoconf/20-delta.auto.yml": {"accepted": 2, "total": 2},
    }


@pytest.mark.parametrize(
    ("name", "want"),
    [
        # gatekeeper is the first token; ResourceName stripped; values as given
        ("TEST_UK_Testshire_ce01", ("UK_Testshire", "Testshire", "TESTSHIRE-GRID", "ce01.testshire.example",
                                    8, 16000 * MIB, 172800, False, "10-alpha.xml")),
        # no CPUS / MaxMemMBs / Max_Walltime: the XML defaults 1, 2000 MiB, 86400 s
        ("TEST_UK_Testshire_ce02_defaults", ("UK_Testshire", "Testshire", "TESTSHIRE-OTHER",
                                             "ce02.testshire.example", 1, 2000 * MIB, 86400, False, "10-alpha.xml")),
        # CPUS=auto and MaxMemMBs="" mean "not set"
        ("TEST_UK_Testshire_auto", ("UK_Testshire", "Testshire", "", "ce03.testshire.example",
                                    1, 2000 * MIB, 3600, False, "10-alpha.xml")),
        # DUNEGPU is a DUNE VO and marks the entry as having GPUs
        ("TEST_US_Sampleton_gpu", ("US_Sampleton", "Sampleton", "SAMPLETON-GPU", "gpu.sampleton.example",
                                   4, 32000 * MIB, 86000, True, "10-alpha.xml")),
        # an ARC gatekeeper keeps its port; a repeated attr and stray text are harmless
        ("TEST_NL_Polder_arc", ("NL_Polder", "Polder", "", "arc.polder.example:8443",
                                1, 4000 * MIB, 86400, False, "10-alpha.xml")),
        # in 10-alpha.xml and 20-beta.xml: the later file wins
        ("TEST_NL_Polder_dup", ("NL_Polder", "Polder", "POLDER-SECOND", "dup.polder.example",
                                4, 8000 * MIB, 3600, False, "20-beta.xml")),
        # in 20-beta.xml and a YAML file: YAML is read after XML, so YAML wins; YAML memory default 2500 MiB
        ("TEST_US_Sampleton_twice", ("US_Sampleton", "Sampleton", "SAMPLETON-YAML", "ce3.sampleton.example",
                                     1, 2500 * MIB, 86400, False, "OSG_autoconf/20-delta.auto.yml")),
        # YAML BEST_FIT: GLIDEIN_Site, MaxMemMBs and Max_Walltime from common_entry_fields
        ("TEST_NL_Polder_yaml_ok", ("NL_Polder", "Polder", "POLDER-YAML", "ce.polder.example",
                                    2, 4000 * MIB, 129600, False, "OSG_autoconf/10-gamma.auto.yml")),
        # YAML enabled: False is ignored by default, as upstream ignores it
        ("TEST_NL_Polder_yaml_disabled", ("NL_Polder", "Polder", "", "ce.polder.example",
                                          1, 4000 * MIB, 129600, False, "OSG_autoconf/10-gamma.auto.yml")),
        # numbers given as a string or an int in YAML; DUNEGPU
        ("TEST_US_Sampleton_yaml_gpu", ("US_Sampleton", "Sampleton", "", "ce3.sampleton.example",
                                        6, 12000 * MIB, 7200, True, "OSG_autoconf/20-delta.auto.yml")),
    ],
)
def test_entry_values(checkout: GfactoryResult, name: str, want: tuple[Any, ...]) -> None:
    e = checkout.entries[name]
    assert (e.site_name, e.jobsub_site_name, e.wlcg_site_name, e.gatekeeper, e.max_processors, e.max_rss_bytes,
            e.max_wall_seconds, e.entry_has_gpus, e.file_name) == want


def test_skipped_entries_are_absent(checkout: GfactoryResult) -> None:
    for name in [
        "TEST_UK_Testshire_off",  # enabled="False"
        "TEST_US_Sampleton_cream",  # gridtype cream
        "TEST_US_Sampleton_othervo",  # DUNEX is not DUNE
        "TEST_US_Sampleton_nodunesite",  # no GLIDEIN_DUNESite
        "TEST_US_Sampleton_nosite",  # no GLIDEIN_Site
        "TEST_NL_Polder_yaml_null",  # null YAML body
        "TEST_NL_Polder_yaml_noattrs",  # no attrs
        "TEST_NL_Polder_yaml_othervo",
        "TEST_NL_Polder_yaml_nodunesite",
        "TEST_NL_Polder_pilot_a",  # outside BEST_FIT, although it names a DUNE site
        "TEST_US_Nosite_yaml",  # BEST_FIT without GLIDEIN_Site
    ]:
        assert name not in checkout.entries


def test_sites_take_fields_from_their_first_record(checkout: GfactoryResult) -> None:
    got = {
        name: (s.jobsub_site_name, s.wlcg_site_name, s.country, s.region, s.only_production, s.only_on_request,
               [e.entry_name for e in s.entries])
        for name, s in checkout.sites.items()
    }
    assert got == {
        "UK_Testshire": ("Testshire", "TESTSHIRE-GRID", "UK", "Europe", False, False,
                         ["TEST_UK_Testshire_ce01", "TEST_UK_Testshire_ce02_defaults", "TEST_UK_Testshire_auto"]),
        "US_Sampleton": ("Sampleton", "SAMPLETON-GPU", "US", "North_America", False, False,
                         ["TEST_US_Sampleton_gpu", "TEST_US_Sampleton_twice", "TEST_US_Sampleton_yaml_gpu"]),
        # POLDER-FIRST comes from the first copy of TEST_NL_Polder_dup, although the second copy wins the entry
        "NL_Polder": ("Polder", "POLDER-FIRST", "NL", "Europe", False, False,
                      ["TEST_NL_Polder_dup", "TEST_NL_Polder_arc", "TEST_NL_Polder_yaml_ok",
                       "TEST_NL_Polder_yaml_disabled"]),
    }
    # Site.entries hold the winning copies.
    polder = checkout.sites["NL_Polder"]
    assert polder.entries[0] is checkout.entries["TEST_NL_Polder_dup"]


def test_records_keep_every_copy_in_reading_order(checkout: GfactoryResult) -> None:
    assert len(checkout.records) == 12
    assert [r.file_name for r in checkout.records if r.entry_name == "TEST_NL_Polder_dup"] == [
        "10-alpha.xml",
        "20-beta.xml",
    ]
    assert [r.file_name for r in checkout.records if r.entry_name == "TEST_US_Sampleton_twice"] == [
        "20-beta.xml",
        "OSG_autoconf/20-delta.auto.yml",
    ]


def test_raw_config_xml_is_the_reindented_entry(checkout: GfactoryResult) -> None:
    raw = checkout.entries["TEST_UK_Testshire_ce01"].raw_config
    assert raw.startswith('<entry name="TEST_UK_Testshire_ce01"')
    assert raw.endswith("</entry>")
    assert "Zoë Ångström" in raw  # decoded as UTF-8
    assert "\n    <attrs>\n        <attr " in raw  # four-space indentation
    assert 'value="&quot;long&quot;"' in raw


def test_raw_config_yaml_is_sorted_json_with_common_entry_fields(checkout: GfactoryResult) -> None:
    raw = checkout.entries["TEST_NL_Polder_yaml_ok"].raw_config
    data = json.loads(raw)
    assert sorted(data) == ["TEST_NL_Polder_yaml_ok", "common_entry_fields"]
    assert data["common_entry_fields"]["attrs"]["GLIDEIN_Site"] == {"value": "Polder"}
    assert data["TEST_NL_Polder_yaml_ok"]["submit_attrs"]["+queue"] == "&quot;short&quot;"
    assert raw == json.dumps(data, sort_keys=True, indent=4)


def test_honour_yaml_enabled_skips_disabled_yaml_entries() -> None:
    result = parse_gfactory(CHECKOUT, honour_yaml_enabled=True)
    assert "TEST_NL_Polder_yaml_disabled" not in result.entries
    report = result.report("OSG_autoconf/10-gamma.auto.yml")
    assert report is not None
    assert (report.accepted, report.skipped["disabled"], report.total) == (1, 1, 10)


def test_single_file_parsers() -> None:
    entries, report = parse_xml_file(CHECKOUT / "20-beta.xml")
    assert [e.entry_name for e in entries] == ["TEST_NL_Polder_dup", "TEST_US_Sampleton_twice"]
    assert report == FileReport(file_name="20-beta.xml", accepted=2)
    entries, report = parse_yaml_file(CHECKOUT / "OSG_autoconf" / "20-delta.auto.yml")
    assert report.file_name == "OSG_autoconf/20-delta.auto.yml"
    assert [e.file_name for e in entries] == ["OSG_autoconf/20-delta.auto.yml"] * 2


# ---------------------------------------------------------------------------------------
# (c) Malformed files: a clear message naming the file; the other files still load


@pytest.fixture(scope="module")
def malformed() -> GfactoryResult:
    return parse_gfactory(MALFORMED)


@pytest.mark.parametrize(
    ("file_name", "words"),
    [
        ("10-bad-entity.xml", ["not well-formed XML", "line 7", "Entity 'undeclared' not defined"]),
        ("11-truncated.xml", ["not well-formed XML", "line 9"]),
        ("12-empty.xml", ["file is empty"]),
        ("14-no-entries.xml", ["no <entries> element under <glidein>"]),
        ("OSG_autoconf/10-list.yml", ["top level is a list", "expected a mapping"]),
        ("OSG_autoconf/13-empty.yml", ["file is empty"]),
        ("OSG_autoconf/14-syntax.yml", ["not valid YAML", "line 4"]),
        ("OSG_autoconf/15-comments-only.yml", ["no YAML document"]),
    ],
)
def test_unusable_file_gives_a_file_error(malformed: GfactoryResult, file_name: str, words: list[str]) -> None:
    report = malformed.report(file_name)
    assert report is not None
    assert report.error is not None
    assert report.error.startswith(f"{file_name}: ")
    for word in words:
        assert word in report.error
    assert (report.accepted, report.total) == (0, 0)
    assert not [r for r in malformed.records if r.file_name == file_name]


def test_bad_values_skip_only_their_entry(malformed: GfactoryResult) -> None:
    xml = malformed.report("13-bad-values.xml")
    assert xml is not None and xml.error is None
    assert counts(xml) == {"accepted": 1, "bad_value": 2, "no_name": 1, "total": 4}
    assert xml.problems == (
        "13-bad-values.xml: entry TEST_DE_Badburg_lots: GLIDEIN_CPUS='lots' is not a whole number; entry skipped",
        "13-bad-values.xml: entry TEST_DE_Badburg_zero: GLIDEIN_Max_Walltime='0' is not positive; entry skipped",
        "13-bad-values.xml: <entry> at line 21 has no name attribute; skipped",
    )
    yml = malformed.report("OSG_autoconf/12-bad-values.yml")
    assert yml is not None and yml.error is None
    assert counts(yml) == {"accepted": 2, "bad_value": 2, "total": 4}
    assert [p.split(": ")[1] for p in yml.problems] == [
        "entry TEST_DE_Badburg_yaml_many",
        "entry TEST_DE_Badburg_yaml_bool",
    ]
    assert "GLIDEIN_CPUS='many' is not a whole number" in yml.problems[0]


def test_yaml_auto_falls_back_to_common_entry_fields(malformed: GfactoryResult) -> None:
    # entry-level GLIDEIN_CPUS: auto -> common_entry_fields GLIDEIN_CPUS 3
    assert malformed.entries["TEST_DE_Badburg_yaml_auto"].max_processors == 3
    # a null attrs block takes every attribute from common_entry_fields (as upstream)
    assert malformed.entries["TEST_DE_Badburg_yaml_nullattrs"].site_name == "DE_Badburg"


def test_null_site_and_host_blocks_are_passed_over_with_a_problem(malformed: GfactoryResult) -> None:
    report = malformed.report("OSG_autoconf/11-null-blocks.yml")
    assert report is not None and report.error is None
    assert report.accepted == 1
    assert report.problems == (
        "OSG_autoconf/11-null-blocks.yml: site 'Nullsite-CE' is null, not a mapping of gatekeepers; nothing read",
        "OSG_autoconf/11-null-blocks.yml: site 'Badburg-CE' gatekeeper 'null-host.badburg.example' is null, "
        "not a mapping of sections; nothing read",
    )


def test_good_files_still_load_beside_bad_ones(malformed: GfactoryResult) -> None:
    assert sorted(malformed.entries) == [
        "TEST_DE_Badburg_fine",
        "TEST_DE_Badburg_yaml_auto",
        "TEST_DE_Badburg_yaml_fine",
        "TEST_DE_Badburg_yaml_nullattrs",
        "TEST_DE_Goodburg_ce",
        "TEST_DE_Goodburg_yaml",
    ]
    assert sorted(malformed.sites) == ["DE_Badburg", "DE_Goodburg"]
    assert len(malformed.reports) == 13
    # every message names its file
    assert all(m.split(": ")[0] in {r.file_name for r in malformed.reports} for m in malformed.messages)


def test_undecodable_bytes_give_a_file_error(tmp_path: Path) -> None:
    (tmp_path / "OSG_autoconf").mkdir()
    (tmp_path / "10-latin1.xml").write_bytes(b'<glidein><entries><entry name="TEST_Caf\xe9"/></entries></glidein>')
    (tmp_path / "OSG_autoconf" / "10-latin1.yml").write_bytes(b"Caf\xe9-CE:\n  ce.example:\n")
    result = parse_gfactory(tmp_path)
    assert [r.error for r in result.reports] == [
        "10-latin1.xml: not valid UTF-8 (byte offset 39: invalid continuation byte)",
        "OSG_autoconf/10-latin1.yml: not valid UTF-8 (byte offset 3: invalid continuation byte)",
    ]


def test_declared_encoding_is_overridden_by_utf8(tmp_path: Path) -> None:
    (tmp_path / "OSG_autoconf").mkdir()
    (tmp_path / "10-declared.xml").write_text(
        '<?xml version="1.0" encoding="ISO-8859-1"?>\n<glidein><entries>'
        '<entry name="TEST_UK_Été" gatekeeper="ce.example"><attrs>'
        '<attr name="GLIDEIN_DUNESite" value="UK_Été"/><attr name="GLIDEIN_Site" value="Été"/>'
        '<attr name="GLIDEIN_Supported_VOs" value="DUNE"/></attrs></entry></entries></glidein>',
        encoding="utf-8",
    )
    assert list(parse_gfactory(tmp_path).sites) == ["UK_Été"]


def test_external_entities_are_never_expanded(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET", encoding="utf-8")
    (tmp_path / "checkout" / "OSG_autoconf").mkdir(parents=True)
    doctype = f'<!DOCTYPE glidein [<!ENTITY ext SYSTEM "{secret.as_uri()}">]>'
    body = ('<entry name="TEST_UK_Ext" gatekeeper="ce.example"><note>{text}</note><attrs>'
            '<attr name="GLIDEIN_DUNESite" value="{site}"/><attr name="GLIDEIN_Site" value="Ext"/>'
            '<attr name="GLIDEIN_Supported_VOs" value="DUNE"/></attrs></entry>')
    (tmp_path / "checkout" / "10-in-attribute.xml").write_text(
        f"{doctype}<glidein><entries>{body.format(text='x', site='UK_&ext;')}</entries></glidein>", encoding="utf-8"
    )
    (tmp_path / "checkout" / "20-in-text.xml").write_text(
        f"{doctype}<glidein><entries>{body.format(text='&ext;', site='UK_Ext')}</entries></glidein>", encoding="utf-8"
    )
    result = parse_gfactory(tmp_path / "checkout")
    in_attribute, in_text = result.reports[:2]
    assert in_attribute.error is not None and "external entity" in in_attribute.error
    assert in_text.error is None and in_text.accepted == 1
    assert "TOPSECRET" not in result.entries["TEST_UK_Ext"].raw_config
    assert all("TOPSECRET" not in repr(e) for e in result.records)


def test_missing_autoconf_directory_is_reported(tmp_path: Path) -> None:
    shutil.copy(CHECKOUT / "20-beta.xml", tmp_path)
    result = parse_gfactory(tmp_path)
    assert [r.file_name for r in result.reports] == ["20-beta.xml", "OSG_autoconf/"]
    assert result.reports[1].error == "OSG_autoconf/: directory is missing"
    assert len(result.entries) == 2


def test_missing_checkout_raises(tmp_path: Path) -> None:
    with pytest.raises(NotADirectoryError, match="is not a directory"):
        parse_gfactory(tmp_path / "no-such-clone")


# ---------------------------------------------------------------------------------------
# (d) UTF-8 whatever the locale

_LOCALE_PROBE = textwrap.dedent(
    """
    import codecs, json, locale, sys
    from pathlib import Path
    from justin_flows.domain.gfactory import parse_gfactory

    checkout = Path(sys.argv[1])
    try:
        open(checkout / sys.argv[2]).read()
        naive = "decoded"
    except UnicodeDecodeError:
        naive = "UnicodeDecodeError"
    result = parse_gfactory(checkout)
    print(json.dumps({
        "encoding": codecs.lookup(locale.getpreferredencoding(False)).name,
        "utf8_mode": sys.flags.utf8_mode,
        "naive_open": naive,
        "entries": {n: [e.site_name, e.wlcg_site_name, e.file_name, e.raw_config] for n, e in result.entries.items()},
        "reports": [[r.file_name, r.accepted, dict(r.skipped), r.error] for r in result.reports],
    }))
    """
)


def _run_in_c_locale(directory: Path, non_ascii_file: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "PYTHON")) and k != "LANG"}
    env.update(LANG="C", LC_ALL="C", PYTHONUTF8="0", PYTHONCOERCECLOCALE="0",
               PYTHONPATH=os.pathsep.join([str(REPO_ROOT / "lib"), str(REPO_ROOT)]))
    proc = subprocess.run([sys.executable, "-c", _LOCALE_PROBE, str(directory), non_ascii_file], env=env, capture_output=True,
                          check=True, timeout=60)
    return json.loads(proc.stdout.decode("ascii"))


def _summary(result: GfactoryResult) -> dict[str, Any]:
    return {
        "entries": {n: [e.site_name, e.wlcg_site_name, e.file_name, e.raw_config] for n, e in result.entries.items()},
        "reports": [[r.file_name, r.accepted, dict(r.skipped), r.error] for r in result.reports],
    }


def test_files_are_read_as_utf8_in_the_c_locale(checkout: GfactoryResult) -> None:
    probe = _run_in_c_locale(CHECKOUT, "10-alpha.xml")
    # The subprocess really runs with an ASCII locale: a plain open() cannot read the fixture.
    assert (probe["encoding"], probe["utf8_mode"], probe["naive_open"]) == ("ascii", 0, "UnicodeDecodeError")
    assert {k: probe[k] for k in ("entries", "reports")} == json.loads(json.dumps(_summary(checkout)))
    assert "Zoë Ångström" in probe["entries"]["TEST_UK_Testshire_ce01"][3]


def test_reference_is_read_as_utf8_in_the_c_locale(reference: tuple[GfactoryResult, dict[str, Any]]) -> None:
    """EXPECTED.json's README: an ASCII codec would drop UK_Bristol, UK_RAL-PPD and US_PuertoRico."""
    result, _ = reference
    probe = _run_in_c_locale(shared_path("fixtures", "osg-gfactory"), "10-cms-cern_osg.xml")
    assert (probe["encoding"], probe["naive_open"]) == ("ascii", "UnicodeDecodeError")
    assert {k: probe[k] for k in ("entries", "reports")} == json.loads(json.dumps(_summary(result)))
    assert {"UK_Bristol", "UK_RAL-PPD", "US_PuertoRico"} <= {v[0] for v in probe["entries"].values()}


# ---------------------------------------------------------------------------------------
# (e) The order of files is the sorted order, whatever the directory listing says


def test_result_does_not_depend_on_directory_listing_order(
    checkout: GfactoryResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Copy the checkout, creating files in reverse order, and make iterdir() list them backwards.
    copy_root = tmp_path / "checkout"
    for source in sorted(CHECKOUT.rglob("*"), reverse=True):
        target = copy_root / source.relative_to(CHECKOUT)
        if source.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
    original_iterdir = Path.iterdir
    monkeypatch.setattr(Path, "iterdir", lambda self: iter(sorted(original_iterdir(self), reverse=True)))

    reordered = parse_gfactory(copy_root)
    assert reordered == checkout
    assert reordered.entries["TEST_NL_Polder_dup"].file_name == "20-beta.xml"


def test_sorted_names_decide_which_duplicate_wins(tmp_path: Path) -> None:
    """Like ce505 in the reference fixture: the copy in the file whose name sorts last wins."""
    (tmp_path / "OSG_autoconf").mkdir()
    shutil.copy(CHECKOUT / "10-alpha.xml", tmp_path / "50-alpha.xml")
    shutil.copy(CHECKOUT / "20-beta.xml", tmp_path / "05-beta.xml")
    result = parse_gfactory(tmp_path)
    dup = result.entries["TEST_NL_Polder_dup"]
    assert (dup.file_name, dup.max_processors, dup.wlcg_site_name) == ("50-alpha.xml", 16, "POLDER-FIRST")


# ---------------------------------------------------------------------------------------
# [extra_entries]


def test_extra_entry_with_every_field() -> None:
    entries, errors = parse_extra_entries(
        {
            "TEST_US_Bigiron_CPU": """site_name=US_Bigiron jobsub_site_name=Bigiron
                wlcg_site_name=BIGIRON-HPC max_rss_bytes=4000000000 max_wall_seconds=43200
                max_processors=128 only_production=TRUE only_on_request=false entry_has_gpus=True
                gatekeeper=login.bigiron.example""",
        }
    )
    assert errors == []
    assert entries == [
        ExtraEntry(
            entry_name="TEST_US_Bigiron_CPU",
            site_name="US_Bigiron",
            jobsub_site_name="Bigiron",
            wlcg_site_name="BIGIRON-HPC",
            gatekeeper="login.bigiron.example",
            max_processors=128,
            max_rss_bytes=4000000000,
            max_wall_seconds=43200,
            entry_has_gpus=True,
            file_name="",
            raw_config=entries[0].raw_config,
            only_production=True,
            only_on_request=False,
        )
    ]
    assert "'site_name': 'US_Bigiron'" in entries[0].raw_config


def test_extra_entry_defaults_and_case_kept() -> None:
    entries, errors = parse_extra_entries(
        {"TEST_US_Bigiron_GPU": "site_name=US_Bigiron jobsub_site_name=Bigiron max_rss_bytes=1 "
                                "max_wall_seconds=2 max_processors=3"}
    )
    assert errors == []
    (entry,) = entries
    assert entry.entry_name == "TEST_US_Bigiron_GPU"  # upstream would store test_us_bigiron_gpu
    assert (entry.wlcg_site_name, entry.gatekeeper, entry.entry_has_gpus) == ("US_Bigiron", "TEST_US_Bigiron_GPU",
                                                                               False)
    assert (entry.only_production, entry.only_on_request) == (False, False)


def test_configparser_keeps_case_only_with_optionxform_str() -> None:
    text = "[extra_entries]\nTEST_Mixed_Case = site_name=US_Bigiron jobsub_site_name=B\n  max_rss_bytes=1\n" \
           "  max_wall_seconds=2 max_processors=3\n"
    upstream_like = configparser.ConfigParser()
    upstream_like.read_string(text)
    assert list(upstream_like["extra_entries"]) == ["test_mixed_case"]
    keeping = configparser.ConfigParser()
    keeping.optionxform = str  # type: ignore[assignment,method-assign]
    keeping.read_string(text)
    entries, errors = parse_extra_entries(keeping["extra_entries"])
    assert (errors, [e.entry_name for e in entries]) == ([], ["TEST_Mixed_Case"])


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("jobsub_site_name=B max_rss_bytes=1 max_wall_seconds=2 max_processors=3", "missing required field(s): site_name"),
        ("site_name=S jobsub_site_name=B", "missing required field(s): max_rss_bytes, max_wall_seconds, max_processors"),
        ("site_name=S jobsub_site_name=B max_rss_bytes=lots max_wall_seconds=2 max_processors=3",
         "max_rss_bytes='lots' is not a whole number"),
        ("site_name=S jobsub_site_name=B max_rss_bytes=1 max_wall_seconds=0 max_processors=3",
         "max_wall_seconds='0' is not positive"),
        ("site_name=S jobsub_site_name=B max_rss_bytes=1 max_wall_seconds=2 max_processors=3 stray",
         "'stray' is not key=value"),
        ("site_name=S jobsub_site_name=B max_rss_bytes=1 max_wall_seconds=2 max_processors=3 only_prodution=true",
         "unknown field 'only_prodution'"),
        ("site_name=S jobsub_site_name=B max_rss_bytes=1 max_wall_seconds=2 max_processors=3 only_production=yes",
         "only_production='yes' must be true or false"),
        ("site_name=S site_name=T jobsub_site_name=B max_rss_bytes=1 max_wall_seconds=2 max_processors=3",
         "field 'site_name' is given twice"),
    ],
)
def test_bad_extra_entry_names_the_entry(spec: str, reason: str) -> None:
    entries, errors = parse_extra_entries({"TEST_Bad_Item": spec, "TEST_Good_Item": (
        "site_name=S jobsub_site_name=B max_rss_bytes=1 max_wall_seconds=2 max_processors=3")})
    assert [e.entry_name for e in entries] == ["TEST_Good_Item"]
    assert errors == [f"{EXTRA_ENTRIES_SOURCE} entry TEST_Bad_Item: {reason}; entry skipped"]


def test_extra_entries_in_parse_gfactory(tmp_path: Path) -> None:
    extra = {
        # replaces the OSG entry of the same name (extras come last)
        "TEST_NL_Polder_arc": "site_name=NL_Polder jobsub_site_name=Polder max_rss_bytes=1048576 "
                              "max_wall_seconds=60 max_processors=2",
        # a new site whose first entry sets the site flags
        "TEST_US_Bigiron_CPU": "site_name=US_Bigiron jobsub_site_name=Bigiron max_rss_bytes=1 max_wall_seconds=2 "
                               "max_processors=3 only_production=true only_on_request=TRUE",
        "TEST_US_Bigiron_Other": "site_name=US_Bigiron jobsub_site_name=Later max_rss_bytes=1 max_wall_seconds=2 "
                                 "max_processors=3 only_production=false",
        "TEST_Broken": "site_name=US_Bigiron",
    }
    result = parse_gfactory(CHECKOUT, extra)
    report = result.reports[-1]
    assert (report.file_name, report.accepted, dict(report.skipped), report.error) == (
        EXTRA_ENTRIES_SOURCE, 3, {"invalid": 1}, None)
    assert report.problems[0].startswith(f"{EXTRA_ENTRIES_SOURCE} entry TEST_Broken: missing required field(s)")
    arc = result.entries["TEST_NL_Polder_arc"]
    assert (arc.file_name, arc.gatekeeper, arc.max_processors) == ("", "TEST_NL_Polder_arc", 2)
    bigiron = result.sites["US_Bigiron"]
    assert (bigiron.jobsub_site_name, bigiron.wlcg_site_name, bigiron.only_production, bigiron.only_on_request,
            bigiron.country, bigiron.region) == ("Bigiron", "US_Bigiron", True, True, "US", "North_America")
    # an OSG site keeps its OSG fields and flags even when an extra entry joins it
    assert result.sites["NL_Polder"].wlcg_site_name == "POLDER-FIRST"
    assert result.sites["NL_Polder"].only_production is False
    assert len(result.records) == len(parse_gfactory(CHECKOUT).records) + 3


# ---------------------------------------------------------------------------------------
# build_sites


def _entry(name: str, site: str, **changes: Any) -> Entry:
    fields: dict[str, Any] = dict(entry_name=name, site_name=site, jobsub_site_name=f"{site}-jobsub",
                                  wlcg_site_name=f"{site}-wlcg", gatekeeper=f"{name}.example", max_processors=1,
                                  max_rss_bytes=MIB, max_wall_seconds=60, entry_has_gpus=False, file_name="x.xml",
                                  raw_config="")
    fields.update(changes)
    return Entry(**fields)


def test_build_sites_countries_and_regions() -> None:
    sites = build_sites([_entry("a", "CERN"), _entry("b", "CH_Alpine"), _entry("c", "XX_Unknown"),
                         _entry("d", "CERN-Other"), _entry("e", "IN_Monsoon")])
    assert {n: (s.country, s.region) for n, s in sites.items()} == {
        "CERN": ("CERN", "Europe"),
        "CH_Alpine": ("CH", "Europe"),
        "XX_Unknown": ("XX", ""),
        "CERN-Other": ("CE", ""),  # only the site named exactly CERN is country CERN
        "IN_Monsoon": ("IN", "South_Asia"),
    }


def test_build_sites_first_record_gives_site_fields_last_record_gives_entry() -> None:
    first = _entry("e1", "UK_A", wlcg_site_name="FIRST")
    second = _entry("e2", "UK_A", wlcg_site_name="SECOND", jobsub_site_name="other")
    again = _entry("e1", "UK_A", max_processors=9)
    (site,) = build_sites([first, second, again]).values()
    assert (site.wlcg_site_name, site.jobsub_site_name) == ("FIRST", "UK_A-jobsub")
    assert site.entries == (again, second)


def test_build_sites_moves_an_entry_to_the_site_of_its_last_record() -> None:
    sites = build_sites([_entry("e1", "UK_A"), _entry("e1", "UK_B")])
    assert [e.entry_name for e in sites["UK_A"].entries] == []
    assert [e.entry_name for e in sites["UK_B"].entries] == ["e1"]


def test_build_sites_flags_only_from_an_extra_entry_seen_first() -> None:
    osg = _entry("osg", "US_Mixed")
    extra = ExtraEntry(**{**vars(_entry("x", "US_Mixed")), "only_production": True, "only_on_request": True})
    assert build_sites([osg], [extra])["US_Mixed"].only_production is False
    assert build_sites([], [extra, osg])["US_Mixed"].only_production is True


def test_country_regions_table() -> None:
    assert dict(COUNTRY_REGIONS) == {
        "BR": "South_America", "CA": "North_America", "US": "North_America", "IN": "South_Asia",
        **{c: "Europe" for c in ("CERN", "CH", "CZ", "DE", "ES", "FR", "IT", "NL", "RU", "UK")},
    }
    with pytest.raises(TypeError):
        COUNTRY_REGIONS["XX"] = "Nowhere"  # type: ignore[index]
