"""A job's output files: which names are acceptable, how they are found, checksummed and described.

Upstream globs ``home/workspace/<pattern>`` for each stage pattern and hands every basename
to shell commands (reference §5.2, §5.5). Here no shell is ever involved: names travel as
data (argv-free client APIs, ``tarfile``, JSON), so spaces, non-ASCII letters and shell
metacharacters cannot do harm. What is refused, and why:

* **never acceptable** (``unsafe_name_problem``): empty, ``.``/``..``, a path separator, NUL or
  any control character (newlines break every line-based log and tool), bytes that are not
  UTF-8 (MetaCat records are JSON), or more than 255 bytes (the POSIX name limit);
* **refused by Rucio** (``did_name_problem``): Rucio's generic DID-name policy allows only
  ``[A-Za-z0-9][A-Za-z0-9._-]*`` and at most 250 characters, so names with spaces, non-ASCII
  letters or shell metacharacters can never be uploaded (the real server answers
  ``InvalidObject``). They are refused *before* anything is declared, so MetaCat never holds a
  record for a file that cannot reach storage.
"""

from __future__ import annotations

import glob
import os
import re
import unicodedata
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_NAME_BYTES = 255
RUCIO_NAME_MAX_CHARS = 250
#: Rucio's generic schema ``NAME`` (without the ``/`` it also allows, as no output has one).
RUCIO_DID_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
MAX_PATTERN_CHARS = 255

#: ``dune.workflow`` fields an output file's metadata carries (reference §5.5).
WORKFLOW_FILE_FIELDS = (
    "site_name", "workflow_id", "stage_id", "user", "hostname", "jobscript_start", "jobscript_finish",
    "jobscript_real_seconds", "jobscript_cpu_seconds", "jobscript_max_rss_bytes", "cpuinfo", "os_release", "job_id",
)
OUTPUT_STATUS_KEY = "dune.output_status"
WORKFLOW_KEY = "dune.workflow"


class MetadataError(ValueError):
    """An output's metadata file cannot be used; the message says what is wrong with it."""


@dataclass(frozen=True)
class OutputFile:
    """One output the jobscript left in the workspace, matched by the stage pattern ``pattern_id``."""

    name: str
    path: Path
    size: int
    pattern_id: int


@dataclass(frozen=True)
class RefusedFile:
    """A matching file that cannot be an output, and why."""

    name: str
    pattern_id: int
    reason: str


@dataclass(frozen=True)
class Discovery:
    files: tuple[OutputFile, ...]
    refused: tuple[RefusedFile, ...]


@dataclass(frozen=True)
class FileRecord:
    """What is declared to MetaCat for one output besides size and checksum."""

    metadata: dict[str, Any]
    parents: list[Any]


# --------------------------------------------------------------------------- names


def unsafe_name_problem(name: str) -> str | None:
    """Why ``name`` can never be an output's name in any catalogue, or None."""
    if not name:
        return "the name is empty"
    if name in (".", ".."):
        return f"{name!r} is not a file name"
    if "\0" in name:
        return "the name contains a NUL byte"
    if "/" in name:
        return "the name contains a path separator '/'"
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        return "the name is not valid UTF-8"
    if len(encoded) > MAX_NAME_BYTES:
        return f"the name is {len(encoded)} bytes long, more than {MAX_NAME_BYTES}"
    for char in name:
        if unicodedata.category(char) == "Cc":
            return f"the name contains the control character U+{ord(char):04X}"
    return None


def did_name_problem(name: str) -> str | None:
    """Why Rucio's generic DID-name policy refuses ``name``, or None."""
    if len(name) > RUCIO_NAME_MAX_CHARS:
        return f"the name is {len(name)} characters long; Rucio allows at most {RUCIO_NAME_MAX_CHARS}"
    if not RUCIO_DID_NAME.match(name):
        bad = sorted({c for c in name if not (c.isascii() and (c.isalnum() or c in "._-"))})
        shown = "".join(bad) if bad else name[:1]
        return (
            f"Rucio's DID name rule {RUCIO_DID_NAME.pattern} refuses it "
            f"(characters {shown!r}; spaces, non-ASCII letters and shell characters are not allowed, "
            "and the name must start with a letter or digit)"
        )
    return None


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be an output (unsafe, or refused by Rucio), or None if it can."""
    return unsafe_name_problem(name) or did_name_problem(name)


def check_file_pattern(pattern: str) -> str:
    """A stage's output pattern: a glob relative to the workspace that cannot leave it."""
    if not isinstance(pattern, str) or not pattern or len(pattern) > MAX_PATTERN_CHARS:
        raise ValueError(f"file pattern {pattern!r} must be 1-{MAX_PATTERN_CHARS} characters")
    if "\0" in pattern or any(unicodedata.category(c) == "Cc" for c in pattern):
        raise ValueError(f"file pattern {pattern!r} contains a control character")
    if pattern.startswith("/") or ".." in pattern.split("/"):
        raise ValueError(f"file pattern {pattern!r} must stay inside the workspace (no leading '/', no '..')")
    return pattern


# --------------------------------------------------------------------------- discovery


def discover_output_files(workspace: Path, patterns: Sequence[tuple[int, str]]) -> Discovery:
    """Every regular file in ``workspace`` matching a pattern, in pattern then name order.

    A file matched by several patterns belongs to the first. Matches that cannot be outputs
    (see the module docstring, plus symbolic links, directories and a second file with the
    same name) are returned in ``refused`` with the reason; nothing is silently dropped.
    """
    root = Path(workspace)
    files: list[OutputFile] = []
    refused: list[RefusedFile] = []
    seen_paths: set[str] = set()
    seen_names: dict[str, str] = {}
    for pattern_id, pattern in patterns:
        check_file_pattern(pattern)
        for rel in sorted(glob.glob(pattern, root_dir=root)):
            if rel in seen_paths:
                continue
            seen_paths.add(rel)
            path = root / rel
            name = os.path.basename(rel)
            if path.is_symlink():
                refused.append(RefusedFile(name, pattern_id, "it is a symbolic link; outputs must be regular files"))
                continue
            if not path.is_file():
                refused.append(RefusedFile(name, pattern_id, "it is not a regular file"))
                continue
            problem = name_problem(name)
            if problem:
                refused.append(RefusedFile(name, pattern_id, problem))
                continue
            if name in seen_names:
                refused.append(RefusedFile(name, pattern_id, f"{seen_names[name]} already has this name"))
                continue
            seen_names[name] = rel
            files.append(OutputFile(name, path, path.stat().st_size, pattern_id))
    return Discovery(tuple(files), tuple(refused))


# --------------------------------------------------------------------------- checksums


def adler32_hex(value: int) -> str:
    """An adler32 value as MetaCat and Rucio write it: 8 lower-case hex digits."""
    return f"{value & 0xFFFFFFFF:08x}"


def adler32_of(path: Path, chunk_bytes: int = 1 << 20) -> str:
    """adler32 of the file at ``path``, read in chunks (outputs can be many GB)."""
    value = 1
    with Path(path).open("rb") as handle:
        while chunk := handle.read(chunk_bytes):
            value = zlib.adler32(chunk, value)
    return adler32_hex(value)


def same_adler32(a: object, b: object) -> bool:
    """Whether two adler32 strings are the same value (Rucio may drop leading zeros)."""
    try:
        return int(str(a), 16) == int(str(b), 16)
    except ValueError:
        return False


# --------------------------------------------------------------------------- metadata


def output_file_record(user_json: Any, *, workflow: Mapping[str, Any]) -> FileRecord:
    """The user's ``<file>.json`` (or None) merged with justIN's fields (reference §5.5).

    The user's top-level metadata keys are lower-cased (two keys that only differ in case are
    an error, not a silent overwrite), ``dune.workflow`` gets the job's fields and
    ``dune.output_status`` starts as ``recorded``; those two always win over the user's.
    Every key needs a ``category.`` prefix (MetaCat refuses others with 488 anyway).
    """
    record: Mapping[str, Any] = {} if user_json is None else user_json
    if not isinstance(record, Mapping):
        raise MetadataError("the metadata file must hold a JSON object")
    user_metadata = record.get("metadata", {})
    if not isinstance(user_metadata, Mapping):
        raise MetadataError("'metadata' in the metadata file must be a JSON object")
    metadata: dict[str, Any] = {}
    originals: dict[str, str] = {}
    for key, value in user_metadata.items():
        if not isinstance(key, str):
            raise MetadataError(f"metadata key {key!r} is not a string")
        lowered = key.lower()
        if lowered in originals:
            raise MetadataError(f"metadata keys {originals[lowered]!r} and {key!r} differ only in case")
        if "." not in lowered:
            raise MetadataError(f"metadata key {key!r} has no category (MetaCat needs category.name)")
        originals[lowered] = key
        metadata[lowered] = value
    metadata[WORKFLOW_KEY] = {k: workflow[k] for k in WORKFLOW_FILE_FIELDS if workflow.get(k) is not None}
    metadata[OUTPUT_STATUS_KEY] = "recorded"
    parents = record.get("parents", [])
    if not isinstance(parents, list):
        raise MetadataError("'parents' in the metadata file must be a list")
    for parent in parents:
        ok = isinstance(parent, str) and parent or (
            isinstance(parent, Mapping)
            and (parent.get("did") or parent.get("fid") or (parent.get("namespace") and parent.get("name")))
        )
        if not ok:
            raise MetadataError(f"parent {parent!r} must be a file id or {{did | fid | namespace+name}}")
    return FileRecord(metadata, list(parents))
