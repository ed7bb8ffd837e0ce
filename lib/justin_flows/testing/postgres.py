"""A PostgreSQL server for tests and the sandbox, and one fresh database per caller.

Order: ``JUSTIN_TEST_DATABASE_URL`` if set; else 127.0.0.1:5432 if it answers; else a
throw-away cluster built with the installed PostgreSQL binaries (initdb refuses root, so
it runs as the ``postgres`` user when we are root).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    path = shutil.which(name)
    if not path:
        raise FileNotFoundError(f"PostgreSQL binary {name!r} not found (install postgresql-15)")
    return path


@dataclass
class ThrowawayCluster:
    """A private PostgreSQL cluster on a free loopback port; ``stop()`` deletes it."""

    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="justin-pg-")))
    port: int = field(default_factory=_free_port)

    def _as_postgres(self, argv: list[str]) -> None:
        kwargs: dict[str, object] = {}
        if os.geteuid() == 0:
            entry = pwd.getpwnam("postgres")
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
            kwargs = {"user": entry.pw_uid, "group": entry.pw_gid}
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kwargs)  # type: ignore[arg-type]

    def start(self) -> str:
        data = self.root / "data"
        self._as_postgres(
            [_pg_bin("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"]
        )
        opts = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._as_postgres([_pg_bin("pg_ctl"), "-D", str(data), "-l", str(self.root / "pg.log"), "-w", "-o", opts, "start"])
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        try:
            self._as_postgres([_pg_bin("pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop"])
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class PostgresServer:
    """Where test databases are made; ``create_database()`` gives each caller its own."""

    admin_url: str
    cluster: ThrowawayCluster | None = None

    @classmethod
    def discover(cls) -> PostgresServer:
        url = os.environ.get("JUSTIN_TEST_DATABASE_URL")
        if url:
            return cls(url)
        if _answers("127.0.0.1", 5432):
            return cls("postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
        cluster = ThrowawayCluster()
        return cls(cluster.start(), cluster)

    def create_database(self, prefix: str = "justin_test") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        engine = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        engine.dispose()
        return make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def drop_database(self, url: str) -> None:
        name = make_url(url).database
        engine = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()

    def close(self) -> None:
        if self.cluster is not None:
            self.cluster.stop()

