"""Benchmark: the finder on one new workflow whose stage has 10,000 input files (§3).

Seeds 10,000 files in the MetaCat double (one dataset) and in Rucio (``add_replicas`` in bulk,
two replicas each on the justIN-readable DISK RSEs of the storages benchmark), and one
submitted workflow whose MQL selects them. The project: finder runs (the Rucio ping gate of
three pings, findFiles, findReplicas with its default 5,000 files per run) until no file is
left in ``finding``: two runs. The baseline: upstream's cycles until every file has been
looked up: twenty cycles of 500 files (three pings each; three MetaCat queries in the first).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import baselines
from harness import BenchServices, Measurement, Result, env, say
from sqlalchemy import func, select

FILES = 10_000
SCOPE = "benchfinder"
DATASET = f"{SCOPE}:stage-input"
MQL = f"files from {DATASET}"


def seed(services: BenchServices, rses: list[str]) -> None:
    client = services.direct_rucio()
    client.add_scope(services.rucio.root_account, SCOPE)
    files = [{"scope": SCOPE, "name": f"f{i:05d}.root", "bytes": 1000 + i, "adler32": "0cc7011d"} for i in range(FILES)]
    start = time.perf_counter()

    def add(k: int, copy: int) -> None:
        # copy 0 creates each file (DIDs disjoint across threads), copy 1 adds a second replica
        mine = [f for i, f in enumerate(files) if (i + copy) % len(rses) == k]
        direct = services.direct_rucio()
        for at in range(0, len(mine), 1000):
            direct.add_replicas(rses[k], mine[at : at + 1000])

    for copy in (0, 1):
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(add, range(len(rses)), [copy] * len(rses)))
    for f in files:
        services.metacat.seed_file(SCOPE, f["name"], f["bytes"], {"core.run_type": "bench"}, datasets=[DATASET])
    say(f"  seeded {FILES} files (MetaCat) and {2 * FILES} replicas on {len(rses)} RSEs (Rucio) "
        f"in {time.perf_counter() - start:.1f} s")


def project_finder(services: BenchServices) -> dict[str, int]:
    """Finder runs until nothing is left in ``finding`` (each run: gate, findFiles, findReplicas)."""
    from justin_flows.adapters.metacat import MetaCatAdapter
    from justin_flows.adapters.rucio import RucioAdapter
    from justin_flows.collector import rucio_health
    from justin_flows.finder import files, replicas
    from justin_flows.settings import get_settings

    runs = examined = 0
    while True:
        runs += 1
        rucio = RucioAdapter()
        health = rucio_health.measure(rucio, get_settings().rucio.overload_milliseconds)
        assert not health.overloaded, health.reason
        with MetaCatAdapter() as metacat:
            found = files.find_files(metacat, rucio)
        report = replicas.find_replicas(rucio)
        for r in (found, report):
            if r.errors:
                raise RuntimeError(f"{r.function}: {r.errors[:3]}")
        examined += report.counts["files_examined"]
        if not report.counts["files_examined"] or runs > 10:
            break
        if examined >= FILES:
            break
    return {"runs": runs, "files_examined": examined}


def run(services: BenchServices, in_flight: list[int]) -> list[Result]:
    from rucio.client.pingclient import PingClient
    from sqlalchemy import update

    from justin_flows.admin import create_workflow
    from justin_flows.db.engine import transaction
    from justin_flows.db.models import File, FileState, Replica, Storage, Workflow
    from justin_flows.finder.submitted import find_submitted_workflows
    from justin_flows.settings import get_settings

    say(f"finder: one stage of {FILES} files")
    with transaction() as s:
        rses = list(s.scalars(select(Storage.rse_name).where(Storage.justin_write).order_by(Storage.rse_name)))
    seed(services, rses)
    client = services.proxied_rucio()
    ping = PingClient()
    client.list_replicas([{"scope": SCOPE, "name": "f00000.root"}])  # connection and token ready
    inputs_url = get_settings().metacat.server_inputs_url
    (calls, cycles), base = services.measure(lambda: baselines.finder_cycles(client, ping, inputs_url, MQL))
    base.detail.update(calls=dict(calls), cycles=cycles)
    say(f"  baseline: {base.calls} calls in {cycles} cycles, {base.seconds:.2f} s {dict(calls)}")

    results = []
    for limit in in_flight:
        with transaction() as s:  # a fresh workflow each time, the same files
            s.execute(update(Workflow).values(state="finished"))
        workflow_id = create_workflow(MQL, scope=SCOPE, state="submitted")
        find_submitted_workflows()
        with env({"JUSTIN_RUCIO__MAX_IN_FLIGHT": str(limit)}):
            done, project = services.measure(lambda: project_finder(services))
        with transaction() as s:
            states = dict(s.execute(select(File.state, func.count()).where(File.workflow_id == workflow_id)
                                    .group_by(File.state)).tuples().all())
            replicas = s.scalar(select(func.count()).select_from(Replica).where(Replica.workflow_id == workflow_id))
        if states != {FileState.UNALLOCATED: FILES} or replicas != 2 * FILES:
            raise RuntimeError(f"finder benchmark: unexpected result {states}, {replicas} replicas")
        project.detail.update(done)
        say(f"  project (max_in_flight={limit}): {project.calls} calls in {done['runs']} runs, "
            f"{project.seconds:.2f} s; {FILES} files unallocated, {replicas} replicas")
        results.append(_result(f"finder, 10,000 files (max_in_flight={limit})", project, base))
    return results


def _result(name: str, project: Measurement, base: Measurement) -> Result:
    calls: dict[str, Any] = base.detail["calls"]
    return Result(
        name, project, base,
        target="calls <= base; wall <= 1/4",
        met=project.calls <= base.calls and project.seconds <= base.seconds / 4,
        notes=[f"project {project.detail['runs']} runs (3 pings, 1 query, 20 list_replicas per 5,000 files); "
               f"baseline {base.detail['cycles']} cycles: {calls.get('ping', 0)} pings, {calls.get('query', 0)} "
               f"queries, {calls.get('list_replicas', 0)} list_replicas (cycle waits not counted)"],
    )
