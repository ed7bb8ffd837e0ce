"""workflow_jobs (upstream workflowJobs, reference §4.3) on seeded PostgreSQL with the
condor_submit stand-in: cluster sizes, eligible sites and entries, and failure isolation."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import classad2
import htcondor2
import pytest
from sqlalchemy import insert, update

from justin_flows.admin import create_workflow
from justin_flows.db.engine import transaction
from justin_flows.db.models import NamedQuota, Scope, StageClassad, User, Workflow
from justin_flows.factory.submit import JOB_SUBMITTED
from justin_flows.factory.workflow_jobs import workflow_jobs
from justin_flows.testing.condor_standins import set_behaviour
from tests.factory.helpers import (
    UTC,
    Condor,
    add_entry,
    add_files,
    add_jobs,
    add_site,
    add_storage,
    attribute,
    events,
    jobs,
    parse_description,
    set_distance,
    set_env,
    string_list,
)


@dataclass
class Grid:
    """Two enabled sites with a CPU and a GPU entry each, one storage at each site."""

    man: int
    fnal: int
    man_disk: int
    fnal_disk: int


def grid() -> Grid:
    man, fnal = add_site("UK_Manchester"), add_site("US_FNAL", jobsub_site_name="US_FNAL-FermiGrid")
    add_entry(man, "E_MAN_CPU")
    add_entry(man, "E_MAN_GPU", gpus=True)
    add_entry(fnal, "E_FNAL_CPU")
    add_entry(fnal, "E_FNAL_GPU", gpus=True)
    man_disk, fnal_disk = add_storage("MANCHESTER"), add_storage("FNAL_DCACHE")
    for site, rse, distance in ((man, man_disk, 0), (fnal, fnal_disk, 0), (man, fnal_disk, 50), (fnal, man_disk, 50)):
        set_distance(site, rse, distance)
    return Grid(man, fnal, man_disk, fnal_disk)


def workflow(files: int, rse_ids: list[int], **kwargs: object) -> int:
    kwargs.setdefault("scope", "testpro")
    workflow_id = create_workflow("files from test:dataset", **kwargs)  # type: ignore[arg-type]
    add_files(workflow_id, files, rse_ids)
    return workflow_id


def descriptions(condor: Condor) -> list[tuple[htcondor2.Submit, classad2.ClassAd]]:
    return [parse_description(c["stdin"]) for c in condor.calls()]


def test_cluster_is_ceil_one_and_a_half_times_unallocated(condor: Condor) -> None:
    g = grid()
    w = workflow(11, [g.man_disk])
    report = workflow_jobs(condor.adapter)
    [(sub, ad)] = descriptions(condor)
    assert sub.getQArgs() == "17"  # ceil(16.5)
    assert len(jobs(w)) == 17
    assert [e.event_type_id for e in events()] == [JOB_SUBMITTED] * 17
    assert report.counts["jobs"] == 17 and report.counts["clusters"] == 1
    assert report.rows == [{
        "workflow": w, "stage": 1, "submitted": 0, "unallocated": 11, "target": 17, "to_submit": 17,
        "sites": "UK_Manchester", "outcome": f"submitted cluster {condor.calls()[0]['cluster']} on "
                                             f"{jobs(w)[0].jobsub_id.split('@')[1]}",
    }]
    assert report.errors == []


def test_cluster_is_capped_at_192_and_waiting_jobs_count(condor: Condor) -> None:
    g = grid()
    w = workflow(300, [g.man_disk])
    workflow_jobs(condor.adapter)
    assert descriptions(condor)[0][0].getQArgs() == "192"
    # second cycle: target 450, 192 waiting -> another 192; then 450-384 = 66
    workflow_jobs(condor.adapter)
    workflow_jobs(condor.adapter)
    assert [d[0].getQArgs() for d in descriptions(condor)] == ["192", "192", "66"]
    report = workflow_jobs(condor.adapter)  # 450 waiting = target: nothing
    assert len(condor.calls()) == 3 and len(jobs(w)) == 450
    assert report.rows[0]["outcome"] == "target <= submitted"
    assert report.counts["skipped_target"] == 1


def test_idle_cap_is_strict(condor: Condor) -> None:
    g = grid()
    w = workflow(5000, [g.man_disk])
    add_jobs(w, 2000)
    report = workflow_jobs(condor.adapter)
    assert descriptions(condor)[0][0].getQArgs() == "192"  # 2000 is not over the cap
    assert report.rows[0]["submitted"] == 2000
    add_jobs(w, 1, state="submitted")  # now 2193 waiting > 2000
    report = workflow_jobs(condor.adapter)
    assert len(condor.calls()) == 1
    assert report.rows[0]["outcome"] == "over the idle cap" and report.counts["skipped_idle_cap"] == 1


def test_only_recent_waiting_jobs_count_as_submitted(condor: Condor) -> None:
    g = grid()
    w = workflow(10, [g.man_disk])  # target 15
    add_jobs(w, 10, submitted_time=dt.datetime.now(UTC) - dt.timedelta(hours=25))  # too old
    add_jobs(w, 10, state="started")  # no longer waiting
    add_jobs(w, 4)
    report = workflow_jobs(condor.adapter)
    assert report.rows[0]["submitted"] == 4
    assert descriptions(condor)[0][0].getQArgs() == "11"


def test_nothing_when_target_not_above_waiting(condor: Condor) -> None:
    g = grid()
    w = workflow(10, [g.man_disk])
    add_jobs(w, 15)
    report = workflow_jobs(condor.adapter)
    assert condor.calls() == []
    assert report.rows[0]["target"] == 15 and report.rows[0]["to_submit"] == 0


def test_knobs_come_from_settings(condor: Condor) -> None:
    g = grid()
    workflow(100, [g.man_disk])
    set_env(JUSTIN_JOB_FACTORY__JOBS_PER_CLUSTER="40", JUSTIN_JOB_FACTORY__JOBS_RATIO="0.1")
    workflow_jobs(condor.adapter)
    assert descriptions(condor)[0][0].getQArgs() == "10"  # ceil(0.1 x 100), exactly
    set_env(JUSTIN_JOB_FACTORY__JOBS_RATIO="3")
    workflow_jobs(condor.adapter)
    assert descriptions(condor)[1][0].getQArgs() == "40"
    set_env(JUSTIN_JOB_FACTORY__MAX_SUBMITTED="49")
    report = workflow_jobs(condor.adapter)  # 50 waiting > 49
    assert report.rows[0]["outcome"] == "over the idle cap" and len(condor.calls()) == 2


def test_desired_sites_and_entries_are_the_sorted_eligible_sets(condor: Condor) -> None:
    g = grid()
    workflow(4, [g.man_disk, g.fnal_disk], max_distance=0.0)
    workflow_jobs(condor.adapter)
    [(sub, ad)] = descriptions(condor)
    assert string_list(ad, "Desired_Sites") == ["UK_Manchester", "US_FNAL-FermiGrid"]  # jobsub names
    assert string_list(ad, "Desired_Entries") == ["E_FNAL_CPU", "E_MAN_CPU"]
    assert "request_gpus" not in sub


def test_max_distance_is_respected(condor: Condor) -> None:
    g = grid()
    near = workflow(2, [g.man_disk], max_distance=0.0)
    far = workflow(2, [g.man_disk], max_distance=50.0)
    report = workflow_jobs(condor.adapter)
    by_stage = {r["workflow"]: r["sites"] for r in report.rows}
    assert by_stage == {near: "UK_Manchester", far: "UK_Manchester,US_FNAL-FermiGrid"}
    near_ad, far_ad = (d[1] for d in descriptions(condor))
    assert string_list(far_ad, "Desired_Entries") == ["E_FNAL_CPU", "E_MAN_CPU"]
    assert string_list(near_ad, "Desired_Entries") == ["E_MAN_CPU"]


def test_gpu_stage_gets_gpu_entries_only(condor: Condor) -> None:
    g = grid()
    workflow(2, [g.man_disk, g.fnal_disk], gpus=1)
    workflow_jobs(condor.adapter)
    [(sub, ad)] = descriptions(condor)
    assert string_list(ad, "Desired_Entries") == ["E_FNAL_GPU", "E_MAN_GPU"]
    assert sub["request_gpus"] == "1"
    assert jobs()[0].requested_gpus == 1


def test_gpu_stage_with_no_gpu_entries_submits_nothing(condor: Condor) -> None:
    site = add_site("CA_Victoria")
    add_entry(site, "E_VIC_CPU")
    rse = add_storage("VICTORIA")
    set_distance(site, rse, 0)
    workflow(2, [rse], gpus=1)
    report = workflow_jobs(condor.adapter)
    assert condor.calls() == []
    assert report.rows[0]["outcome"] == "no eligible entries" and report.counts["no_entries"] == 1


def test_disabled_sites_and_unreadable_storages_are_excluded(condor: Condor) -> None:
    g = grid()
    bad_site = add_site("ES_PIC", enabled=False)
    add_entry(bad_site, "E_PIC")
    bad_rses = []
    for name, kwargs in (("DECOM", {"decommissioned": True}), ("NOREAD", {"rucio_read": False}),
                         ("NOJUSTIN", {"justin_read": False})):
        rse = add_storage(name, **kwargs)  # type: ignore[arg-type]
        site = add_site(f"SITE_{name}")
        add_entry(site, f"E_{name}")
        set_distance(site, rse, 0)
        bad_rses.append(rse)
    pic_disk = add_storage("PIC_DISK")
    set_distance(bad_site, pic_disk, 0)
    w = workflow(0, [])
    add_files(w, 3, [pic_disk])  # only near the disabled site
    add_files(w, 3, bad_rses)  # only on storages justIN may not read
    report = workflow_jobs(condor.adapter)
    assert condor.calls() == [] and report.rows[0]["outcome"] == "no eligible entries"
    add_files(w, 1, [g.man_disk])
    report = workflow_jobs(condor.adapter)
    assert report.rows[0]["sites"] == "UK_Manchester"


def test_replicas_not_accessible_are_ignored(condor: Condor) -> None:
    g = grid()
    w = workflow(0, [])
    add_files(w, 2, [g.fnal_disk], accessible_until=dt.datetime(1970, 1, 1, tzinfo=UTC))  # needs a pin
    add_files(w, 2, [g.fnal_disk], accessible_until=dt.datetime.now(UTC) - dt.timedelta(minutes=1))
    add_files(w, 2, [g.man_disk], accessible_until=dt.datetime.now(UTC) + dt.timedelta(days=1))
    report = workflow_jobs(condor.adapter)
    assert report.rows[0]["sites"] == "UK_Manchester"
    assert report.rows[0]["unallocated"] == 6  # the target still counts every unallocated file
    assert descriptions(condor)[0][0].getQArgs() == "9"


def test_only_unallocated_files_of_the_stage_count(condor: Condor) -> None:
    g = grid()
    w = workflow(2, [g.man_disk])
    add_files(w, 5, [g.fnal_disk], state="allocated")
    add_files(w, 5, [g.fnal_disk], stage_id=2)
    report = workflow_jobs(condor.adapter)
    assert report.rows[0]["unallocated"] == 2 and report.rows[0]["sites"] == "UK_Manchester"


def test_stage_sites_limit_the_sites(condor: Condor) -> None:
    g = grid()
    workflow(2, [g.man_disk, g.fnal_disk], sites=["US_FNAL"])
    report = workflow_jobs(condor.adapter)
    assert report.rows[0]["sites"] == "US_FNAL-FermiGrid"


def test_inner_apptainer_rule_depends_on_production(condor: Condor) -> None:
    site = add_site("NL_NIKHEF")
    add_entry(site, "E_NO_APPTAINER", always_inner_apptainer=0)
    add_entry(site, "E_UNKNOWN", always_inner_apptainer=1)
    add_entry(site, "E_ALWAYS", always_inner_apptainer=2)
    rse = add_storage("NIKHEF")
    set_distance(site, rse, 0)
    workflow(2, [rse], scope="usertests", principal_name="alice@fnal.gov")
    workflow(2, [rse], scope="prodscope", principal_name="dunepro", wlcg_group="/dune/production")
    workflow_jobs(condor.adapter)
    user_ad, prod_ad = (d[1] for d in descriptions(condor))
    assert string_list(user_ad, "Desired_Entries") == ["E_ALWAYS", "E_UNKNOWN"]
    assert string_list(prod_ad, "Desired_Entries") == ["E_ALWAYS", "E_NO_APPTAINER", "E_UNKNOWN"]


def test_accounting_group_and_user(condor: Condor) -> None:
    g = grid()
    workflow(2, [g.man_disk], scope="usertests", principal_name="alice@fnal.gov", condor_group="group_dune.users")
    w2 = workflow(2, [g.man_disk], scope="other")
    with transaction() as s:  # a scope with no HTCondor group falls back to group_dune
        s.execute(update(Scope).where(Scope.scope_name == "other").values(condor_group_id=None))
    workflow_jobs(condor.adapter)
    (alice, _), (other, _) = descriptions(condor)
    assert (alice["accounting_group"], alice["accounting_group_user"]) == ("group_dune.users", "alice")
    assert (other["accounting_group"], other["accounting_group_user"]) == ("group_dune", "dunepro")
    assert len(jobs(w2)) == 3


def test_stage_resources_and_classads_reach_the_description(condor: Condor) -> None:
    g = grid()
    w = workflow(2, [g.man_disk], processors=4, rss_bytes=6000 * 1048576, wall_seconds=3600,
                 jobscript_image="/cvmfs/singularity.opensciencegrid.org/fermilab/fnal-wn-el9:latest")
    with transaction() as s:
        s.execute(insert(StageClassad), [
            {"workflow_id": w, "stage_id": 1, "classad_name": "Zeta", "classad_value": "z"},
            {"workflow_id": w, "stage_id": 1, "classad_name": "Alpha", "classad_value": 'say "hi"'},
        ])
    workflow_jobs(condor.adapter)
    [(sub, ad)] = descriptions(condor)
    assert (sub["request_cpus"], sub["request_memory"]) == ("4", f"{6000 * 1024}KB")
    assert attribute(ad, "Job_Expected_Max_Lifetime") == 3600
    assert (attribute(ad, "Alpha"), attribute(ad, "Zeta")) == ('say "hi"', "z")
    assert list(sub.keys())[:2] == ["MY.Alpha", "MY.Zeta"]  # ordered by name, first
    assert attribute(ad, "JUSTIN_DEV_Stage") == f"dev-w{w}s1"
    row = jobs(w)[0]
    assert (row.requested_processors, row.requested_rss_bytes, row.requested_wall_seconds) == (4, 6000 * 1048576, 3600)


def test_dangerous_stage_classad_refuses_that_stage_only(condor: Condor) -> None:
    g = grid()
    bad = workflow(2, [g.man_disk])
    good = workflow(2, [g.man_disk])
    with transaction() as s:
        s.execute(insert(StageClassad).values(workflow_id=bad, stage_id=1, classad_name="AccountingGroup",
                                              classad_value="group_dune.prod"))
    report = workflow_jobs(condor.adapter)
    assert len(condor.calls()) == 1 and jobs(bad) == [] and len(jobs(good)) == 3
    assert report.rows[0]["outcome"].startswith("refused:")
    assert "AccountingGroup" in report.errors[0] and f"workflow {bad}" in report.errors[0]


def test_unsafe_entry_name_is_skipped_with_an_error(condor: Condor) -> None:
    g = grid()
    add_entry(g.man, 'E_BAD" || true || "')
    workflow(2, [g.man_disk])
    report = workflow_jobs(condor.adapter)
    [(_, ad)] = descriptions(condor)
    assert string_list(ad, "Desired_Entries") == ["E_MAN_CPU"]
    assert len(report.errors) == 1 and "E_BAD" in report.errors[0]


def test_stages_not_selected(condor: Condor) -> None:
    g = grid()
    paused = workflow(2, [g.man_disk], state="paused")
    disabled_user = workflow(2, [g.man_disk], scope="s2", principal_name="bob")
    disabled_quota = workflow(2, [g.man_disk], scope="s3", principal_name="carol")
    awt = workflow(2, [g.man_disk], scope="s4", principal_name="dave")
    with transaction() as s:
        s.execute(update(User).where(User.user_id == s.get(Workflow, disabled_user).user_id)
                  .values(processing_enabled=False))
        s.execute(update(NamedQuota).where(NamedQuota.quota_name == "carol").values(processing_enabled=False))
    set_env(JUSTIN_JOB_FACTORY__AWT_WORKFLOW_ID=str(awt))
    report = workflow_jobs(condor.adapter)
    assert report.rows == [] and condor.calls() == [] and jobs() == []
    # the same stages are selected once nothing stops them
    with transaction() as s:
        s.execute(update(Workflow).where(Workflow.workflow_id == paused).values(state="running"))
        s.execute(update(User).values(processing_enabled=True))
        s.execute(update(NamedQuota).values(processing_enabled=True))
    report = workflow_jobs(condor.adapter)
    assert {r["workflow"] for r in report.rows} == {paused, disabled_user, disabled_quota}


def test_a_failed_submit_does_not_stop_the_next_stage(condor: Condor) -> None:
    g = grid()
    first = workflow(2, [g.man_disk])
    second = workflow(4, [g.man_disk])
    set_behaviour(condor.state_dir, {"exit_code": 1, "times": 1})
    report = workflow_jobs(condor.adapter)
    assert len(condor.calls()) == 2
    assert jobs(first) == [] and len(jobs(second)) == 6
    assert report.counts["failed"] == 1 and report.counts["clusters"] == 1
    assert len(report.errors) == 1 and f"workflow {first} stage 1" in report.errors[0]
    assert report.rows[0]["outcome"].startswith("failed:") and report.rows[1]["outcome"].startswith("submitted")
    # the failed stage is simply planned again next cycle
    workflow_jobs(condor.adapter)
    assert len(jobs(first)) == 3


@pytest.mark.parametrize("behaviour", [{"stdout": "garbage\n"}, {"sleep": 5}])
def test_garbage_or_timeout_records_nothing_for_that_stage(condor: Condor, behaviour: dict[str, object]) -> None:
    g = grid()
    w = workflow(2, [g.man_disk])
    set_env(JUSTIN_HTCONDOR__COMMAND_TIMEOUT_SECONDS="0.5")
    set_behaviour(condor.state_dir, behaviour)
    report = workflow_jobs(condor.adapter)
    assert jobs(w) == [] and events() == []
    assert report.counts["failed"] == 1 and len(condor.calls()) == 1


def test_dry_run_submits_and_records_nothing(condor: Condor) -> None:
    g = grid()
    workflow(2, [g.man_disk])
    set_env(JUSTIN_HTCONDOR__DRY_RUN="true")
    report = workflow_jobs(condor.adapter)
    assert condor.calls() == [] and jobs() == []
    assert report.counts["dry_run"] == 1 and report.rows[0]["outcome"].startswith("dry run: 3 job(s)")


def test_timings_are_reported(condor: Condor) -> None:
    g = grid()
    workflow(2, [g.man_disk])
    report = workflow_jobs(condor.adapter)
    assert report.timings["plan"] > 0 and report.timings["submit"] > 0 and report.timings["record"] > 0
