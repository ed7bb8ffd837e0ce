"""The x509-proxies flow on a real Prefect server: green when both proxies are renewed, red otherwise."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, select

from flows.proxies.x509 import x509_proxies_flow
from justin_flows.db.engine import transaction
from justin_flows.db.models import ExternalCall
from justin_flows.domain.x509_proxy import inspect_proxy
from justin_flows.testing.x509 import set_behaviour
from tests.proxies.conftest import VomsEnv

pytestmark = pytest.mark.usefixtures("prefect_server")


def ledger_rows() -> list[tuple[str, str, int, str]]:
    with transaction() as s:
        return [
            (r.service, r.operation, r.attempt, r.outcome)
            for r in s.execute(select(ExternalCall).order_by(ExternalCall.call_id)).scalars()
        ]


def test_flow_renews_both_proxies_and_records_the_calls(db: Engine, voms_env: VomsEnv) -> None:
    state = x509_proxies_flow(return_state=True)
    assert state.is_completed(), state.message
    [summary] = state.result()
    assert summary == {"function": "createX509Proxies", "counts": {"renewed": 2}, "errors": []}
    inspect_proxy(voms_env.production_proxy.read_bytes(), voms_group="/dune/Role=Production")
    inspect_proxy(voms_env.no_roles_proxy.read_bytes(), voms_group="/dune")
    assert ledger_rows() == [("voms", "voms-proxy-init", 1, "ok")] * 2


def test_flow_is_failed_naming_the_proxy_that_was_not_renewed(db: Engine, voms_env: VomsEnv) -> None:
    set_behaviour(voms_env.state_dir, {"mode": "garbage", "times": 1})
    state = x509_proxies_flow(kinds=["production", "no-roles"], return_state=True)
    assert state.is_failed()
    assert (state.message or "").startswith("production proxy (dune:/dune/Role=Production) not renewed: ")
    assert "no-roles" not in (state.message or "")
    assert not voms_env.production_proxy.exists()
    inspect_proxy(voms_env.no_roles_proxy.read_bytes())


def test_flow_refuses_unknown_kinds(db: Engine, voms_env: VomsEnv) -> None:
    state = x509_proxies_flow(kinds=["admin"], return_state=True)
    assert state.is_failed()
    assert ledger_rows() == []
