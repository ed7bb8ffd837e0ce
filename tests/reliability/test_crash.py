"""Crash consistency: each flow body is SIGKILLed at a seeded random moment, rerun to completion,
and must converge to what a clean run leaves: the same normalised rows, no duplicate row, no
duplicate Rucio rule, and for the job factory no cluster recorded twice or in part.

Per kind, 20 trials (``JUSTIN_CRASH_TRIALS``): a fresh database (and fresh RSEs in Rucio for
the storages group, so its logs datasets and rules are created in every trial; a fresh job,
scope and RSE for the wrapper output), the body
started in a child process, killed after a random delay drawn over the body's measured
duration, then rerun here. The figures are printed at the end of each test (``-s``).
"""

from __future__ import annotations

import os
import random
import signal
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from rucio.client import Client
from sqlalchemy import func, select

from justin_flows.db.engine import transaction
from justin_flows.db.models import Entry, Job, Site, SiteStorage, Storage
from justin_flows.domain.naming import LOGS_SCOPE, logs_dataset_name, logs_periods
from justin_flows.domain.output_files import adler32_of
from justin_flows.testing.condor_standins import read_calls, set_behaviour
from justin_flows.testing.git_repo import file_url, make_git_repo
from justin_flows.testing.latency_proxy import LatencyProxy
from justin_flows.testing.metacat_double import MetaCatDouble
from justin_flows.testing.rucio_server import RucioServer
from tests.conftest import CondorStandins, reset_caches
from tests.factory.helpers import seed_factory_stage
from tests.reliability import crash_worker
from tests.reliability.seeding import duplicates, snapshot
from tests.reliability.wrapper_job import WrapperJob, make_wrapper_job, state_diff, state_duplicates, wrapper_state
from tests.reliability.wrapper_job import left_behind as wrapper_left_behind
from tests.results_db import empty_database
from tests.rucio_seed import add_rse, add_scope, unique
from tests.shared_data import REPO_ROOT

pytestmark = pytest.mark.slow

TRIALS = int(os.environ.get("JUSTIN_CRASH_TRIALS", "20"))
NOW = 1_780_000_000.0  # a fixed clock for the logs-dataset periods


@dataclass
class Tally:
    kind: str
    trials: int = 0
    killed: int = 0  # the child was killed before it finished
    finished_first: int = 0  # the delay outlasted the body
    lost: int = 0
    duplicated: int = 0
    rerun_failed: int = 0  # the run after the kill did not complete
    phases: Counter[str] = field(default_factory=Counter)  # what the kill left behind
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        extra = f"; {'; '.join(self.notes)}" if self.notes else ""
        phases = ", ".join(f"{k}: {v}" for k, v in sorted(self.phases.items()))
        return (f"crash[{self.kind}]: {self.trials} trials, {self.killed} killed mid-run, "
                f"{self.finished_first} finished before the kill, {self.lost} lost, {self.duplicated} duplicated, "
                f"{self.rerun_failed} reruns failed "
                f"(left by the kill: {phases}){extra}")


def kill_at(kind: str, options: dict[str, Any], delay: float) -> bool:
    """Run ``kind`` in a child, SIGKILL its process group ``delay`` s after it starts work.

    Returns True when the child was killed before it finished.
    """
    ctx = crash_worker.context()
    parent, child_end = ctx.Pipe()
    proc = ctx.Process(target=crash_worker.child, args=(kind, dict(os.environ), options, child_end))
    proc.start()
    assert parent.poll(60) and parent.recv() == "ready", "the child never started"
    finished = parent.poll(delay)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.join(30)
    assert proc.exitcode is not None
    if finished:
        message = parent.recv()
        assert message[0] == "done", message
    return not finished


def measure(kind: str, options: dict[str, Any]) -> float:
    """The body's duration in a child that is not killed (calibrates the kill delays)."""
    ctx = crash_worker.context()
    parent, child_end = ctx.Pipe()
    proc = ctx.Process(target=crash_worker.child, args=(kind, dict(os.environ), options, child_end))
    proc.start()
    assert parent.poll(60) and parent.recv() == "ready"
    assert parent.poll(120), "the clean child run did not finish in 120 s"
    message = parent.recv()
    proc.join(30)
    assert message[0] == "done" and proc.exitcode == 0, (message, proc.exitcode)
    return float(message[1])


def trials(
    kind: str, seed: int, prepare: Callable[[int], dict[str, Any]], check: Callable[[int, dict[str, Any], Tally], None],
    left_behind: Callable[[dict[str, Any]], str], *, stratified: bool = False,
) -> Tally:
    """``stratified``: trial n's delay is drawn in the n-th of ``TRIALS`` equal slices of the
    duration (still uniform over the run, but short late steps are sure to be hit once)."""
    tally = Tally(kind)
    rng = random.Random(seed)
    options = prepare(-1)
    duration = measure(kind, options)  # a clean run in a child: the reference state
    check(-1, options, tally)
    assert tally.lost == tally.duplicated == 0, "the clean run itself failed its checks"
    for n in range(TRIALS):
        options = prepare(n)
        delay = rng.uniform(n * duration / TRIALS, (n + 1) * duration / TRIALS) if stratified else (
            rng.uniform(0.0, duration))  # fmt: skip
        tally.trials += 1
        if kill_at(kind, options, delay):
            tally.killed += 1
            tally.phases[left_behind(options)] += 1
        else:
            tally.finished_first += 1
        try:
            crash_worker.run_here(kind, options)  # the next run, to completion
        except Exception as exc:  # noqa: BLE001 - counted and shown; the state is still checked
            tally.rerun_failed += 1
            tally.notes.append(f"trial {n}: the rerun failed: {type(exc).__name__}: {exc}")
        check(n, options, tally)
    print("\n" + tally.line())
    assert tally.rerun_failed == 0, tally.line()
    return tally


# ---------------------------------------------------------------------------------- storages


@pytest.fixture
def crash_env(db: Any, rucio_server: RucioServer, metacat_env: MetaCatDouble) -> Iterator[None]:
    add_scope(Client(), rucio_server.root_account, LOGS_SCOPE)  # the logs datasets' scope
    yield


def test_storages_group_converges_after_sigkill(crash_env: None, rucio_server: RucioServer,
                                                metacat_env: MetaCatDouble, tmp_path: Path) -> None:  # fmt: skip
    client = Client()
    reference: dict[str, Any] = {}

    def prepare(n: int) -> dict[str, Any]:
        empty_database()
        tag = unique("crash")
        rses = [add_rse(client, unique(f"CRASH{i}_").upper(), tmp_path / f"rse{n}-{i}",
                        attributes={"justin_crash": tag, "country": "UK", "site": "UK_Crash"},
                        protocols=[("file", 1, 1)], limits={rucio_server.root_account: 10**9}) for i in range(2)]  # fmt: skip
        return {"rse_expression": f"justin_crash={tag}", "rses": sorted(rses), "now": NOW}

    def check(n: int, options: dict[str, Any], tally: Tally) -> None:
        rses = options["rses"]
        names = {rse: f"RSE{i}" for i, rse in enumerate(rses)}
        state = snapshot(["storages"], drop={"storages": ["rse_id"]})
        normalised = sorted(tuple(names.get(v, v) if isinstance(v, str) else v for v in row)
                            for row in state["storages"])  # fmt: skip
        rucio_state = []
        for rse in rses:
            for period in logs_periods(NOW):
                name = logs_dataset_name(rse, period)
                try:
                    client.get_did(LOGS_SCOPE, name)
                    present = 1
                except Exception:  # noqa: BLE001 - DataIdentifierNotFound
                    present = 0
                rules = list(client.list_replication_rules({"scope": LOGS_SCOPE, "name": name}))
                in_metacat = metacat_env.get_dataset_record(f"{LOGS_SCOPE}:{name}") is not None
                rucio_state.append((names[rse], period, present, len(rules), in_metacat))
        got = {"storages": normalised, "logs datasets": sorted(rucio_state)}
        if n == -1:
            reference.update(got)
            assert all(p == 1 and r == 1 and m for _, _, p, r, m in rucio_state), rucio_state
            return
        if duplicates(normalised) or any(r > 1 for _, _, _, r, _ in rucio_state):
            tally.duplicated += 1
            tally.notes.append(f"trial {n}: duplicate {got}")
        if got != reference:
            tally.lost += 1
            tally.notes.append(f"trial {n}: {got} != {reference}")

    def left_behind(options: dict[str, Any]) -> str:
        with transaction() as s:
            stored = s.scalar(select(func.count()).select_from(Storage).where(Storage.rse_name.in_(options["rses"])))
        datasets = 0
        for rse in options["rses"]:
            for period in logs_periods(NOW):
                datasets += metacat_env.get_dataset_record(f"{LOGS_SCOPE}:{logs_dataset_name(rse, period)}") is not None
        return f"{stored} storage rows, {datasets}/6 logs datasets"

    tally = trials("storages", 8001, prepare, check, left_behind)
    assert tally.lost == 0 and tally.duplicated == 0, tally.line()
    assert tally.killed >= TRIALS // 2, tally.line()


# ---------------------------------------------------------------------------------- sites


def _sites_state() -> dict[str, Any]:
    with transaction() as s:
        site_names = dict(s.execute(select(Site.site_id, Site.site_name)).tuples().all())
        rse_names = dict(s.execute(select(Storage.rse_id, Storage.rse_name)).tuples().all())
        entries = s.execute(select(Entry.entry_name, Entry.site_id, Entry.gatekeeper, Entry.max_processors,
                                   Entry.max_rss_bytes, Entry.max_wall_seconds, Entry.entry_has_gpus)).all()  # fmt: skip
        distances = s.execute(select(SiteStorage.site_id, SiteStorage.rse_id, SiteStorage.distance)).all()
    state = snapshot(["sites"], drop={"sites": ["site_id"]})
    return {
        "sites": state["sites"],
        "entries": sorted((e[0], site_names.get(e[1]), *e[2:]) for e in entries),
        "distances": sorted((site_names[a], rse_names[b], round(d, 6)) for a, b, d in distances),
    }


def test_sites_group_converges_after_sigkill(db: Any, tmp_path: Path) -> None:
    url = file_url(make_git_repo(REPO_ROOT / "tests" / "fixtures" / "gfactory" / "checkout", tmp_path / "gf"))
    reference: dict[str, Any] = {}

    def prepare(n: int) -> dict[str, Any]:
        empty_database()
        with transaction() as s:
            s.add(Storage(rse_id=1, rse_name="MONTECARLO"))
            s.add(Storage(rse_id=2, rse_name="CRASH_UK_DISK", country="UK", region="Europe"))
        return {"repo_url": url}

    def check(n: int, options: dict[str, Any], tally: Tally) -> None:
        got = _sites_state()
        if n == -1:
            assert got["sites"] and got["entries"] and got["distances"]
            reference.update(got)
            return
        if any(duplicates(rows) for rows in got.values()):
            tally.duplicated += 1
            tally.notes.append(f"trial {n}: duplicates")
        if got != reference:
            tally.lost += 1
            tally.notes.append(f"trial {n}: differs: { {k: (len(v), len(reference[k])) for k, v in got.items()} }")

    def left_behind(options: dict[str, Any]) -> str:
        with transaction() as s:
            sites = s.scalar(select(func.count()).select_from(Site))
            pairs = s.scalar(select(func.count()).select_from(SiteStorage))
        return "nothing written" if not sites else ("sites, no distances" if not pairs else "sites and distances")

    tally = trials("sites", 8002, prepare, check, left_behind)
    assert tally.lost == 0 and tally.duplicated == 0, tally.line()
    assert tally.killed >= TRIALS // 2, tally.line()


# ---------------------------------------------------------------------------------- job factory


def test_job_factory_never_records_a_cluster_twice_or_in_part_after_sigkill(
    db: Any, condor_env: CondorStandins
) -> None:
    """A kill between condor_submit and the recording transaction leaves a queued cluster that
    is not recorded (an orphan, refused by the allocator, as upstream): counted, not an error.
    What must never happen: a cluster recorded twice, a cluster recorded with some of its jobs
    only, or more jobs recorded than a clean run records."""
    reference: dict[str, Any] = {}
    orphans = 0

    def prepare(n: int) -> dict[str, Any]:
        empty_database()
        for name in ("calls.jsonl", "next_cluster", "behaviour.json"):
            (condor_env.state_dir / name).unlink(missing_ok=True)
        seed_factory_stage(8)  # target ceil(1.5 x 8) = 12 jobs, one cluster
        # condor_submit queues the cluster, then takes 0.3 s to answer: a kill in that window
        # is a crash after HTCondor accepted the cluster and before the factory recorded it
        set_behaviour(condor_env.state_dir, {"sleep": 0.3})
        return {}

    def check(n: int, options: dict[str, Any], tally: Tally) -> None:
        nonlocal orphans
        submits = [c for c in read_calls(condor_env.state_dir) if c["program"] == "condor_submit"]
        queued = {c["cluster"]: c["jobs"] for c in submits if c.get("cluster") is not None}
        with transaction() as s:
            jobsub_ids = s.scalars(select(Job.jobsub_id)).all()
        recorded: dict[int, int] = {}
        for jobsub_id in jobsub_ids:
            cluster = int(jobsub_id.split(".", 1)[0])
            recorded[cluster] = recorded.get(cluster, 0) + 1
        state = snapshot(["jobs", "events", "files"], drop={"jobs": ["jobsub_id", "justin_job_id"],
                                                             "events": ["event_id", "justin_job_id"]})  # fmt: skip
        got = {"jobs": state["jobs"], "events": state["events"], "files": state["files"]}
        if n == -1:
            assert len(jobsub_ids) == 12 and len(recorded) == 1
            reference.update(got)
            return
        problems = []
        if len(set(jobsub_ids)) != len(jobsub_ids):
            problems.append("a jobsub_id recorded twice")
        for cluster, count in recorded.items():
            if cluster not in queued:
                problems.append(f"cluster {cluster} recorded but never queued")
            elif count != queued[cluster]:
                problems.append(f"cluster {cluster}: {count} of {queued[cluster]} jobs recorded")
        if len(recorded) != 1:
            problems.append(f"{len(recorded)} clusters recorded for one stage")
        if problems:
            tally.duplicated += 1
            tally.notes.append(f"trial {n}: {problems}")
        elif got != reference:
            tally.lost += 1
            tally.notes.append(f"trial {n}: rows differ from the clean run's")
        orphans += len(set(queued) - set(recorded))

    def left_behind(options: dict[str, Any]) -> str:
        queued = [c for c in read_calls(condor_env.state_dir) if c["program"] == "condor_submit" and c["cluster"]]
        with transaction() as s:
            jobs = s.scalar(select(func.count()).select_from(Job))
        if not queued:
            return "nothing submitted"
        return "cluster queued and recorded" if jobs else "cluster queued, not recorded"

    tally = trials("job_factory", 8003, prepare, check, left_behind)
    print(f"crash[job_factory]: {orphans} orphan cluster(s) queued by a killed run and not recorded")
    assert tally.lost == 0 and tally.duplicated == 0, tally.line()
    assert tally.killed >= TRIALS // 2, tally.line()


# ---------------------------------------------------------------------------------- wrapper output


def test_wrapper_output_converges_after_sigkill(db: Any, rucio_server: RucioServer, metacat_env: MetaCatDouble,
                                                tmp_path: Path) -> None:  # fmt: skip
    """A job with three outputs, its output phase killed anywhere from recordResults to the
    last MetaCat status update, then run again on the same working directory and allocation:
    the job finished once, each output one file row, one 404 event, one replica on its RSE, in
    exactly its three datasets in Rucio and MetaCat, every dataset once with its one rule, as a
    clean run leaves (each trial is a fresh job: scope, RSE and destinations are its own)."""
    client = Client()
    jobs: dict[int, WrapperJob] = {}
    reference: dict[str, Any] = {}
    # MetaCat 20 ms away, as a remote one is: its dataset memberships, statuses and the
    # confirmation at the end then take a fair share of the run for the kills to land in
    with LatencyProxy(metacat_env.server_url.rsplit("/app", 1)[0], delay_ms=20) as proxy, \
            pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUSTIN_METACAT__SERVER_INPUTS_URL", proxy.url_for(metacat_env.server_url))
        mp.setenv("JUSTIN_METACAT__SERVER_OUTPUTS_URL", proxy.url_for(metacat_env.server_url))
        mp.setenv("JUSTIN_METACAT__AUTH_SERVER_URL", proxy.url_for(metacat_env.auth_url))
        reset_caches()
        try:
            _wrapper_output_trials(client, jobs, reference, rucio_server, metacat_env, tmp_path)
        finally:
            reset_caches()


def _wrapper_output_trials(client: Client, jobs: dict[int, WrapperJob], reference: dict[str, Any],
                           rucio_server: RucioServer, metacat_env: MetaCatDouble, tmp_path: Path) -> None:  # fmt: skip

    def prepare(n: int) -> dict[str, Any]:
        empty_database()
        jobs[n] = make_wrapper_job(client, metacat_env, tmp_path / f"trial{n}", rucio_server.root_account)
        return {**jobs[n].options(), "trial": n}

    def check(n: int, options: dict[str, Any], tally: Tally) -> None:
        got = wrapper_state(jobs[n])
        if n == -1:
            assert [j[4] for j in got["jobs"]] == ["finished"], got["jobs"]
            assert [f[3] for f in got["files"]] == ["output", "output", "finding"], got["files"]
            assert sorted(e[0] for e in got["events"]) == [304, 305, 404, 404, 404], got["events"]
            assert len(got["workflows_datasets"]) == 6 and not state_duplicates(got), got
            reference.update(got)
            return
        twice = state_duplicates(got)
        if twice:
            tally.duplicated += 1
            tally.notes.append(f"trial {n}: twice: {twice}")
        if got != reference:
            tally.lost += 1
            tally.notes.append(f"trial {n}: differs from the clean run: {state_diff(got, reference)}")

    # stratified: MetaCat's add_files/update_file and confirmResults take the last ~5 % of the run
    tally = trials("wrapper_output", 8004, prepare, check, lambda options: wrapper_left_behind(jobs[options["trial"]]),
                   stratified=True)  # fmt: skip
    assert tally.lost == 0 and tally.duplicated == 0, tally.line()
    assert tally.killed >= TRIALS // 2, tally.line()


def _stuck_copying(client: Client, wj: Any, content: bytes) -> None:
    """``b.root`` registered COPYING on the job's RSE with ``content`` already at its PFN."""
    did = f"{wj.scope}:b.root"
    path = wj.job.workspace / "b.root"
    client.add_replicas(wj.rse, [{"scope": wj.scope, "name": "b.root", "bytes": path.stat().st_size,
                                  "adler32": adler32_of(path), "state": "C"}])  # fmt: skip
    pfn = client.lfns2pfns(wj.rse, [did], operation="write", scheme="file")[did]
    target = Path(urlsplit(pfn).path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(content)


def test_wrapper_output_converges_after_a_kill_between_the_bytes_and_the_replica_state(
    db: Any, rucio_server: RucioServer, metacat_env: MetaCatDouble, tmp_path: Path
) -> None:
    """Rucio's upload client by default registers the replica COPYING, writes the bytes, then
    sets it AVAILABLE; killed in between (upstream's uploads, or ours before
    ``register_after_upload``), the replica stays COPYING with the very bytes on the RSE and
    every later upload skips it as "already exists". The rerun checks the stored bytes
    (size and adler32 through the RSE protocol) and makes the replica AVAILABLE."""
    client = Client()
    wj = make_wrapper_job(client, metacat_env, tmp_path / "job", rucio_server.root_account)
    _stuck_copying(client, wj, (wj.job.workspace / "b.root").read_bytes())

    crash_worker.run_here("wrapper_output", wj.options())

    state = wrapper_state(wj)
    assert [j[4] for j in state["jobs"]] == ["finished"], state["jobs"]
    b_root = next(row for row in state["rucio files"] if row[0] == "SCOPE:b.root")
    assert b_root[3] == (("RSE", 1, "AVAILABLE"),) and len(b_root[4]) == 3, b_root
    assert not state_duplicates(state)


def test_a_stuck_replica_with_partial_bytes_is_never_made_available(
    db: Any, rucio_server: RucioServer, metacat_env: MetaCatDouble, tmp_path: Path
) -> None:
    """The repair trusts the storage, not the registration: truncated bytes stay COPYING and
    the job fails with upstream's 328 (upload "succeeded" without a usable replica)."""
    client = Client()
    wj = make_wrapper_job(client, metacat_env, tmp_path / "job", rucio_server.root_account)
    _stuck_copying(client, wj, (wj.job.workspace / "b.root").read_bytes()[:-3])

    with pytest.raises(Exception, match="328|no AVAILABLE replica"):
        crash_worker.run_here("wrapper_output", wj.options())

    state = wrapper_state(wj)
    assert [(j[4], j[6]) for j in state["jobs"]] == [("outputting_failed", 328)], state["jobs"]
    b_root = next(row for row in state["rucio files"] if row[0] == "SCOPE:b.root")
    assert b_root[3] == (("RSE", 1, "COPYING"),), b_root
