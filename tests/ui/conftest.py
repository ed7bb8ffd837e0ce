"""Fixtures for the UI-command tests: a jobscript HTTPS server, MetaCat and Rucio files, DB rows."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from rucio.client import Client

from justin_flows.adapters.rucio import RucioAdapter
from justin_flows.db.engine import transaction
from justin_flows.db.models import File, FileState, Replica, Stage, Storage, Workflow, WorkflowState
from justin_flows.ledger import LEDGER
from justin_flows.testing.https_server import LocalHTTPSServer, make_test_ca
from justin_flows.testing.metacat_double import MetaCatDouble
from justin_flows.testing.rucio_server import RucioServer
from tests.conftest import reset_caches
from tests.rucio_seed import add_rse, add_scope

JOBSCRIPT_PATH = "/DUNE/dune-justin/01.02.03/testing/hello-world.jobscript"
JOBSCRIPT_GIT = "DUNE/dune-justin/testing/hello-world.jobscript:01.02.03"
JOBSCRIPT_BODY = "#!/bin/bash\n# a test jobscript\necho 'Hello ```world```'"  # no trailing newline


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def ledger_calls() -> list[tuple[str, str, int, str]]:
    """Every external-call attempt recorded since the test began: (service, operation, attempt, outcome)."""
    return [(r.service, r.operation, r.attempt, r.outcome) for r in LEDGER.snapshot()]


@pytest.fixture
def ledger() -> None:
    """Start with an empty in-memory ledger (the ``db`` fixture does this too)."""
    LEDGER.drain()


# --------------------------------------------------------------------------- jobscripts


@pytest.fixture
def github(monkeypatch: pytest.MonkeyPatch, ledger: None) -> Iterator[LocalHTTPSServer]:
    """A raw-GitHub stand-in over HTTPS whose test CA the settings trust (``cilogon.ca_file``)."""
    with LocalHTTPSServer({JOBSCRIPT_PATH: (200, "text/plain; charset=utf-8", JOBSCRIPT_BODY)}) as server:
        monkeypatch.setenv("JUSTIN_CILOGON__CA_FILE", str(server.ca_file))
        reset_caches()
        yield server
    monkeypatch.undo()
    reset_caches()


@pytest.fixture
def impostor(tmp_path: Path) -> Iterator[LocalHTTPSServer]:
    """The same file served under a certificate from a CA nobody trusts."""
    with LocalHTTPSServer(
        {JOBSCRIPT_PATH: (200, "text/plain", "echo impostor\n")}, ca=make_test_ca("impostor CA"), work_dir=tmp_path / "i"
    ) as server:
        yield server


# --------------------------------------------------------------------------- MetaCat + Rucio


def rucio_pfn(prefix: Path, did: str) -> str:
    """The PFN Rucio builds for ``did`` on an RSE made by ``add_rse(..., protocols=[("root", 1, 1)])``."""
    scope, name = did.split(":", 1)
    digest = hashlib.md5(did.encode()).hexdigest()
    return f"root://door.example.org:1094{prefix}/{scope}/{digest[0:2]}/{digest[2:4]}/{name}"


@dataclass
class Catalogue:
    """Files in the session's MetaCat double (namespace = a fresh Rucio scope) and their replicas."""

    double: MetaCatDouble
    tmp_path: Path
    client: Client = field(default_factory=Client)
    scope: str = field(default_factory=lambda: unique("ui"))
    rse_prefixes: dict[str, Path] = field(default_factory=dict)

    def __post_init__(self) -> None:
        add_scope(self.client, "root", self.scope)

    @property
    def dataset(self) -> str:
        return f"{self.scope}:inputs"

    @property
    def mql(self) -> str:
        return f"files from {self.dataset}"

    def rse(self) -> str:
        name = unique("UI_").upper()
        prefix = self.tmp_path / name.lower()
        add_rse(self.client, name, prefix, protocols=[("root", 1, 1)])
        self.rse_prefixes[name] = prefix
        return name

    def files(self, n: int, rses: Sequence[str] = ()) -> list[str]:
        """``n`` new files in MetaCat's ``<scope>:inputs``, each with a replica on every one of ``rses``."""
        names = [unique("f") for _ in range(n)]
        for i, name in enumerate(names):
            self.double.seed_file(self.scope, name, 1000 + i, {"core.run": i}, datasets=[self.dataset])
        entries = [{"scope": self.scope, "name": nm, "bytes": 1000 + i, "adler32": "0000000%d" % (i % 10)}
                   for i, nm in enumerate(names)]
        for rse in rses:
            self.client.add_replicas(rse, entries)
        return [f"{self.scope}:{nm}" for nm in names]

    def pfn(self, rse: str, did: str) -> str:
        return rucio_pfn(self.rse_prefixes[rse], did)


@pytest.fixture
def catalogue(metacat_env: MetaCatDouble, rucio_server: RucioServer, tmp_path: Path, ledger: None) -> Catalogue:
    return Catalogue(metacat_env, tmp_path)


class SpyRucio(RucioAdapter):
    """The real adapter, also noting how many DIDs each ``list_replicas`` call asked about."""

    def __init__(self) -> None:
        super().__init__()
        self.chunks: list[int] = []
        self.arguments: list[tuple[tuple[str, ...], str | None]] = []

    def list_replicas(self, dids: Any, schemes: Sequence[str] | None = None, domain: str | None = None) -> Any:
        dids = list(dids)
        self.chunks.append(len(dids))
        self.arguments.append((tuple(schemes or ()), domain))
        return super().list_replicas(dids, schemes=schemes, domain=domain)


# --------------------------------------------------------------------------- database rows


@dataclass
class WorkflowRows:
    workflow_id: int
    file_ids: dict[str, int]
    rse_ids: dict[str, int]


def seed_workflow(files: Sequence[tuple[int, str, FileState]], replicas: Sequence[tuple[str, str, str]] = ()) -> WorkflowRows:
    """A running workflow with ``(stage, did, state)`` files and ``(did, rse, wan_pfn)`` replicas."""
    with transaction() as s:
        wf = Workflow(state=WorkflowState.RUNNING, mql="files from x:y")
        s.add(wf)
        s.flush()
        for stage_id in sorted({stage for stage, _, _ in files if stage > 0}):
            s.add(Stage(workflow_id=wf.workflow_id, stage_id=stage_id))
        rows = {did: File(workflow_id=wf.workflow_id, stage_id=stage, file_did=did, state=state)
                for stage, did, state in files}
        s.add_all(rows.values())
        storages: dict[str, Storage] = {}
        for rse in sorted({rse for _, rse, _ in replicas}):
            storages[rse] = Storage(rse_id=10 + len(storages), rse_name=rse)
        s.add_all(storages.values())
        s.flush()
        for did, rse, pfn in replicas:
            f = rows[did]
            s.add(Replica(file_id=f.file_id, rse_id=storages[rse].rse_id, workflow_id=wf.workflow_id,
                          stage_id=f.stage_id, wan_pfn=pfn))
        return WorkflowRows(wf.workflow_id, {d: f.file_id for d, f in rows.items()},
                            {r: st.rse_id for r, st in storages.items()})
