"""showFilesCmd (reference §6.2), command ``show-files``: the files an MQL query or a workflow names.

* ``mql``: one MetaCat query on the inputs server, unauthenticated as upstream's
  ``queryMetaCat``; the first ``limit`` files (upstream: 100), one ``namespace:name`` line each.
  Upstream sends a single attempt; here the adapter retries only transient failures (a
  400, bad MQL, is never repeated).
* ``workflow_id``: the ``files`` rows of that workflow (optionally one stage or one DID),
  input stages only (``stage_id > 0``), ordered as upstream, one
  ``"<workflow> <stage> <state> <did>"`` line each; no limit unless one is given.

A workflow id that does not exist is an error here (upstream prints nothing), so a typo is
not mistaken for a workflow without files.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from justin_flows.adapters.calls import ExternalCallError
from justin_flows.adapters.metacat import MetaCatAdapter
from justin_flows.db.engine import transaction
from justin_flows.db.models import File, FileState, Workflow
from justin_flows.ui.result import CommandResult, UIInputError, UIServiceError

UPSTREAM_LIMIT = 100  # showFilesCmd prints at most this many MQL results
MAX_MESSAGE_CHARS = 1000


def check_limit(limit: int | None) -> None:
    if limit is not None and limit < 1:
        raise UIInputError(f"limit must be at least 1, got {limit}")


def query_dids(metacat: MetaCatAdapter, mql: str) -> list[str]:
    """queryMetaCat: the ``namespace:name`` of every file ``mql`` matches, in MetaCat's order.

    MetaCat's 400 (the query does not compile) is a UIInputError quoting MetaCat's own
    explanation; any other failure, or a file record without namespace and name, is a
    UIServiceError.
    """
    if not mql.strip():
        raise UIInputError("the MQL query is empty")
    try:
        answer = metacat.query(mql)
    except ExternalCallError as exc:
        status = getattr(exc.cause, "StatusCode", None)
        if status == 400:
            problem = str(exc.cause).strip()[:MAX_MESSAGE_CHARS]
            raise UIInputError(f"MetaCat refused the MQL query {mql!r}: {problem}") from exc
        raise UIServiceError(f"MetaCat query {mql!r} failed: {exc}") from exc
    dids = []
    for record in answer:
        namespace, name = record.get("namespace"), record.get("name")
        if not namespace or not name:
            raise UIServiceError(f"MetaCat returned a file record without namespace and name: {record!r}")
        dids.append(f"{namespace}:{name}")
    return dids


def show_files_mql(metacat: MetaCatAdapter, mql: str, *, limit: int = UPSTREAM_LIMIT) -> CommandResult:
    """showFilesCmd, MQL form: the first ``limit`` matching files, one ``namespace:name`` line each."""
    check_limit(limit)
    dids = query_dids(metacat, mql)
    shown = dids[:limit]
    result = CommandResult("show-files", lines=list(shown), rows=[{"did": did} for did in shown])
    result.counts["matched"] = len(dids)
    result.counts["shown"] = len(shown)
    return result


def show_files_workflow(
    workflow_id: int, *, stage_id: int | None = None, file_did: str | None = None, limit: int | None = None
) -> CommandResult:
    """showFilesCmd, workflow form: ``files`` rows as ``"%d %d %s %s"`` lines (workflow, stage, state, did)."""
    check_limit(limit)
    query = select(File.workflow_id, File.stage_id, File.state, File.file_did).where(
        File.workflow_id == workflow_id, File.stage_id > 0
    )
    if stage_id is not None:
        query = query.where(File.stage_id == stage_id)
    if file_did is not None:
        query = query.where(File.file_did == file_did)
    query = query.order_by(File.workflow_id, File.stage_id, File.file_did)
    if limit is not None:
        query = query.limit(limit)
    with transaction() as session:
        require_workflow(session, workflow_id)
        found = session.execute(query).all()
    result = CommandResult("show-files")
    for wid, sid, state, did in found:
        state_name = FileState(state).value
        result.lines.append("%d %d %s %s" % (wid, sid, state_name, did))
        result.rows.append({"workflow_id": wid, "stage_id": sid, "state": state_name, "did": did})
    result.counts["shown"] = len(found)
    return result


def require_workflow(session: Session, workflow_id: int) -> None:
    """UIInputError unless ``workflow_id`` exists."""
    if session.get(Workflow, workflow_id) is None:
        raise UIInputError(f"there is no workflow {workflow_id}")


def show_files(
    metacat: MetaCatAdapter,
    *,
    mql: str | None = None,
    workflow_id: int | None = None,
    stage_id: int | None = None,
    file_did: str | None = None,
    limit: int | None = None,
) -> CommandResult:
    """showFilesCmd: exactly one of ``mql`` or ``workflow_id`` (upstream: else 400)."""
    if (mql is None) == (workflow_id is None):
        raise UIInputError("show-files needs exactly one of an MQL query or a workflow id")
    if mql is not None:
        if stage_id is not None or file_did is not None:
            raise UIInputError("a stage id or file DID goes with a workflow id, not with an MQL query")
        return show_files_mql(metacat, mql, limit=UPSTREAM_LIMIT if limit is None else limit)
    assert workflow_id is not None
    return show_files_workflow(workflow_id, stage_id=stage_id, file_did=file_did, limit=limit)
