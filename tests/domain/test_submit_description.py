"""build_submit (upstream submitJobs step 4, reference §4.4): every field parsed back with the
real htcondor2 bindings, Requirements evaluated with classad2 against machine ads."""

from __future__ import annotations

from dataclasses import replace

import classad2
import htcondor2
import pytest

from justin_flows.domain.submit_description import (
    SubmitDescriptionError,
    SubmitSpec,
    build_submit,
    quote_string,
    requirements,
)
from tests.factory.helpers import machine, matches, parse_description, string_list

SCHEDD = "justin-sched01.example.org"
SPEC = SubmitSpec(
    instance="dev",
    schedd=SCHEDD,
    executable="/tmp/justin-wrapper-abc123/justin-wrapper-job",
    workflow_id=42,
    stage_id=3,
    count=7,
    desired_sites=["UK_Manchester", "US_FNAL"],
    desired_entries=["CMSHTPC_T2_UK_Manchester", "FNAL_GPGrid"],
    accounting_group="group_dune.users",
    accounting_group_user="alice",
    wrapper_job_image="/cvmfs/singularity.opensciencegrid.org/fermilab/fnal-wn-sl7:latest",
    processors=4,
    rss_bytes=4000 * 1048576,
    wall_seconds=7200,
)


def described(**changes: object) -> tuple[htcondor2.Submit, classad2.ClassAd]:
    return parse_description(build_submit(replace(SPEC, **changes)).text)  # type: ignore[arg-type]


def test_text_is_str_of_the_submit_object() -> None:
    desc = build_submit(SPEC)
    assert isinstance(desc.submit, htcondor2.Submit)
    assert desc.text == str(desc.submit)
    assert desc.text.rstrip().splitlines()[-1] == "queue 7"


def test_fixed_block_fields_parse_back() -> None:
    sub, ad = described()
    assert sub.getQArgs() == "7"
    expected_commands = {
        "universe": "vanilla",
        "environment": f'"JUSTIN_JOBSUB_ID=$(Cluster).$(Process)@{SCHEDD}"',
        "periodic_remove": "(JobStatus == 1) && ((time() - QDate) > 86400)",
        "periodic_hold": "False",
        "max_retries": "0",
        "retry_until": "True",
        "on_exit_remove": "True",
        "on_exit_hold": "False",
        "notification": "Never",
        "executable": SPEC.executable,
        "arguments": "",
        "accounting_group": "group_dune.users",
        "accounting_group_user": "alice",
        "rank": "1",
        "job_lease_duration": "3600",
        "request_memory": f"{4000 * 1024}KB",
        "request_cpus": "4",
        "request_disk": "1000000",
        "getenv": "False",
        "output": f"/tmp/justin-wrapper-$(Cluster).$(Process).{SCHEDD}.out",
        "error": f"/tmp/justin-wrapper-$(Cluster).$(Process).{SCHEDD}.out",
        "log": f"/tmp/justin-wrapper-$(Cluster).$(Process).{SCHEDD}.log",
        "transfer_output_files": '""',
        "should_transfer_files": "YES",
        "when_to_transfer_output": "ON_EXIT_OR_EVICT",
    }
    assert {k: sub[k] for k in expected_commands} == expected_commands
    assert ad.eval("Desired_Sites") == "UK_Manchester,US_FNAL"
    assert ad.eval("SingularityImage") == SPEC.wrapper_job_image
    assert ad.eval("Jobsub_Group") == "dune"
    assert ad.eval("Job_Expected_Max_Lifetime") == 7200
    assert ad.eval("Orig_AuthTokenGroups") == "/dune"
    assert ad.eval("DesiredOS") == "SL7"
    # the per-job id is filled in by condor_submit's own macro expansion
    assert htcondor2.Submit(build_submit(SPEC).text).expand("environment") == f'"JUSTIN_JOBSUB_ID=1.0@{SCHEDD}"'


def test_workflow_stage_attributes_and_no_awt_flag() -> None:
    _, ad = described()
    assert ad.eval("JUSTIN_DEV_Stage") == "dev-w42s3"
    assert string_list(ad, "Desired_Entries") == ["CMSHTPC_T2_UK_Manchester", "FNAL_GPGrid"]
    assert "JUSTIN_DEV_AWT" not in ad


def test_awt_job_has_the_awt_flag_and_no_stage_or_entries() -> None:
    _, ad = described(awt=True, desired_entries=[])
    assert ad.eval("JUSTIN_DEV_AWT") is True
    assert "JUSTIN_DEV_Stage" not in ad and "Desired_Entries" not in ad


def test_instance_name_is_upper_cased_in_the_attribute_name() -> None:
    _, ad = described(instance="prod2")
    assert ad.eval("JUSTIN_PROD2_Stage") == "prod2-w42s3"


def test_requirements_match_only_desired_sites_with_cvmfs() -> None:
    _, ad = described()
    assert matches(ad, machine("UK_Manchester"))
    assert matches(ad, machine("us_fnal"))  # stringListIMember ignores case, as upstream
    assert not matches(ad, machine("CA_Victoria"))
    assert not matches(ad, machine(None))  # GLIDEIN_Site undefined
    assert not matches(ad, machine("UK_Manchester", HAS_Singularity=False))
    assert not matches(ad, machine("UK_Manchester", HAS_CVMFS_fifeuser3_opensciencegrid_org=False))
    bare = classad2.ClassAd({"GLIDEIN_Site": "UK_Manchester"})  # no CVMFS at all
    assert not matches(ad, bare)


def test_nersc_requirements_skip_cvmfs_tests() -> None:
    _, ad = described(desired_sites=["US_NERSC-CPU"])
    bare = classad2.ClassAd({"GLIDEIN_Site": "US_NERSC-CPU"})
    assert matches(ad, bare)
    assert not matches(ad, classad2.ClassAd({"GLIDEIN_Site": "UK_Manchester"}))
    assert ad.eval("DesiredOS") == "SL7"
    # a non-NERSC site in the same list keeps the NERSC form (upstream: 'NERSC' in the csv)
    _, mixed = described(desired_sites=["UK_Manchester", "US_NERSC-CPU"])
    assert matches(mixed, classad2.ClassAd({"GLIDEIN_Site": "UK_Manchester"}))


def test_gpu_lines_only_for_gpu_stages() -> None:
    cpu, _ = described()
    assert not {"request_gpus", "gpus_minimum_memory", "gpus_minimum_runtime",
                "gpus_minimum_capability", "gpus_maximum_capability"} & set(cpu.keys())
    gpu, _ = described(gpus=2, gpus_min_bytes=8 * 1048576 + 5, gpus_min_capability=7.5, gpus_max_capability=9.0)
    assert gpu["request_gpus"] == "2"
    assert gpu["gpus_minimum_memory"] == "8"  # MiB, rounded down
    assert gpu["gpus_minimum_capability"] == "7.500000"
    assert gpu["gpus_maximum_capability"] == "9.000000"
    assert "gpus_minimum_runtime" not in gpu  # zero: left out
    only_count, _ = described(gpus=1)
    assert only_count["request_gpus"] == "1" and "gpus_minimum_memory" not in only_count
    runtime, _ = described(gpus=1, gpus_min_runtime=12.2)
    assert runtime["gpus_minimum_runtime"] == "12.200000"


def test_stage_classads_come_first_and_justins_lines_override() -> None:
    desc = build_submit(replace(SPEC, classads=[("Desired_Sites", "Anywhere"), ("SingularityImage", "/evil"),
                                                ("MyOwnTag", "run-7")]))
    lines = desc.text.splitlines()
    assert lines[0].startswith("+Desired_Sites")
    _, ad = parse_description(desc.text)
    assert ad.eval("Desired_Sites") == "UK_Manchester,US_FNAL"
    assert ad.eval("SingularityImage") == SPEC.wrapper_job_image
    assert ad.eval("MyOwnTag") == "run-7"


@pytest.mark.parametrize("value", ['x" || true || "', 'a\\"b', "#not a comment", "semi; colon", "a,b"])
def test_stage_classad_values_stay_one_string(value: str) -> None:
    _, ad = described(classads=[("Tag", value)])
    assert ad.eval("Tag") == value
    assert ad.lookup("Tag").eval() == value


@pytest.mark.parametrize(
    "name",
    ["Requirements", "requirements", "AccountingGroup", "AcctGroupUser", "RequestMemory", "JUSTIN_DEV_AWT",
     "justin_dev_stage", "a.b", "1abc", "Foo Bar", "x=1", ""],
)
def test_reserved_or_malformed_classad_names_are_refused(name: str) -> None:
    with pytest.raises(SubmitDescriptionError):
        build_submit(replace(SPEC, classads=[(name, "v")]))


@pytest.mark.parametrize("value", ["$ENV(JUSTIN_DATABASE_URL)", "$(Cluster)", "line\nqueue 1000"])
def test_classad_values_that_condor_submit_would_expand_are_refused(value: str) -> None:
    with pytest.raises(SubmitDescriptionError):
        build_submit(replace(SPEC, classads=[("Tag", value)]))


@pytest.mark.parametrize("site", ['X" || true || "', "X,Other", "X Y", "", "X\n+Owner = 1", "$ENV(HOME)"])
def test_injection_site_names_are_refused_before_quoting(site: str) -> None:
    with pytest.raises(SubmitDescriptionError):
        build_submit(replace(SPEC, desired_sites=["UK_Manchester", site]))
    with pytest.raises(SubmitDescriptionError):
        build_submit(replace(SPEC, desired_entries=[site]))


def test_quoting_is_the_second_line_of_defence() -> None:
    """Even an injection-shaped name that skipped validation stays inside one string."""
    evil = 'X" || true || "'
    sub = htcondor2.Submit()
    sub["+Desired_Sites"] = quote_string(evil)
    sub["requirements"] = requirements([evil])
    _, ad = parse_description(str(sub))
    assert ad.eval("Desired_Sites") == evil  # one string: no "|| true" expression got in
    for other in ("Other", "UK_Manchester", "X", ""):
        assert not matches(ad, machine(other))
    # ...but stringListIMember splits its list at spaces as well as commas, so the string's
    # word "true" is a list member: quoting alone cannot make such a name safe, which is
    # why names are refused unless [A-Za-z0-9_.-] (no space, comma or quote) first.
    assert matches(ad, machine("true"))


@pytest.mark.parametrize(
    "changes",
    [
        {"count": 0},
        {"processors": 0},
        {"rss_bytes": 10},
        {"wall_seconds": 0},
        {"gpus": -1},
        {"desired_sites": []},
        {"schedd": "sched 1"},
        {"accounting_group": 'group"x'},
        {"accounting_group_user": "a b"},
        {"instance": "Dev"},
        {"executable": "relative/path"},
        {"executable": "/tmp/$(x)"},
        {"wrapper_job_image": "/cvmfs/$ENV(HOME)"},
    ],
)
def test_bad_specs_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(SubmitDescriptionError):
        build_submit(replace(SPEC, **changes))  # type: ignore[arg-type]
