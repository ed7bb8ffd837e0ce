"""Seeding and reading helpers for the job-factory tests (PostgreSQL via the ``db`` fixture)."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import classad2
import htcondor2
from sqlalchemy import insert, select

from justin_flows.adapters.htcondor import HTCondorAdapter
from justin_flows.admin import create_workflow, enable_site
from justin_flows.db.engine import transaction
from justin_flows.db.models import Entry, Event, File, FileState, Job, Replica, Site, SiteStorage, Storage, Workflow
from justin_flows.settings import get_settings
from justin_flows.testing.condor_standins import install_condor_standins, read_calls
from tests.conftest import reset_caches

SCHEDDS = ("sched01.test.example", "sched02.test.example")
COLLECTORS = ("coll01.test.example", "coll02.test.example")
UTC = dt.timezone.utc


@dataclass
class Condor:
    """The condor_submit stand-in wired into settings, and the adapter that runs it."""

    state_dir: Path
    token_file: Path

    @property
    def adapter(self) -> HTCondorAdapter:
        return HTCondorAdapter()

    def calls(self) -> list[dict[str, Any]]:
        return [c for c in read_calls(self.state_dir) if c["program"] == "condor_submit"]


@contextmanager
def condor_standin(tmp_path: Path, **extra_env: str) -> Iterator[Condor]:
    """Install the stand-ins, point the settings at them, restore the environment after."""
    bin_dir, state_dir = tmp_path / "bin", tmp_path / "condor-state"
    install_condor_standins(bin_dir, state_dir)
    token = tmp_path / "bearer-token"
    token.write_text("test-bearer-token\n")
    env = {
        "JUSTIN_HTCONDOR__CONDOR_SUBMIT": str(bin_dir / "condor_submit"),
        "JUSTIN_HTCONDOR__SCHEDDS": " ".join(SCHEDDS),
        "JUSTIN_HTCONDOR__COLLECTORS": " ".join(COLLECTORS),
        "JUSTIN_HTCONDOR__BEARER_TOKEN_FILE": str(token),
        **extra_env,
    }
    saved = dict(os.environ)  # also undoes set_env() calls made inside the block
    os.environ.update(env)
    reset_caches()
    try:
        yield Condor(state_dir, token)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        reset_caches()


def set_env(**env: str) -> None:
    """Change settings in the middle of a test (``condor_standin`` restores the environment)."""
    os.environ.update(env)
    reset_caches()


# -- seeding ------------------------------------------------------------------------------


def add_awt_workflow() -> int:
    """Workflow 1, the AWT workflow, as upstream's database has it (the first id after the
    ``db`` fixture's TRUNCATE ... RESTART IDENTITY); the factory never plans it."""
    with transaction() as s:
        workflow_id = int(s.scalar(insert(Workflow).values(state="running", mql="AWT").returning(Workflow.workflow_id)))
    assert workflow_id == get_settings().job_factory.awt_workflow_id
    return workflow_id



def add_site(name: str, *, enabled: bool = True, jobsub_site_name: str | None = None,
             only_on_request: bool = False) -> int:
    with transaction() as s:
        return int(s.scalar(insert(Site).values(
            site_name=name, jobsub_site_name=jobsub_site_name if jobsub_site_name is not None else name,
            enabled=enabled, only_on_request=only_on_request,
        ).returning(Site.site_id)))


def add_entry(site_id: int, name: str, *, gpus: bool = False, always_inner_apptainer: int = 1) -> int:
    with transaction() as s:
        return int(s.scalar(insert(Entry).values(
            site_id=site_id, entry_name=name, entry_has_gpus=gpus, always_inner_apptainer=always_inner_apptainer,
        ).returning(Entry.entry_id)))


def add_storage(name: str, *, rucio_read: bool = True, justin_read: bool = True,
                decommissioned: bool = False) -> int:
    with transaction() as s:
        return int(s.scalar(insert(Storage).values(
            rse_name=name, rucio_read=rucio_read, justin_read=justin_read, decommissioned=decommissioned,
        ).returning(Storage.rse_id)))


def set_distance(site_id: int, rse_id: int, distance: float) -> None:
    with transaction() as s:
        s.execute(insert(SiteStorage).values(site_id=site_id, rse_id=rse_id, distance=distance))


def add_files(workflow_id: int, count: int, rse_ids: Sequence[int], *, stage_id: int = 1,
              state: str = "unallocated", accessible_until: dt.datetime | None = None) -> list[int]:
    """``count`` files of the stage, each with one replica on every RSE in ``rse_ids``."""
    if count == 0:
        return []
    with transaction() as s:
        ids = list(s.scalars(insert(File).returning(File.file_id, sort_by_parameter_order=True), [
            {"workflow_id": workflow_id, "stage_id": stage_id, "state": state,
             "file_did": f"test:w{workflow_id}s{stage_id}-{state}-{i}-{os.urandom(4).hex()}"}
            for i in range(count)
        ]))
        rows = [
            {"file_id": f, "rse_id": r, "workflow_id": workflow_id, "stage_id": stage_id,
             "wan_pfn": f"root://rse{r}/file{f}", "accessible_until": accessible_until}
            for f in ids for r in rse_ids
        ]
        if rows:
            s.execute(insert(Replica), rows)
    return ids


def add_jobs(workflow_id: int, count: int, *, stage_id: int = 1, state: str = "submitted",
             submitted_time: dt.datetime | None = None) -> None:
    when = submitted_time or dt.datetime.now(UTC)
    tag = os.urandom(4).hex()
    with transaction() as s:
        s.execute(insert(Job), [
            {"jobsub_id": f"{tag}.{i}@old.example", "workflow_id": workflow_id, "stage_id": stage_id,
             "job_state": state, "submitted_time": when, "justin_job_secret": "x", "jobscript_secret": "y"}
            for i in range(count)
        ])


# -- reading ------------------------------------------------------------------------------


def jobs(workflow_id: int | None = None) -> list[Any]:
    query = select(Job).order_by(Job.justin_job_id)
    if workflow_id is not None:
        query = query.where(Job.workflow_id == workflow_id)
    with transaction() as s:
        return list(s.scalars(query))


def events() -> list[Any]:
    with transaction() as s:
        return list(s.scalars(select(Event).order_by(Event.event_id)))


def parse_description(text: str) -> tuple[htcondor2.Submit, classad2.ClassAd]:
    """The description parsed back by htcondor2, and the job ad its ``+``/``MY.`` lines and
    Requirements make (each value parsed as a ClassAd expression by classad2)."""
    sub = htcondor2.Submit(text)
    ad = classad2.ClassAd()
    for key, value in sub.items():
        if key.upper().startswith("MY."):
            ad[key[3:]] = classad2.ExprTree(value)
    if "requirements" in sub:
        ad["Requirements"] = classad2.ExprTree(sub["requirements"])
    return sub, ad


def attribute(ad: classad2.ClassAd, name: str) -> Any:
    return ad.eval(name)


def string_list(ad: classad2.ClassAd, name: str) -> list[str]:
    value = ad.eval(name)
    return value.split(",") if value else []


MACHINE_CAPABILITIES = {
    "HAS_Singularity": True,
    "HAS_CVMFS_dune_opensciencegrid_org": True,
    "HAS_CVMFS_larsoft_opensciencegrid_org": True,
    "HAS_CVMFS_fifeuser1_opensciencegrid_org": True,
    "HAS_CVMFS_fifeuser2_opensciencegrid_org": True,
    "HAS_CVMFS_fifeuser3_opensciencegrid_org": True,
    "HAS_CVMFS_fifeuser4_opensciencegrid_org": True,
    "HAS_CVMFS_dune_osgstorage_org": True,
}


def machine(site: str | None, **attrs: Any) -> classad2.ClassAd:
    ad = classad2.ClassAd({**MACHINE_CAPABILITIES, **attrs})
    if site is not None:
        ad["GLIDEIN_Site"] = site
    return ad


def matches(job_ad: classad2.ClassAd, machine_ad: classad2.ClassAd) -> bool:
    """The job's Requirements evaluated with MY = job, TARGET = machine (False unless true)."""
    return job_ad["Requirements"].eval(scope=job_ad, target=machine_ad) is True


def seed_factory_stage(
    files: int, *, site: str = "UK_Reliable", rse: str = "RELIABLE_DISK", scope: str = "reliable"
) -> int:
    """A running workflow stage whose ``files`` unallocated files sit on a storage at distance 0
    from an enabled site with one entry (workflow 1, the AWT workflow, is made first)."""
    with transaction() as s:
        awt = Workflow(mql="", state_message="AWT")
        s.add(awt)
        s.flush()
        assert awt.workflow_id == 1, "seed_factory_stage needs a freshly emptied database"
        site_row = Site(site_name=site, jobsub_site_name=site)
        storage = Storage(rse_name=rse, justin_write=True)
        s.add_all([site_row, storage])
        s.flush()
        s.add(Entry(entry_name=f"DUNE_{site}_ce1", site_id=site_row.site_id))
        s.add(SiteStorage(site_id=site_row.site_id, rse_id=storage.rse_id, distance=0))
        rse_id = storage.rse_id
    wid = create_workflow(f"files from test:{scope}", scope=scope, principal_name="alice@fnal.gov")
    enable_site(site)
    with transaction() as s:
        for i in range(files):
            f = File(workflow_id=wid, stage_id=1, file_did=f"{scope}:f{i}", state=FileState.UNALLOCATED)
            s.add(f)
            s.flush()
            s.add(Replica(file_id=f.file_id, rse_id=rse_id, workflow_id=wid, stage_id=1, wan_pfn=f"root://x/f{i}"))
    return wid
