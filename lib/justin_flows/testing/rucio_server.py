"""A real Rucio 41.5.1 server on 127.0.0.1, for tests that must talk to genuine Rucio.

The server package (``rucio``) and the client package (``rucio-clients``) both install the
top-level module ``rucio`` and pin clashing dependencies, so the server lives in its own venv
and only ever runs as a subprocess. This module itself uses the standard library only, so it can
be imported from the project venv without touching the client's global state.
"""

from __future__ import annotations

import atexit
import configparser
import contextlib
import fcntl
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Final

__all__ = [
    "GUNICORN_VERSION",
    "RUCIO_VERSION",
    "RucioServer",
    "RucioServerError",
    "ensure_server_venv",
]

RUCIO_VERSION: Final = "41.5.1"
# 27.x is the first line with --no-control-socket; without that flag gunicorn 27 leaves a
# control socket under ~/.gunicorn shared by every server on the machine.
GUNICORN_VERSION: Final = "27.0.1"

_SERVER_REQUIREMENTS: Final = (f"rucio[postgresql]=={RUCIO_VERSION}", f"gunicorn=={GUNICORN_VERSION}")
_VENV_NAME: Final = f"rucio-server-{RUCIO_VERSION}"
_MARKER_NAME: Final = ".justin-flows-ready.json"
_WSGI_APP: Final = "rucio.web.rest.flaskapi.v1.main:application"
_ROOT_ACCOUNT: Final = "root"

# Run inside the server venv. Importing most of rucio needs a config file, so only check that the
# pieces we launch are importable or present.
_IMPORT_CHECK: Final = """
import importlib.metadata as md, pathlib, sys
import flask, gunicorn, psycopg, sqlalchemy, rucio
got = md.version("rucio")
if got != sys.argv[1]:
    sys.exit(f"rucio {got} installed, wanted {sys.argv[1]}")
pkg = pathlib.Path(rucio.__file__).parent
bindir = pathlib.Path(sys.executable).parent
for need in (pkg / "web/rest/flaskapi/v1/main.py", pkg / "db/sqla/migrate_repo/env.py",
             bindir / "gunicorn", bindir / "rucio-abacus-rse"):
    if not need.exists():
        sys.exit(f"missing {need}")
print("rucio", got, "gunicorn", md.version("gunicorn"))
"""

# Run inside the server venv with the server RUCIO_CONFIG: schema, VO 'def', root account. On a
# re-used database root already exists, so only this instance's userpass identity is added.
_BOOTSTRAP: Final = """
from rucio.common.config import config_get
from rucio.common.exception import DatabaseException, Duplicate
from rucio.common.types import InternalAccount
from rucio.core.identity import add_account_identity, add_identity
from rucio.db.sqla.constants import IdentityType
from rucio.db.sqla.util import build_database, create_base_vo, create_root_account
from sqlalchemy.exc import IntegrityError
build_database()
try:
    create_base_vo()
except (Duplicate, IntegrityError):
    pass
try:
    create_root_account()
except (Duplicate, IntegrityError):
    # create_root_account() may have stored some rows before failing; add what is missing
    user, email = config_get("bootstrap", "userpass_identity"), config_get("bootstrap", "userpass_email")
    try:
        add_identity(user, IdentityType.USERPASS, email, password=config_get("bootstrap", "userpass_pwd"))
    except (Duplicate, DatabaseException):
        pass
    try:
        add_account_identity(user, IdentityType.USERPASS, InternalAccount("root"), email)
    except (Duplicate, DatabaseException):
        pass
"""


class RucioServerError(RuntimeError):
    """The test server could not be built, started or driven."""


def _default_cache_dir() -> Path:
    env = os.environ.get("JUSTIN_FLOWS_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "justin-flows"


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no {path.name})"
    return "\n".join(text.splitlines()[-lines:])


def _marker_payload() -> dict[str, object]:
    return {"requirements": list(_SERVER_REQUIREMENTS), "base_python": sys.version.split()[0]}


def _venv_ready(venv_dir: Path) -> bool:
    try:
        return json.loads((venv_dir / _MARKER_NAME).read_text()) == _marker_payload()
    except (OSError, ValueError):
        return False


def _run_logged(argv: Sequence[str], log: Path, what: str) -> None:
    with log.open("a") as out:
        out.write(f"$ {' '.join(argv)}\n")
        out.flush()
        rc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL).returncode
    if rc != 0:
        raise RucioServerError(f"{what} failed (exit {rc}); tail of {log}:\n{_tail(log)}")


def ensure_server_venv(cache_dir: Path | None = None) -> Path:
    """Return a venv holding the Rucio server and gunicorn, building it on first use.

    Building takes tens of seconds, so the venv is cached under ``cache_dir`` (default
    ``$JUSTIN_FLOWS_CACHE`` or ``~/.cache/justin-flows``). A lock file serialises concurrent
    builders (e.g. pytest-xdist workers), and a marker written only after a verified install
    lets a crashed, half-built venv be detected and rebuilt rather than trusted.
    """
    base = Path(cache_dir).expanduser() if cache_dir is not None else _default_cache_dir()
    venv_dir = base / _VENV_NAME
    if _venv_ready(venv_dir):
        return venv_dir
    base.mkdir(parents=True, exist_ok=True)
    with open(base / f"{_VENV_NAME}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _venv_ready(venv_dir):  # another process finished while we waited
            return venv_dir
        if venv_dir.exists():
            shutil.rmtree(venv_dir)
        log = base / f"{_VENV_NAME}.build.log"
        log.write_text("")
        python = venv_dir / "bin" / "python"
        _run_logged([sys.executable, "-m", "venv", str(venv_dir)], log, "creating the server venv")
        _run_logged(
            [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
             *_SERVER_REQUIREMENTS],
            log,
            "installing the Rucio server",
        )
        _run_logged([str(python), "-c", _IMPORT_CHECK, RUCIO_VERSION], log, "checking the server venv")
        tmp = venv_dir / f"{_MARKER_NAME}.tmp"
        tmp.write_text(json.dumps(_marker_payload()))
        os.replace(tmp, venv_dir / _MARKER_NAME)
    return venv_dir


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _write_cfg(path: Path, sections: Mapping[str, Mapping[str, str]]) -> None:
    # Rucio reads its cfg with interpolating ConfigParser, so '%' must be doubled.
    parser = configparser.ConfigParser(interpolation=None)
    for section, values in sections.items():
        parser[section] = {k: v.replace("%", "%%") for k, v in values.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        parser.write(out)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RucioServer:
    """One Rucio server (gunicorn + Flask app) with its own database, config and logs.

    SQLite (the default) lives in a per-instance temp dir and is served by one request thread,
    because concurrent SQLite writers fail with "database is locked". Pass ``database_url``
    (``postgresql+psycopg://user:pw@host:port/db``, a throw-away database; one already
    bootstrapped by an earlier instance is fine) to use PostgreSQL with 4 threads instead.
    """

    def __init__(
        self,
        *,
        database_url: str | None = None,
        venv_dir: Path | None = None,
        work_dir: Path | None = None,
        port: int | None = None,
        startup_timeout: float = 90.0,
    ) -> None:
        if database_url is not None and not database_url.startswith("postgresql+psycopg://"):
            raise ValueError("database_url must be a postgresql+psycopg:// SQLAlchemy URL")
        self._venv_dir = venv_dir
        self._owns_work_dir = work_dir is None
        self._work = Path(work_dir) if work_dir is not None else Path(tempfile.mkdtemp(prefix="rucio-server-"))
        self._work.mkdir(parents=True, exist_ok=True)
        self._database_url = database_url or f"sqlite:///{self._work / 'rucio.db'}"
        self._threads = 1 if database_url is None else 4
        self._port = port
        self._startup_timeout = startup_timeout
        self._username = f"justin-test-{secrets.token_hex(4)}"  # unique: DBs may be re-used
        self._password = secrets.token_hex(16)
        self._proc: subprocess.Popen[bytes] | None = None
        self._bootstrapped = False
        self.start_seconds: float | None = None
        """Seconds from launching gunicorn to the first good ``/ping`` (last start)."""
        self.bootstrap_seconds: float | None = None
        """Seconds spent building the schema and root account (first start only)."""

    # -- paths and public properties ---------------------------------------------------------
    @property
    def work_dir(self) -> Path:
        return self._work

    @property
    def port(self) -> int:
        if self._port is None:
            raise RucioServerError("server has not been started")
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def server_config_path(self) -> Path:
        return self._work / "etc" / "rucio.cfg"

    @property
    def client_config_path(self) -> Path:
        return self._work / "client" / "rucio.cfg"

    @property
    def error_log_path(self) -> Path:
        return self._work / "log" / "gunicorn-error.log"

    @property
    def root_account(self) -> str:
        return _ROOT_ACCOUNT

    @property
    def root_creds(self) -> dict[str, str]:
        """Userpass credentials of the root account, in the shape ``Client(creds=...)`` takes."""
        return {"username": self._username, "password": self._password}

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def client_env(self) -> dict[str, str]:
        """Environment a client *subprocess* needs to reach this server.

        ``TMPDIR`` gives the client a per-server token cache (the cache is keyed by account, not
        server). In-process use needs care: ``rucio.common.config`` caches the parsed config per
        process, so after changing ``RUCIO_CONFIG`` call
        ``rucio.common.config.clean_cached_config()``; and the token directory is fixed when
        ``rucio.client.baseclient`` is first imported, so ``TMPDIR`` only helps subprocesses.
        """
        tmp = self._work / "client-tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        return {"RUCIO_CONFIG": str(self.client_config_path), "TMPDIR": str(tmp)}

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Build the venv and DB if needed, launch gunicorn, and wait until ``/ping`` answers."""
        if self.running:
            raise RucioServerError(f"server already running at {self.url}")
        venv = self._venv_dir = self._venv_dir or ensure_server_venv()
        if self._port is None:
            self._port = _free_port()
        if not self._bootstrapped:
            self._write_configs(venv)
            t0 = time.monotonic()
            self._run_in_venv([str(venv / "bin" / "python"), "-c", _BOOTSTRAP], "building the schema", 300)
            self.bootstrap_seconds = time.monotonic() - t0
            self._bootstrapped = True
        log_dir = self._work / "log"
        log_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            str(venv / "bin" / "gunicorn"),
            "--bind", f"127.0.0.1:{self._port}",
            "--workers", "1",
            "--worker-class", "gthread",  # keep-alive; the sync worker doubles ping latency
            "--threads", str(self._threads),
            "--timeout", "120",
            "--no-control-socket",
            "--pid", str(self._work / "gunicorn.pid"),
            "--access-logfile", str(log_dir / "gunicorn-access.log"),
            "--error-logfile", str(self.error_log_path),
            _WSGI_APP,
        ]
        t0 = time.monotonic()
        with (log_dir / "gunicorn-stdout.log").open("ab") as out:
            self._proc = subprocess.Popen(
                argv, cwd=self._work, env=self._server_env(), stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        atexit.register(self.stop)
        try:
            self._wait_for_ping(t0)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - t0

    def stop(self, timeout: float = 20.0) -> None:
        """Terminate gunicorn's whole process group and wait until it is gone."""
        proc, self._proc = self._proc, None
        atexit.unregister(self.stop)
        if proc is None:
            return
        pgid = proc.pid  # start_new_session made the master a group leader
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.05)
            if proc.poll() is not None and not _group_alive(pgid):
                return
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGKILL)
                deadline = time.monotonic() + timeout

    def restart(self) -> None:
        """Stop, then start again on the same port and database (the data survives)."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the server and delete its temp dir if this instance created it."""
        self.stop()
        if self._owns_work_dir:
            shutil.rmtree(self._work, ignore_errors=True)

    def __enter__(self) -> RucioServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def run_daemon_once(self, name: str, *args: str, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
        """Run a Rucio daemon (e.g. ``rucio-abacus-rse``) once against this server's database.

        Usage counters (``get_rse_usage`` source ``rucio``, account usage) are only filled in by
        the abacus daemons, so tests that read them must run those first.
        """
        if not re.fullmatch(r"rucio-[a-z0-9-]+", name):
            raise ValueError(f"not a Rucio daemon name: {name!r}")
        if not self._bootstrapped or self._venv_dir is None:
            raise RucioServerError("start the server before running daemons")
        exe = self._venv_dir / "bin" / name
        if not exe.exists():
            raise RucioServerError(f"no daemon {name} in {self._venv_dir / 'bin'}")
        return self._run_in_venv([str(exe), "--run-once", *args], f"daemon {name}", timeout)

    # -- internals ---------------------------------------------------------------------------
    def _server_env(self) -> dict[str, str]:
        env = {
            k: v for k, v in os.environ.items()
            if not k.startswith(("RUCIO_", "PYTHON", "VIRTUAL_ENV", "CONDA_")) and k != "X509_USER_PROXY"
        }
        tmp = self._work / "server-tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        env.update(RUCIO_CONFIG=str(self.server_config_path), TMPDIR=str(tmp), PYTHONUNBUFFERED="1")
        return env

    def _run_in_venv(self, argv: list[str], what: str, timeout: float) -> subprocess.CompletedProcess[str]:
        try:
            done = subprocess.run(
                argv, cwd=self._work, env=self._server_env(), stdin=subprocess.DEVNULL,
                capture_output=True, text=True, timeout=timeout,
            )
        except subprocess.TimeoutExpired as err:
            raise RucioServerError(f"{what} timed out after {timeout}s") from err
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-40:])
            raise RucioServerError(f"{what} failed (exit {done.returncode}):\n{tail}")
        return done

    def _write_configs(self, venv: Path) -> None:
        (self._work / "log").mkdir(parents=True, exist_ok=True)
        migrate = sorted(venv.glob("lib/python3*/site-packages/rucio/db/sqla/migrate_repo"))
        if not migrate:
            raise RucioServerError(f"no rucio migrate_repo under {venv}")
        alembic_ini = self._work / "etc" / "alembic.ini"
        _write_cfg(alembic_ini, {
            "alembic": {"script_location": str(migrate[0]), "sqlalchemy.url": self._database_url},
            "loggers": {"keys": "root"},
            "handlers": {"keys": "console"},
            "formatters": {"keys": "generic"},
            "logger_root": {"level": "WARNING", "handlers": "console"},
            "handler_console": {"class": "StreamHandler", "args": "(sys.stderr,)", "level": "NOTSET",
                                "formatter": "generic"},
            "formatter_generic": {"format": "%(levelname)-5.5s [%(name)s] %(message)s"},
        })
        _write_cfg(self.server_config_path, {
            "common": {"logdir": str(self._work / "log"), "loglevel": "INFO"},
            "database": {"default": self._database_url, "pool_reset_on_return": "rollback", "echo": "0"},
            "alembic": {"cfg": str(alembic_ini)},
            "bootstrap": {
                # plain text: create_root_account() hashes it itself
                "userpass_identity": self._username,
                "userpass_pwd": self._password,
                "userpass_email": f"{self._username}@example.org",
            },
            "policy": {"permission": "generic", "schema": "generic", "lfn2pfn_algorithm_default": "hash"},
            # nothing listens here, so the server falls back to its null cache instead of sharing
            # a machine-wide memcached with other test servers
            "cache": {"url": f"127.0.0.1:{_free_port()}"},
            "monitor": {"enable_metrics": "False"},
        })
        _write_cfg(self.client_config_path, {
            "client": {
                "rucio_host": self.url,
                "auth_host": self.url,
                "auth_type": "userpass",
                "username": self._username,
                "password": self._password,
                "account": _ROOT_ACCOUNT,
                "request_retries": "0",
            },
        })

    def _wait_for_ping(self, t0: float) -> None:
        deadline = t0 + self._startup_timeout
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RucioServerError(
                    f"gunicorn exited with {self._proc.returncode} before answering /ping; "
                    f"tail of {self.error_log_path}:\n{_tail(self.error_log_path)}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/ping", timeout=2) as resp:
                    body = json.loads(resp.read())
                if body.get("version") == RUCIO_VERSION:
                    return
                last_error = f"unexpected /ping answer {body!r}"
            except (OSError, ValueError) as err:
                last_error = str(err)
            time.sleep(0.05)
        raise RucioServerError(
            f"Rucio server at {self.url} did not answer /ping within {self._startup_timeout}s "
            f"({last_error}); tail of {self.error_log_path}:\n{_tail(self.error_log_path)}"
        )

