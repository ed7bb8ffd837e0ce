"""What updateStorages (reference §2.5) decides about one RSE, without Rucio or a database.

The collector (``justin_flows.collector.storages``) fetches an RSE's description,
attributes, protocols, usage and the account limit; these functions turn them into the
``storages`` columns. Upstream's rules are kept; each docstring says where it differs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

#: Schemes justIN jobs can write with; any other protocol (e.g. ``file``, ``srm``) is ignored.
WRITE_SCHEMES = ("root", "roots", "https", "davs")
#: The scheme used when an RSE offers no usable write protocol in a domain.
DEFAULT_WRITE_SCHEME = "root"
#: The one tape-backed RSE justIN treats as a usable storage (its files need pinning).
FNAL_DCACHE = "FNAL_DCACHE"

_RSE_NAME = re.compile(r"[A-Za-z0-9_-]+")


def valid_rse_name(name: object) -> bool:
    """Upstream only stores RSE names made of letters, digits, ``_`` and ``-``."""
    return isinstance(name, str) and _RSE_NAME.fullmatch(name) is not None


def is_decommissioned(rse_name: str, rse_type: str | None, attributes: Mapping[str, Any]) -> bool:
    """Non-DISK RSEs (except FNAL_DCACHE) and RSEs whose ``decommissioned`` attribute is true.

    Upstream compares the attribute with ``== True``; the Rucio server stores ``true``/``True``
    strings as booleans, so a boolean (or 1) is what arrives.
    """
    if rse_type != "DISK" and rse_name != FNAL_DCACHE:
        return True
    value = attributes.get("decommissioned", False)
    return value is True or (type(value) is int and value == 1)


def rucio_write(rse: Mapping[str, Any]) -> bool:
    """Rucio's write availability; non-deterministic RSEs are forced read-only (upstream)."""
    return bool(rse.get("deterministic")) and bool(rse.get("availability_write"))


def needs_pin(rse_name: str) -> bool:
    """Replicas on FNAL_DCACHE (tape-backed) must be pinned before jobs read them."""
    return FNAL_DCACHE in rse_name


def best_write_scheme(protocols: Iterable[Mapping[str, Any]], domain: str) -> str:
    """The write scheme for ``domain`` (``lan`` or ``wan``) among ``root/roots/https/davs``.

    Rucio's priorities count from 1 (best); 0 means "not for writing". The lowest positive
    write priority wins, a tie goes to the alphabetically smaller scheme, and with no usable
    protocol the answer is ``root``, as upstream. A priority that is not an integer (absent
    or ``None``) is skipped where upstream would have raised on the comparison.
    """
    best: tuple[int, str] | None = None
    for protocol in protocols:
        scheme = protocol.get("scheme")
        if scheme not in WRITE_SCHEMES:
            continue
        domains = protocol.get("domains")
        settings = domains.get(domain) if isinstance(domains, Mapping) else None
        priority = settings.get("write") if isinstance(settings, Mapping) else None
        if type(priority) is not int or priority <= 0:
            continue
        candidate = (priority, scheme)
        if best is None or candidate < best:
            best = candidate
    return DEFAULT_WRITE_SCHEME if best is None else best[1]


def write_schemes(protocols: Iterable[Mapping[str, Any]]) -> tuple[str, str]:
    """``(lan_write_scheme, wan_write_scheme)`` for an RSE's protocol list."""
    listed = list(protocols)
    return best_write_scheme(listed, "lan"), best_write_scheme(listed, "wan")


def occupancy(used: object, limit: object) -> float:
    """``used / limit`` as upstream computes it, or 0.0 on any problem.

    Problems are a missing or non-numeric value, a zero limit, and results that are not
    finite. An unlimited (``inf``) limit gives 0.0, since nothing is used up.
    """
    try:
        value = float(used) / float(limit)  # type: ignore[arg-type]
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        return 0.0
    return value if math.isfinite(value) else 0.0


#: Largest value of the signed 64-bit ``BIGINT`` columns of ``storages_quotas``.
BIGINT_MAX = 2**63 - 1


def quota_bytes(value: object) -> int:
    """A Rucio byte count or limit as a ``storages_quotas`` BIGINT.

    Rucio reports an unlimited quota as ``inf``. Upstream stores it as 2^64-1 in an unsigned
    column; ours is a signed BIGINT, so ``inf`` (and anything larger) becomes 2^63-1, which
    still passes the allocator's ``bytes + 10 GB < bytes_limit`` test. No value counts as 0.
    """
    if value is None:
        return 0
    number = float(value)  # type: ignore[arg-type]
    if math.isnan(number):
        return 0
    if number >= BIGINT_MAX:
        return BIGINT_MAX
    if number <= -BIGINT_MAX:
        return -BIGINT_MAX
    return int(value) if isinstance(value, int) else int(number)
