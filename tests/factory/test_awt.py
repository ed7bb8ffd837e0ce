"""awt_jobs_to_sites (upstream awtJobsToSites, reference §4.2) with the condor_submit stand-in."""

from __future__ import annotations

import random

import classad2
from sqlalchemy import select

from justin_flows.db.engine import transaction
from justin_flows.db.models import Site
from justin_flows.factory.awt import awt_jobs_to_sites
from justin_flows.testing.condor_standins import set_behaviour
from tests.factory.helpers import SCHEDDS, Condor, add_entry, add_site, attribute, jobs, matches, parse_description


def seed() -> dict[str, int]:
    sites = {
        "CA_Victoria": add_site("CA_Victoria"),  # CPU only
        "ES_PIC": add_site("ES_PIC", enabled=False),  # disabled, with a GPU entry
        "US_NERSC-CUSTOM": add_site("US_NERSC-CUSTOM"),  # no jobs at all
        "US_NERSC-GPU": add_site("US_NERSC-GPU"),  # GPU job only
    }
    add_entry(sites["CA_Victoria"], "E_VIC")
    add_entry(sites["ES_PIC"], "E_PIC_CPU")
    add_entry(sites["ES_PIC"], "E_PIC_GPU", gpus=True)
    add_entry(sites["US_NERSC-CUSTOM"], "E_NERSC_CUSTOM")
    add_entry(sites["US_NERSC-GPU"], "E_NERSC_GPU", gpus=True)
    return sites


def test_one_cpu_job_per_site_plus_gpu_jobs_with_the_nersc_exceptions(condor: Condor) -> None:
    sites = seed()
    report = awt_jobs_to_sites(condor.adapter)
    calls = condor.calls()
    sent = []
    for call in calls:
        sub, ad = parse_description(call["stdin"])
        assert sub.getQArgs() == "1"
        sent.append((attribute(ad, "Desired_Sites"), sub.get("request_gpus", "0")))
    assert sent == [("CA_Victoria", "0"), ("ES_PIC", "0"), ("ES_PIC", "1"), ("US_NERSC-GPU", "1")]
    assert len({c["cluster"] for c in calls}) == 4  # each job its own cluster
    assert [(r["site"], r["kind"]) for r in report.rows] == [
        ("CA_Victoria", "cpu"), ("ES_PIC", "cpu"), ("ES_PIC", "gpu"), ("US_NERSC-GPU", "gpu")]
    assert report.counts["cpu_jobs"] == 2 and report.counts["gpu_jobs"] == 2 and report.errors == []

    rows = jobs()
    assert [(r.site_id, r.requested_gpus) for r in rows] == [
        (sites["CA_Victoria"], 0), (sites["ES_PIC"], 0), (sites["ES_PIC"], 1), (sites["US_NERSC-GPU"], 1)]
    assert [r.jobsub_id for r in rows] == [r["outcome"] for r in report.rows]
    for row in rows:
        assert (row.workflow_id, row.stage_id) == (1, 1)
        assert (row.requested_processors, row.requested_rss_bytes, row.requested_wall_seconds) == (1, 1073741824, 3600)
    with transaction() as s:
        times = {site.site_name: site.last_awt_time for site in s.scalars(select(Site))}
    assert times["US_NERSC-CUSTOM"] is None
    assert all(times[name] is not None for name in ("CA_Victoria", "ES_PIC", "US_NERSC-GPU"))


def test_awt_description_fields(condor: Condor) -> None:
    seed()
    awt_jobs_to_sites(condor.adapter)
    (cpu, cpu_ad), _, (gpu, gpu_ad), (nersc, nersc_ad) = (parse_description(c["stdin"]) for c in condor.calls())
    for sub, ad in ((cpu, cpu_ad), (gpu, gpu_ad), (nersc, nersc_ad)):
        assert attribute(ad, "JUSTIN_DEV_AWT") is True
        assert "JUSTIN_DEV_Stage" not in ad and "Desired_Entries" not in ad
        assert (sub["accounting_group"], sub["accounting_group_user"]) == ("group_dune.prod", "dunepro")
        assert (sub["request_cpus"], sub["request_memory"]) == ("1", "1048576KB")
        assert attribute(ad, "Job_Expected_Max_Lifetime") == 3600
    assert "request_gpus" not in cpu and gpu["request_gpus"] == "1"
    # NERSC: no CVMFS capabilities required; elsewhere they are
    assert matches(nersc_ad, classad2.ClassAd({"GLIDEIN_Site": "US_NERSC-GPU"}))
    assert not matches(cpu_ad, classad2.ClassAd({"GLIDEIN_Site": "CA_Victoria"}))


def test_each_job_picks_its_own_random_schedd(condor: Condor) -> None:
    for i in range(8):
        add_entry(add_site(f"SITE_{i}"), f"E_{i}")
    awt_jobs_to_sites(condor.adapter, rng=random.Random(11))
    expected_rng = random.Random(11)
    expected = [expected_rng.choice(SCHEDDS) for _ in range(8)]
    assert [c["argv"][1] for c in condor.calls()] == expected
    assert set(expected) == set(SCHEDDS)


def test_a_failed_site_does_not_stop_the_others(condor: Condor) -> None:
    seed()
    set_behaviour(condor.state_dir, {"exit_code": 1, "times": 1})
    report = awt_jobs_to_sites(condor.adapter)
    assert len(condor.calls()) == 4 and len(jobs()) == 3
    assert report.counts["failed"] == 1 and len(report.errors) == 1 and "CA_Victoria" in report.errors[0]
    assert report.rows[0]["outcome"].startswith("failed:")


def test_a_site_without_a_usable_jobsub_name_is_reported(condor: Condor) -> None:
    add_entry(add_site("UK_Bad", jobsub_site_name="UK Bad,US_FNAL"), "E_BAD")
    add_entry(add_site("UK_Good"), "E_GOOD")
    report = awt_jobs_to_sites(condor.adapter)
    assert [parse_description(c["stdin"])[1].eval("Desired_Sites") for c in condor.calls()] == ["UK_Good"]
    assert report.counts["refused"] == 1 and "UK_Bad" in report.errors[0]
