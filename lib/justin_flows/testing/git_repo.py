"""A local git repository made from a directory: the gfactory checkout for tests and the sandbox."""

from __future__ import annotations

import shutil
from pathlib import Path

from git import Repo


def make_git_repo(source: Path, dest: Path, exclude: tuple[str, ...] = ()) -> Repo:
    """``source`` copied to ``dest`` (bytes only, so read-only sources stay harmless) and committed.

    Whatever was at ``dest`` before is replaced.
    """
    if dest.exists():
        shutil.rmtree(dest)
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if path.is_file() and relative.as_posix() not in exclude:
            target = dest / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    repo = Repo.init(dest)
    with repo.config_writer() as config:
        config.set_value("user", "name", "justin-flows")
        config.set_value("user", "email", "justin-flows@example.invalid")
        config.set_value("commit", "gpgsign", "false")
    commit_all(repo, "gfactory snapshot")
    return repo


def commit_all(repo: Repo, message: str) -> str:
    """Commit every change in ``repo``'s work tree; return the new commit's sha."""
    repo.git.add(A=True)
    repo.git.commit("-q", "-m", message)
    return repo.head.commit.hexsha


def file_url(repo: Repo) -> str:
    return f"file://{repo.working_tree_dir}"
