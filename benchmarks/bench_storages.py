"""Benchmark: the hourly storages group over 100 RSEs, project vs upstream's calls (§2.0, §2.5-§2.9).

Seeds 100 RSEs (every tenth a TAPE RSE, which upstream's rule counts as decommissioned),
each with site and country attributes, a root door and a local limit for the agents'
account; 10 more Rucio accounts (3 holding justIN's production DN, each with a scope). A
first, untimed project run fills the database (storages, named quotas, scopes) and creates
the logs datasets of the 10 RSEs an operator makes justIN-writable, so both timed runs see
the hourly steady state. Then the baseline and the project run once each through the 50 ms
proxy. The project's Rucio steps: updateStorages, updateLogsDatasets, updateNamedQuotas,
updateScopes, updateStoragesQuotas (updateGroupsHTCondor/WLCG make the same single
condor_userprio call, or none, on both sides and are left out).
"""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import baselines
from harness import BenchServices, Measurement, Result, env, say
from sqlalchemy import insert, update

RSES = 100
WRITABLE = 10
ACCOUNTS = 10
PRODUCTION_ACCOUNTS = 3


def rse_names() -> list[str]:
    return [f"BENCH_RSE{i:03d}" for i in range(RSES)]


def seed(services: BenchServices) -> None:
    from rucio.common.exception import Duplicate

    from justin_flows.settings import get_settings

    countries = ["UK", "US", "FR", "CH", "DE", "NL", "IT", "ES", "CZ", "BR"]
    account = services.rucio.root_account

    def one(i: int) -> None:
        client = services.direct_rucio()
        name = f"BENCH_RSE{i:03d}"
        client.add_rse(name, deterministic=True, volatile=False, rse_type="TAPE" if i % 10 == 9 else "DISK")
        client.add_rse_attribute(name, "site", f"{countries[i % 10]}_Site{i % 20:03d}")
        client.add_rse_attribute(name, "country", countries[i % 10])
        client.add_protocol(name, {
            "scheme": "root", "hostname": f"door{i:03d}.bench.invalid", "port": 1094, "prefix": f"/bench/{name}/",
            "impl": "rucio.rse.protocols.gfal.Default",
            "domains": {"lan": {"read": 1, "write": 1, "delete": 1}, "wan": {"read": 1, "write": 1, "delete": 1}},
        })
        client.set_local_account_limit(account, name, 10**13)

    start = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, range(RSES)))
    client = services.direct_rucio()
    dn = get_settings().rucio.production_dn
    for j in range(ACCOUNTS):
        name = f"benchacct{j:02d}"
        client.add_account(name, "USER", f"{name}@bench.invalid")
        if j < PRODUCTION_ACCOUNTS:
            client.add_identity(name, dn, "X509", f"{name}@bench.invalid")
            client.add_scope(name, f"benchscope{j:02d}")
    try:
        client.add_scope(account, "justin-logs")
    except Duplicate:
        pass
    services.metacat.seed_dataset("justin-logs:namespace-seed")
    say(f"  seeded {RSES} RSEs and {ACCOUNTS} accounts in {time.perf_counter() - start:.1f} s")


def project_group(rucio: Any, metacat: Any, services: BenchServices, steps: Counter[str]) -> None:
    from justin_flows.collector import logs_datasets, named_quotas, scopes, storages, storages_quotas

    for name, fn in (
        ("updateStorages", lambda: storages.update_storages(rucio)),
        ("updateLogsDatasets", lambda: logs_datasets.update_logs_datasets(rucio, metacat)),
        ("updateNamedQuotas", lambda: named_quotas.update_named_quotas(rucio)),
        ("updateScopes", lambda: scopes.update_scopes(rucio)),
        ("updateStoragesQuotas", lambda: storages_quotas.update_storages_quotas(rucio)),
    ):
        before = services.rucio_proxy.requests + services.metacat_proxy.requests
        report = fn()
        if report.errors:
            raise RuntimeError(f"{name}: {report.errors[:3]}")
        steps[name] += services.rucio_proxy.requests + services.metacat_proxy.requests - before


def run(services: BenchServices, in_flight: list[int]) -> list[Result]:
    from justin_flows.adapters.metacat import MetaCatAdapter
    from justin_flows.adapters.rucio import RucioAdapter
    from justin_flows.db.engine import get_engine, transaction
    from justin_flows.db.models import CondorGroup, Storage, WlcgGroup

    say(f"storages group: {RSES} RSEs")
    seed(services)
    with transaction() as s:  # what the two group steps before updateStorages leave in place
        s.execute(insert(CondorGroup).values(condor_group_name="group_dune"))
        s.execute(insert(WlcgGroup).values(wlcg_group_name="/dune"))

    # warm-up: the first hour fills the database and creates the logs datasets
    from justin_flows.collector import storages

    storages.update_storages(RucioAdapter())
    with transaction() as s:
        writable = [n for i, n in enumerate(rse_names()) if i % 10 != 9][:WRITABLE]
        s.execute(update(Storage).where(Storage.rse_name.in_(writable)).values(justin_write=True))
    with MetaCatAdapter() as metacat:
        project_group(RucioAdapter(), metacat, services, Counter())
    say("  warm-up run done (database filled, logs datasets created)")

    from metacat.webapi import MetaCatClient

    from justin_flows.settings import get_settings

    def metacat_login() -> Any:
        cfg = get_settings().metacat
        client = MetaCatClient(cfg.server_outputs_url, auth_server_url=cfg.auth_server_url)
        client.login_password(cfg.username, cfg.password.get_secret_value() if cfg.password else "")
        return client

    client = services.proxied_rucio()
    client.ping()  # token and connection ready, as in a long-running agent
    base_steps, base = services.measure(
        lambda: baselines.storages_group(client, get_engine(), services.rucio.root_account, metacat_login)
    )
    base.detail["steps"] = dict(base_steps)
    say(f"  baseline: {base.calls} calls, {base.seconds:.2f} s {dict(base_steps)}")

    results = []
    for limit in in_flight:
        with env({"JUSTIN_RUCIO__MAX_IN_FLIGHT": str(limit)}):
            steps: Counter[str] = Counter()
            with MetaCatAdapter() as metacat:
                rucio = RucioAdapter()
                _, project = services.measure(
                    lambda rucio=rucio, metacat=metacat, steps=steps: project_group(rucio, metacat, services, steps)
                )
        project.detail["steps"] = dict(steps)
        say(f"  project (max_in_flight={limit}): {project.calls} calls, {project.seconds:.2f} s {dict(steps)}")
        results.append(_result(f"storages group, 100 RSEs (max_in_flight={limit})", project, base))
    return results


def _result(name: str, project: Measurement, base: Measurement) -> Result:
    fewer = 1 - project.calls / base.calls
    quarter = project.seconds <= base.seconds / 4
    steps_p, steps_b = project.detail["steps"], base.detail["steps"]
    per_step = ", ".join(f"{k} {steps_p.get(k, 0)}/{steps_b.get(k, 0)}" for k in steps_b)
    return Result(
        name, project, base,
        target="calls >= 20% fewer; wall <= 1/4",
        met=fewer >= 0.20 and quarter,
        notes=[f"{fewer:.0%} fewer calls; per step (project/baseline HTTP requests): {per_step}"],
    )
