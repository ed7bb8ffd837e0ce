"""justin-create-x509-proxies (reference §1): renew the production and no-roles VOMS proxies.

Once a day, for each kind: ``voms-proxy-init`` with the host certificate and key from
``proxies.secrets_dir`` writes a new 168 h proxy; it replaces the proxy file only once it has
been checked. The production proxy is also copied to the grid clients' default proxy path,
which Rucio and MetaCat read.

Kept from upstream: the two credentials and their file names, ``-voms`` arguments, 168 h
validity, the output paths, the copy of the production proxy, and "a failure leaves the
previous proxy in place".

Better than upstream on purpose:

* The new file must be a proxy of the host certificate, holding its key, carrying the
  requested VOMS group, and valid now and for ``min_valid_hours`` more (upstream took any
  non-empty file from an exit 0); see ``justin_flows.domain.x509_proxy``.
* Transient failures (a VOMS server that cannot be reached) are tried three times in all
  (upstream: once, then a day without renewal).
* Files are written inside a private (0700) directory next to the target, set to 0600, and
  renamed over the target with ``os.replace``: no reader ever sees a partial file, and the
  proxy never exists with wider permissions (upstream's ``.tmp`` file was created by
  ``voms-proxy-init`` under the process umask, in world-writable ``/tmp``).
* A failure is an error in the report, naming the kind, the reason and how long the kept
  proxy still lasts; one kind failing never stops the other.

Not done: upstream's ``chown dunejustin`` (the worker runs as the agents' user, so the files
are already its own) and ``voms-proxy-info -all`` (the details it printed are in the report).
Proxy contents are never logged or reported.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from justin_flows.adapters.calls import ExternalCallError
from justin_flows.adapters.voms import VOMSAdapter
from justin_flows.collector.report import CollectorReport
from justin_flows.domain.x509_proxy import ProxyInfo, ProxyValidationError, inspect_proxy, proxy_expiry, voms_group
from justin_flows.settings import ProxySettings

DEFAULT_MIN_VALID_HOURS = 24.0


@dataclass(frozen=True)
class ProxyKind:
    """One proxy upstream makes: its credential's file stem, ``-voms`` argument, setting name."""

    name: str
    credential: str
    voms: str
    target_setting: str
    copy_to_default: bool


KINDS: dict[str, ProxyKind] = {
    "production": ProxyKind(
        "production", "justin-jobs-production.dune.hep.ac.uk", "dune:/dune/Role=Production",
        "production_proxy", copy_to_default=True,
    ),
    "no-roles": ProxyKind(
        "no-roles", "justin-jobs-no-roles.dune.hep.ac.uk", "dune", "no_roles_proxy", copy_to_default=False,
    ),
}


def default_proxy_path(settings: ProxySettings | None = None) -> Path:
    """Where grid clients look for a proxy by default.

    ``proxies.default_proxy`` when that setting exists and is set, else ``$X509_USER_PROXY``,
    else ``/tmp/x509up_u<uid>`` (the uid of this process: the agents' user, as upstream's
    ``id -u dunejustin``).
    """
    configured = getattr(settings, "default_proxy", None) if settings is not None else None
    if configured:
        return Path(configured)
    from_env = os.environ.get("X509_USER_PROXY")
    if from_env:
        return Path(from_env)
    return Path(f"/tmp/x509up_u{os.getuid()}")


def install_private_file(data: bytes, target: Path) -> None:
    """Put ``data`` at ``target`` atomically, mode 0600, never readable by anyone else.

    The bytes go to a new file (O_EXCL, O_NOFOLLOW, 0600) in a fresh 0700 directory beside
    ``target``, are flushed to disk, then renamed over ``target`` (same file system). A
    symlink at ``target`` is replaced, not followed.
    """
    workdir = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        staged = workdir / "new"
        fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(staged, target)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _previous(target: Path, now: dt.datetime) -> str:
    """What is kept at ``target`` after a failure, for the error message (no contents)."""
    try:
        data = target.read_bytes()
    except FileNotFoundError:
        return f"no previous proxy at {target}"
    except OSError as exc:
        return f"previous proxy at {target} unreadable ({type(exc).__name__})"
    expiry = proxy_expiry(data)
    if expiry is None:
        return f"previous file at {target} kept, but it is not a readable proxy"
    left = (expiry - now).total_seconds() / 3600
    state = f"{left:.1f} h left" if left > 0 else "already expired"
    return f"previous proxy at {target} kept, valid until {expiry:%Y-%m-%d %H:%M} UTC ({state})"


class _Failed(Exception):
    pass


def _make_one(
    voms: VOMSAdapter,
    kind: ProxyKind,
    settings: ProxySettings,
    target: Path,
    min_valid: dt.timedelta,
) -> ProxyInfo:
    cert = settings.secrets_dir / f"{kind.credential}.cert.pem"
    key = settings.secrets_dir / f"{kind.credential}.key.pem"
    for path, what in ((cert, "certificate"), (key, "key")):
        if not path.is_file():
            raise _Failed(f"host {what} {path} not found")
    target.parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))  # 0700
    try:
        out = workdir / "proxy.pem"
        try:
            voms.proxy_init(cert, key, kind.voms, out, settings.valid_hours)
        except ExternalCallError as exc:
            raise _Failed(str(exc)) from exc
        try:
            data = out.read_bytes()
        except FileNotFoundError:
            raise _Failed("voms-proxy-init exited 0 but wrote no file") from None
        try:
            info = inspect_proxy(data, min_valid=min_valid, voms_group=voms_group(kind.voms))
        except ProxyValidationError as exc:
            raise _Failed(f"voms-proxy-init wrote an unusable proxy: {exc}") from None
        os.chmod(out, 0o600)
        os.replace(out, target)  # same directory tree, so an atomic rename
        return info
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def create_proxies(
    voms: VOMSAdapter,
    *,
    kinds: Sequence[str] = ("production", "no-roles"),
    default_proxy: Path | None = None,
    min_valid_hours: float | None = None,
) -> CollectorReport:
    """Renew each proxy in ``kinds``; a kind that fails keeps its previous file.

    One ``voms-proxy-init`` per kind (up to three attempts if transient); upstream: the same,
    once. ``default_proxy`` overrides where the production proxy's copy goes (see
    ``default_proxy_path``); ``min_valid_hours`` the validity a new proxy must have left
    (default: the ``proxies.min_valid_hours`` setting once it exists, else 24). Raises
    ValueError for an unknown kind, before any call.
    """
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise ValueError(f"unknown proxy kind(s) {unknown!r}; choose from {sorted(KINDS)}")
    settings = voms.settings.proxies
    report = CollectorReport("createX509Proxies")
    min_valid = dt.timedelta(
        hours=min_valid_hours or float(getattr(settings, "min_valid_hours", DEFAULT_MIN_VALID_HOURS))
    )
    for name in dict.fromkeys(kinds):  # each kind once, in the order given
        kind = KINDS[name]
        target = Path(getattr(settings, kind.target_setting))
        now = dt.datetime.now(dt.timezone.utc)
        try:
            info = _make_one(voms, kind, settings, target, min_valid)
        except (_Failed, OSError) as exc:
            if isinstance(exc, OSError):  # e.g. the target's directory is not writable
                exc = _Failed(f"{type(exc).__name__}: {exc}")
            kept = _previous(target, now)
            report.error(f"{kind.name} proxy ({kind.voms}) not renewed: {exc}; {kept}")
            report.count("failed")
            report.rows.append({
                "proxy": kind.name, "voms": kind.voms, "file": str(target), "status": "failed",
                "valid_until": "", "detail": f"{exc}; {kept}",
            })
            continue
        report.count("renewed")
        detail = f"{info.kind} proxy of {info.issuer}, {info.hours_left(now):.1f} h left"
        if kind.copy_to_default:
            copy = default_proxy or default_proxy_path(settings)
            if copy.resolve() != target.resolve():
                try:
                    install_private_file(target.read_bytes(), copy)
                    detail += f"; copied to {copy}"
                except OSError as exc:
                    report.error(f"{kind.name} proxy renewed at {target} but not copied to {copy}: {exc}")
                    report.count("copy_failed")
                    detail += f"; NOT copied to {copy} ({type(exc).__name__})"
        report.rows.append({
            "proxy": kind.name, "voms": kind.voms, "file": str(target), "status": "renewed",
            "valid_until": f"{info.not_after:%Y-%m-%d %H:%M} UTC", "detail": detail,
        })
    return report
