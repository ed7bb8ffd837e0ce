"""The sandbox: every deployment's flow, run once, against throw-away local services.

Nothing here talks to production. It starts a real Rucio server (seeded with a few RSEs),
the MetaCat double and HTCondor stand-ins, points the settings at them and at an
embedded SQLite results database, runs each deployment of ``prefect.yaml`` once with its
YAML parameters, and prints what was written.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import func, select

REPO_ROOT = Path(__file__).resolve().parents[2]
GFACTORY_FIXTURE = REPO_ROOT / "tests" / "fixtures" / "gfactory" / "checkout"
BANNER = "=" * 78


def _say(text: str) -> None:
    print(text, flush=True)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def running_dashboard(url: str) -> Iterator[None]:
    """The dashboard on ``url`` (loopback, plain HTTP) in a thread, for as long as the block runs."""
    import threading
    import urllib.request
    from urllib.parse import urlsplit

    import uvicorn

    from justin_flows.dashboard import create_app

    port = urlsplit(url).port
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="sandbox-dashboard", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2) as answer:  # noqa: S310 - loopback
                    if answer.status == 200:
                        break
            except OSError:
                time.sleep(0.1)
        _say(f"  dashboard {url} (log in as the provider double's user; accept the sandbox CA once)")
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def seed_rucio(rse_root: Path) -> list[str]:
    """A few posix RSEs with the attributes and protocols the collector reads."""
    from rucio.client import Client

    client = Client()
    seeded = []
    for name, site, country in (("SANDBOX_UK_DISK", "UK_Testshire", "UK"), ("SANDBOX_US_DISK", "US_Sampleton", "US")):
        with contextlib.suppress(Exception):  # already there on a rerun
            client.add_rse(name, deterministic=True, volatile=False, rse_type="DISK")
        for key, value in (("site", site), ("country", country)):
            client.add_rse_attribute(name, key, value)
        prefix = rse_root / name
        prefix.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(Exception):
            client.add_protocol(
                name,
                {
                    "scheme": "file", "hostname": "localhost", "port": 0, "prefix": f"{prefix}/",
                    "impl": "rucio.rse.protocols.posix.Default",
                    "domains": {"lan": {"read": 1, "write": 1, "delete": 1}, "wan": {"read": 1, "write": 1, "delete": 1}},
                },
            )
        with contextlib.suppress(Exception):  # an xrootd door: registered so the finder sees root PFNs
            client.add_protocol(
                name,
                {
                    "scheme": "root", "hostname": f"xrootd.{name.lower()}.sandbox.invalid", "port": 1094,
                    "prefix": f"/{name}/", "impl": "rucio.rse.protocols.gfal.Default",
                    "domains": {"lan": {"read": 2, "write": 2, "delete": 2}, "wan": {"read": 2, "write": 2, "delete": 2}},
                },
            )
        client.set_local_account_limit("root", name, 10**12)
        seeded.append(name)
    return seeded


def seed_input_files(metacat: Any, rse: str, count: int = 6) -> str:
    """Input files known to MetaCat, with replicas in Rucio on ``rse``; returns their MQL."""
    from rucio.client import Client

    client = Client()
    with contextlib.suppress(Exception):
        client.add_scope("root", "sandbox")
    files = [{"scope": "sandbox", "name": f"raw-{i:04d}.root", "bytes": 1000 + i, "adler32": "0000000%d" % i}
             for i in range(count)]
    with contextlib.suppress(Exception):
        client.add_replicas(rse, files)
    for f in files:
        metacat.seed_file("sandbox", f["name"], f["bytes"], {"core.run_type": "sandbox"}, datasets=["sandbox:inputs"])
    return "files from sandbox:inputs"


def prepare_workflow(mql: str) -> int:
    """What an operator does before the factory can submit: enable a site and a storage, add a workflow."""
    from justin_flows.admin import create_workflow, enable_site, enable_storage

    enable_site("UK_Testshire")
    enable_storage("SANDBOX_UK_DISK")
    return create_workflow(mql, scope="sandbox", max_distance=30.0, principal_name="sandbox@example.invalid",
                           state="submitted", output_patterns=[("*.root", "sandbox-output", 86400, "")])


def _load_flow(entrypoint: str) -> Any:
    path, name = entrypoint.split(":")
    spec = importlib.util.spec_from_file_location(f"sandbox_{Path(path).stem}", REPO_ROOT / path)
    assert spec and spec.loader, entrypoint
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


@contextlib.contextmanager
def local_services(work: Path) -> Iterator[dict[str, str]]:
    """Start Rucio, MetaCat and the HTCondor stand-ins; yield the JUSTIN_* environment."""
    from justin_flows.testing.condor_standins import install_condor_standins
    from justin_flows.testing.git_repo import file_url, make_git_repo
    from justin_flows.testing.metacat_double import MetaCatDouble
    from justin_flows.testing.oidc_provider import OIDCProviderDouble
    from justin_flows.testing.rucio_server import RucioServer, ensure_server_venv
    from justin_flows.testing.x509 import install_voms_proxy_init_standin, make_grid_ca

    _say("starting a real Rucio 41.5.1 server (first run builds its venv, about a minute) ...")
    ensure_server_venv()
    dashboard_url = f"http://127.0.0.1:{_free_port()}"
    cilogon = OIDCProviderDouble(redirect_uris=[f"{dashboard_url}/login/cilogon/login"])
    with RucioServer(work_dir=work / "rucio") as rucio, MetaCatDouble() as metacat, cilogon:
        _say(f"  Rucio   {rucio.url} (started in {rucio.start_seconds:.1f} s)")
        _say(f"  MetaCat {metacat.server_url} (protocol double)")
        metacat.add_user("sandbox", "sandbox-password")
        metacat.seed_dataset("justin-logs:namespace-seed")
        install_condor_standins(work / "bin", work / "condor")
        voms_init = install_voms_proxy_init_standin(work / "bin", work / "voms")
        grid_ca = make_grid_ca("justin-flows sandbox grid CA")
        for stem in ("justin-jobs-production.dune.hep.ac.uk", "justin-jobs-no-roles.dune.hep.ac.uk"):
            grid_ca.issue_user(stem).write(work / "justin-secrets", stem)
        _say(f"  CILogon {cilogon.url} (OpenID provider double, HTTPS with a sandbox CA; user {cilogon.user.eppn})")
        gfactory = file_url(make_git_repo(GFACTORY_FIXTURE, work / "osg-gfactory"))
        _say(f"  gfactory {gfactory} (the project's synthetic checkout)")
        env = {
            **rucio.client_env(),
            "JUSTIN_RUCIO__ACCOUNT": rucio.root_account,
            "JUSTIN_METACAT__AUTH_SERVER_URL": metacat.auth_url,
            "JUSTIN_METACAT__SERVER_INPUTS_URL": metacat.server_url,
            "JUSTIN_METACAT__SERVER_OUTPUTS_URL": metacat.server_url,
            "JUSTIN_METACAT__USERNAME": "sandbox",
            "JUSTIN_METACAT__LOGIN_METHOD": "password",
            "JUSTIN_METACAT__PASSWORD": "sandbox-password",
            "JUSTIN_HTCONDOR__CONDOR_SUBMIT": str(work / "bin" / "condor_submit"),
            "JUSTIN_HTCONDOR__CONDOR_USERPRIO": str(work / "bin" / "condor_userprio"),
            "JUSTIN_HTCONDOR__SCHEDDS": "sandbox-schedd.invalid",
            "JUSTIN_HTCONDOR__COLLECTORS": "sandbox-collector.invalid",
            "JUSTIN_HTCONDOR__BEARER_TOKEN_FILE": str(work / "bearer-token"),
            "JUSTIN_DATABASE_URL": f"sqlite:///{work / 'justin-flows.db'}",
            "JUSTIN_SITES__GFACTORY_REPO_URL": gfactory,
            "JUSTIN_CILOGON__OPENID_CONFIGURATION_URL": cilogon.configuration_url,
            "JUSTIN_CILOGON__CA_FILE": str(cilogon.ca_file),
            "JUSTIN_CILOGON__CLIENT_ID": cilogon.client_id,
            "JUSTIN_CILOGON__CLIENT_SECRET": cilogon.client_secret,
            "JUSTIN_DASHBOARD_URL": dashboard_url,
            "JUSTIN_DASHBOARD__INSECURE_LOOPBACK_HTTP": "true",
            "JUSTIN_PROXIES__VOMS_PROXY_INIT": str(voms_init),
            "JUSTIN_PROXIES__SECRETS_DIR": str(work / "justin-secrets"),
            "JUSTIN_PROXIES__PRODUCTION_PROXY": str(work / "justin-jobs-production.proxy.pem"),
            "JUSTIN_PROXIES__NO_ROLES_PROXY": str(work / "justin-jobs-no-roles.proxy.pem"),
            "JUSTIN_PROXIES__DEFAULT_PROXY": str(work / "x509up_sandbox"),
            "PREFECT_HOME": str(work / "prefect"),
        }
        os.environ.update(env)
        from rucio.common.config import clean_cached_config

        clean_cached_config()
        seeded = seed_rucio(work / "rse")
        _say(f"  seeded RSEs: {', '.join(seeded)}")
        env["SANDBOX_MQL"] = seed_input_files(metacat, seeded[0])
        _say(f"  seeded 6 input files in MetaCat and Rucio: {env['SANDBOX_MQL']}")
        yield env


def run_deployments(mql: str) -> list[tuple[str, str, float]]:
    """Run each prefect.yaml deployment's flow once with its YAML parameters.

    After the info collector has filled in sites and storages, the sandbox acts as an
    operator: it enables a site and a storage and submits a workflow for the finder and
    the job factory to work on.
    """
    config = yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())
    # what an operator would type into the Run form of the on-demand deployments
    run_form = {"show-files": {"mql": mql}, "show-replicas": {"mql": mql, "chunk_size": 2}}
    results = []
    for deployment in config["deployments"]:
        if not deployment.get("schedules") and deployment["name"] not in run_form:
            _say(f"  {deployment['name']:<28} (on demand; needs the operator's parameters, not run here)")
            continue
        if deployment["name"] == "finder":
            _say(f"  (operator) workflow {prepare_workflow(mql)} submitted: {mql}")
        flow = _load_flow(deployment["entrypoint"])
        start = time.perf_counter()
        parameters = {**(deployment.get("parameters") or {}), **run_form.get(deployment["name"], {})}
        state = flow(**parameters, return_state=True)
        results.append((deployment["name"], f"{state.name}: {state.message or ''}".strip(), time.perf_counter() - start))
        _say(f"  {deployment['name']:<28} {state.name} ({time.perf_counter() - start:.1f} s)")
    return results


def report() -> None:
    """Print row counts of every table the flows wrote, and the ledger by service."""
    from justin_flows.db.engine import transaction
    from justin_flows.db.models import Base, ExternalCall, KeyNameValue

    with transaction() as s:
        _say("\nrows written:")
        for table in Base.metadata.sorted_tables:
            count = s.scalar(select(func.count()).select_from(table))
            if count:
                _say(f"  {table.name:<24} {count}")
        _say("\nkeys_names_values:")
        for name, value in s.execute(select(KeyNameValue.key_name, KeyNameValue.key_value)).all():
            _say(f"  {name} = {value}")
        _say("\nexternal calls per flow (flow, service, operation, outcome, count, mean ms):")
        cols = (ExternalCall.flow_name, ExternalCall.service, ExternalCall.operation, ExternalCall.outcome)
        query = select(*cols, func.count(), func.avg(ExternalCall.duration_ms)).group_by(*cols).order_by(*cols)
        for flow_name, service, operation, outcome, count, mean in s.execute(query).all():
            _say(f"  {flow_name or '-':<26} {service:<9} {operation:<26} {outcome:<6} {count:>4} {mean:8.1f}")


def run_sandbox(keep: bool = False) -> int:
    work = REPO_ROOT / ".sandbox"
    work.mkdir(exist_ok=True)
    (work / "justin-flows.db").unlink(missing_ok=True)  # every sandbox run starts empty
    _say(BANNER)
    _say("justin-flows SANDBOX: local throw-away services only. Nothing here touches")
    _say("production Rucio, MetaCat, HTCondor or any justIN database. condor_submit and")
    _say("condor_userprio are local stand-ins: no job reaches a real schedd.")
    _say(f"work directory: {work}")
    _say(BANNER)
    with local_services(work) as env:
        from justin_flows.db.migrate import upgrade
        from justin_flows.settings import get_settings

        get_settings.cache_clear()
        upgrade(get_settings().database_url.get_secret_value())
        _say("\nrunning every deployment's flow once (Prefect in local ephemeral mode):")
        results = run_deployments(env["SANDBOX_MQL"])
        report()
        with running_dashboard(env["JUSTIN_DASHBOARD_URL"]):
            if keep:
                _say("\nservices stay up; Ctrl-C to stop")
                with contextlib.suppress(KeyboardInterrupt):
                    while True:
                        time.sleep(3600)
    _say(BANNER)
    _say("SANDBOX finished; its services are stopped. Data: " + str(work / "justin-flows.db"))
    failed = [name for name, state, _ in results if not state.startswith("Completed")]
    if failed:
        print(f"sandbox: these flows did not complete: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
