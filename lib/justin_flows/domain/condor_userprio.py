"""Parse ``condor_userprio -quotas -allusers`` output into DUNE group quotas.

Upstream: ``updateGroupsHTCondor()`` in agents/justin-info-collector (reference §2.3) splits
each output line on whitespace and keeps lines of exactly six fields whose first field (the
group name) starts with ``group_dune`` and holds no quote. The six fields are the group name,
effective quota, configured quota, surplus policy, subtree quota and weighted requests; only
the first three are stored.

Kept from upstream: the six-field rule, the ``group_dune`` prefix, the column order.

Deliberate differences:

* The two quotas must be finite numbers. Upstream pasted them unquoted into SQL, so a stray
  word in the output broke the statement (or worse); here such a line is a per-line problem
  that names the line, and the other lines are still used.
* A ``group_dune...`` line that does not have six fields, or whose name has characters other
  than letters, digits, ``_ . -`` (quotes included), is reported instead of silently dropped.
* A group listed twice: the last line wins, as upstream's successive UPDATEs did, and the
  repetition is reported.

Headings, separators, ``<none>`` and other groups' lines are not DUNE groups and are passed
over without a word, as upstream passes them over.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

GROUP_PREFIX = "group_dune"
FIELDS = 6
MAX_NAME_LENGTH = 255  # condor_groups.condor_group_name
_NAME = re.compile(r"[A-Za-z0-9_.-]+\Z")


@dataclass(frozen=True)
class GroupQuota:
    """One DUNE accounting group as condor_userprio reports it."""

    name: str
    effective_quota: float
    config_quota: float


@dataclass(frozen=True)
class LineProblem:
    """A ``group_dune`` line that could not be used, and why."""

    line_number: int
    line: str
    reason: str

    def describe(self) -> str:
        return f"condor_userprio line {self.line_number} {self.line.strip()!r}: {self.reason}"


@dataclass(frozen=True)
class ParsedQuotas:
    groups: tuple[GroupQuota, ...]
    problems: tuple[LineProblem, ...]


def _quota(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{what} {text!r} is not a finite number")
    return value


def parse_line(line: str) -> GroupQuota | None:
    """The group on ``line``; None for a line that is not about a DUNE group.

    Raises ValueError (with the reason) for a DUNE group line that cannot be used.
    """
    fields = line.split()
    if not fields or not fields[0].startswith(GROUP_PREFIX):
        return None
    name = fields[0]
    if len(fields) != FIELDS:
        raise ValueError(f"expected {FIELDS} whitespace-separated fields, found {len(fields)}")
    if not _NAME.match(name):
        raise ValueError(f"group name {name!r} has characters other than letters, digits, '_', '.', '-'")
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"group name is longer than {MAX_NAME_LENGTH} characters")
    return GroupQuota(name, _quota(fields[1], "effective quota"), _quota(fields[2], "config quota"))


def parse_quotas(output: str) -> ParsedQuotas:
    """Every DUNE group in ``output``, in output order, plus the lines that were unusable."""
    by_name: dict[str, GroupQuota] = {}
    problems: list[LineProblem] = []
    for number, line in enumerate(output.splitlines(), start=1):
        try:
            group = parse_line(line)
        except ValueError as exc:
            problems.append(LineProblem(number, line, str(exc)))
            continue
        if group is None:
            continue
        if group.name in by_name:
            problems.append(LineProblem(number, line, f"{group.name} listed again; this later line is used"))
            del by_name[group.name]  # re-insert so output order follows the line that is used
        by_name[group.name] = group
    return ParsedQuotas(tuple(by_name.values()), tuple(problems))
