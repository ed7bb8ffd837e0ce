"""Fault injection: the storages group, the finder, the wrapper output, the job factory, the
Rucio health flow and the read-only show-files and show-replicas commands as real Prefect flow
runs, with the latency proxy failing 20 % of the requests to the real Rucio server and to the
MetaCat double (HTTP 500 and 503, connection resets, stalls past the client timeout), by seed.

Each faulty run must end Completed, or Failed with a message naming the failed step (never
Crashed); after at most one more run without faults, the database, Rucio and MetaCat must hold
exactly what a fault-free run leaves (names normalised: each scenario uses fresh RSEs, files
and datasets), with no duplicate dataset, rule, replica, file or job row and nothing lost.
The read-only commands must end Completed with exactly the fault-free answer and artifact, or
Failed naming the failed call, and write nothing to Rucio or MetaCat.
The figures are printed per scenario (``-s``).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prefect.states import State
from rucio.client import Client
from sqlalchemy import Engine, select

from justin_flows.db.engine import transaction
from justin_flows.db.models import File, Job, Replica, Storage, Workflow
from justin_flows.domain.naming import LOGS_SCOPE, logs_dataset_name, logs_periods
from justin_flows.testing.condor_standins import read_calls
from justin_flows.testing.latency_proxy import DEFAULT_KINDS, LatencyProxy
from justin_flows.testing.metacat_double import MetaCatDouble
from justin_flows.testing.rucio_server import RucioServer
from tests.conftest import CondorStandins, reset_caches
from tests.factory.helpers import seed_factory_stage
from tests.finder.conftest import RucioSeed
from tests.reliability.conftest import rucio_at
from tests.reliability.seeding import duplicates, seed_finder_workflow, snapshot
from tests.reliability.wrapper_job import (
    WrapperJob,
    discount_recovery,
    make_wrapper_job,
    state_diff,
    state_duplicates,
    wrapper_state,
)
from tests.results_db import empty_database
from tests.rucio_seed import add_rse, add_scope, unique
from tests.ui.conftest import Catalogue

pytestmark = [pytest.mark.usefixtures("prefect_server"), pytest.mark.slow]

FAULT_RATE = 0.2
SEEDS = [int(s) for s in os.environ.get("JUSTIN_FAULT_SEEDS", "11,12,13").split(",")]
#: the job factory and the health flow make three requests a run: more runs for as many faults
PING_SEEDS = [seed * 10 + k for seed in SEEDS for k in range(4)]
CLIENT_TIMEOUT = "1.5"  # Rucio and MetaCat client timeout; the proxy stalls for longer


@dataclass
class Figures:
    flow: str
    runs: int = 0
    requests: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    states: list[str] = field(default_factory=list)
    recovered_after: list[int] = field(default_factory=list)  # extra runs needed to converge
    lost: int = 0
    duplicated: int = 0

    def add_faults(self, *proxies: LatencyProxy) -> None:
        for proxy in proxies:
            self.requests += proxy.requests
            for kind, n in proxy.faults.items():
                self.faults[kind] = self.faults.get(kind, 0) + n

    def line(self) -> str:
        return (f"faults[{self.flow}]: {self.runs} faulty runs, {self.requests} requests, "
                f"{sum(self.faults.values())} faults injected {dict(sorted(self.faults.items()))}, "
                f"states {self.states}, extra fault-free runs to converge {self.recovered_after}, "
                f"{self.lost} lost, {self.duplicated} duplicated")


@pytest.fixture
def proxies(db: Engine, rucio_server: RucioServer, metacat_env: MetaCatDouble, condor_env: CondorStandins,
            tmp_path: Path) -> Iterator[tuple[LatencyProxy, LatencyProxy]]:  # fmt: skip
    """Rucio and the MetaCat double behind one latency proxy each (no faults until set)."""
    add_scope(Client(), rucio_server.root_account, LOGS_SCOPE)
    with LatencyProxy(rucio_server.url, delay_ms=2, stall_seconds=4) as rucio_proxy, \
            LatencyProxy(metacat_env.server_url.rsplit("/app", 1)[0], delay_ms=2, stall_seconds=4) as mc_proxy:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("JUSTIN_METACAT__SERVER_INPUTS_URL", mc_proxy.url_for(metacat_env.server_url))
            mp.setenv("JUSTIN_METACAT__SERVER_OUTPUTS_URL", mc_proxy.url_for(metacat_env.server_url))
            mp.setenv("JUSTIN_METACAT__AUTH_SERVER_URL", mc_proxy.url_for(metacat_env.auth_url))
            mp.setenv("JUSTIN_METACAT__TIMEOUT_SECONDS", CLIENT_TIMEOUT)
            with rucio_at(rucio_server, rucio_proxy.url, tmp_path, JUSTIN_RUCIO__TIMEOUT_SECONDS=CLIENT_TIMEOUT):
                yield rucio_proxy, mc_proxy
    reset_caches()


@contextmanager
def faults(seed: int, *targets: LatencyProxy, kinds: tuple[str, ...] = DEFAULT_KINDS) -> Iterator[None]:
    for i, proxy in enumerate(targets):
        proxy.reset_counters()
        proxy.set_faults(FAULT_RATE, seed=seed * 10 + i, kinds=kinds)
    try:
        yield
    finally:
        for proxy in targets:
            proxy.set_faults(0.0)


def check_state(name: str, state: State[Any]) -> str:
    """Completed, or Failed saying which step failed: never Crashed, never a bare error."""
    assert not state.is_crashed(), (name, state.message)
    if state.is_failed():
        assert "failed: " in (state.message or ""), (name, state.message)
    assert state.is_completed() or state.is_failed(), (name, state.name)
    return state.name or state.type.value


def converge(run: Callable[[], State[Any]], observe: Callable[[], Any], reference: Any, figures: Figures,
             label: str) -> None:  # fmt: skip
    """After the faulty run: at most one more fault-free run must reach the reference state."""
    got = observe()
    extra = 0
    if got != reference:
        state = run()
        assert state.is_completed(), (label, state.message)
        extra = 1
        got = observe()
    figures.recovered_after.append(extra)
    if got != reference:
        figures.lost += 1
        pytest.fail(f"{label}: not converged after one fault-free run:\n{got}\n!=\n{reference}")


# ---------------------------------------------------------------------------------- storages group


def test_storages_group_under_20_percent_faults_converges(
    proxies: tuple[LatencyProxy, LatencyProxy], metacat_env: MetaCatDouble, rucio_server: RucioServer, tmp_path: Path
) -> None:
    from flows.info_collector.storages import storages_flow

    rucio_proxy, mc_proxy = proxies
    direct = Client  # the checks read Rucio through the proxy too, but only while it has no faults
    figures = Figures("storages group")

    def scenario(n: int) -> dict[str, Any]:
        empty_database()
        tag = unique("fault")
        rses = sorted(add_rse(direct(), unique(f"FAULT{i}_").upper(), tmp_path / f"rse{n}-{i}",
                              attributes={"justin_fault": tag, "country": "UK"}, protocols=[("file", 1, 1)],
                              limits={rucio_server.root_account: 10**9}) for i in range(2))  # fmt: skip
        with transaction() as s:  # enabled by an admin in an earlier hour: their logs datasets are due
            s.add(Storage(rse_id=1, rse_name="MONTECARLO"))
            for i, rse in enumerate(rses):
                s.add(Storage(rse_id=10 + i, rse_name=rse, rucio_write=True, justin_write=True))
        return {"expression": f"justin_fault={tag}", "rses": rses}

    def observe(sc: dict[str, Any]) -> dict[str, Any]:
        names = {rse: f"RSE{i}" for i, rse in enumerate(sc["rses"])}
        tables = snapshot(["storages", "condor_groups", "wlcg_groups", "scopes", "named_quotas"],
                          drop={"storages": ["rse_id", "site_id"], "scopes": ["scope_id", "quota_id"],
                                "named_quotas": ["quota_id"]})  # fmt: skip
        rename = lambda v: names.get(v, v) if isinstance(v, str) else v  # noqa: E731
        state: dict[str, Any] = {k: sorted(tuple(map(rename, r)) for r in v) for k, v in tables.items()}
        datasets = []
        client = direct()
        for rse in sc["rses"]:
            for period in logs_periods(time.time()):
                name = logs_dataset_name(rse, period)
                rules = list(client.list_replication_rules({"scope": LOGS_SCOPE, "name": name}))
                in_metacat = metacat_env.get_dataset_record(f"{LOGS_SCOPE}:{name}") is not None
                datasets.append((names[rse], period, len(rules), in_metacat))
        state["logs datasets (rules, in MetaCat)"] = sorted(datasets)
        return state

    reference_sc = scenario(-1)
    first = storages_flow(rse_expression=reference_sc["expression"], return_state=True)
    assert first.is_completed(), first.message
    reference = observe(reference_sc)
    logs = reference["logs datasets (rules, in MetaCat)"]
    assert all(rules == 1 and mc for _, _, rules, mc in logs), (logs, [r for r in first.result()
                                                                      if r["function"] == "updateLogsDatasets"])

    # the default kinds, then "reset_after": the request is applied, the answer lost, the call
    # retried (what non-idempotent creations of datasets and rules must survive)
    for seed, kinds in [*((s, DEFAULT_KINDS) for s in SEEDS), (SEEDS[0] + 100, ("reset_after",))]:
        sc = scenario(seed)
        with faults(seed, rucio_proxy, mc_proxy, kinds=kinds):
            state = storages_flow(rse_expression=sc["expression"], return_state=True)
        figures.runs += 1
        figures.add_faults(rucio_proxy, mc_proxy)
        figures.states.append(check_state(f"seed {seed}", state))
        if state.is_completed():  # a rule made by an attempt whose answer was lost is not an error
            errors = [e for step in state.result() for e in step["errors"]]
            assert not [e for e in errors if "DuplicateRule" in e], errors
        got = observe(sc)
        if any(rules > 1 for _, _, rules, _ in got["logs datasets (rules, in MetaCat)"]) or any(
                duplicates(v) for v in got.values()):  # fmt: skip
            figures.duplicated += 1
        converge(lambda: storages_flow(rse_expression=sc["expression"], return_state=True),  # noqa: B023
                 lambda: observe(sc), reference, figures, f"storages seed {seed}")  # noqa: B023
    print("\n" + figures.line())
    assert figures.duplicated == 0 and figures.lost == 0, figures.line()
    assert sum(figures.faults.values()) >= len(SEEDS), "faults were injected"


# ---------------------------------------------------------------------------------- finder


def test_finder_under_20_percent_faults_converges(
    proxies: tuple[LatencyProxy, LatencyProxy], metacat_env: MetaCatDouble, rucio_server: RucioServer
) -> None:
    from flows.finder.finder import finder_flow

    rucio_proxy, mc_proxy = proxies
    figures = Figures("finder")
    files = 8
    chunk = 2  # four list_replicas calls per run

    def scenario() -> dict[str, Any]:
        empty_database()
        data = seed_finder_workflow(RucioSeed(), metacat_env, files)
        return {"data": data}

    def observe(sc: dict[str, Any]) -> dict[str, Any]:
        data = sc["data"]
        names = {did: f"file{i}" for i, did in enumerate(data.dids)}
        with transaction() as s:
            workflows = s.execute(select(Workflow.workflow_id, Workflow.state)).all()
            found = s.execute(select(File.file_did, File.state)).all()
            replicas = s.execute(select(File.file_did, Storage.rse_name).join(Replica, Replica.file_id == File.file_id)
                                 .join(Storage, Storage.rse_id == Replica.rse_id)).all()  # fmt: skip
        rse = {data.rse: "RSE"}
        return {
            "workflows": sorted((w, str(st)) for w, st in workflows),
            "files": sorted((names.get(d, d), str(st)) for d, st in found),
            "replicas": sorted((names.get(d, d), rse.get(r, r)) for d, r in replicas),
        }

    reference_sc = scenario()
    first = finder_flow(replica_chunk_size=chunk, return_state=True)
    assert first.is_completed(), first.message
    reference = observe(reference_sc)
    assert len(reference["files"]) == files and len(reference["replicas"]) == files

    for seed in [*SEEDS, *(s + 50 for s in SEEDS)]:
        sc = scenario()
        with faults(seed, rucio_proxy, mc_proxy):
            state = finder_flow(replica_chunk_size=chunk, return_state=True)
        figures.runs += 1
        figures.add_faults(rucio_proxy, mc_proxy)
        figures.states.append(check_state(f"seed {seed}", state) + (f" ({state.message})" if state.message and
                                                                     "not searched" in state.message else ""))
        got = observe(sc)
        if any(duplicates(v) for v in got.values()):
            figures.duplicated += 1
        converge(lambda: finder_flow(replica_chunk_size=chunk, return_state=True), lambda: observe(sc),  # noqa: B023
                 reference, figures, f"finder seed {seed}")
    print("\n" + figures.line())
    assert figures.duplicated == 0 and figures.lost == 0, figures.line()


# ---------------------------------------------------------------------------------- wrapper output


def wrapper_check_state(name: str, state: State[Any], job_id: int) -> str:
    """Completed, or Failed naming the job and its abort code (or why its result is not
    recorded): never Crashed, never an exception escaping the steps."""
    assert not state.is_crashed(), (name, state.message)
    assert state.is_completed() or state.is_failed(), (name, state.name)
    message = state.message or ""
    if state.is_failed():
        assert re.match(rf"job {job_id} (\w+ \(abort \d{{3}}\)|results not recorded): \S", message), (name, message)
        return f"Failed ({message.split(':', 1)[0].removeprefix(f'job {job_id} ')})"
    return state.name or state.type.value


def comparable(state: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """The state without the history of a recorded failure and its recovery (the abort event
    and the rerun's second 304): what a fault-free run leaves must be all that remains."""
    events, extra = discount_recovery(state["events"])
    return {**state, "events": events}, extra


def test_wrapper_output_under_20_percent_faults_converges(
    proxies: tuple[LatencyProxy, LatencyProxy], metacat_env: MetaCatDouble, rucio_server: RucioServer, tmp_path: Path
) -> None:
    """One job (three outputs, one RSE) per seed through the real flow with 20 % faults on
    Rucio and MetaCat: Completed, or Failed with the job's abort code; then at most one more
    run without faults must leave what a fault-free run leaves. The only history allowed to
    differ is the recorded failure itself (its abort event and the rerun's second 304)."""
    from flows.wrapper_output.output import wrapper_output_flow

    rucio_proxy, mc_proxy = proxies
    figures = Figures("wrapper output")
    recoveries: list[int] = []  # events a recorded failure and its rerun added, per scenario
    problems: list[str] = []

    def scenario(n: int) -> WrapperJob:
        empty_database()
        return make_wrapper_job(Client(), metacat_env, tmp_path / f"job{n}", rucio_server.root_account)

    def run(wj: WrapperJob) -> State[Any]:
        return wrapper_output_flow(workdir=str(wj.job.workdir), return_state=True)

    reference_job = scenario(-1)
    first = run(reference_job)
    assert first.is_completed(), first.message
    reference = wrapper_state(reference_job)
    assert [j[4] for j in reference["jobs"]] == ["finished"] and not state_duplicates(reference), reference
    assert sorted(e[0] for e in reference["events"]) == [304, 305, 404, 404, 404], reference["events"]

    # the default kinds, then "reset_after": applied upstream, the answer lost, the call retried
    for seed, kinds in [*((s, DEFAULT_KINDS) for s in [*SEEDS, *(s + 50 for s in SEEDS)]),
                        (SEEDS[0] + 100, ("reset_after",))]:  # fmt: skip
        wj = scenario(seed)
        with faults(seed, rucio_proxy, mc_proxy, kinds=kinds):
            state = run(wj)
        figures.runs += 1
        figures.add_faults(rucio_proxy, mc_proxy)
        figures.states.append(wrapper_check_state(f"seed {seed}", state, wj.job.justin_job_id))
        got = wrapper_state(wj)
        if state.is_completed():
            assert [j[4] for j in got["jobs"]] == ["finished"], (seed, got["jobs"])
        twice = state_duplicates(comparable(got)[0])
        if twice:
            figures.duplicated += 1
            problems.append(f"seed {seed}: duplicates after the faulty run: {twice}")
        extra = 0
        if comparable(got)[0] != reference:  # at most one more run, fault-free
            again = run(wj)
            extra = 1
            if not again.is_completed():
                problems.append(f"seed {seed}: first run {figures.states[-1]}: {state.message}; the fault-free "
                                f"rerun failed too: {again.message}")  # fmt: skip
            got = wrapper_state(wj)
        figures.recovered_after.append(extra)
        final, history = comparable(got)
        recoveries.append(history)
        if state_duplicates(final):
            figures.duplicated += 1
            problems.append(f"seed {seed}: duplicates after the rerun: {state_duplicates(final)}")
        if final != reference:
            figures.lost += 1
            problems.append(f"seed {seed}: not converged: {state_diff(final, reference)}")
    print("\n" + figures.line() + f"; events of recorded failures and their reruns per scenario {recoveries}")
    for problem in problems:
        print(f"faults[wrapper output]: {problem}")
    assert not problems and figures.duplicated == 0 and figures.lost == 0, "\n".join([figures.line(), *problems])
    assert sum(figures.faults.values()) >= len(SEEDS), "faults were injected"


# ---------------------------------------------------------------------------------- job factory, rucio health


@pytest.fixture
def no_backoff(proxies: tuple[LatencyProxy, LatencyProxy]) -> Iterator[None]:
    """A measurement the faults made unhealthy does not make the next run skip its work."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUSTIN_RUCIO__UNHEALTHY_BACKOFF_SECONDS", "0")
        reset_caches()
        yield
    reset_caches()


def test_job_factory_under_20_percent_faults_submits_whole_clusters_or_nothing(
    proxies: tuple[LatencyProxy, LatencyProxy], condor_env: CondorStandins, no_backoff: None
) -> None:
    """The factory only pings Rucio: under faults it submits one whole cluster, or skips
    (Rucio unreachable) and submits nothing; never a cluster in part or twice."""
    from flows.job_factory.factory import job_factory_flow

    rucio_proxy, _ = proxies
    figures = Figures("job factory")

    def scenario() -> None:
        empty_database()
        for name in ("calls.jsonl", "next_cluster", "behaviour.json"):
            (condor_env.state_dir / name).unlink(missing_ok=True)
        seed_factory_stage(8)  # one cluster of ceil(1.5 x 8) = 12 jobs

    def observe() -> dict[str, Any]:
        submits = [c for c in read_calls(condor_env.state_dir) if c["program"] == "condor_submit"]
        state = snapshot(["jobs", "files"], drop={"jobs": ["jobsub_id", "justin_job_id"]})
        with transaction() as s:
            clusters = Counter(j.split(".", 1)[0] for j in s.scalars(select(Job.jobsub_id)))
        return {"jobs": state["jobs"], "files": state["files"], "submits": len(submits),
                "jobs per cluster": sorted(clusters.values())}  # fmt: skip

    scenario()
    first = job_factory_flow(return_state=True)
    assert first.is_completed() and first.name != "Skipped", first.message
    reference = observe()
    assert reference["jobs per cluster"] == [12] and reference["submits"] == 1, reference

    for seed in PING_SEEDS:
        scenario()
        with faults(seed, rucio_proxy):
            state = job_factory_flow(return_state=True)
        figures.runs += 1
        figures.add_faults(rucio_proxy)
        figures.states.append(f"{check_state(f'seed {seed}', state)} ({state.message})"
                              if state.name == "Skipped" else check_state(f"seed {seed}", state))  # fmt: skip
        got = observe()
        if state.name == "Skipped":
            assert "Rucio unreachable" in (state.message or ""), state.message
            assert got["submits"] == 0 and got["jobs"] == [], got
        elif state.is_completed():
            assert got == reference, (seed, got)
        if got["jobs per cluster"] not in ([], [12]) or got["submits"] > 1:
            figures.duplicated += 1
            pytest.fail(f"factory seed {seed}: a cluster in part or twice: {got}")
        converge(job_factory_flow, observe, reference, figures, f"factory seed {seed}")  # type: ignore[arg-type]
    print("\n" + figures.line())
    assert figures.duplicated == 0 and figures.lost == 0, figures.line()
    assert sum(figures.faults.values()) >= len(SEEDS), "faults were injected"


def test_rucio_health_under_20_percent_faults_records_what_it_saw(
    proxies: tuple[LatencyProxy, LatencyProxy], no_backoff: None
) -> None:
    """Each run ends Completed with a healthy measurement stored, or Failed saying Rucio was
    unreachable with that failure stored; the next fault-free run stores a healthy one."""
    from flows.info_collector.rucio_health import rucio_health_flow
    from justin_flows.collector import rucio_health

    rucio_proxy, _ = proxies
    figures = Figures("rucio health")

    def stored() -> Any:
        with transaction() as s:
            return rucio_health.load(s)

    for seed in PING_SEEDS:
        empty_database()
        with faults(seed, rucio_proxy):
            state = rucio_health_flow(return_state=True)
        figures.runs += 1
        figures.add_faults(rucio_proxy)
        assert not state.is_crashed(), state.message
        health = stored()
        assert health is not None, "every run stores what it measured"
        if state.is_completed():
            assert not health.overloaded and state.result()["milliseconds"] == health.milliseconds, health
            figures.states.append("Completed")
        else:
            assert state.is_failed() and health.overloaded, (state.name, health)
            assert "Rucio unreachable: " in (state.message or ""), state.message
            figures.states.append("Failed (Rucio unreachable)")
        converge(lambda: rucio_health_flow(return_state=True), lambda: stored().overloaded, False, figures,
                 f"health seed {seed}")  # fmt: skip
    print("\n" + figures.line())
    assert figures.lost == 0, figures.line()
    assert sum(figures.faults.values()) >= len(SEEDS), "faults were injected"


# ---------------------------------------------------------------------------------- show-files, show-replicas


#: (seed, fault kinds, attempts per call: None = the retry policy's). First runs with retries,
#: then the lost-answer kind (harmless to a reader that retries), then runs without retries,
#: where every injected fault is final, so the failure paths (a query or a chunk that fails
#: for good) are taken. show-replicas makes five requests a run (a query, four chunks),
#: show-files one: it needs more runs for as many faults.
ReadOnlyRun = tuple[int, tuple[str, ...], int | None]
REPLICAS_RUNS: list[ReadOnlyRun] = [*((s, DEFAULT_KINDS, None) for s in [*SEEDS, *(s + 50 for s in SEEDS)]),
                                    (SEEDS[0] + 100, ("reset_after",), None),
                                    *((s + 200, DEFAULT_KINDS, 1) for s in [*SEEDS, SEEDS[0] + 1])]  # fmt: skip
QUERY_RUNS: list[ReadOnlyRun] = [*((seed * 10 + k, DEFAULT_KINDS, None) for seed in SEEDS for k in range(2)),
                                 (SEEDS[0] + 100, ("reset_after",), None),
                                 *((s + 50, DEFAULT_KINDS, 1) for s in PING_SEEDS)]  # fmt: skip
MQL_FAILED = r"MetaCat query '[^']*' failed: metacat\.query failed after \d+ attempt\(s\): \S"
REPLICAS_FAILED = r"Rucio list_replicas for \d+ file\(s\) \(\S+ \.\.\. \S+\) failed: rucio\.list_replicas failed after"


def command_answer(state: State[Any]) -> tuple[Any, list[tuple[Any, ...]]]:
    """What a UI-command run told its user: the returned answer (Completed only) and the
    artifacts it published (a table's rows decoded)."""
    from tests.ui.test_flows import artifacts

    published = [(key, kind, json.loads(data) if kind == "table" else data, description)
                 for key, kind, data, description in artifacts(state.state_details.flow_run_id)]  # fmt: skip
    return (state.result() if state.is_completed() else None), published


def metacat_records(double: MetaCatDouble, catalogue: Catalogue, dids: list[str]) -> dict[str, Any]:
    """What the MetaCat double holds for the catalogue: namespaces, the dataset and its files."""
    return {"namespaces": double.namespace_names(), "dataset": double.get_dataset_record(catalogue.dataset),
            "members": double.dataset_members(catalogue.dataset),
            "files": [double.get_file_record(did) for did in dids]}  # fmt: skip


def rucio_records(catalogue: Catalogue, dids: list[str]) -> dict[str, Any]:
    """What Rucio holds in the catalogue's scope: DIDs, replicas (RSEs, states) and rules.
    Read through the proxy, so only while it injects no faults."""
    client, scope = catalogue.client, catalogue.scope
    names = [{"scope": scope, "name": did.split(":", 1)[1]} for did in dids]
    return {
        "dids": sorted((d["name"], d["did_type"]) for d in client.list_dids(scope, [{"name": "*"}], did_type="all",
                                                                            long=True)),  # fmt: skip
        "replicas": sorted((r["name"], sorted(r["rses"]), sorted(r.get("states", {}).items()))
                           for r in client.list_replicas(names, all_states=True)),  # fmt: skip
        "rules": sorted(r["id"] for r in client.list_replication_rules({"scope": scope})),
    }


def read_only_under_faults(
    figures: Figures, run: Callable[[], State[Any]], targets: tuple[LatencyProxy, ...], failure: str,
    metacat_env: MetaCatDouble, stored: Callable[[], Any], runs: list[ReadOnlyRun],
) -> list[str]:  # fmt: skip
    """Each seed's run under faults ends Completed with exactly the fault-free answer and
    artifact, or Failed naming the failed call (``failure``) with nothing published; after a
    failure one fault-free run answers exactly. MetaCat only ever sees queries, and what
    ``stored()`` reads from MetaCat and Rucio never changes. Returns the problems found."""
    before = stored()
    first = run()
    assert first.is_completed(), first.message
    reference = command_answer(first)
    rows = [row for _, kind, data, _ in reference[1] if kind == "table" for row in data]
    assert rows, reference  # the reference must have rows a fault could lose or duplicate
    problems: list[str] = []
    for seed, kinds, attempts in runs:
        metacat_env.clear_requests()
        with pytest.MonkeyPatch.context() as mp:
            if attempts is not None:
                mp.setenv("JUSTIN_RETRY__ATTEMPTS", str(attempts))
            reset_caches()
            with faults(seed, *targets, kinds=kinds):
                state = run()
        reset_caches()
        figures.runs += 1
        figures.add_faults(*targets)
        name = check_state(f"seed {seed}", state)
        got = command_answer(state)
        extra = 0
        if state.is_completed():
            if got != reference:
                got_rows = [tuple(sorted(r.items())) for _, k, d, _ in got[1] if k == "table" for r in d]
                if duplicates(got_rows):
                    figures.duplicated += 1
                else:
                    figures.lost += 1
                problems.append(f"seed {seed}: Completed with another answer:\n{got}\n!=\n{reference}")
        else:
            found = re.search(failure, state.message or "")
            label = f"Failed ({' '.join(found.group(0).split()[:2])})" if found else name
            figures.states.append(label + (" [no retries]" if attempts else ""))
            if not found:
                problems.append(f"seed {seed}: Failed without naming the failed call: {state.message}")
            if got[1]:
                problems.append(f"seed {seed}: Failed but published {got[1]}")
            again = run()
            extra = 1
            if not again.is_completed() or command_answer(again) != reference:
                figures.lost += 1
                problems.append(f"seed {seed}: the fault-free rerun did not answer as before: {again.message}")
        if state.is_completed():
            figures.states.append(name + (" [no retries]" if attempts else ""))
        figures.recovered_after.append(extra)
        routes = sorted({(r.method, r.path) for r in metacat_env.requests} - {("POST", "/app/data/query")})
        if routes:
            problems.append(f"seed {seed}: MetaCat was sent more than queries: {routes}")
        if stored() != before:
            problems.append(f"seed {seed}: MetaCat or Rucio changed:\n{stored()}\n!=\n{before}")
    return problems


def test_show_files_under_20_percent_faults_answers_exactly_or_fails(
    proxies: tuple[LatencyProxy, LatencyProxy], metacat_env: MetaCatDouble, rucio_server: RucioServer, tmp_path: Path
) -> None:
    """show-files (one MetaCat query) under 20 % faults on MetaCat: the fault-free answer and
    table exactly (a limit below the match count, so a lost or doubled file shows), or Failed
    naming the query; nothing written anywhere."""
    from flows.ui_commands.show_files import show_files_flow

    rucio_proxy, mc_proxy = proxies
    figures = Figures("show-files")
    empty_database()
    catalogue = Catalogue(metacat_env, tmp_path)
    dids = catalogue.files(7)
    problems = read_only_under_faults(
        figures, lambda: show_files_flow(mql=catalogue.mql, limit=5, return_state=True), (mc_proxy, rucio_proxy),
        MQL_FAILED, metacat_env, lambda: metacat_records(metacat_env, catalogue, dids), QUERY_RUNS,
    )  # fmt: skip
    print("\n" + figures.line())
    for problem in problems:
        print(f"faults[show-files]: {problem}")
    assert not problems and figures.duplicated == 0 and figures.lost == 0, "\n".join([figures.line(), *problems])
    assert sum(figures.faults.values()) >= len(SEEDS), "faults were injected"
    assert any(st.startswith("Failed (MetaCat query)") for st in figures.states), "a query failed for good"


def test_show_replicas_under_20_percent_faults_answers_exactly_or_fails(
    proxies: tuple[LatencyProxy, LatencyProxy], metacat_env: MetaCatDouble, rucio_server: RucioServer, tmp_path: Path
) -> None:
    """show-replicas (one MetaCat query, then list_replicas in chunks of two, in parallel)
    under 20 % faults on MetaCat and Rucio: the fault-free lines and table exactly (files on
    two RSEs, on one, and on none, so a lost chunk shows), or Failed naming the query or the
    chunk; nothing written to MetaCat or Rucio."""
    from flows.ui_commands.show_replicas import show_replicas_flow

    rucio_proxy, mc_proxy = proxies
    figures = Figures("show-replicas")
    empty_database()
    catalogue = Catalogue(metacat_env, tmp_path)
    near, far = catalogue.rse(), catalogue.rse()
    dids = [*catalogue.files(3, [near, far]), *catalogue.files(3, [far]), *catalogue.files(2)]
    problems = read_only_under_faults(
        figures, lambda: show_replicas_flow(mql=catalogue.mql, chunk_size=2, return_state=True),
        (rucio_proxy, mc_proxy), f"{MQL_FAILED}|{REPLICAS_FAILED}", metacat_env,
        lambda: {"metacat": metacat_records(metacat_env, catalogue, dids), "rucio": rucio_records(catalogue, dids)},
        REPLICAS_RUNS,
    )  # fmt: skip
    print("\n" + figures.line())
    for problem in problems:
        print(f"faults[show-replicas]: {problem}")
    assert not problems and figures.duplicated == 0 and figures.lost == 0, "\n".join([figures.line(), *problems])
    assert sum(figures.faults.values()) >= len(SEEDS), "faults were injected"
    assert any(st.startswith("Failed (Rucio list_replicas)") for st in figures.states), "a chunk failed for good"
