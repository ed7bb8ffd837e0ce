"""Baselines: upstream justIN's external calls, in upstream's order, written plainly.

Each function makes the calls the reference describes for one upstream agent step (the
section is named), one after another, with the same client libraries, against the data the
benchmark seeded. Where upstream writes to its database, the storages-group and finder
baselines do not (they read the rows they need, and keep their progress in memory), so their
wall times are a lower bound of upstream's; the sites baseline does write, row by row, into
a database of its own, because there the database is all the work.

Nothing here is used by the project; it exists only to be measured against.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import tempfile
import time
import urllib.request
import xml.dom.minidom
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Engine, text

RSE_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
WRITE_SCHEMES = ("davs", "https", "root", "roots")
COUNTRY_REGIONS = {"BR": "South_America", "CA": "North_America", "US": "North_America", "IN": "South_Asia",
                   **{c: "Europe" for c in ("CERN", "CH", "CZ", "DE", "ES", "FR", "IT", "NL", "RU", "UK")}}


class StepCounter:
    """Counts the calls each step makes (the proxies count the HTTP requests)."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def __call__(self, step: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        self.calls[step] += 1
        result = fn(*args, **kwargs)
        return list(result) if hasattr(result, "__next__") else result


# --------------------------------------------------------------------------- storages group (§2.0)


def update_storages(client: Any, account: str, count: StepCounter) -> int:
    """updateStorages (§2.5): list_rses, then per RSE attributes, protocols, usage and limits."""
    seen = 0
    for rse in count("updateStorages", client.list_rses):
        name = rse["rse"]
        if not RSE_NAME.match(name):
            continue
        try:
            attributes = count("updateStorages", client.list_rse_attributes, name)
        except Exception:
            continue
        decommissioned = (rse["rse_type"] != "DISK" and name != "FNAL_DCACHE") or attributes.get("decommissioned") is True
        try:
            protocols = count("updateStorages", client.get_protocols, name)
        except Exception:
            protocols = []
        schemes = {}
        for domain in ("lan", "wan"):
            best = (None, "root")
            for p in protocols if isinstance(protocols, list) else []:
                priority = ((p.get("domains") or {}).get(domain) or {}).get("write") or 0
                if p.get("scheme") in WRITE_SCHEMES and priority > 0:
                    if best[0] is None or (priority, p["scheme"]) < (best[0], best[1]):
                        best = (priority, p["scheme"])
            schemes[domain] = best[1]
        try:
            usage = count("updateStorages", client.get_rse_usage, name, filters={"source": "rucio"})
        except Exception:
            usage = []
        try:
            limits = count("updateStorages", client.get_account_limits, account, name, "local")
            occupancy = float(usage[0]["used"]) / float(limits[name])
        except Exception:
            occupancy = 0.0
        del decommissioned, occupancy
        seen += 1
    return seen


def update_logs_datasets(client: Any, metacat_login: Callable[[], Any], rses: Sequence[str], now: float,
                         count: StepCounter) -> None:
    """updateLogsDatasets (§2.6): per period and writable RSE, get_did (create when missing),
    list the dataset's rules and add the one rule when there is none."""
    from rucio.common.exception import DataIdentifierNotFound

    period = 1_000_000 * int(now / 1_000_000)
    for start in (period, period + 1_000_000, period + 2_000_000):
        for rse in rses:
            name = f"logstgz-{start}-{rse}"
            try:
                count("updateLogsDatasets", client.get_did, "justin-logs", name)
            except DataIdentifierNotFound:
                metacat = metacat_login()  # upstream: `metacat auth login` before every command
                count("updateLogsDatasets", lambda: None)  # the login request
                try:
                    count("updateLogsDatasets", metacat.create_dataset, f"justin-logs:{name}")
                except Exception:
                    pass  # upstream ignores the exit code
                try:
                    count("updateLogsDatasets", client.add_dataset, scope="justin-logs", name=name)
                except Exception:
                    continue
            except Exception:
                continue
            try:
                rules = count("updateLogsDatasets", client.list_replication_rules,
                              {"scope": "justin-logs", "name": name})
            except Exception:
                rules = []
            if not rules:
                count("updateLogsDatasets", client.add_replication_rule,
                      dids=[{"scope": "justin-logs", "name": name}], copies=1, rse_expression=rse, lifetime=4_000_000)


def update_named_quotas(client: Any, known: set[str], with_user: set[str], count: StepCounter) -> None:
    """updateNamedQuotas (§2.7): list_accounts; list_identities for each new account and each
    known account that maps to a user."""
    for account in count("updateNamedQuotas", client.list_accounts):
        name = account["account"]
        if name not in known or name in with_user:
            count("updateNamedQuotas", client.list_identities, name)


def update_scopes(client: Any, for_justin: Sequence[str], count: StepCounter) -> None:
    """updateScopes (§2.8): list_scopes_for_account per for_justin quota other than usertests."""
    for quota in for_justin:
        if quota != "usertests":
            try:
                count("updateScopes", client.list_scopes_for_account, quota)
            except Exception:
                continue


def update_storages_quotas(client: Any, for_justin: Sequence[str], production_account: str,
                           count: StepCounter) -> None:
    """updateStoragesQuotas (§2.9): get_local_account_usage per for_justin quota."""
    for quota in for_justin:
        account = production_account if quota == "usertests" else quota
        count("updateStoragesQuotas", client.get_local_account_usage, account)


def storages_group(client: Any, engine: Engine, account: str, metacat_login: Callable[[], Any],
                   now: float | None = None) -> Counter[str]:
    """The Rucio and MetaCat calls of the hourly storages group, in upstream's order (§2.0).

    updateGroupsHTCondor (one condor_userprio) and updateGroupsWLCG (no call) are the same
    for upstream and the project and are left out of both sides.
    """
    count = StepCounter()
    update_storages(client, account, count)
    with engine.connect() as conn:
        writable = list(conn.execute(text(
            "SELECT rse_name FROM storages WHERE NOT decommissioned AND rse_id <> 1 AND rucio_write AND justin_write"
            " ORDER BY rse_name")).scalars())
    update_logs_datasets(client, metacat_login, writable, time.time() if now is None else now, count)
    with engine.connect() as conn:
        known = set(conn.execute(text("SELECT quota_name FROM named_quotas")).scalars())
        with_user = set(conn.execute(text("SELECT quota_name FROM named_quotas WHERE user_id IS NOT NULL")).scalars())
    update_named_quotas(client, known, with_user, count)
    with engine.connect() as conn:
        for_justin = list(conn.execute(text(
            "SELECT quota_name FROM named_quotas WHERE for_justin ORDER BY quota_id")).scalars())
    update_scopes(client, for_justin, count)
    update_storages_quotas(client, for_justin, account, count)
    return count.calls


# --------------------------------------------------------------------------- finder (§3)


def metacat_query(server_inputs_url: str, mql: str) -> list[dict[str, Any]]:
    """findFilesMetaCat: POST the MQL, no auth; one JSON object per line."""
    request = urllib.request.Request(f"{server_inputs_url}/data/query?with_meta=no&with_provenance=no",
                                     data=mql.encode(), method="POST")
    with urllib.request.urlopen(request, timeout=600) as answer:
        body = answer.read().decode()
    return [json.loads(line.strip("\x1e \t")) for line in body.splitlines() if line.strip("\x1e \t")]


def finder_cycles(client: Any, ping_client: Any, server_inputs_url: str, mql: str,
                  chunk: int = 500) -> tuple[Counter[str], int]:
    """Finder cycles (§3) until every file of one new workflow has had its replicas looked up.

    Each cycle: three pings (the Rucio gate, §0.3); findFiles on the first cycle only
    (its retry loop has no break, so three identical queries); findReplicas for the next
    ``chunk`` files of the stage, one ``list_replicas`` with ``domain='wan'`` and one with
    ``domain='lan'``. Upstream waits about 120 s between cycles; that wait is not counted.
    """
    count = StepCounter()
    finding: list[dict[str, str]] = []
    cycle = 0
    while cycle == 0 or finding:
        cycle += 1
        for _ in range(3):
            count("ping", ping_client.ping)
        if cycle == 1:
            files: list[dict[str, Any]] = []
            for _ in range(3):  # the [BUG]: every try succeeds and none breaks the loop
                count("query", lambda: None)
                files = metacat_query(server_inputs_url, mql)
            finding = [{"scope": f["namespace"], "name": f["name"]} for f in files]
        batch, finding = finding[:chunk], finding[chunk:]
        if batch:
            count("list_replicas", client.list_replicas, batch, schemes=["root"], domain="wan")
            count("list_replicas", client.list_replicas, batch, schemes=["root"], domain="lan")
    return count.calls, cycle


# --------------------------------------------------------------------------- sites group (§2.10, §2.11)


def _xml_entries(path: Path) -> list[dict[str, Any]]:
    document = xml.dom.minidom.parse(str(path))
    out = []
    for entries in document.getElementsByTagName("entries")[:1]:
        for entry in entries.getElementsByTagName("entry"):
            if entry.getAttribute("enabled") == "False" or entry.getAttribute("gridtype") == "cream":
                continue
            attrs = {a.getAttribute("name"): a.getAttribute("value") for a in entry.getElementsByTagName("attr")}
            vos = attrs.get("GLIDEIN_Supported_VOs", "").split(",")
            if not attrs.get("GLIDEIN_DUNESite") or not attrs.get("GLIDEIN_Site") or not ({"DUNE", "DUNEGPU"} & set(vos)):
                continue
            out.append({
                "entry_name": entry.getAttribute("name"),
                "gatekeeper": entry.getAttribute("gatekeeper").split(" ")[0],
                "site_name": attrs["GLIDEIN_DUNESite"], "jobsub_site_name": attrs["GLIDEIN_Site"],
                "wlcg_site_name": attrs.get("GLIDEIN_ResourceName", "").strip(),
                "max_processors": int(attrs.get("GLIDEIN_CPUS") or 1),
                "max_rss_bytes": int(attrs.get("GLIDEIN_MaxMemMBs") or 2000) * 1048576,
                "max_wall_seconds": int(attrs.get("GLIDEIN_Max_Walltime") or 86400),
                "entry_has_gpus": "DUNEGPU" in vos, "file_name": path.name, "raw_config": entry.toprettyxml(),
            })
    return out


def _yaml_entries(path: Path) -> list[dict[str, Any]]:
    out = []
    for site in (yaml.safe_load(path.read_text()) or {}).values():
        common = ((site or {}).get("common_entry_fields") or {}).get("attrs") or {}
        for gatekeeper, body in (site or {}).items():
            if gatekeeper == "common_entry_fields" or not isinstance(body, dict) or "BEST_FIT" not in body:
                continue
            for name, entry in (body["BEST_FIT"] or {}).items():
                attrs = (entry or {}).get("attrs")
                if not attrs:
                    continue

                def get(key: str, default: Any, attrs: dict[str, Any] = attrs, common: dict[str, Any] = common) -> Any:
                    return (attrs.get(key) or common.get(key) or {}).get("value", default)

                vos = str(get("GLIDEIN_Supported_VOs", "")).split(",")
                if not get("GLIDEIN_Site", None) or not get("GLIDEIN_DUNESite", None) or not ({"DUNE", "DUNEGPU"} & set(vos)):
                    continue
                out.append({
                    "entry_name": name, "gatekeeper": gatekeeper, "site_name": get("GLIDEIN_DUNESite", ""),
                    "jobsub_site_name": get("GLIDEIN_Site", ""), "wlcg_site_name": get("GLIDEIN_ResourceName", ""),
                    "max_processors": int(get("GLIDEIN_CPUS", 1)),
                    "max_rss_bytes": int(get("GLIDEIN_MaxMemMBs", 2500)) * 1048576,
                    "max_wall_seconds": int(get("GLIDEIN_Max_Walltime", 86400)), "entry_has_gpus": "DUNEGPU" in vos,
                    "file_name": f"OSG_autoconf/{path.name}", "raw_config": json.dumps({"entry": entry}, sort_keys=True),
                })
    return out


def _distance(site: dict[str, Any], storage: dict[str, Any]) -> float:
    """The first matching rule of §2.11."""
    site_name, rse_site, rse_name = site["site_name"], storage["site_name"] or "", storage["rse_name"]

    def prefix(name: str) -> str:
        return name.split("-")[0]

    if site_name == rse_site or storage["rse_id"] == 1:
        return 0
    if site_name.startswith("US_FNAL") and rse_site.startswith("US_FNAL"):
        return 0
    if site_name.startswith("US_NERSC") and "NERSC" in rse_name:
        return 0
    if "NERSC" in rse_name:
        return 101
    if rse_site and prefix(site_name) == prefix(rse_site):
        return 10
    if {site_name, rse_site} == {"NL_NIKHEF", "NL_SURFSARA"}:
        return 10
    if site["country"] and site["country"] == storage["country"]:
        return 20
    if site["region"] and site["region"] == storage["region"]:
        return 30
    if rse_site in ("CERN", "US_FNAL-FermiGrid"):
        return 90
    return 100


def sites_group(repo_url: str, engine: Engine) -> tuple[int, int]:
    """updateSites + updateSitesStorages as upstream does them: a full ``git clone``, every root
    ``*.xml`` and ``OSG_autoconf/*.yml``, then per site and entry a SELECT and an INSERT or
    UPDATE, then per site and storage a SELECT and an INSERT or UPDATE; one commit.
    Returns (git calls, SQL statements)."""
    statements = 0
    with tempfile.TemporaryDirectory(prefix="baseline-gfactory-") as tmp:
        checkout = Path(tmp) / "osg-gfactory"
        subprocess.run(["git", "clone", "-q", repo_url, str(checkout)], check=False,
                       env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})
        entries = [e for p in sorted(checkout.glob("*.xml")) for e in _xml_entries(p)]
        entries += [e for p in sorted((checkout / "OSG_autoconf").glob("*.yml")) for e in _yaml_entries(p)]
    sites: dict[str, dict[str, Any]] = {}
    for e in entries:
        sites.setdefault(e["site_name"], {"site_name": e["site_name"], "jobsub_site_name": e["jobsub_site_name"],
                                          "wlcg_site_name": e["wlcg_site_name"], "entries": []})["entries"].append(e)
    now = dt.datetime.now(dt.timezone.utc)
    with engine.begin() as conn:
        for site in sites.values():
            country = "CERN" if site["site_name"] == "CERN" else site["site_name"][:2]
            values = {**{k: site[k] for k in ("site_name", "jobsub_site_name", "wlcg_site_name")},
                      "country": country, "region": COUNTRY_REGIONS.get(country, ""), "now": now}
            site_id = conn.execute(text("SELECT site_id FROM sites WHERE site_name = :site_name"), values).scalar()
            statements += 1
            if site_id is None:
                site_id = conn.execute(text(
                    "INSERT INTO sites (site_name, jobsub_site_name, wlcg_site_name, only_production, only_on_request,"
                    " country, region, enabled, always_inner_apptainer, last_osg_seen_time) VALUES (:site_name,"
                    " :jobsub_site_name, :wlcg_site_name, false, false, :country, :region, false, 1, :now)"
                    " RETURNING site_id"), values).scalar()
            else:
                conn.execute(text(
                    "UPDATE sites SET jobsub_site_name = :jobsub_site_name, wlcg_site_name = :wlcg_site_name,"
                    " country = :country, region = :region, last_osg_seen_time = :now WHERE site_name = :site_name"),
                    values)
            statements += 1
            for e in site["entries"]:
                row = {**{k: v for k, v in e.items() if k not in ("site_name", "jobsub_site_name", "wlcg_site_name")},
                       "site_id": site_id, "now": now}
                found = conn.execute(text("SELECT entry_id FROM entries WHERE entry_name = :entry_name"), row).scalar()
                statements += 2
                if found is None:
                    conn.execute(text(
                        "INSERT INTO entries (entry_name, site_id, gatekeeper, max_processors, max_rss_bytes,"
                        " max_wall_seconds, entry_has_gpus, always_inner_apptainer, file_name, raw_config,"
                        " last_osg_seen_time) VALUES (:entry_name, :site_id, :gatekeeper, :max_processors,"
                        " :max_rss_bytes, :max_wall_seconds, :entry_has_gpus, 1, :file_name, :raw_config, :now)"), row)
                else:
                    conn.execute(text(
                        "UPDATE entries SET site_id = :site_id, gatekeeper = :gatekeeper, max_processors ="
                        " :max_processors, max_rss_bytes = :max_rss_bytes, max_wall_seconds = :max_wall_seconds,"
                        " entry_has_gpus = :entry_has_gpus, file_name = :file_name, raw_config = :raw_config,"
                        " last_osg_seen_time = :now WHERE entry_name = :entry_name"), row)
        # updateSitesStorages: every site x every storage
        all_sites = [dict(r._mapping) for r in conn.execute(text("SELECT site_id, site_name, country, region FROM sites"))]
        storages = [dict(r._mapping) for r in conn.execute(text(
            "SELECT storages.rse_id, rse_name, storages.country, storages.region, sites.site_name FROM storages"
            " LEFT JOIN sites ON sites.site_id = storages.site_id"))]
        statements += 2
        for site in all_sites:
            for storage in storages:
                values = {"site_id": site["site_id"], "rse_id": storage["rse_id"], "distance": _distance(site, storage)}
                found = conn.execute(text("SELECT distance FROM sites_storages WHERE site_id = :site_id AND"
                                          " rse_id = :rse_id"), values).first()
                if found is None:
                    conn.execute(text("INSERT INTO sites_storages (site_id, rse_id, distance, read_result,"
                                      " write_result) VALUES (:site_id, :rse_id, :distance, 255, 255)"), values)
                else:
                    conn.execute(text("UPDATE sites_storages SET distance = :distance WHERE site_id = :site_id"
                                      " AND rse_id = :rse_id"), values)
                statements += 2
    return 1, statements


# --------------------------------------------------------------------------- wrapper output (§5.4-§5.9)


class _UploadLog:
    """The logger ``UploadClient`` wants: callable and with ``.log``."""

    def log(self, *args: Any, **kwargs: Any) -> None:
        pass

    __call__ = log


def _adler32(path: Path) -> str:
    import zlib

    return "%08x" % (zlib.adler32(path.read_bytes()) & 0xFFFFFFFF)


def wrapper_output(client: Any, outputs_url: str, auth_url: str, username: str, password: str, token_dir: Path,
                   *, workspace: Path, jobsub_id: str, scope: str, rse: str, scheme: str, logs_dataset: str,
                   datasets: dict[str, str], now: float) -> Counter[str]:
    """The wrapper job's output phase as upstream does it, datasets already existing (§5.4-§5.6,
    §5.8): every MetaCat command after its own ``metacat auth login``; per file declare, upload
    (justin-rucio-upload: UploadClient, attach_dids three times per extra dataset,
    list_replicas, list_parent_dids), three add-files, update to uploaded; then one update to
    confirmed per file. record_results/confirm_results go to justIN's allocator (not counted)."""
    import tarfile

    from metacat.webapi import MetaCatClient
    from rucio.client.uploadclient import UploadClient
    from rucio.common.exception import FileAlreadyExists

    count = StepCounter()

    def metacat() -> Any:  # `metacat auth login -m x509 dunepro` before every command
        c = MetaCatClient(outputs_url, auth_server_url=auth_url, token_library=str(token_dir / "lib"))
        count("metacat login", c.login_password, username, password)
        return c

    def rucio_upload(path: Path, did_scope: str, dataset_names: list[str]) -> None:
        UploadClient(client, logger=_UploadLog(), tracing=False).upload([{  # type: ignore[arg-type]
            "path": str(path), "rse": rse, "did_scope": did_scope, "dataset_scope": did_scope,
            "dataset_name": dataset_names[0], "force_scheme": scheme, "transfer_timeout": 1200,
        }])
        count.calls["upload"] += 1
        for dataset in dataset_names[1:]:
            for _ in range(3):  # the [BUG]: no break, three attaches per extra dataset
                try:
                    count("attach_dids", client.attach_dids, did_scope, dataset, [{"scope": did_scope, "name": path.name}])
                except FileAlreadyExists:
                    pass
        count("list_replicas", client.list_replicas, [{"scope": did_scope, "name": path.name}])
        parents = count("list_parent_dids", client.list_parent_dids, did_scope, path.name)
        names = {f"{p['scope']}:{p['name']}" for p in parents}
        missing = [d for d in dataset_names if f"{did_scope}:{d}" not in names]
        if missing:
            raise RuntimeError(f"{path.name} not attached to {missing}")

    # §5.4 logs.tgz: declared with size 0 and no checksum, shown, uploaded to its logs dataset
    tgz = workspace.parent / (jobsub_id.replace("@", "-") + ".logs.tgz")
    with tarfile.open(tgz, "w:gz") as tar:
        for log in sorted(workspace.glob("*.log")):
            tar.add(log, arcname=f"{jobsub_id.replace('@', '-')}/{log.name}")
    count("declare", metacat().declare_file, did=f"justin-logs:{tgz.name}", dataset_did="dune:all", size=0,
          metadata={})
    count("show", metacat().get_file, did=f"justin-logs:{tgz.name}", with_metadata=True)
    rucio_upload(tgz, "justin-logs", [logs_dataset])

    # §5.5 per output file
    names = [datasets["per_rse"], datasets["numbered"], datasets["overall"]]
    uploaded = []
    for path in sorted(workspace.glob("*.root")):
        did = f"{scope}:{path.name}"
        metadata = {"dune.workflow": {"site_name": "UK_Bench", "jobscript_start": int(now) - 100,
                                      "jobscript_finish": int(now)}, "dune.output_status": "recorded"}
        count("declare", metacat().declare_file, did=did, dataset_did="dune:all", size=path.stat().st_size,
              metadata=metadata, checksums={"adler32": _adler32(path)})
        rucio_upload(path, scope, [n.split(":", 1)[1] for n in names])
        for dataset in names:
            count("add-files", metacat().add_files, dataset, file_list=[{"did": did}])
        count("update", metacat().update_file, did=did, metadata={"dune.output_status": "uploaded"})
        uploaded.append(did)
    # §5.6 after confirm_results: one update per file
    for did in uploaded:
        count("update", metacat().update_file, did=did, metadata={"dune.output_status": "confirmed"})
    return count.calls
