"""showReplicasCmd (reference §6.3), command ``show-replicas``: where the files of a query or workflow are.

* ``monte-carlo N``: up to 100 synthetic lines ``monte-carlo-000001-%06d %06d MONTECARLO``,
  as upstream (workflow number 1 hard-coded there too); no external call.
* other MQL: the MetaCat query **once**, then ``list_replicas(schemes=['root'], domain='wan')``
  for the DIDs in chunks of ``chunk_size`` (default 500) instead of upstream's one bulk call
  for every file, so one request stays bounded however many files the query matches (and
  never one call per file). Chunks run at most ``rucio.max_in_flight`` at a time. Each
  replica on each RSE gives one ``"<did> <first PFN on that RSE> <RSE>"`` line, in the
  query's file order, RSEs by name. No limit unless one is given (then the first ``limit``
  files are looked up, as upstream has none here).
* ``workflow_id``: the ``replicas`` rows of that workflow joined with ``storages`` and
  ``files`` (optional stage, DID, RSE), input stages only, at most 100 (upstream's LIMIT),
  as ``"%5d %2d %-11s %s %s %s"`` lines (workflow, stage, file state, did, RSE, WAN PFN).
  Ordered by workflow, stage, DID and RSE (upstream leaves the order to the database).

Any Rucio failure fails the command with the chunk and Rucio's error named: a partial list
would look like files without replicas.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from justin_flows.adapters.metacat import MetaCatAdapter
from justin_flows.adapters.rucio import RucioAdapter
from justin_flows.concurrency import bounded_map
from justin_flows.db.engine import transaction
from justin_flows.db.models import MONTECARLO_RSE_NAME, File, FileState, Replica, Storage
from justin_flows.finder.files import SOURCE_MONTE_CARLO, monte_carlo_did, monte_carlo_pfn, parse_input_source
from justin_flows.settings import get_settings
from justin_flows.ui.files import check_limit, query_dids, require_workflow
from justin_flows.ui.result import CommandResult, UIInputError, UIServiceError

DEFAULT_CHUNK_SIZE = 500  # DIDs per list_replicas call (the finder's upstream chunk)
MAX_CHUNK_SIZE = 5000
SCHEMES: tuple[str, ...] = ("root",)
DOMAIN = "wan"
MONTE_CARLO_LINES = 100  # upstream prints at most this many synthetic lines
MONTE_CARLO_WORKFLOW = 1  # upstream hard-codes workflow 1 in the synthetic names
WORKFLOW_LIMIT = 100  # upstream's LIMIT on the workflow form


def _check_chunk_size(chunk_size: int) -> None:
    if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise UIInputError(f"chunk size must be between 1 and {MAX_CHUNK_SIZE}, got {chunk_size}")


def show_replicas_monte_carlo(count: int, *, limit: int | None = None) -> CommandResult:
    """The ``monte-carlo N`` form: synthetic lines, at most 100 (or ``limit``)."""
    check_limit(limit)
    shown = min(count, MONTE_CARLO_LINES if limit is None else limit)
    result = CommandResult("show-replicas")
    for i in range(1, shown + 1):
        did, pfn = monte_carlo_did(MONTE_CARLO_WORKFLOW, i), monte_carlo_pfn(i)
        result.lines.append(f"{did} {pfn} {MONTECARLO_RSE_NAME}")
        result.rows.append({"did": did, "pfn": pfn, "rse": MONTECARLO_RSE_NAME})
    result.counts["files"] = shown
    result.counts["replicas"] = shown
    return result


def _chunk_replicas(rucio: RucioAdapter, chunk: Sequence[str]) -> list[dict[str, Any]]:
    specs = []
    for did in chunk:
        scope, _, name = did.partition(":")
        specs.append({"scope": scope, "name": name})
    return rucio.list_replicas(specs, schemes=list(SCHEMES), domain=DOMAIN)


def show_replicas_mql(
    metacat: MetaCatAdapter,
    rucio: RucioAdapter,
    mql: str,
    *,
    limit: int | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> CommandResult:
    """showReplicasCmd, MQL form: one MetaCat query, then ``list_replicas`` per chunk of DIDs."""
    check_limit(limit)
    _check_chunk_size(chunk_size)
    words = mql.split()
    if words and words[0] == SOURCE_MONTE_CARLO:
        try:
            source = parse_input_source(mql)
        except ValueError as exc:
            raise UIInputError(str(exc)) from exc
        if source.kind == SOURCE_MONTE_CARLO:
            return show_replicas_monte_carlo(source.count, limit=limit)

    dids = list(dict.fromkeys(query_dids(metacat, mql)))
    if limit is not None:
        dids = dids[:limit]
    chunks = [dids[i : i + chunk_size] for i in range(0, len(dids), chunk_size)]

    def ask(chunk: list[str]) -> list[dict[str, Any]]:
        return _chunk_replicas(rucio, chunk)

    per_did: dict[str, dict[str, str]] = {}
    for outcome in bounded_map(ask, chunks, max_workers=get_settings().rucio.max_in_flight):
        if outcome.error is not None or outcome.value is None:
            chunk = outcome.item
            raise UIServiceError(
                f"Rucio list_replicas for {len(chunk)} file(s) ({chunk[0]} ... {chunk[-1]}) failed: {outcome.error}"
            ) from outcome.error
        for replica in outcome.value:
            did = f"{replica['scope']}:{replica['name']}"
            rses = per_did.setdefault(did, {})
            for rse, pfns in (replica.get("rses") or {}).items():
                if pfns:
                    rses[str(rse)] = str(pfns[0])

    result = CommandResult("show-replicas")
    for did in dids:
        for rse, pfn in sorted(per_did.get(did, {}).items()):
            result.lines.append(f"{did} {pfn} {rse}")
            result.rows.append({"did": did, "pfn": pfn, "rse": rse})
    result.counts["files"] = len(dids)
    result.counts["files_without_replicas"] = sum(1 for did in dids if not per_did.get(did))
    result.counts["replicas"] = len(result.lines)
    result.counts["list_replicas_calls"] = len(chunks)
    return result


def show_replicas_workflow(
    workflow_id: int,
    *,
    stage_id: int | None = None,
    file_did: str | None = None,
    rse_name: str | None = None,
    limit: int = WORKFLOW_LIMIT,
) -> CommandResult:
    """showReplicasCmd, workflow form: ``replicas`` ⟕ ``storages`` ⟕ ``files`` rows, at most ``limit``."""
    check_limit(limit)
    query = (
        select(Replica.workflow_id, Replica.stage_id, File.state, File.file_did, Storage.rse_name, Replica.wan_pfn)
        .select_from(Replica)
        .outerjoin(Storage, Storage.rse_id == Replica.rse_id)
        .outerjoin(File, File.file_id == Replica.file_id)
        .where(Replica.workflow_id == workflow_id, Replica.stage_id > 0)
    )
    if stage_id is not None:
        query = query.where(Replica.stage_id == stage_id)
    if file_did is not None:
        query = query.where(File.file_did == file_did)
    if rse_name is not None:
        query = query.where(Storage.rse_name == rse_name)
    query = query.order_by(Replica.workflow_id, Replica.stage_id, File.file_did, Storage.rse_name).limit(limit)
    with transaction() as session:
        require_workflow(session, workflow_id)
        found = session.execute(query).all()
    result = CommandResult("show-replicas")
    for wid, sid, state, did, rse, pfn in found:
        state_name = FileState(state).value if state is not None else ""
        did, rse = did or "", rse or ""
        result.lines.append("%5d %2d %-11s %s %s %s" % (wid, sid, state_name, did, rse, pfn))
        result.rows.append(
            {"workflow_id": wid, "stage_id": sid, "state": state_name, "did": did, "rse": rse, "wan_pfn": pfn}
        )
    result.counts["replicas"] = len(found)
    return result


def show_replicas(
    metacat: MetaCatAdapter,
    rucio: RucioAdapter,
    *,
    mql: str | None = None,
    workflow_id: int | None = None,
    stage_id: int | None = None,
    file_did: str | None = None,
    rse_name: str | None = None,
    limit: int | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> CommandResult:
    """showReplicasCmd: exactly one of ``mql`` or ``workflow_id`` (upstream: else 400)."""
    if (mql is None) == (workflow_id is None):
        raise UIInputError("show-replicas needs exactly one of an MQL query or a workflow id")
    if mql is not None:
        if stage_id is not None or file_did is not None or rse_name is not None:
            raise UIInputError("a stage id, file DID or RSE goes with a workflow id, not with an MQL query")
        return show_replicas_mql(metacat, rucio, mql, limit=limit, chunk_size=chunk_size)
    assert workflow_id is not None
    return show_replicas_workflow(
        workflow_id, stage_id=stage_id, file_did=file_did, rse_name=rse_name,
        limit=WORKFLOW_LIMIT if limit is None else limit,
    )
