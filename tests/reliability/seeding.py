"""Small, realistic data for the reliability and security tests: one job-factory stage, one
finder workflow whose files are in MetaCat and Rucio, and normalised snapshots of the tables."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from justin_flows.db.engine import transaction
from justin_flows.db.models import (
    Base,
    Stage,
    Storage,
    Workflow,
    WorkflowState,
)
from justin_flows.testing.metacat_double import MetaCatDouble
from tests.finder.conftest import RucioSeed


@dataclass
class FinderData:
    workflow_id: int
    rse: str
    dids: list[str]


def seed_finder_workflow(seed: RucioSeed, metacat: MetaCatDouble, files: int) -> FinderData:
    """A submitted workflow whose MQL names ``files`` files in MetaCat that have replicas in Rucio
    on one RSE known to ``storages``."""
    rse = seed.rse()
    dids = seed.files(files, [rse])
    dataset = f"{seed.scope}:ds"
    for i, did in enumerate(dids):
        metacat.seed_file(seed.scope, did.split(":", 1)[1], 1000 + i, datasets=[dataset])
    with transaction() as s:
        s.add(Storage(rse_name=rse, rucio_read=True, justin_read=True))
        wf = Workflow(state=WorkflowState.SUBMITTED, mql=f"files from {dataset}")
        s.add(wf)
        s.flush()
        s.add(Stage(workflow_id=wf.workflow_id, stage_id=1))
        wid = wf.workflow_id
    return FinderData(wid, rse, dids)


#: Columns that differ between two equally correct runs (clocks, generated secrets, ids the
#: sequences hand out, timings and host names).
VOLATILE_SUFFIXES = ("_time", "_at", "created", "started", "finished", "_seconds", "_ms")
VOLATILE = frozenset({
    "justin_job_secret", "jobscript_secret", "factory_name", "event_time", "duration_ms", "seconds",
    "flow_run_id", "raw_config", "last_rucio_seen_time", "last_osg_seen_time",
})  # fmt: skip


def _stable(column: str) -> bool:
    if column in VOLATILE:
        return False
    return not any(column.endswith(s) for s in VOLATILE_SUFFIXES)


def snapshot(
    tables: Iterable[str], *, drop: Mapping[str, Sequence[str]] | None = None
) -> dict[str, list[tuple[Any, ...]]]:
    """Each table's rows as sorted tuples of the stable columns (``drop`` removes more per table)."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    with transaction() as s:
        for name in tables:
            table = Base.metadata.tables[name]
            skip = set((drop or {}).get(name, ()))
            cols = [c for c in table.columns if _stable(c.name) and c.name not in skip]
            rows = s.execute(select(*cols)).all()
            out[name] = sorted((tuple(_plain(v) for v in r) for r in rows), key=repr)
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    return value if isinstance(value, (int, str, bool, type(None))) else str(value)


def duplicates(rows: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    seen: set[tuple[Any, ...]] = set()
    dups = []
    for row in rows:
        if row in seen:
            dups.append(row)
        seen.add(row)
    return dups
