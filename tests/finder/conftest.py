"""Fixtures and seeding helpers for the finder tests: the MetaCat double, Rucio data, DB rows."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from rucio.client import Client

from justin_flows.adapters.metacat import MetaCatAdapter
from justin_flows.adapters.rucio import RucioAdapter
from justin_flows.db.engine import transaction
from justin_flows.db.models import (
    MONTECARLO_RSE_ID,
    MONTECARLO_RSE_NAME,
    File,
    FileState,
    Stage,
    Storage,
    Workflow,
    WorkflowState,
)
from justin_flows.testing.metacat_double import MetaCatDouble
from justin_flows.testing.rucio_server import RucioServer
from tests.conftest import reset_caches

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.timezone.utc)


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


# --------------------------------------------------------------------------- MetaCat


@dataclass
class MetaCat:
    double: MetaCatDouble
    adapter: MetaCatAdapter

    def queries(self) -> list[tuple[str, str, int]]:
        return [tuple(r) for r in self.double.requests if r.path.endswith("/data/query")]  # type: ignore[misc]


@pytest.fixture
def metacat(monkeypatch: pytest.MonkeyPatch, tmp_home: Any) -> Iterator[MetaCat]:
    """The MetaCat double, with settings pointing at it, and an adapter built from them."""
    with MetaCatDouble() as double:
        monkeypatch.setenv("JUSTIN_METACAT__SERVER_INPUTS_URL", double.server_url)
        monkeypatch.setenv("JUSTIN_METACAT__SERVER_OUTPUTS_URL", double.server_url)
        monkeypatch.setenv("JUSTIN_METACAT__AUTH_SERVER_URL", double.auth_url)
        reset_caches()
        with MetaCatAdapter() as adapter:
            yield MetaCat(double, adapter)
        monkeypatch.undo()
        reset_caches()


# --------------------------------------------------------------------------- Rucio


class SpyRucio(RucioAdapter):
    """The real adapter, also noting the DIDs and domain of each ``list_replicas`` call."""

    def __init__(self) -> None:
        super().__init__()
        self.replica_calls: list[tuple[tuple[str, ...], str | None]] = []

    def list_replicas(self, dids: Any, schemes: Sequence[str] | None = None, domain: str | None = None) -> Any:
        dids = list(dids)
        self.replica_calls.append((tuple(f"{d['scope']}:{d['name']}" for d in dids), domain))
        return super().list_replicas(dids, schemes=schemes, domain=domain)


@pytest.fixture
def rucio(rucio_server: RucioServer) -> SpyRucio:
    return SpyRucio()


def _protocol(scheme: str, host: str, port: int, prefix: str, impl: str, wan: bool, lan: bool) -> dict[str, Any]:
    def ops(on: bool) -> dict[str, int | None]:
        # None disables an operation in a domain (0 would be the highest priority)
        return {"read": 1 if on else None, "write": 1 if on else None, "delete": 1 if on else None}

    return {"scheme": scheme, "hostname": host, "port": port, "prefix": prefix, "impl": impl,
            "domains": {"wan": ops(wan), "lan": ops(lan)}}


XROOTD = "rucio.rse.protocols.xrootd.Default"
POSIX = "rucio.rse.protocols.posix.Default"


@dataclass
class RucioSeed:
    """Unique RSEs, a scope and files in the shared Rucio server (registrations only, no bytes)."""

    client: Client = field(default_factory=Client)
    scope: str = field(default_factory=lambda: unique("fs"))

    doors: dict[str, dict[str, tuple[str, str, int, str]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.client.add_scope("root", self.scope)

    def pfn(self, rse: str, did: str, domain: str = "wan") -> str:
        """The PFN Rucio builds for ``did`` on ``rse`` in ``domain`` (deterministic hash paths)."""
        scheme, host, port, prefix = self.doors[rse][domain]
        scope, name = did.split(":", 1)
        digest = hashlib.md5(did.encode()).hexdigest()
        return f"{scheme}://{host}{f':{port}' if port else ''}{prefix}{scope}/{digest[0:2]}/{digest[2:4]}/{name}"

    def rse(self, protocols: str = "root", rse_type: str = "DISK") -> str:
        """An RSE offering ``root`` (same door for WAN and LAN), ``root-split`` (a WAN door and a
        different LAN door) or ``posix`` (``file`` only, like the sandbox RSEs)."""
        name = unique("FIND_").upper()
        host = name.lower().replace("_", "-")
        self.client.add_rse(name, deterministic=True, volatile=False, rse_type=rse_type)
        if protocols == "root":
            door = ("root", f"{host}.example", 1094, "/data/")
            self.doors[name] = {"wan": door, "lan": door}
        elif protocols == "root-split":
            self.doors[name] = {"wan": ("root", f"{host}.wan.example", 1094, "/data/"),
                                "lan": ("root", f"{host}.lan.example", 1095, "/data/")}
        elif protocols == "posix":
            door = ("file", "localhost", 0, f"/tmp/{name}/")
            self.doors[name] = {"wan": door, "lan": door}
        else:
            raise ValueError(protocols)
        impl = POSIX if protocols == "posix" else XROOTD
        wan, lan = self.doors[name]["wan"], self.doors[name]["lan"]
        if wan == lan:
            self.client.add_protocol(name, _protocol(*wan, impl, True, True))
        else:
            self.client.add_protocol(name, _protocol(*wan, impl, True, False))
            self.client.add_protocol(name, _protocol(*lan, impl, False, True))
        return name

    def files(self, n: int, rses: Sequence[str], size: int = 1000) -> list[str]:
        """``n`` new files with a replica on each of ``rses``; returns their DIDs."""
        names = [unique("file-") for _ in range(n)]
        entries = [{"scope": self.scope, "name": nm, "bytes": size + i, "adler32": "0000000%d" % (i % 10)}
                   for i, nm in enumerate(names)]
        for rse in rses:
            self.client.add_replicas(rse, entries)
        return [f"{self.scope}:{nm}" for nm in names]

    def dataset(self, dids: Sequence[str]) -> str:
        name = unique("ds-")
        self.client.add_dataset(self.scope, name)
        self.client.attach_dids(self.scope, name, [{"scope": self.scope, "name": d.split(":", 1)[1]} for d in dids])
        return f"{self.scope}:{name}"


@pytest.fixture
def seed(rucio_server: RucioServer) -> RucioSeed:
    return RucioSeed()


# --------------------------------------------------------------------------- DB rows


class Rows:
    """Seeds justIN rows directly with the models. Storages get explicit ids (MONTECARLO is 1)."""

    def __init__(self) -> None:
        self._rse_ids = itertools.count(10)

    def workflow(self, state: WorkflowState = WorkflowState.RUNNING, **kw: Any) -> int:
        with transaction() as s:
            wf = Workflow(state=state, **kw)
            s.add(wf)
            s.flush()
            return wf.workflow_id

    def stage(self, workflow_id: int, stage_id: int = 1, priority: int = 50) -> None:
        with transaction() as s:
            s.add(Stage(workflow_id=workflow_id, stage_id=stage_id, stage_priority=priority))

    def storage(self, rse_name: str, **kw: Any) -> int:
        rse_id = next(self._rse_ids)
        with transaction() as s:
            s.add(Storage(rse_id=rse_id, rse_name=rse_name, **kw))
        return rse_id

    def montecarlo(self) -> None:
        with transaction() as s:
            s.add(Storage(rse_id=MONTECARLO_RSE_ID, rse_name=MONTECARLO_RSE_NAME))

    def finding(self, workflow_id: int, dids: Sequence[str], stage_id: int = 1,
                state: FileState = FileState.FINDING) -> dict[str, int]:
        with transaction() as s:
            files = [File(workflow_id=workflow_id, stage_id=stage_id, file_did=d, state=state) for d in dids]
            s.add_all(files)
            s.flush()
            return {f.file_did: f.file_id for f in files}


@pytest.fixture
def rows(db: Any) -> Rows:
    return Rows()
