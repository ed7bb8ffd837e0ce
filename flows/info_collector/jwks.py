"""The Info Collector's daily CILogon signing-key refresh (reference §2.2)."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.states import State

from flows.common import collector_task, finish, ledger_scope
from justin_flows.adapters.http import HTTPAdapter
from justin_flows.collector import jwks

update_jwks = collector_task(jwks.update_jwks, "updateJwks")


@flow(name="info-collector-jwks", timeout_seconds=90000)
def jwks_flow() -> State[Any]:
    """Fetch CILogon's OpenID configuration and key set; store the valid keys."""
    with ledger_scope():
        http = HTTPAdapter()
        try:
            steps = [("updateJwks", update_jwks(http, return_state=True))]
        finally:
            http.close()
    return finish(steps)
