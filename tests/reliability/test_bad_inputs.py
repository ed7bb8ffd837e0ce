"""The bad-input corpus: each case feeds one malformed input to the real code path that reads it
(gfactory files, JWKS documents, condor_userprio and condor_submit output, MetaCat and Rucio
error answers, MQL, CLI arguments, settings) after good rows were stored, and asserts a clear
error that names the input, and that the good rows are exactly as they were.

``CORPUS`` counts the cases (the report quotes it); each is its own parametrised test id.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import Engine, insert, select

from justin_flows.adapters.calls import ExternalService
from justin_flows.adapters.git import GitAdapter
from justin_flows.adapters.htcondor import HTCondorAdapter
from justin_flows.adapters.http import HTTPAdapter
from justin_flows.adapters.metacat import MetaCatAdapter
from justin_flows.adapters.rucio import RucioAdapter
from justin_flows.adapters.rucio import is_transient as rucio_transient
from justin_flows.collector.groups import update_groups_htcondor
from justin_flows.collector.jwks import update_jwks
from justin_flows.collector.sites import update_sites
from justin_flows.collector.storages import update_storages
from justin_flows.db.engine import transaction
from justin_flows.db.models import (
    Base,
    CondorGroup,
    File,
    FileState,
    JwtKey,
    Stage,
    Storage,
    Workflow,
    WorkflowState,
)
from justin_flows.domain.jwks import JwksDocumentError
from justin_flows.factory.workflow_jobs import workflow_jobs
from justin_flows.finder.files import find_files
from justin_flows.settings import RetryPolicy, Settings
from justin_flows.testing.condor_standins import set_behaviour
from justin_flows.testing.git_repo import file_url, make_git_repo
from justin_flows.testing.https_server import LocalHTTPSServer
from justin_flows.testing.jwk import new_rsa_key, rsa_jwk
from justin_flows.testing.metacat_double import MetaCatDouble
from justin_flows.testing.rucio_server import RucioServer
from tests.conftest import CondorStandins, reset_caches
from tests.factory.helpers import seed_factory_stage
from tests.reliability.conftest import CannedServer, rucio_at
from tests.shared_data import REPO_ROOT

GFACTORY = REPO_ROOT / "tests" / "fixtures" / "gfactory"
FAST = RetryPolicy(attempts=2, backoff_seconds=0, max_backoff_seconds=0, jitter=0)


def rows(*tables: str, skip: tuple[str, ...] = ()) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of ``tables`` (all columns but ``skip``), sorted."""
    out = {}
    with transaction() as s:
        for name in tables:
            table = Base.metadata.tables[name]
            cols = [c for c in table.columns if c.name not in skip]
            out[name] = sorted(tuple(map(repr, r)) for r in s.execute(select(*cols)).all())
    return out


def errors_naming(errors: list[str], *words: str) -> list[str]:
    return [e for e in errors if all(w in e for w in words)]


# ======================================================================== gfactory XML / YAML

_XXE = b"""<?xml version="1.0"?>
<!DOCTYPE glidein [<!ENTITY secret SYSTEM "file:///tmp/justin-xxe-secret.txt">]>
<glidein><entries><entry name="TEST_XX_Xxe_ce" enabled="True" gatekeeper="ce.xxe.example" gridtype="condor">
<attrs><attr name="GLIDEIN_DUNESite" value="&secret;"/><attr name="GLIDEIN_Supported_VOs" value="DUNE"/>
</attrs></entry></entries></glidein>
"""
_ENTITIES = '<!ENTITY lol0 "lol">' + "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10))
_LAUGHS = f"""<?xml version="1.0"?>
<!DOCTYPE lolz [{_ENTITIES}]>
<glidein><entries><entry name="TEST_XX_Lol_ce" enabled="True" gatekeeper="ce.lol.example" gridtype="condor">
<attrs><attr name="GLIDEIN_DUNESite" value="&lol9;"/><attr name="GLIDEIN_Supported_VOs" value="DUNE"/>
</attrs></entry></entries></glidein>
""".encode()  # a billion laughs: 10^9 x "lol" if expanded
_YAML_PYTHON_TAG = b"""TEST_Resource:
  !!python/object/apply:os.system ["touch /tmp/justin-pwned"]: x
"""
_YAML_ALIAS_BOMB = b"""a: &a ["x","x","x","x","x","x","x","x","x"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: [*d,*d,*d,*d,*d,*d,*d,*d,*d]
"""

#: (file name in the checkout, contents); the malformed fixture files, then inline ones.
GFACTORY_CASES: dict[str, tuple[str, bytes]] = {
    **{f"fixture {p.name}": (p.relative_to(GFACTORY / "malformed").as_posix(), p.read_bytes())
       for p in sorted((GFACTORY / "malformed").rglob("*")) if p.is_file() and "good" not in p.name},
    "xml external entity (XXE)": ("40-xxe.xml", _XXE),
    "xml entity expansion bomb": ("41-laughs.xml", _LAUGHS),
    "xml not UTF-8": ("42-latin1.xml", "<?xml version='1.0'?><glidein>\xe9</glidein>".encode("latin-1")),
    "xml binary garbage": ("43-garbage.xml", bytes(range(256))),
    "yaml python tag": ("OSG_autoconf/40-python.yml", _YAML_PYTHON_TAG),
    "yaml alias bomb": ("OSG_autoconf/41-aliases.yml", _YAML_ALIAS_BOMB),
}  # fmt: skip


def _checkout(tmp_path: Path, extra: tuple[str, bytes] | None) -> str:
    src = tmp_path / ("bad-src" if extra else "good-src")
    shutil.copytree(GFACTORY / "checkout", src)
    if extra:
        (src / extra[0]).parent.mkdir(parents=True, exist_ok=True)
        (src / extra[0]).write_bytes(extra[1])
    return file_url(make_git_repo(src, tmp_path / ("bad" if extra else "good")))


@pytest.mark.parametrize("case", sorted(GFACTORY_CASES))
def test_gfactory_bad_file(case: str, db: Engine, tmp_path: Path) -> None:
    name, data = GFACTORY_CASES[case]
    secret = Path("/tmp/justin-xxe-secret.txt")  # what the XXE case tries to read
    secret.write_text("XXE-SECRET-3f9c")
    update_sites(GitAdapter(), repo_url=_checkout(tmp_path, None), extra_entries={})
    before = rows("sites", "entries", skip=("last_osg_seen_time",))
    assert before["sites"] and before["entries"]
    report = update_sites(GitAdapter(), repo_url=_checkout(tmp_path, (name, data)), extra_entries={})
    assert errors_naming(report.errors, name), (name, report.errors)
    after = rows("sites", "entries", skip=("last_osg_seen_time",))
    for table in ("sites", "entries"):
        missing = set(before[table]) - set(after[table])
        assert not missing, f"{table} rows changed or lost by {name}: {missing}"
    assert not Path("/tmp/justin-pwned").exists(), "a YAML tag ran a command"
    stored = rows("sites", "entries")
    assert "XXE-SECRET-3f9c" not in repr(stored), "an external entity was read into the database"


# ======================================================================== JWKS documents

CONFIG = "/dune/.well-known/openid-configuration"
JWKS = "/oauth2/certs"


@pytest.fixture(scope="module")
def rsa_keys() -> dict[str, Any]:
    return {"good": new_rsa_key(), "short": new_rsa_key(1024)}


def _jwk(keys: dict[str, Any], kid: str, **change: Any) -> dict[str, Any]:
    jwk: dict[str, Any] = rsa_jwk(keys["good"], kid)
    jwk.update(change)
    return {k: v for k, v in jwk.items() if v is not None}


#: case -> (configuration document or None for the default, JWKS document, where the error is)
def _jwks_cases(keys: dict[str, Any]) -> dict[str, tuple[Any, Any, str]]:
    good = _jwk(keys, "kid-fresh")
    return {
        "configuration not an object": (["x"], {"keys": [good]}, "document"),
        "configuration without jwks_uri": ({"issuer": "x"}, {"keys": [good]}, "document"),
        "jwks_uri plain http": ({"jwks_uri": "http://127.0.0.1/certs"}, {"keys": [good]}, "document"),
        "jwks not an object": (None, "just a string", "document"),
        "jwks without keys": (None, {"kids": []}, "document"),
        "keys not a list": (None, {"keys": {"kid": "x"}}, "document"),
        "body not JSON": (None, b"<html>oops</html>", "document"),
        "EC key": (None, {"keys": [good, _jwk(keys, "kid-ec", kty="EC")]}, "kid-ec"),
        "even modulus": (None, {"keys": [good, _jwk(keys, "kid-even", n="AAAA")]}, "kid-even"),
        "1024-bit key": (None, {"keys": [good, rsa_jwk(keys["short"], "kid-short")]}, "kid-short"),
        "n not base64url": (None, {"keys": [good, _jwk(keys, "kid-b64", n="not*base64")]}, "kid-b64"),
        "alg HS256": (None, {"keys": [good, _jwk(keys, "kid-hs", alg="HS256")]}, "kid-hs"),
        "key without e": (None, {"keys": [good, _jwk(keys, "kid-noe", e=None)]}, "kid-noe"),
    }


JWKS_CASE_NAMES = sorted(_jwks_cases({"good": new_rsa_key(), "short": new_rsa_key(1024)}))


@pytest.fixture(scope="module")
def idp_server() -> Iterator[LocalHTTPSServer]:
    with LocalHTTPSServer() as server:
        yield server


@pytest.mark.parametrize("case", JWKS_CASE_NAMES)
def test_jwks_bad_document(case: str, db: Engine, idp_server: LocalHTTPSServer, rsa_keys: dict[str, Any],
                           monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    config, jwks, where = _jwks_cases(rsa_keys)[case]
    config = config if config is not None else {"jwks_uri": idp_server.url_for(JWKS)}
    for path, doc in ((CONFIG, config), (JWKS, jwks)):
        body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        idp_server.routes[path] = (200, "application/json", body)
    monkeypatch.setenv("JUSTIN_CILOGON__CA_FILE", str(idp_server.ca_file))
    reset_caches()
    stored = rsa_jwk(rsa_keys["good"], "kid-stored")
    with transaction() as s:
        s.execute(insert(JwtKey).values(jwks_kid="kid-stored", jwks_n=stored["n"], jwks_e=stored["e"],
                                        jwks_alg="RS256", jwks_use="sig", jwks_kty="RSA"))  # fmt: skip
    before = rows("jwt_keys")
    with HTTPAdapter(service=ExternalService("http", FAST, lambda e: False)) as http:
        if where == "document":
            with pytest.raises((JwksDocumentError, ValueError)) as caught:
                update_jwks(http, configuration_url=idp_server.url_for(CONFIG))
            assert "127.0.0.1" in str(caught.value) or "jwks" in str(caught.value).lower(), caught.value
            assert rows("jwt_keys") == before
        else:
            report = update_jwks(http, configuration_url=idp_server.url_for(CONFIG))
            assert errors_naming(report.errors, where), report.errors
            after = rows("jwt_keys")
            assert set(before["jwt_keys"]) <= set(after["jwt_keys"]), "the stored key changed"
            with transaction() as s:
                assert set(s.scalars(select(JwtKey.jwks_kid))) == {"kid-stored", "kid-fresh"}
    reset_caches()


# ======================================================================== condor_userprio output

HEAD = ("Last Priority Update: 12/3 10:00\nGroup                    Effective  Config  Use     Subtree  Weighted\n"
        "Name                       Quota     Quota  Surplus  Quota   Requested\n" + "-" * 70 + "\n")  # fmt: skip
USERPRIO_CASES = {
    "empty output": ("", "listed no group_dune groups"),
    "not a table": ("ERROR: cannot talk to the negotiator\n", "no group_dune"),
    "quota not a number": (HEAD + "group_dune.prod        lots  7000.00 ByQuota 7000.00 1800\n", "lots"),
    "too few fields": (HEAD + "group_dune.prod        7000.00\n", "fields"),
    "group name with SQL": (HEAD + "group_dune';DROP_TABLE  7.00 7.00 ByQuota 7.00 1\n", "group name"),
    "quota is inf": (HEAD + "group_dune.prod        inf  7000.00 ByQuota 7000.00 1800\n", "finite"),
}


@pytest.mark.parametrize("case", sorted(USERPRIO_CASES))
def test_condor_userprio_bad_output(case: str, db: Engine, condor_env: CondorStandins) -> None:
    output, words = USERPRIO_CASES[case]
    with transaction() as s:
        s.add(CondorGroup(condor_group_name="group_dune.keep", effective_quota=5.0, config_quota=6.0))
    before = rows("condor_groups")
    set_behaviour(condor_env.state_dir, {"condor_userprio": {"stdout": output}})
    report = update_groups_htcondor(HTCondorAdapter())
    assert errors_naming(report.errors, words), report.errors
    with transaction() as s:
        names = set(s.scalars(select(CondorGroup.condor_group_name)))
    assert names == {"group_dune.keep"}, "no bad group may be stored"
    assert rows("condor_groups") == before


# ======================================================================== condor_submit -terse output

TERSE_CASES = {
    "empty answer": "",
    "garbage": "Submitting job(s)....\nall good!\n",
    "two ranges": "7.0 - 7.5\n8.0 - 8.5\n",
    "range over two clusters": "7.0 - 8.2\n",
    "too few jobs": "7.0 - 7.3\n",
    "not from proc 0": "7.1 - 7.6\n",
}


@pytest.mark.parametrize("case", sorted(TERSE_CASES))
def test_condor_submit_bad_terse_output(case: str, db: Engine, condor_env: CondorStandins) -> None:
    first = seed_factory_stage(4)  # 6 jobs recorded by a good submission first
    assert workflow_jobs(HTCondorAdapter()).errors == []
    before = rows("jobs", "events")
    from justin_flows.admin import create_workflow

    second = create_workflow("files from test:second", scope="reliable", principal_name="bob@fnal.gov")
    with transaction() as s:
        rse_id = s.scalar(select(Storage.rse_id).where(Storage.rse_name == "RELIABLE_DISK"))
        f = File(workflow_id=second, stage_id=1, file_did="reliable:second", state=FileState.UNALLOCATED)
        s.add(f)
        s.flush()
        s.execute(insert(Base.metadata.tables["replicas"]).values(
            file_id=f.file_id, rse_id=rse_id, workflow_id=second, stage_id=1, wan_pfn="root://x/second"))
    set_behaviour(condor_env.state_dir, {"stdout": TERSE_CASES[case], "exit_code": 0})
    report = workflow_jobs(HTCondorAdapter())
    assert errors_naming(report.errors, f"workflow {second} stage 1", "condor_submit"), report.errors
    assert rows("jobs", "events") == before, "nothing recorded for the bad answer; the first stage's jobs intact"
    assert first != second


# ======================================================================== MetaCat error answers

METACAT_CASES = {
    "500 html": (500, {"Content-Type": "text/html"}, b"<html>Internal Server Error</html>"),
    "401 json error": (401, {"Content-Type": "application/json"}, b'{"error": "unauthorized"}'),
    "404": (404, {"Content-Type": "text/plain"}, b"no such endpoint"),
    "200 not json": (200, {"Content-Type": "application/json"}, b"this is not json"),
    "200 truncated json-seq": (200, {"Content-Type": "application/json-seq"}, b'\x1e{"namespace": "ns", "na'),
    "200 object, not files": (200, {"Content-Type": "application/json"}, b'{"files": 3}'),
}


def _finder_rows() -> tuple[int, int]:
    """A MetaCat workflow due for finding, and one already found whose files are stored."""
    with transaction() as s:
        s.add(Storage(rse_id=1, rse_name="MONTECARLO"))
        due = Workflow(state=WorkflowState.SUBMITTED, mql="files from ns:ds")
        done = Workflow(state=WorkflowState.RUNNING, mql="files from ns:old")
        s.add_all([due, done])
        s.flush()
        s.add_all([Stage(workflow_id=due.workflow_id, stage_id=1), Stage(workflow_id=done.workflow_id, stage_id=1)])
        s.add(File(workflow_id=done.workflow_id, stage_id=1, file_did="ns:old-file", state=FileState.FINDING))
        return due.workflow_id, done.workflow_id


@pytest.mark.parametrize("case", sorted(METACAT_CASES))
def test_metacat_error_answer(case: str, db: Engine, rucio_server: RucioServer, canned_server: CannedServer,
                              monkeypatch: pytest.MonkeyPatch, tmp_home: Path) -> None:  # fmt: skip
    from justin_flows.finder.submitted import find_submitted_workflows

    canned_server.reply = METACAT_CASES[case]
    monkeypatch.setenv("JUSTIN_METACAT__SERVER_INPUTS_URL", canned_server.url + "/app")
    reset_caches()
    due, done = _finder_rows()
    find_submitted_workflows()
    with transaction() as s:  # a second due workflow, Monte Carlo: must still be found
        mc = Workflow(state=WorkflowState.SUBMITTED, mql="monte-carlo 2")
        s.add(mc)
        s.flush()
        s.add(Stage(workflow_id=mc.workflow_id, stage_id=1))
        mc_id = mc.workflow_id
    find_submitted_workflows()
    before = rows("files")
    with MetaCatAdapter(service=ExternalService("metacat", FAST, lambda e: False)) as metacat:
        report = find_files(metacat, RucioAdapter())
    assert errors_naming(report.errors, f"workflow {due}"), report.errors
    assert canned_server.requests, "MetaCat was asked"
    after = rows("files")
    assert set(before["files"]) <= set(after["files"]), "the found workflow's files are intact"
    with transaction() as s:
        assert s.scalars(select(File.file_did).where(File.workflow_id == due)).all() == []
        assert len(s.scalars(select(File.file_did).where(File.workflow_id == mc_id)).all()) == 2
    assert done != due
    reset_caches()


# ======================================================================== Rucio error answers

RUCIO_CASES = {
    "500 html": ((500, {"Content-Type": "text/html"}, b"<html>boom</html>"), "list_rses"),
    "500 DatabaseException": ((500, {"ExceptionClass": "DatabaseException", "ExceptionMessage": "db down",
                                     "Content-Type": "application/json"},
                               b'{"ExceptionClass": "DatabaseException", "ExceptionMessage": "db down"}'), "list_rses"),
    "200 not json": ((200, {"Content-Type": "application/x-json-stream"}, b"not json at all\n"), "list_rses"),
    "200 wrong shape": ((200, {"Content-Type": "application/x-json-stream"}, b"[1, 2]\n"), "not an RSE"),
    "401 refused": ((401, {"ExceptionClass": "CannotAuthenticate", "ExceptionMessage": "no",
                           "Content-Type": "application/json"}, b'{"ExceptionClass": "CannotAuthenticate"}'),
                    "list_rses"),
    "RSE name with SQL": ((200, {"Content-Type": "application/x-json-stream"},
                           b'{"rse": "GOOD\'; DROP TABLE storages; --"}\n'), "characters"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(RUCIO_CASES))
def test_rucio_error_answer(case: str, db: Engine, rucio_server: RucioServer, canned_server: CannedServer,
                            tmp_path: Path) -> None:  # fmt: skip
    reply, words = RUCIO_CASES[case]
    with transaction() as s:
        s.add(Storage(rse_id=1, rse_name="MONTECARLO"))
        s.add(Storage(rse_id=7, rse_name="KEEP_DISK", country="UK", occupancy=0.25, rucio_write=True))
    before = rows("storages")
    canned_server.reply = reply
    with rucio_at(rucio_server, canned_server.url, tmp_path, JUSTIN_RUCIO__TIMEOUT_SECONDS="5"):
        rucio = RucioAdapter(service=ExternalService("rucio", FAST, rucio_transient))
        report = update_storages(rucio, rse_expression="justin_test=anything")
    assert errors_naming(report.errors, words), report.errors
    assert canned_server.requests, "the canned Rucio was asked"
    assert rows("storages") == before


# ======================================================================== MQL

MQL_CASES = {
    "rucio-dataset without scope": ("rucio-dataset nodataset", "rucio-dataset"),
    "rucio-dataset with two colons": ("rucio-dataset a:b:c", "rucio-dataset"),
    "monte-carlo not a number": ("monte-carlo many", "monte-carlo"),
    "monte-carlo negative": ("monte-carlo -5", "monte-carlo"),
    "MQL syntax error": ("files from ns:ds where", "metacat"),
    "MQL that is SQL": ("files from ns:ds; DROP TABLE files", "metacat"),
    "rucio-dataset that does not exist": ("rucio-dataset justin-logs:no-such-dataset", "rucio"),
}


@pytest.mark.parametrize("case", sorted(MQL_CASES))
def test_bad_mql(case: str, db: Engine, rucio_server: RucioServer, metacat_env: MetaCatDouble) -> None:
    mql, word = MQL_CASES[case]
    with transaction() as s:
        s.add(Storage(rse_id=1, rse_name="MONTECARLO"))
        due = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
        bad = Workflow(state=WorkflowState.RUNNING, mql=mql, refind_next_time=due)
        good = Workflow(state=WorkflowState.RUNNING, mql="monte-carlo 3", refind_next_time=due)
        kept = Workflow(state=WorkflowState.RUNNING, mql="files from ns:old")
        s.add_all([bad, good, kept])
        s.flush()
        for w in (bad, good, kept):
            s.add(Stage(workflow_id=w.workflow_id, stage_id=1))
        s.add(File(workflow_id=kept.workflow_id, stage_id=1, file_did="ns:kept", state=FileState.UNALLOCATED))
        ids = bad.workflow_id, good.workflow_id
    before = rows("files")
    with MetaCatAdapter(service=ExternalService("metacat", FAST, lambda e: False)) as metacat:
        report = find_files(metacat, RucioAdapter())
    assert errors_naming(report.errors, f"workflow {ids[0]}", word), report.errors
    assert set(before["files"]) <= set(rows("files")["files"])
    with transaction() as s:
        assert s.scalars(select(File).where(File.workflow_id == ids[0])).all() == []
        assert len(s.scalars(select(File).where(File.workflow_id == ids[1])).all()) == 3


# ======================================================================== CLI arguments

CLI_CASES = {
    "processors 0": (["workflow", "create", "--mql", "q", "--scope", "s", "--processors", "0"], "--processors"),
    "rss not a number": (["workflow", "create", "--mql", "q", "--scope", "s", "--rss-mib", "lots"], "--rss-mib"),
    "negative distance": (["workflow", "create", "--mql", "q", "--scope", "s", "--max-distance", "-1"],
                          "--max-distance"),
    "infinite distance": (["workflow", "create", "--mql", "q", "--scope", "s", "--max-distance", "inf"],
                          "--max-distance"),
    "output without destination": (["workflow", "create", "--mql", "q", "--scope", "s", "--output", "x.root"],
                                   "--output"),
    "output lifetime 0": (["workflow", "create", "--mql", "q", "--scope", "s", "--output", "*.root:d:0"],
                          "LIFETIME_DAYS"),
    "unknown state": (["workflow", "create", "--mql", "q", "--scope", "s", "--state", "bogus"], "--state"),
    "missing --mql": (["workflow", "create", "--scope", "s"], "--mql"),
    "unknown site": (["site", "enable", "XX_Nowhere"], "XX_Nowhere"),
    "unknown storage": (["storage", "enable", "NO_SUCH_RSE"], "NO_SUCH_RSE"),
    "unknown command": (["frobnicate"], "frobnicate"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_bad_cli_arguments(case: str, db: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    """argparse's own refusals raise SystemExit(2) (``main`` re-raises them); the commands' own
    refusals return 2: either way exit status 2 and a message naming the argument."""
    from justin_flows.cli import main

    argv, word = CLI_CASES[case]
    seed_factory_stage(1)
    before = rows(*[t.name for t in Base.metadata.sorted_tables])
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code  # type: ignore[assignment]
    err = capsys.readouterr().err
    assert code == 2 and word in err, (code, err)
    assert rows(*[t.name for t in Base.metadata.sorted_tables]) == before


# ======================================================================== settings

SETTINGS_CASES = {
    "negative Rucio timeout": ({"JUSTIN_RUCIO__TIMEOUT_SECONDS": "-1"}, "rucio.timeout_seconds"),
    "Rucio timeout not a number": ({"JUSTIN_RUCIO__TIMEOUT_SECONDS": "soon"}, "rucio.timeout_seconds"),
    "instance with capitals": ({"JUSTIN_INSTANCE": "Prod_1"}, "instance"),
    "schedd not a host name": ({"JUSTIN_HTCONDOR__SCHEDDS": "sched01 bad;host"}, "htcondor.schedds"),
    "unknown MetaCat login": ({"JUSTIN_METACAT__LOGIN_METHOD": "kerberos"}, "metacat.login_method"),
    "zero attempts": ({"JUSTIN_RETRY__ATTEMPTS": "0"}, "retry.attempts"),
    "WLCG group without slash": ({"JUSTIN_USERS_WLCG_GROUPS": "dune"}, "users_wlcg_groups"),
    "zero jobs per cluster": ({"JUSTIN_JOB_FACTORY__JOBS_PER_CLUSTER": "0"}, "job_factory.jobs_per_cluster"),
    "in-flight limit too high": ({"JUSTIN_RUCIO__MAX_IN_FLIGHT": "1000"}, "rucio.max_in_flight"),
    "missing config file": ({"JUSTIN_CONFIG_FILE": "/nonexistent/justin.toml"}, "/nonexistent/justin.toml"),
    "config file with a bad value": ({"JUSTIN_CONFIG_FILE": "{tmp}/bad.toml"}, "retry.jitter"),
}


@pytest.mark.parametrize("case", sorted(SETTINGS_CASES))
def test_bad_settings(case: str, db: Engine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                      capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    from justin_flows.cli import main

    env, field = SETTINGS_CASES[case]
    (tmp_path / "bad.toml").write_text("[retry]\njitter = 7\n")
    seed_factory_stage(1)
    before = rows(*[t.name for t in Base.metadata.sorted_tables])
    for key, value in env.items():
        monkeypatch.setenv(key, value.format(tmp=tmp_path))
    reset_caches()
    with pytest.raises((ValidationError, FileNotFoundError)) as caught:
        Settings()
    assert field in str(caught.value), str(caught.value)
    assert main(["settings"]) == 2
    assert field in capsys.readouterr().err
    monkeypatch.undo()
    reset_caches()
    assert rows(*[t.name for t in Base.metadata.sorted_tables]) == before


CORPUS = {
    "gfactory XML/YAML": len(GFACTORY_CASES), "JWKS documents": len(JWKS_CASE_NAMES),
    "condor_userprio output": len(USERPRIO_CASES), "condor_submit terse output": len(TERSE_CASES),
    "MetaCat error answers": len(METACAT_CASES), "Rucio error answers": len(RUCIO_CASES), "MQL": len(MQL_CASES),
    "CLI arguments": len(CLI_CASES), "settings": len(SETTINGS_CASES),
}  # fmt: skip


def test_the_corpus_has_at_least_50_cases() -> None:
    assert sum(CORPUS.values()) >= 50, CORPUS
