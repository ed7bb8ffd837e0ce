"""Seeding helpers for collector tests on the shared real Rucio server (unique names only)."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rucio.client import Client
from rucio.common.exception import Duplicate

from justin_flows.ledger import LEDGER


def unique(prefix: str) -> str:
    """A name no other test in this session uses (RSE names must be upper case)."""
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def protocol(scheme: str, prefix: Path, lan_write: int, wan_write: int) -> dict[str, Any]:
    """A protocol entry; ``file`` is a working posix protocol, the others only describe doors."""
    posix = scheme == "file"
    return {
        "scheme": scheme,
        "hostname": "localhost" if posix else "door.example.org",
        "port": 0 if posix else 1094,
        "prefix": f"{prefix}/",
        "impl": "rucio.rse.protocols.posix.Default" if posix else "rucio.rse.protocols.gfal.Default",
        "domains": {
            "lan": {"read": 1, "write": lan_write, "delete": 1},
            "wan": {"read": 1, "write": wan_write, "delete": 1},
        },
    }


def add_rse(
    client: Client,
    name: str,
    prefix: Path,
    *,
    attributes: Mapping[str, Any] = {},
    protocols: list[tuple[str, int, int]] = (),  # type: ignore[assignment]
    rse_type: str = "DISK",
    deterministic: bool = True,
    limits: Mapping[str, int] = {},
) -> str:
    """An RSE with attributes, ``(scheme, lan write, wan write)`` protocols and local limits."""
    client.add_rse(name, deterministic=deterministic, volatile=False, rse_type=rse_type)
    for key, value in attributes.items():
        client.add_rse_attribute(name, key, value)
    for scheme, lan, wan in protocols:
        client.add_protocol(name, protocol(scheme, prefix, lan, wan))
    for account, nbytes in limits.items():
        client.set_local_account_limit(account, name, nbytes)
    return name


def add_scope(client: Client, account: str, scope: str) -> bool:
    """Create ``scope`` for ``account``; False if it already existed (the server is shared)."""
    try:
        client.add_scope(account, scope)
    except Duplicate:
        return False
    return True


def calls(service: str = "rucio") -> Counter[str]:
    """Operations recorded in the ledger since the ``db`` fixture drained it (all attempts)."""
    return Counter(r.operation for r in LEDGER.snapshot() if r.service == service)
