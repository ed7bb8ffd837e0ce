"""No shell commands and no string-built SQL anywhere in the project's Python (an AST scan).

The scan itself is ``tests/security/source_checks.py``; the handful of audited exceptions
are listed below, each with the reason it is safe. A new finding fails the test, and so
does an allow-list entry that no longer matches anything (so the list cannot rot).
"""

from __future__ import annotations

import textwrap

import pytest

from tests.security.source_checks import Finding, scan_source, scan_tree
from tests.shared_data import REPO_ROOT

SCANNED = ("lib", "flows", "tests", "benchmarks")

#: (path, function, kind) -> why the finding is safe. Identifiers (table, database and
#: sequence names) cannot be bound parameters, so DDL on them has to be formatted.
ALLOWED: dict[tuple[str, str, str], str] = {
    ("lib/justin_flows/db/migrations/versions/0002_reference_rows.py", "upgrade", "sql-built"):
        "setval on the serial sequences of two tables named by a literal tuple in the same function",
    ("lib/justin_flows/testing/postgres.py", "PostgresServer.create_database", "sql-built"):
        "test helper: CREATE DATABASE of a quoted name made of a fixed prefix and a uuid4 hex",
    ("lib/justin_flows/testing/postgres.py", "PostgresServer.drop_database", "sql-built"):
        "test helper: DROP DATABASE of the quoted name of a database create_database made",
    ("tests/results_db.py", "empty_database", "sql-built"):
        "TRUNCATE of the quoted table names of the project's own SQLAlchemy metadata",
}


def _key(finding: Finding) -> tuple[str, str, str]:
    return finding.path, finding.function, finding.kind


def test_no_shell_and_no_string_built_sql_outside_the_audited_list() -> None:
    findings = scan_tree(REPO_ROOT, SCANNED)
    unexpected = [str(f) for f in findings if _key(f) not in ALLOWED]
    assert not unexpected, "shell commands or string-built SQL:\n" + "\n".join(unexpected)


def test_every_allow_list_entry_still_matches_a_finding() -> None:
    found = {_key(f) for f in scan_tree(REPO_ROOT, SCANNED)}
    stale = [key for key in ALLOWED if key not in found]
    assert not stale, f"allow-list entries that match nothing (remove them): {stale}"


def test_the_scan_covers_the_whole_tree() -> None:
    from tests.security.source_checks import python_files

    files = {p.relative_to(REPO_ROOT).as_posix() for p in python_files(REPO_ROOT, SCANNED)}
    for expected in ("lib/justin_flows/adapters/commands.py", "flows/common.py", "tests/conftest.py",
                     "lib/justin_flows/db/migrations/versions/0002_reference_rows.py"):  # fmt: skip
        assert expected in files
    assert len(files) > 100


BAD = {
    "shell=True": ("import subprocess\nsubprocess.run('ls', shell=True)\n", {"shell", "subprocess-string"}),
    "shell variable": ("import subprocess\nsubprocess.run(['ls'], shell=flag)\n", {"shell"}),
    "os.system": ("import os\nos.system('ls')\n", {"shell-function"}),
    "os.popen imported": ("from os import popen\npopen('ls')\n", {"shell-function"}),
    "getoutput": ("import subprocess as sp\nsp.getoutput('ls')\n", {"shell-function"}),
    "subprocess str": ("import subprocess\nsubprocess.check_output('ls -l')\n", {"subprocess-string"}),
    "subprocess f-string var": (
        "import subprocess\ndef f(x):\n    cmd = f'ls {x}'\n    subprocess.Popen(cmd)\n", {"subprocess-string"}),
    "subprocess args= kw": ("from subprocess import run\nrun(args='ls')\n", {"subprocess-string"}),
    "text f-string": ("from sqlalchemy import text\ndef f(n):\n    text(f'SELECT {n}')\n", {"sql-built"}),
    "text %": ("import sqlalchemy as sa\ndef f(n):\n    sa.text('SELECT %s' % n)\n", {"sql-built"}),
    "text +": ("from sqlalchemy import text\ndef f(n):\n    text('SELECT ' + n)\n", {"sql-built"}),
    "text format": ("from sqlalchemy import text\ndef f(n):\n    text('SELECT {}'.format(n))\n", {"sql-built"}),
    "execute via variable": (
        "def f(conn, n):\n    sql = 'DELETE FROM t WHERE a = ' + n\n    conn.execute(sql)\n", {"sql-built"}),
    "text(variable)": (
        "from sqlalchemy import text\ndef f(s, n):\n    q = f'SELECT {n}'\n    s.execute(text(q))\n", {"sql-built"}),
    "exec_driver_sql": ("def f(c, n):\n    c.exec_driver_sql('SELECT %d' % n)\n", {"sql-built"}),
    "op.execute": ("from alembic import op\ndef upgrade(t):\n    op.execute(f'DROP TABLE {t}')\n", {"sql-built"}),
    "cursor join": ("def f(cur, cols):\n    cur.execute(', '.join(cols))\n", {"sql-built"}),
}

GOOD = {
    "argv list": "import subprocess\nsubprocess.run(['ls', '-l'], shell=False, timeout=5)\n",
    "argv variable": "import subprocess\ndef f(x):\n    argv = ['ls', x]\n    subprocess.run(argv)\n",
    "bound parameters": (
        "from sqlalchemy import text\ndef f(s, n):\n    s.execute(text('SELECT * FROM t WHERE a = :a'), {'a': n})\n"),
    "constant f-string": "from sqlalchemy import text\ntext(f'SELECT 1')\n",
    "core statement": "from sqlalchemy import select\ndef f(s, T):\n    s.execute(select(T).where(T.a == 1))\n",
    "pragma": "def f(cur):\n    cur.execute('PRAGMA foreign_keys=ON')\n",
    "logging %": "import logging\ndef f(n):\n    logging.info('n=%s' % n)\n",
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_the_scan_finds_each_kind_of_bad_code(name: str) -> None:
    source, kinds = BAD[name]
    found = {f.kind for f in scan_source(textwrap.dedent(source), name)}
    assert found == kinds, (name, found)


@pytest.mark.parametrize("name", sorted(GOOD))
def test_the_scan_accepts_safe_code(name: str) -> None:
    assert scan_source(GOOD[name], name) == []
