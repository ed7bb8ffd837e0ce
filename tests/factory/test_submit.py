"""submit_cluster (upstream submitJobs, reference §4.4) against PostgreSQL and the
condor_submit stand-in: what is sent, what is recorded, and that failures record nothing."""

from __future__ import annotations

import logging
import random
import socket
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from justin_flows.db.engine import transaction
from justin_flows.db.models import Site
from justin_flows.factory.submit import JOB_SUBMITTED, ClusterRequest, SubmitError, parse_terse, submit_cluster
from justin_flows.ledger import LEDGER
from justin_flows.testing.condor_standins import set_behaviour
from tests.factory.helpers import (
    COLLECTORS,
    SCHEDDS,
    Condor,
    add_site,
    attribute,
    events,
    jobs,
    parse_description,
    set_env,
)

REQUEST = ClusterRequest(
    workflow_id=5,
    stage_id=2,
    count=3,
    desired_sites=["UK_Manchester", "US_FNAL"],
    desired_entries=["E_MAN", "E_FNAL"],
    accounting_group="group_dune.users",
    accounting_group_user="alice",
    jobscript_image="/cvmfs/singularity.opensciencegrid.org/fermilab/fnal-wn-sl7:latest",
    processors=2,
    rss_bytes=3000 * 1048576,
    wall_seconds=7200,
    classads=[("MyTag", "t1")],
)


def _secrets(rows: list) -> set[str]:
    return {r.justin_job_secret for r in rows} | {r.jobscript_secret for r in rows}


def test_submit_sends_the_description_and_records_every_job(condor: Condor) -> None:
    result = submit_cluster(condor.adapter, REQUEST, rng=random.Random(3))
    [call] = condor.calls()
    schedd = random.Random(3).choice(SCHEDDS)
    assert result.schedd == schedd
    assert call["argv"] == ["-name", schedd, "-pool", COLLECTORS[0], "-spool", "-terse"]
    assert call["env"]["BEARER_TOKEN_FILE"] == str(condor.token_file)
    assert call["env"]["bearer_token_file_exists"] is True

    sub, ad = parse_description(call["stdin"])
    assert call["stdin"] == result.description.text
    assert sub.getQArgs() == "3"
    assert attribute(ad, "Desired_Sites") == "UK_Manchester,US_FNAL"
    assert attribute(ad, "JUSTIN_DEV_Stage") == "dev-w5s2"
    assert attribute(ad, "MyTag") == "t1"
    assert sub["accounting_group"] == "group_dune.users" and sub["accounting_group_user"] == "alice"
    assert sub["request_cpus"] == "2" and sub["request_memory"] == f"{3000 * 1024}KB"
    assert sub["environment"] == f'"JUSTIN_JOBSUB_ID=$(Cluster).$(Process)@{schedd}"'
    executable = Path(sub["executable"])
    assert executable.name == "justin-wrapper-job"
    assert not executable.parent.exists()  # removed after the submit (-spool copied it)

    cluster = call["cluster"]
    assert result.cluster_id == cluster
    rows = jobs()
    assert [r.jobsub_id for r in rows] == [f"{cluster}.{i}@{schedd}" for i in range(3)]
    assert result.jobsub_ids == [r.jobsub_id for r in rows]
    assert result.justin_job_ids == [r.justin_job_id for r in rows]
    for row in rows:
        assert (row.workflow_id, row.stage_id, row.site_id) == (5, 2, None)
        assert row.factory_name == socket.gethostname()
        assert row.job_state.value == "submitted"
        assert (row.requested_processors, row.requested_gpus) == (2, 0)
        assert (row.requested_rss_bytes, row.requested_wall_seconds) == (3000 * 1048576, 7200)
        assert row.logs_tries_left == 10
    assert len({r.justin_job_secret for r in rows}) == 1  # one secret per cluster...
    assert len({r.jobscript_secret for r in rows}) == 3  # ...and one per job
    assert all(len(s) >= 86 for s in _secrets(rows))

    evs = events()
    assert [e.event_type_id for e in evs] == [JOB_SUBMITTED] * 3
    assert [e.justin_job_id for e in evs] == result.justin_job_ids
    assert {(e.workflow_id, e.stage_id, e.site_id) for e in evs} == {(5, 2, 0)}
    assert [e.seconds for e in evs] == [pytest.approx(result.submit_seconds)] * 3
    assert result.submit_seconds > 0


def test_secrets_never_reach_the_description_the_ledger_or_logs(
    condor: Condor, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        result = submit_cluster(condor.adapter, REQUEST)
    secrets_ = _secrets(jobs())
    ledger_text = repr(LEDGER.snapshot())
    recorded = repr(condor.calls())
    for secret in secrets_:
        assert secret not in result.description.text
        assert secret not in recorded
        assert secret not in ledger_text
        assert secret not in caplog.text


def test_wrapper_kept_when_configured(condor: Condor) -> None:
    set_env(JUSTIN_HTCONDOR__KEEP_WRAPPER_FILES="true")
    result = submit_cluster(condor.adapter, REQUEST)
    wrapper = Path(result.description.submit["executable"])
    assert wrapper.is_file()
    assert jobs()[0].justin_job_secret in wrapper.read_text()
    wrapper.unlink()
    wrapper.parent.rmdir()


def test_awt_submit_records_the_site_and_its_times(condor: Condor) -> None:
    site_id = add_site("UK_Manchester")
    request = ClusterRequest(workflow_id=1, stage_id=1, count=1, desired_sites=["UK_Manchester"], awt=True,
                             site_id=site_id, accounting_group="group_dune.prod", accounting_group_user="dunepro",
                             jobscript_image="/cvmfs/image:latest")
    before = time.time()
    submit_cluster(condor.adapter, request)
    [row] = jobs()
    assert row.site_id == site_id
    [event] = events()
    assert event.site_id == site_id
    with transaction() as s:
        site = s.scalars(select(Site)).one()
    assert site.last_submitted_time is not None and site.last_awt_time is not None
    assert site.last_submitted_time.timestamp() >= before - 1
    assert site.last_submitted_time == row.submitted_time


def test_dry_run_builds_the_description_and_runs_nothing(condor: Condor) -> None:
    set_env(JUSTIN_HTCONDOR__DRY_RUN="true")
    result = submit_cluster(condor.adapter, REQUEST)
    assert result.dry_run and result.cluster_id is None
    sub, _ = parse_description(result.description.text)
    assert sub.getQArgs() == "3"
    assert condor.calls() == []
    assert jobs() == [] and events() == []
    assert LEDGER.snapshot() == []


def test_dry_run_of_the_adapter_alone_is_honoured(condor: Condor) -> None:
    """A flow run's dry-run adapter wins over the process-wide settings (which say submit)."""
    from justin_flows.adapters.htcondor import HTCondorAdapter
    from justin_flows.settings import get_settings

    settings = get_settings()
    assert settings.htcondor.dry_run is False
    dry = settings.model_copy(update={"htcondor": settings.htcondor.model_copy(update={"dry_run": True})})
    result = submit_cluster(HTCondorAdapter(dry), REQUEST)
    assert result.dry_run and condor.calls() == [] and jobs() == []


def _assert_nothing_recorded(condor: Condor) -> None:
    assert jobs() == [] and events() == []
    assert len(condor.calls()) == 1  # tried exactly once: never retried


def test_nonzero_exit_records_nothing(condor: Condor) -> None:
    set_behaviour(condor.state_dir, {"exit_code": 1})
    with pytest.raises(SubmitError, match=r"condor_submit to sched0\d.test.example failed.*exited 1"):
        submit_cluster(condor.adapter, REQUEST)
    _assert_nothing_recorded(condor)
    [record] = LEDGER.snapshot()
    assert (record.service, record.operation, record.attempt, record.outcome) == (
        "htcondor", "condor_submit", 1, "error")


def test_timeout_records_nothing_and_is_not_retried(condor: Condor) -> None:
    set_env(JUSTIN_HTCONDOR__COMMAND_TIMEOUT_SECONDS="0.5")
    set_behaviour(condor.state_dir, {"sleep": 5})
    started = time.perf_counter()
    with pytest.raises(SubmitError, match="TimeoutExpired"):
        submit_cluster(condor.adapter, REQUEST)
    assert time.perf_counter() - started < 4
    _assert_nothing_recorded(condor)


@pytest.mark.parametrize("stdout", ["hello\n", "", "12.0 - 12.1\n", "12.0 - 13.2\n", "1.0 - 1.2\n2.0 - 2.2\n",
                                    "12.1 - 12.3\n", "12.0-12.2\n"])
def test_garbage_or_wrong_count_records_nothing(condor: Condor, stdout: str) -> None:
    set_behaviour(condor.state_dir, {"stdout": stdout})
    with pytest.raises(SubmitError):
        submit_cluster(condor.adapter, REQUEST)
    _assert_nothing_recorded(condor)


def test_no_schedds_is_a_clear_error(condor: Condor) -> None:
    set_env(JUSTIN_HTCONDOR__SCHEDDS="")
    with pytest.raises(SubmitError, match="no schedds"):
        submit_cluster(condor.adapter, REQUEST)
    assert condor.calls() == []


def test_bad_request_is_refused_before_any_call(condor: Condor) -> None:
    from dataclasses import replace

    with pytest.raises(SubmitError, match="site"):
        submit_cluster(condor.adapter, replace(REQUEST, desired_sites=['X" || true || "']))
    with pytest.raises(SubmitError, match="unsafe"):
        submit_cluster(condor.adapter, replace(REQUEST, jobscript_image="/x'$(id)'"))
    assert condor.calls() == [] and jobs() == []


def test_parse_terse() -> None:
    assert parse_terse("17.0 - 17.4\n", 5) == 17
    assert parse_terse("3.0 - 3.0", 1) == 3
    # condor_submit's warnings arrive on the same (merged) stream
    assert parse_terse("WARNING: the line 'foo' was unused\n9.0 - 9.1\n", 2) == 9
    with pytest.raises(SubmitError, match="queued 4 job"):
        parse_terse("9.0 - 9.3", 2)
    with pytest.raises(SubmitError, match="odd range"):
        parse_terse("9.0 - 10.1", 2)
    with pytest.raises(SubmitError):
        parse_terse("Submitting job(s)..\n2 job(s) submitted to cluster 9.\n", 2)
