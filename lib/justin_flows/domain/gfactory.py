"""Parse an osg-gfactory checkout into justIN sites and entries.

Upstream: ``buildSites()``, ``processOneFileXML()``, ``processOneFileYAML()`` and
``addExtraEntries()`` in agents/justin-info-collector, called by ``updateSites()``. This
module is the pure part: it reads a directory that is already checked out and returns data.
Cloning the repository and writing the ``sites``/``entries`` tables belong to the flow.

What is read, in this order:

1. every ``*.xml`` file at the top of the checkout, sorted by name;
2. every ``*.yml`` file directly in ``OSG_autoconf/``, sorted by name;
3. optionally the ``[extra_entries]`` items of the justIN configuration.

Upstream takes files in ``os.listdir()`` order, so when an entry name occurs in two files,
which copy wins depends on the filesystem. Sorting makes the result reproducible. Files are
read as bytes and decoded as UTF-8, so the result never depends on the locale; upstream used
``open()`` with the locale's encoding and lost whole files under an ASCII locale.

Accepted entries are kept as ``records`` in reading order. When an entry name occurs more
than once, the last record wins, as upstream's INSERT-then-UPDATE did. A site takes its
``jobsub_site_name`` and ``wlcg_site_name`` from the first record seen for it.

Errors never stop the parse. A file that cannot be used at all (unreadable, not UTF-8,
empty, not well-formed, the wrong top-level shape) gets a ``FileReport`` whose ``error``
names the file and the fault, and contributes nothing. A fault that concerns one entry (a
non-numeric ``GLIDEIN_CPUS``, say) skips only that entry under the reason ``bad_value``. A
YAML block that is not a mapping (a null gatekeeper block, for instance) has no entries and
is passed over. Both kinds of fault leave a message in ``FileReport.problems``. Upstream
either fell back to defaults without a word or raised out of ``updateSites()``, which lost
every site for that cycle.

Deliberate differences from upstream, besides the order, encoding and error handling above:

* XML ``enabled`` and ``gridtype`` are compared case-insensitively and after stripping.
* VO names, site names and ``GLIDEIN_ResourceName`` are stripped, in YAML as in XML.
* ``auto`` or an empty value for a number means "not set", so the default applies.
  glideinWMS uses ``GLIDEIN_CPUS=auto`` for "detect at run time". Upstream got the same
  result by accident: its ``int()`` failed and the default was kept. Any other value that
  is not a positive integer skips the entry; upstream silently used the default instead.
* An XML entry without a ``name`` is skipped (upstream stored an entry named ``''``).
* The XML gatekeeper is the first whitespace-separated token of the attribute. Upstream
  split on single spaces, which gives ``''`` when the value starts with a space.

Upstream behaviour that is kept:

* The defaults are 1 processor and 86400 s of wall time. The memory default is 2000 MiB for
  XML but 2500 MiB for YAML: upstream took the YAML figure from
  ``OSG_autoconf/etc/default.yml``. The fixture's expected values depend on this difference.
* In YAML, only the ``BEST_FIT`` section of a gatekeeper is read. Entries in other pilot
  sections (``standard``, ``gpu``, ...) are counted under ``no_BEST_FIT_section``.
* YAML ``enabled: false`` is ignored, as upstream ignores it. Pass
  ``honour_yaml_enabled=True`` to skip such entries as ``disabled``.
"""

from __future__ import annotations

import copy
import io
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml
from lxml import etree

from justin_flows.domain.regions import country_region, site_country

MIB = 1024 * 1024

XML_DEFAULT_PROCESSORS = 1
XML_DEFAULT_MEMORY_MIB = 2000
YAML_DEFAULT_PROCESSORS = 1
YAML_DEFAULT_MEMORY_MIB = 2500
DEFAULT_WALL_SECONDS = 86400

DUNE_VO = "DUNE"
DUNE_GPU_VO = "DUNEGPU"
DUNE_VOS = frozenset({DUNE_VO, DUNE_GPU_VO})

AUTOCONF_DIR = "OSG_autoconf"
EXTRA_ENTRIES_SOURCE = "[extra_entries]"

# Reasons an entry is skipped: the keys of ``FileReport.skipped``.
SKIP_DISABLED = "disabled"
SKIP_CREAM = "cream"
SKIP_NO_NAME = "no_name"
SKIP_NO_DUNE_VO = "no_DUNE_VO"
SKIP_NO_DUNESITE = "no_GLIDEIN_DUNESite"
SKIP_NO_SITE = "no_GLIDEIN_Site"
SKIP_NO_BEST_FIT = "no_BEST_FIT_section"
SKIP_NO_ATTRS = "no_attrs"
SKIP_BAD_VALUE = "bad_value"
SKIP_INVALID = "invalid"

EXTRA_REQUIRED_FIELDS = ("site_name", "jobsub_site_name", "max_rss_bytes", "max_wall_seconds", "max_processors")
EXTRA_OPTIONAL_FIELDS = ("wlcg_site_name", "only_production", "only_on_request", "entry_has_gpus", "gatekeeper")

_DIGITS = re.compile(r"[0-9]+")
_UNSET_NUMBERS = frozenset({"", "auto"})
_XML_POSITION_SUFFIX = re.compile(r",\s*line \d+, column \d+\s*$")


@dataclass(frozen=True)
class Entry:
    """One factory entry justIN can submit to (a row of the ``entries`` table)."""

    entry_name: str
    site_name: str
    jobsub_site_name: str
    wlcg_site_name: str
    gatekeeper: str
    max_processors: int
    max_rss_bytes: int
    max_wall_seconds: int
    entry_has_gpus: bool
    file_name: str
    raw_config: str = field(repr=False)


@dataclass(frozen=True)
class ExtraEntry(Entry):
    """An entry from the ``[extra_entries]`` configuration.

    It can also carry the site flags. They take effect only when this entry is the first one
    seen for its site.
    """

    only_production: bool = False
    only_on_request: bool = False


@dataclass(frozen=True)
class Site:
    """One justIN site (a row of the ``sites`` table) with its entries.

    ``entries`` lists each entry name once, holding the values of its last record, in the
    order the names first appeared.
    """

    site_name: str
    jobsub_site_name: str
    wlcg_site_name: str
    only_production: bool
    only_on_request: bool
    country: str
    region: str
    entries: tuple[Entry, ...] = ()


@dataclass(frozen=True)
class FileReport:
    """What happened to one source file, or to the ``[extra_entries]`` section.

    Attributes:
        file_name: The name as stored in ``entries.file_name``, for example
            ``10-noncms-osg.xml`` or ``OSG_autoconf/10-uscms.auto.yml``.
        accepted: The number of entry records taken from the source.
        skipped: The number of entries skipped, by reason (see the ``SKIP_*`` constants).
        error: Set when the whole source was unusable and contributed nothing.
        problems: Messages about skipped entries or blocks that are worth a look. Each
            message names the file and, where relevant, the entry.
    """

    file_name: str
    accepted: int = 0
    skipped: Mapping[str, int] = field(default_factory=dict)
    error: str | None = None
    problems: tuple[str, ...] = ()

    @property
    def total(self) -> int:
        """The number of entries seen, accepted or not."""
        return self.accepted + sum(self.skipped.values())


@dataclass(frozen=True)
class GfactoryResult:
    """The outcome of ``parse_gfactory``.

    Attributes:
        sites: Sites keyed by justIN site name (``GLIDEIN_DUNESite``).
        entries: Entries keyed by entry name. The last record of each name wins.
        reports: One report per file read, in reading order, then one for
            ``[extra_entries]`` when extra entries were given.
        records: Every accepted record in reading order, duplicates included.
    """

    sites: dict[str, Site]
    entries: dict[str, Entry]
    reports: list[FileReport]
    records: tuple[Entry, ...] = ()

    def report(self, file_name: str) -> FileReport | None:
        """The report for one file, or ``None`` when it was not read."""
        return next((r for r in self.reports if r.file_name == file_name), None)

    @property
    def messages(self) -> list[str]:
        """Every file error and problem, in report order, for logging."""
        out: list[str] = []
        for report in self.reports:
            if report.error:
                out.append(report.error)
            out.extend(report.problems)
        return out


class _FileError(Exception):
    """The whole file is unusable. The message names the file."""


class _BadValue(ValueError):
    """A value in one entry is unusable. The message says which attribute and why."""


class _Tally:
    """Collects the accepted entries, skip counts and problems for one source."""

    def __init__(self, file_name: str) -> None:
        self.file_name = file_name
        self.entries: list[Entry] = []
        self.skipped: Counter[str] = Counter()
        self.problems: list[str] = []

    def accept(self, entry: Entry) -> None:
        self.entries.append(entry)

    def skip(self, reason: str, count: int = 1, problem: str | None = None) -> None:
        if count:
            self.skipped[reason] += count
        if problem:
            self.problem(problem)

    def problem(self, text: str) -> None:
        self.problems.append(f"{self.file_name}: {text}")

    def report(self) -> FileReport:
        return FileReport(
            file_name=self.file_name,
            accepted=len(self.entries),
            skipped=MappingProxyType(dict(sorted(self.skipped.items()))),
            problems=tuple(self.problems),
        )


# --------------------------------------------------------------------------------------
# Values


def _number(raw: object, attr_name: str) -> int | None:
    """A positive integer attribute, or ``None`` when unset (absent, ``''`` or ``auto``)."""
    if raw is None:
        return None
    if isinstance(raw, bool):
        raise _BadValue(f"{attr_name} is the boolean {raw!r}, not a number")
    if isinstance(raw, int):
        value = raw
    elif isinstance(raw, float) and raw.is_integer():
        value = int(raw)
    elif isinstance(raw, str):
        text = raw.strip()
        if text.lower() in _UNSET_NUMBERS:
            return None
        if not _DIGITS.fullmatch(text):
            raise _BadValue(f"{attr_name}={raw!r} is not a whole number")
        value = int(text)
    else:
        raise _BadValue(f"{attr_name}={raw!r} is a {type(raw).__name__}, not a number")
    if value <= 0:
        raise _BadValue(f"{attr_name}={raw!r} is not positive")
    return value


def _text(raw: object, attr_name: str) -> str:
    """A stripped string attribute. An absent value gives ``''``; a number becomes text."""
    if raw is None:
        return ""
    if isinstance(raw, str):
        return raw.strip()
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return str(raw)
    raise _BadValue(f"{attr_name}={raw!r} is a {type(raw).__name__}, not a string")


def _vo_list(raw: str | None) -> list[str]:
    return [vo.strip() for vo in raw.split(",")] if raw else []


def _describe(value: object) -> str:
    return "null" if value is None else f"a {type(value).__name__}"


def _decode_utf8(data: bytes, file_name: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _FileError(f"{file_name}: not valid UTF-8 (byte offset {exc.start}: {exc.reason})") from exc


def _read(path: Path, file_name: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _FileError(f"{file_name}: cannot be read: {exc.strerror or exc}") from exc
    if not data.strip():
        raise _FileError(f"{file_name}: file is empty")
    return data


# --------------------------------------------------------------------------------------
# XML (upstream processOneFileXML)


def _xml_parser() -> etree.XMLParser:
    """A parser that never reaches the network or the filesystem and never grows huge trees.

    The ``encoding`` argument makes lxml decode the bytes as UTF-8 whatever the XML
    declaration says.
    """
    return etree.XMLParser(
        encoding="utf-8",
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_pis=True,
    )


def _xml_raw_config(element: etree._Element) -> str:
    """The entry element re-indented with four spaces, like upstream's ``toprettyxml``."""
    clone = copy.deepcopy(element)
    for node in clone.iter():
        if node.text is not None and not node.text.strip():
            node.text = None
        if node.tail is not None and not node.tail.strip():
            node.tail = None
    clone.tail = None
    etree.indent(clone, space="    ")
    return etree.tostring(clone, encoding="unicode")


def _xml_entry(element: etree._Element, tally: _Tally) -> None:
    file_name = tally.file_name
    entry_name = (element.get("name") or "").strip()
    if not entry_name:
        tally.skip(SKIP_NO_NAME, problem=f"<entry> at line {element.sourceline} has no name attribute; skipped")
        return
    if (element.get("enabled") or "").strip().lower() == "false":
        tally.skip(SKIP_DISABLED)
        return
    if (element.get("gridtype") or "").strip().lower() == "cream":
        tally.skip(SKIP_CREAM)
        return

    # Later <attr> elements with the same name override earlier ones, as upstream.
    attrs: dict[str, str] = {}
    for attrs_element in element.iterchildren("attrs"):
        for attr in attrs_element.iterchildren("attr"):
            name = attr.get("name")
            if name:
                attrs[name] = attr.get("value", "")

    vos = _vo_list(attrs.get("GLIDEIN_Supported_VOs"))
    if not DUNE_VOS.intersection(vos):
        tally.skip(SKIP_NO_DUNE_VO)
        return
    site_name = attrs.get("GLIDEIN_DUNESite", "").strip()
    if not site_name:
        tally.skip(SKIP_NO_DUNESITE)
        return
    jobsub_site_name = attrs.get("GLIDEIN_Site", "").strip()
    if not jobsub_site_name:
        tally.skip(SKIP_NO_SITE)
        return

    try:
        processors = _number(attrs.get("GLIDEIN_CPUS"), "GLIDEIN_CPUS") or XML_DEFAULT_PROCESSORS
        memory_mib = _number(attrs.get("GLIDEIN_MaxMemMBs"), "GLIDEIN_MaxMemMBs") or XML_DEFAULT_MEMORY_MIB
        wall_seconds = _number(attrs.get("GLIDEIN_Max_Walltime"), "GLIDEIN_Max_Walltime") or DEFAULT_WALL_SECONDS
    except _BadValue as exc:
        tally.skip(SKIP_BAD_VALUE, problem=f"entry {entry_name}: {exc}; entry skipped")
        return

    gatekeeper_tokens = (element.get("gatekeeper") or "").split()
    tally.accept(
        Entry(
            entry_name=entry_name,
            site_name=site_name,
            jobsub_site_name=jobsub_site_name,
            wlcg_site_name=attrs.get("GLIDEIN_ResourceName", "").strip(),
            gatekeeper=gatekeeper_tokens[0] if gatekeeper_tokens else "",
            max_processors=processors,
            max_rss_bytes=memory_mib * MIB,
            max_wall_seconds=wall_seconds,
            entry_has_gpus=DUNE_GPU_VO in vos,
            file_name=file_name,
            raw_config=_xml_raw_config(element),
        )
    )


def _xml_document(data: bytes, tally: _Tally) -> None:
    file_name = tally.file_name
    _decode_utf8(data, file_name)
    try:
        root = etree.fromstring(data, _xml_parser())
    except etree.XMLSyntaxError as exc:
        line, column = exc.position
        message = _XML_POSITION_SUFFIX.sub("", exc.msg or str(exc))
        raise _FileError(f"{file_name}: not well-formed XML at line {line}, column {column}: {message}") from exc
    entries_element = root.find("entries")
    if entries_element is None:
        raise _FileError(f"{file_name}: no <entries> element under <{root.tag}>")
    for element in entries_element.iterchildren("entry"):
        _xml_entry(element, tally)


def parse_xml_file(path: Path) -> tuple[list[Entry], FileReport]:
    """Read the DUNE entries of one factory XML file (upstream ``processOneFileXML``).

    The layout is ``<glidein><entries><entry name=... gatekeeper=... enabled=... gridtype=...>
    <attrs><attr name=... value=.../>``. An entry is kept when it is enabled, is not a CREAM
    entry, supports the DUNE or DUNEGPU VO, and has ``GLIDEIN_DUNESite`` and ``GLIDEIN_Site``.

    Args:
        path: The XML file. Its basename becomes ``Entry.file_name``.

    Returns:
        The accepted entries in file order, and the file's report.
    """
    return _run(Path(path), Path(path).name, _xml_document)


# --------------------------------------------------------------------------------------
# YAML (upstream processOneFileYAML)


def _yaml_value(sources: Iterable[Mapping[str, Any]], attr_name: str, accept: type | tuple[type, ...]) -> Any:
    """The first ``attrs.<attr_name>.value`` of an accepted type, entry first, then common."""
    for attrs in sources:
        block = attrs.get(attr_name)
        if isinstance(block, Mapping):
            value = block.get("value")
            if value is not None and isinstance(value, accept):
                return value
    return None


def _yaml_number(sources: tuple[Mapping[str, Any], ...], attr_name: str, default: int) -> int:
    """A number from the entry's attrs, else common_entry_fields, else ``default``.

    An unset value (absent, ``''`` or ``auto``) falls through to the next source, as
    upstream's failed ``int()`` did. A value that is not a positive integer raises.
    """
    for attrs in sources:
        block = attrs.get(attr_name)
        if isinstance(block, Mapping):
            value = _number(block.get("value"), attr_name)
            if value is not None:
                return value
    return default


def _as_attrs(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _is_false(value: object) -> bool:
    return value is False or (isinstance(value, str) and value.strip().lower() == "false")


def _jsonable(value: Any) -> Any:
    """A copy with string keys throughout, so that ``json.dumps(sort_keys=True)`` never fails."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _yaml_entry(
    entry_name: str,
    body: object,
    site_block: Mapping[str, Any],
    gatekeeper: str,
    tally: _Tally,
    honour_yaml_enabled: bool,
) -> None:
    if not body:
        tally.skip(SKIP_NO_ATTRS)
        return
    if not isinstance(body, Mapping):
        tally.skip(SKIP_NO_ATTRS, problem=f"entry {entry_name}: body is {_describe(body)}, not a mapping; skipped")
        return
    if honour_yaml_enabled and _is_false(body.get("enabled")):
        tally.skip(SKIP_DISABLED)
        return
    if "attrs" not in body:
        tally.skip(SKIP_NO_ATTRS)
        return

    # Upstream: a null ``attrs`` makes every lookup fall back to common_entry_fields.
    common_attrs = _as_attrs(_as_attrs(site_block.get("common_entry_fields")).get("attrs"))
    sources = (_as_attrs(body["attrs"]), common_attrs)

    vos = _vo_list(_yaml_value(sources, "GLIDEIN_Supported_VOs", str))
    try:
        jobsub_site_name = _text(_yaml_value(sources, "GLIDEIN_Site", object), "GLIDEIN_Site")
        if not jobsub_site_name:
            tally.skip(SKIP_NO_SITE)
            return
        site_name = _text(_yaml_value(sources, "GLIDEIN_DUNESite", object), "GLIDEIN_DUNESite")
        if not site_name:
            tally.skip(SKIP_NO_DUNESITE)
            return
        if not DUNE_VOS.intersection(vos):
            tally.skip(SKIP_NO_DUNE_VO)
            return
        wlcg_site_name = _text(_yaml_value(sources, "GLIDEIN_ResourceName", object), "GLIDEIN_ResourceName")
        processors = _yaml_number(sources, "GLIDEIN_CPUS", YAML_DEFAULT_PROCESSORS)
        memory_mib = _yaml_number(sources, "GLIDEIN_MaxMemMBs", YAML_DEFAULT_MEMORY_MIB)
        wall_seconds = _yaml_number(sources, "GLIDEIN_Max_Walltime", DEFAULT_WALL_SECONDS)
    except _BadValue as exc:
        tally.skip(SKIP_BAD_VALUE, problem=f"entry {entry_name}: {exc}; entry skipped")
        return

    raw: dict[str, Any] = {entry_name: body}
    if "common_entry_fields" in site_block:
        raw["common_entry_fields"] = site_block["common_entry_fields"]
    tally.accept(
        Entry(
            entry_name=entry_name,
            site_name=site_name,
            jobsub_site_name=jobsub_site_name,
            wlcg_site_name=wlcg_site_name,
            gatekeeper=gatekeeper,
            max_processors=processors,
            max_rss_bytes=memory_mib * MIB,
            max_wall_seconds=wall_seconds,
            entry_has_gpus=DUNE_GPU_VO in vos,
            file_name=tally.file_name,
            raw_config=json.dumps(_jsonable(raw), sort_keys=True, indent=4, default=str),
        )
    )


def _yaml_document(data: bytes, tally: _Tally, honour_yaml_enabled: bool = False) -> None:
    stream = io.StringIO(_decode_utf8(data, tally.file_name))
    stream.name = tally.file_name  # type: ignore[attr-defined]  # PyYAML names the file in its messages
    try:
        document = yaml.safe_load(stream)
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())
        raise _FileError(f"{tally.file_name}: not valid YAML: {detail}") from exc
    if document is None:
        raise _FileError(f"{tally.file_name}: file is empty (no YAML document)")
    if not isinstance(document, Mapping):
        raise _FileError(
            f"{tally.file_name}: top level is {_describe(document)}, expected a mapping of OSG site names"
        )

    for osg_site, site_block in document.items():
        if not isinstance(site_block, Mapping):
            tally.problem(f"site {osg_site!r} is {_describe(site_block)}, not a mapping of gatekeepers; nothing read")
            continue
        for gatekeeper, gatekeeper_block in site_block.items():
            if gatekeeper == "common_entry_fields":
                continue
            if not isinstance(gatekeeper_block, Mapping):
                tally.problem(
                    f"site {osg_site!r} gatekeeper {gatekeeper!r} is {_describe(gatekeeper_block)}, "
                    "not a mapping of sections; nothing read"
                )
                continue
            if "BEST_FIT" not in gatekeeper_block:
                ignored = sum(len(s) for s in gatekeeper_block.values() if isinstance(s, Mapping))
                tally.skip(SKIP_NO_BEST_FIT, count=ignored)
                continue
            best_fit = gatekeeper_block["BEST_FIT"]
            if best_fit is None:
                continue
            if not isinstance(best_fit, Mapping):
                tally.problem(
                    f"site {osg_site!r} gatekeeper {gatekeeper!r}: BEST_FIT is {_describe(best_fit)}, "
                    "not a mapping of entries; nothing read"
                )
                continue
            for entry_name, body in best_fit.items():
                _yaml_entry(str(entry_name), body, site_block, str(gatekeeper), tally, honour_yaml_enabled)


def parse_yaml_file(path: Path, *, honour_yaml_enabled: bool = False) -> tuple[list[Entry], FileReport]:
    """Read the DUNE entries of one ``OSG_autoconf`` YAML file (upstream ``processOneFileYAML``).

    The layout is ``OSGSITE -> GATEKEEPER -> BEST_FIT -> ENTRY -> attrs -> NAME -> value``.
    ``OSGSITE -> common_entry_fields -> attrs`` supplies any attribute an entry lacks.
    An entry is kept when it has ``attrs``, ``GLIDEIN_Site`` and ``GLIDEIN_DUNESite``, and
    supports the DUNE or DUNEGPU VO.

    Args:
        path: The YAML file. ``OSG_autoconf/<basename>`` becomes ``Entry.file_name``.
        honour_yaml_enabled: Skip entries marked ``enabled: false``. Upstream ignores the flag,
            so the default is ``False``.

    Returns:
        The accepted entries in file order, and the file's report.
    """
    path = Path(path)
    return _run(
        path,
        f"{AUTOCONF_DIR}/{path.name}",
        lambda data, tally: _yaml_document(data, tally, honour_yaml_enabled),
    )


def _run(path: Path, file_name: str, parse: Callable[[bytes, _Tally], None]) -> tuple[list[Entry], FileReport]:
    """Parse one file. On a file-level error it contributes nothing and the report says why."""
    tally = _Tally(file_name)
    try:
        parse(_read(path, file_name), tally)
    except _FileError as exc:
        return [], FileReport(file_name=file_name, error=str(exc))
    except Exception as exc:  # noqa: BLE001 - one odd file must never stop the others
        return [], FileReport(file_name=file_name, error=f"{file_name}: unexpected {type(exc).__name__}: {exc}")
    return tally.entries, tally.report()


# --------------------------------------------------------------------------------------
# [extra_entries] (upstream addExtraEntries)


def _extra_flag(fields: Mapping[str, str], name: str) -> bool:
    value = fields.get(name)
    if value is None or value == "":
        return False
    lowered = value.lower()
    if lowered not in ("true", "false"):
        raise _BadValue(f"{name}={value!r} must be true or false")
    return lowered == "true"


def _extra_entry(entry_name: str, spec: object) -> ExtraEntry:
    if not entry_name:
        raise _BadValue("the entry name is empty")
    if not isinstance(spec, str):
        raise _BadValue(f"the value is {_describe(spec)}, expected 'key=value key=value ...'")
    fields: dict[str, str] = {}
    for token in spec.split():
        key, sep, value = token.partition("=")
        if not sep or not key:
            raise _BadValue(f"{token!r} is not key=value")
        if key not in EXTRA_REQUIRED_FIELDS and key not in EXTRA_OPTIONAL_FIELDS:
            raise _BadValue(f"unknown field {key!r}")
        if key in fields:
            raise _BadValue(f"field {key!r} is given twice")
        fields[key] = value
    missing = [name for name in EXTRA_REQUIRED_FIELDS if not fields.get(name)]
    if missing:
        raise _BadValue(f"missing required field(s): {', '.join(missing)}")

    numbers = {name: _number(fields[name], name) for name in ("max_rss_bytes", "max_wall_seconds", "max_processors")}
    if any(value is None for value in numbers.values()):
        unset = [name for name, value in numbers.items() if value is None]
        raise _BadValue(f"{', '.join(unset)} must be a positive whole number")
    return ExtraEntry(
        entry_name=entry_name,
        site_name=fields["site_name"],
        jobsub_site_name=fields["jobsub_site_name"],
        wlcg_site_name=fields.get("wlcg_site_name") or fields["site_name"],
        gatekeeper=fields.get("gatekeeper") or entry_name,
        max_processors=numbers["max_processors"] or 0,
        max_rss_bytes=numbers["max_rss_bytes"] or 0,
        max_wall_seconds=numbers["max_wall_seconds"] or 0,
        entry_has_gpus=_extra_flag(fields, "entry_has_gpus"),
        file_name="",
        raw_config=str(fields),
        only_production=_extra_flag(fields, "only_production"),
        only_on_request=_extra_flag(fields, "only_on_request"),
    )


def parse_extra_entries(items: Mapping[str, str]) -> tuple[list[ExtraEntry], list[str]]:
    """Entries from the ``[extra_entries]`` section of the justIN configuration (upstream ``addExtraEntries``).

    Each item is ``entry_name = key=value key=value ...``, split on any whitespace,
    newlines included. The required keys are ``site_name``, ``jobsub_site_name``,
    ``max_rss_bytes``, ``max_wall_seconds`` and ``max_processors``. The optional keys are:

    * ``wlcg_site_name``, which defaults to ``site_name``;
    * ``only_production`` and ``only_on_request``, each ``true`` or ``false`` in any case
      (site flags, used when the entry is the first one seen for its site);
    * ``entry_has_gpus``, also ``true`` or ``false``;
    * ``gatekeeper``, which defaults to the entry name.

    Entry names keep the case they are given in. Upstream read the section with
    ``configparser``, whose default ``optionxform`` lower-cases option names, so it stored
    names such as ``dune_t3_us_nersc_perlmutter_cpu_sl7``. They only matched their
    mixed-case twins because MySQL's latin1 collation ignores case. Load the configuration
    with ``optionxform = str`` to pass the names through unchanged.

    Upstream accepted loose input without complaint; here the following reject the item:
    a token without ``=``, an unknown key, a repeated key, a flag other than true or false,
    and a number that is not a positive whole number. Upstream also created the site before
    a bad number failed the entry; here a bad item leaves no trace.

    Args:
        items: Entry name to field string, for example a ``configparser`` section.

    Returns:
        The valid entries in the order given, and one message per rejected item. Each
        message names the entry.
    """
    entries: list[ExtraEntry] = []
    errors: list[str] = []
    for raw_name, spec in items.items():
        entry_name = str(raw_name).strip()
        try:
            entries.append(_extra_entry(entry_name, spec))
        except _BadValue as exc:
            errors.append(f"{EXTRA_ENTRIES_SOURCE} entry {entry_name or repr(raw_name)}: {exc}; entry skipped")
    return entries, errors


# --------------------------------------------------------------------------------------
# Sites (upstream buildSites and the site part of updateSites)


def build_sites(entries_in_order: Iterable[Entry], extra: Iterable[Entry] = ()) -> dict[str, Site]:
    """Group entry records into sites (upstream ``buildSites`` and the site part of ``updateSites``).

    A site's ``jobsub_site_name`` and ``wlcg_site_name`` come from the first record seen for
    it. So do its ``only_production`` and ``only_on_request`` flags: they are set only when
    that record is an ``ExtraEntry``, and are ``False`` for OSG sources. ``country`` is
    ``'CERN'`` for the site ``CERN``, otherwise the first two characters of the site name.
    ``region`` is looked up in ``COUNTRY_REGIONS`` and is ``''`` for an unknown country.

    When an entry name occurs more than once, the last record wins and the entry is listed
    under that record's site. A site keeps its place even if it is left with no entries.

    Args:
        entries_in_order: OSG records in reading order (XML files, then YAML files).
        extra: ``[extra_entries]`` records, which upstream handles last.

    Returns:
        Sites keyed by name, in the order they were first seen.
    """
    first_record: dict[str, Entry] = {}
    final: dict[str, Entry] = {}
    for record in [*entries_in_order, *extra]:
        first_record.setdefault(record.site_name, record)
        final[record.entry_name] = record
    members: dict[str, list[Entry]] = {name: [] for name in first_record}
    for entry in final.values():
        members[entry.site_name].append(entry)

    sites: dict[str, Site] = {}
    for name, first in first_record.items():
        country = site_country(name)
        sites[name] = Site(
            site_name=name,
            jobsub_site_name=first.jobsub_site_name,
            wlcg_site_name=first.wlcg_site_name,
            only_production=isinstance(first, ExtraEntry) and first.only_production,
            only_on_request=isinstance(first, ExtraEntry) and first.only_on_request,
            country=country,
            region=country_region(country),
            entries=tuple(members[name]),
        )
    return sites


def _files(directory: Path, suffix: str) -> list[Path]:
    """Regular files directly in ``directory`` whose names end in ``suffix``, sorted by name."""
    return sorted((p for p in directory.iterdir() if p.name.endswith(suffix) and p.is_file()), key=lambda p: p.name)


def parse_gfactory(
    repo_dir: Path,
    extra_entries: Mapping[str, str] | None = None,
    *,
    honour_yaml_enabled: bool = False,
) -> GfactoryResult:
    """Parse an osg-gfactory checkout into sites and entries (upstream ``buildSites``).

    The checkout's top-level ``*.xml`` files are read first, then ``OSG_autoconf/*.yml``,
    each group sorted by name. ``[extra_entries]`` items come last. Nothing else is read:
    not ``OSG_autoconf/etc/``, not ``*.yaml``, not ``OSG_autoconf/*.xml``.

    Args:
        repo_dir: The root of the checkout.
        extra_entries: The ``[extra_entries]`` items, if any (see ``parse_extra_entries``).
        honour_yaml_enabled: Skip YAML entries marked ``enabled: false`` (upstream does not).

    Returns:
        Sites, entries (the last record of a name wins), one report per file (plus one for
        ``[extra_entries]`` when given) and every accepted record.

    Raises:
        NotADirectoryError: ``repo_dir`` is not a directory, e.g. because the clone failed.
    """
    repo_dir = Path(repo_dir)
    if not repo_dir.is_dir():
        raise NotADirectoryError(f"osg-gfactory checkout {repo_dir} is not a directory")

    records: list[Entry] = []
    reports: list[FileReport] = []
    for path in _files(repo_dir, ".xml"):
        entries, report = parse_xml_file(path)
        records.extend(entries)
        reports.append(report)

    autoconf = repo_dir / AUTOCONF_DIR
    if autoconf.is_dir():
        for path in _files(autoconf, ".yml"):
            entries, report = parse_yaml_file(path, honour_yaml_enabled=honour_yaml_enabled)
            records.extend(entries)
            reports.append(report)
    else:
        reports.append(FileReport(file_name=f"{AUTOCONF_DIR}/", error=f"{AUTOCONF_DIR}/: directory is missing"))

    extras: list[ExtraEntry] = []
    if extra_entries is not None:
        extras, errors = parse_extra_entries(extra_entries)
        reports.append(
            FileReport(
                file_name=EXTRA_ENTRIES_SOURCE,
                accepted=len(extras),
                skipped=MappingProxyType({SKIP_INVALID: len(errors)} if errors else {}),
                problems=tuple(errors),
            )
        )

    all_records = (*records, *extras)
    return GfactoryResult(
        sites=build_sites(records, extras),
        entries={record.entry_name: record for record in all_records},
        reports=reports,
        records=all_records,
    )
