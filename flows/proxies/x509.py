"""The daily X.509 proxy renewal (upstream agents/justin-create-x509-proxies, reference §1)."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.states import Failed, State

from flows.common import collector_task, finish, ledger_scope
from justin_flows import proxies
from justin_flows.adapters.voms import VOMSAdapter

create_x509_proxies = collector_task(proxies.create_proxies, "createX509Proxies")


@flow(name="x509-proxies", timeout_seconds=90000)
def x509_proxies_flow(kinds: list[str] = ["production", "no-roles"]) -> State[Any]:  # noqa: B006 - shown in the UI
    """Renew the production and no-roles VOMS proxies; red when any proxy was not renewed.

    A proxy that fails keeps its previous file (still valid for days: 168 h proxies renewed
    daily), but the run is Failed so that an operator sees it long before it expires.

    Args:
        kinds: which proxies to renew: ``production`` and/or ``no-roles``.
    """
    unknown = [k for k in kinds if k not in proxies.KINDS]
    if unknown or not kinds:
        raise ValueError(f"kinds must be a non-empty list of {sorted(proxies.KINDS)}, got {kinds!r}")
    with ledger_scope():
        voms = VOMSAdapter()
        steps = [("createX509Proxies", create_x509_proxies(voms, kinds=tuple(kinds), return_state=True))]
    state = finish(steps)
    if state.is_completed():
        errors = [e for summary in state.result() for e in summary["errors"]]
        if errors:
            return Failed(message="; ".join(errors))
    return state
