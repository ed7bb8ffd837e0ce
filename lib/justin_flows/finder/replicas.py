"""findReplicas (reference §3): look up where the found files are and make them allocatable.

Files in ``finding`` (running workflows, ``SCOPE:NAME`` DIDs only) are asked about in bulk:
for each chunk of DIDs one ``list_replicas`` call with ``domain='wan'`` and one with
``domain='lan'``, never one call per file. A replica counts if its PFN's type is DISK (or
its RSE is one of ``always_kept_rses``, upstream: FNAL_DCACHE) and its RSE is a known,
not decommissioned storage. A file with at least one such replica becomes ``unallocated``,
any other file ``notfound``.

Differences from upstream, on purpose:

* Upstream handles one (workflow, stage) per cycle, 500 files at most, picking among equal
  priorities at random. Here every stage is served in one run, highest ``stage_priority``
  first, then by workflow, stage and file id (deterministic), up to ``max_files`` files
  (default 5000: ten upstream-sized chunks, i.e. 20 Rucio calls), so a big stage cannot make
  the others wait a cycle each, and one run's Rucio load stays bounded.
* ``accessible_until``: our schema stores NULL for "accessible for ever" (upstream's
  9999-12-31 default). A replica on a ``needs_pin`` storage gets the 1970 epoch, as upstream,
  meaning "must be pinned before use".
* A replica needs a WAN PFN; an RSE that only answers on the LAN is not recorded (upstream
  would store an empty ``wan_pfn``).
* Upstream's ``fixPfn`` double-slash rewrites are not applied: the reference does not say
  what they do, so PFNs are stored as Rucio returns them.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Table, select, update
from sqlalchemy.orm import Session

from justin_flows.adapters.calls import ExternalCallError
from justin_flows.adapters.rucio import RucioAdapter, is_transient
from justin_flows.collector.report import CollectorReport
from justin_flows.concurrency import bounded_map
from justin_flows.db.engine import transaction, upsert
from justin_flows.db.models import File, FileState, Replica, Stage, Storage, Workflow, WorkflowState
from justin_flows.settings import get_settings

UPSTREAM_CHUNK_SIZE = 500  # upstream maxFileFindsPerCycle
DEFAULT_MAX_FILES = 10 * UPSTREAM_CHUNK_SIZE
DEFAULT_SCHEMES: tuple[str, ...] = ("root",)  # upstream forces root
ALWAYS_KEPT_RSES: tuple[str, ...] = ("FNAL_DCACHE",)  # kept whatever its PFN type (tape behind a disk cache)
NEEDS_PIN = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
WRITE_BATCH = 1000


@dataclass(frozen=True)
class _FindingFile:
    file_id: int
    workflow_id: int
    stage_id: int
    file_did: str


@dataclass(frozen=True)
class _Pfn:
    rse: str
    pfn: str
    type: str
    priority: int


@dataclass
class _Lookup:
    """What Rucio said about some DIDs."""

    wan: dict[str, dict[str, _Pfn]] = field(default_factory=dict)  # did -> rse -> preferred WAN PFN
    lan: dict[str, dict[str, _Pfn]] = field(default_factory=dict)  # did -> rse -> preferred LAN PFN
    refused: dict[str, str] = field(default_factory=dict)  # did -> Rucio's error for that DID alone

    def merge(self, other: _Lookup) -> _Lookup:
        self.wan.update(other.wan)
        self.lan.update(other.lan)
        self.refused.update(other.refused)
        return self


def find_replicas(
    rucio: RucioAdapter,
    *,
    chunk_size: int = UPSTREAM_CHUNK_SIZE,
    max_files: int = DEFAULT_MAX_FILES,
    schemes: Sequence[str] = DEFAULT_SCHEMES,
    always_kept_rses: Sequence[str] = ALWAYS_KEPT_RSES,
) -> CollectorReport:
    """findReplicas: record the replicas of up to ``max_files`` finding files, in bulk calls.

    Chunks of ``chunk_size`` distinct DIDs are asked about concurrently (at most
    ``rucio.max_in_flight`` at once). A chunk whose calls fail transiently (after the
    adapter's retries) leaves its files in ``finding`` for the next run and is reported. A
    chunk Rucio refuses outright (e.g. a DID with an empty name fails the whole request) is
    halved until the refused DIDs are alone; those files become ``notfound``, each reported,
    and the rest of the chunk is recorded as usual. Everything is written in one transaction.
    """
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    if max_files < 1:
        raise ValueError("max_files must be at least 1")
    report = CollectorReport("findReplicas")
    files = _finding_files(max_files)
    if not files:
        return report

    scheme_list = [schemes] if isinstance(schemes, str) else list(schemes)
    dids = list(dict.fromkeys(f.file_did for f in files))
    chunks = [dids[i : i + chunk_size] for i in range(0, len(dids), chunk_size)]

    def ask(chunk: list[str]) -> _Lookup:
        return _lookup(rucio, chunk, scheme_list)

    answered = _Lookup()
    asked: set[str] = set()
    for outcome in bounded_map(ask, chunks, max_workers=get_settings().rucio.max_in_flight):
        report.count("chunks")
        if outcome.error is not None or outcome.value is None:
            report.count("chunks_failed")
            report.error(
                f"list_replicas for {len(outcome.item)} DIDs ({outcome.item[0]} ... {outcome.item[-1]}) failed; "
                f"they stay in finding: {outcome.error}"
            )
            continue
        answered.merge(outcome.value)
        asked.update(outcome.item)
    for did, why in sorted(answered.refused.items()):
        report.error(f"Rucio refused DID {did!r}; its files are set to notfound: {why}")
    if answered.refused:
        report.count("dids_refused", len(answered.refused))

    with transaction() as session:
        _record(session, [f for f in files if f.file_did in asked], answered, set(always_kept_rses), report)
    return report


# --------------------------------------------------------------------------- gather


def _finding_files(max_files: int) -> list[_FindingFile]:
    query = (
        select(File.file_id, File.workflow_id, File.stage_id, File.file_did)
        .join(Workflow, Workflow.workflow_id == File.workflow_id)
        .join(Stage, (Stage.workflow_id == File.workflow_id) & (Stage.stage_id == File.stage_id))
        .where(
            Workflow.state == WorkflowState.RUNNING,
            File.state == FileState.FINDING,
            File.file_did.like("%:%"),
        )
        .order_by(Stage.stage_priority.desc(), File.workflow_id, File.stage_id, File.file_id)
        .limit(max_files)
    )
    with transaction() as session:
        return [_FindingFile(*row) for row in session.execute(query).all()]


def _lookup(rucio: RucioAdapter, chunk: list[str], schemes: list[str]) -> _Lookup:
    """One WAN and one LAN ``list_replicas`` call for ``chunk``; halves it if Rucio refuses it.

    Transient failures (already retried by the adapter) propagate: the chunk waits for the
    next run. A refusal names no DID, so the chunk is split until the culprits are alone.
    """
    specs = []
    for did in chunk:
        scope, _, name = did.partition(":")
        specs.append({"scope": scope, "name": name})
    try:
        wan = rucio.list_replicas(specs, schemes=schemes, domain="wan")
        lan = rucio.list_replicas(specs, schemes=schemes, domain="lan")
    except ExternalCallError as exc:
        if is_transient(exc.cause):
            raise
        if len(chunk) == 1:
            return _Lookup(refused={chunk[0]: str(exc)})
        half = len(chunk) // 2
        return _lookup(rucio, chunk[:half], schemes).merge(_lookup(rucio, chunk[half:], schemes))
    return _Lookup(_best_pfns(wan), _best_pfns(lan))


def _best_pfns(answer: Sequence[dict[str, Any]]) -> dict[str, dict[str, _Pfn]]:
    """For each DID in a ``list_replicas`` answer, each RSE's preferred PFN (lowest priority number)."""
    best: dict[str, dict[str, _Pfn]] = {}
    for replica in answer:
        per_rse = best.setdefault(f"{replica['scope']}:{replica['name']}", {})
        for pfn, info in (replica.get("pfns") or {}).items():
            candidate = _Pfn(str(info.get("rse")), pfn, str(info.get("type")), int(info.get("priority") or 0))
            current = per_rse.get(candidate.rse)
            if current is None or (candidate.priority, candidate.pfn) < (current.priority, current.pfn):
                per_rse[candidate.rse] = candidate
    return best


# --------------------------------------------------------------------------- record


def _record(
    session: Session,
    files: list[_FindingFile],
    answered: _Lookup,
    always_kept: set[str],
    report: CollectorReport,
) -> None:
    storages = {
        name: (rse_id, needs_pin)
        for name, rse_id, needs_pin in session.execute(
            select(Storage.rse_name, Storage.rse_id, Storage.needs_pin).where(Storage.decommissioned.is_(False))
        ).all()
    }
    replica_rows: list[dict[str, Any]] = []
    found_ids: list[int] = []
    notfound_ids: list[int] = []
    per_stage: dict[tuple[int, int], dict[str, int]] = defaultdict(
        lambda: {"files": 0, "unallocated": 0, "notfound": 0, "replicas": 0}
    )
    for f in files:
        wan, lan = answered.wan.get(f.file_did, {}), answered.lan.get(f.file_did, {})
        rows = []
        for rse, pfn in sorted(wan.items()):
            if pfn.type != "DISK" and rse not in always_kept:
                report.count("pfns_ignored_not_disk")
                continue
            if rse not in storages:
                report.count("pfns_ignored_unknown_or_decommissioned_rse")
                continue
            rse_id, needs_pin = storages[rse]
            lan_pfn = lan[rse].pfn if rse in lan else ""
            rows.append(
                {
                    "file_id": f.file_id,
                    "rse_id": rse_id,
                    "workflow_id": f.workflow_id,
                    "stage_id": f.stage_id,
                    "wan_pfn": pfn.pfn,
                    "lan_pfn": "" if lan_pfn == pfn.pfn else lan_pfn,
                    "accessible_until": NEEDS_PIN if needs_pin else None,
                }
            )
        stats = per_stage[(f.workflow_id, f.stage_id)]
        stats["files"] += 1
        stats["replicas"] += len(rows)
        if rows:
            replica_rows.extend(rows)
            found_ids.append(f.file_id)
            stats["unallocated"] += 1
        else:
            notfound_ids.append(f.file_id)
            stats["notfound"] += 1

    # A replica already known keeps its accessible_until (a pin agent may have set it).
    table = cast(Table, Replica.__table__)
    for start in range(0, len(replica_rows), WRITE_BATCH):
        batch = replica_rows[start : start + WRITE_BATCH]
        upsert(session, table, batch, ["rse_id", "file_id"], ["wan_pfn", "lan_pfn"])
    for state, ids in ((FileState.UNALLOCATED, found_ids), (FileState.NOTFOUND, notfound_ids)):
        for start in range(0, len(ids), WRITE_BATCH):
            session.execute(
                update(File)
                .where(File.file_id.in_(ids[start : start + WRITE_BATCH]), File.state == FileState.FINDING)
                .values(state=state)
                .execution_options(synchronize_session=False)
            )

    report.count("files_examined", len(files))
    report.count("unallocated", len(found_ids))
    report.count("notfound", len(notfound_ids))
    report.count("replicas_recorded", len(replica_rows))
    for (workflow_id, stage_id), stats in sorted(per_stage.items()):
        report.rows.append({"workflow_id": workflow_id, "stage_id": stage_id, **stats})
