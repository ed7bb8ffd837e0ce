"""What the allocator tells a job about its outputs (upstream's ``record_results`` reply, §5.2).

The allocation is a JSON object; every value is checked here, before any file is read or
any service is called, and a bad one is refused with a message naming the field::

    {
      "justin_job_id": 17,
      "jobsub_id": "1234.0@justin-prod-sched01.dune.hep.ac.uk",
      "workflow_id": 5, "stage_id": 1, "scope": "usertests",
      "jobscript_exit": 0,
      "output_rses": [["RSE_A", "root"], {"rse": "RSE_B", "scheme": "davs"}],
      "patterns": {
        "1": {"file_pattern": "*.root", "destination": "dev-w5s1p1", "destination_number": "n001",
              "lifetime_seconds": 86400, "rse_expression": "", "for_next_stage": false}
      },
      "existing_dataset_dids": ["usertests:dev-w5s1p1"],
      "job": {"site_name": "UK_Manchester", "user": "someone@fnal.gov", "hostname": "wn01", ...},
      "stage": {"processors": 1, "rss_bytes": 2097152000, "wall_seconds": 80000,
                "jobscript_image": "...", "mql": "..."}
    }

``output_rses`` is ordered best first (the allocator's ``preferred DESC, distance, ...``);
only the first three are tried, as upstream. ``patterns`` may also be a list of objects with
a ``pattern_id``. ``job`` holds the ``dune.workflow`` fields of the output files' metadata
and ``stage`` those of the datasets' metadata; both are optional.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from justin_flows.domain.output_datasets import check_dataset_name, parse_destination_number
from justin_flows.domain.output_files import check_file_pattern
from justin_flows.domain.validation import validate_rse_expression

MAX_OUTPUT_RSES = 3  # upstream tries output_rses[:3]

_SCOPE = re.compile(r"^[A-Za-z0-9_.-]{1,25}$")
_RSE = re.compile(r"^[A-Z0-9]+([_-][A-Z0-9]+)*$")
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]{0,15}$")
_JOBSUB_ID = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+$")
_DID = re.compile(r"^[A-Za-z0-9_.-]{1,25}:[A-Za-z0-9_.-]{1,250}$")


class AllocationError(ValueError):
    """The allocation cannot be used; the message names the field and what is wrong."""


@dataclass(frozen=True)
class OutputRse:
    rse: str
    scheme: str


@dataclass(frozen=True)
class PatternDestination:
    """Where the files of one stage output pattern go (reference §5.3)."""

    pattern_id: int
    file_pattern: str
    destination: str  # the overall dataset's name, or an https:// URL (WebDAV scratch)
    destination_number: str  # "n001", ...
    lifetime_seconds: int
    rse_expression: str = ""
    for_next_stage: bool = False

    @property
    def is_webdav(self) -> bool:
        return self.destination.startswith("https://")


@dataclass(frozen=True)
class Allocation:
    justin_job_id: int
    jobsub_id: str
    workflow_id: int
    stage_id: int
    scope: str
    jobscript_exit: int
    output_rses: tuple[OutputRse, ...]
    patterns: tuple[PatternDestination, ...]
    existing_dataset_dids: frozenset[str] = frozenset()
    job: Mapping[str, Any] = field(default_factory=dict)
    stage: Mapping[str, Any] = field(default_factory=dict)

    @property
    def tried_rses(self) -> tuple[OutputRse, ...]:
        """The output RSEs that are tried, best first (at most three)."""
        return self.output_rses[:MAX_OUTPUT_RSES]

    def pattern(self, pattern_id: int) -> PatternDestination:
        for p in self.patterns:
            if p.pattern_id == pattern_id:
                return p
        raise KeyError(pattern_id)


def _int(data: Mapping[str, Any], key: str, minimum: int | None = None, default: int | None = None) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise AllocationError(f"{key} must be an integer, not {value!r}")
    if minimum is not None and value < minimum:
        raise AllocationError(f"{key} must be at least {minimum}, not {value}")
    return value


def _str(data: Mapping[str, Any], key: str, pattern: re.Pattern[str], what: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not pattern.match(value):
        raise AllocationError(f"{key} {value!r} is not {what}")
    return value


def _output_rse(item: Any) -> OutputRse:
    if isinstance(item, Mapping):
        rse, scheme = item.get("rse"), item.get("scheme")
    elif isinstance(item, (list, tuple)) and len(item) == 2:
        rse, scheme = item
    else:
        raise AllocationError(f"output RSE {item!r} is not [rse, scheme] or {{rse, scheme}}")
    if not isinstance(rse, str) or not _RSE.match(rse):
        raise AllocationError(f"output RSE name {rse!r} is not a Rucio RSE name")
    if not isinstance(scheme, str) or not _SCHEME.match(scheme):
        raise AllocationError(f"scheme {scheme!r} of output RSE {rse} is not a protocol scheme")
    return OutputRse(rse, scheme)


def _pattern(pattern_id: Any, item: Any) -> PatternDestination:
    if not isinstance(item, Mapping):
        raise AllocationError(f"pattern {pattern_id!r} is not an object")
    try:
        pid = int(pattern_id)
    except (TypeError, ValueError):
        raise AllocationError(f"pattern id {pattern_id!r} is not an integer") from None
    if pid < 1:
        raise AllocationError(f"pattern id {pid} must be at least 1")
    where = f"pattern {pid}"
    try:
        file_pattern = check_file_pattern(item.get("file_pattern"))  # type: ignore[arg-type]
    except ValueError as exc:
        raise AllocationError(f"{where}: {exc}") from None
    destination = item.get("destination")
    if not isinstance(destination, str):
        raise AllocationError(f"{where}: destination {destination!r} is not a string")
    if not destination.startswith("https://"):
        try:
            check_dataset_name(destination)
        except ValueError as exc:
            raise AllocationError(f"{where}: {exc}") from None
    try:
        number = parse_destination_number(item.get("destination_number", "n001"))
    except ValueError as exc:
        raise AllocationError(f"{where}: {exc}") from None
    lifetime = item.get("lifetime_seconds", 86400)
    if isinstance(lifetime, bool) or not isinstance(lifetime, int) or lifetime <= 0:
        raise AllocationError(f"{where}: lifetime_seconds must be a positive integer, not {lifetime!r}")
    rse_expression = item.get("rse_expression") or ""
    if not isinstance(rse_expression, str):
        raise AllocationError(f"{where}: rse_expression {rse_expression!r} is not a string")
    if rse_expression:
        try:
            validate_rse_expression(rse_expression)
        except ValueError as exc:
            raise AllocationError(f"{where}: {exc}") from None
    for_next_stage = item.get("for_next_stage", False)
    if not isinstance(for_next_stage, bool):
        raise AllocationError(f"{where}: for_next_stage must be true or false, not {for_next_stage!r}")
    return PatternDestination(pid, file_pattern, destination, number, lifetime, rse_expression, for_next_stage)


def parse_allocation(data: Any) -> Allocation:
    """An ``Allocation`` from its JSON object, every field checked (``AllocationError`` if not)."""
    if not isinstance(data, Mapping):
        raise AllocationError("the allocation must be a JSON object")
    justin_job_id = _int(data, "justin_job_id" if "justin_job_id" in data else "job_id", minimum=1)
    jobsub_id = _str(data, "jobsub_id", _JOBSUB_ID, "<cluster>.<proc>@<schedd>")
    scope = _str(data, "scope", _SCOPE, "a Rucio scope name")
    raw_rses = data.get("output_rses", [])
    if not isinstance(raw_rses, list):
        raise AllocationError("output_rses must be a list")
    rses: list[OutputRse] = []
    for item in raw_rses:
        rse = _output_rse(item)
        if rse.rse not in {r.rse for r in rses}:
            rses.append(rse)
    raw_patterns = data.get("patterns", {})
    if isinstance(raw_patterns, Mapping):
        patterns = [_pattern(k, v) for k, v in raw_patterns.items()]
    elif isinstance(raw_patterns, list):
        patterns = [_pattern(p.get("pattern_id") if isinstance(p, Mapping) else None, p) for p in raw_patterns]
    else:
        raise AllocationError("patterns must be an object keyed by pattern id, or a list")
    ids = [p.pattern_id for p in patterns]
    if len(ids) != len(set(ids)):
        raise AllocationError(f"pattern ids repeat: {sorted(ids)}")
    existing = data.get("existing_dataset_dids", [])
    if not isinstance(existing, list) or not all(isinstance(d, str) and _DID.match(d) for d in existing):
        raise AllocationError("existing_dataset_dids must be a list of scope:name strings")
    for key in ("job", "stage"):
        if not isinstance(data.get(key, {}), Mapping):
            raise AllocationError(f"{key} must be an object")
    return Allocation(
        justin_job_id=justin_job_id,
        jobsub_id=jobsub_id,
        workflow_id=_int(data, "workflow_id", minimum=1),
        stage_id=_int(data, "stage_id", minimum=1),
        scope=scope,
        jobscript_exit=_int(data, "jobscript_exit", default=0),
        output_rses=tuple(rses),
        patterns=tuple(sorted(patterns, key=lambda p: p.pattern_id)),
        existing_dataset_dids=frozenset(existing),
        job=dict(data.get("job", {})),
        stage=dict(data.get("stage", {})),
    )
