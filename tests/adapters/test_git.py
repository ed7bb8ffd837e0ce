"""The git adapter against real local repositories (no network): shallow clones, errors without credentials."""

from __future__ import annotations

from pathlib import Path

import pytest
from git import Repo

from justin_flows.adapters.calls import ExternalCallError
from justin_flows.adapters.git import GitAdapter, GitError, is_transient, redact_credentials
from justin_flows.ledger import LEDGER


@pytest.fixture
def two_commits(tmp_path: Path) -> Repo:
    repo = Repo.init(tmp_path / "src")
    with repo.config_writer() as config:
        config.set_value("user", "name", "justin-flows tests")
        config.set_value("user", "email", "tests@example.invalid")
        config.set_value("commit", "gpgsign", "false")
    for n in (1, 2):
        (tmp_path / "src" / "f.txt").write_text(f"version {n}\n", encoding="utf-8")
        repo.git.add(A=True)
        repo.git.commit("-q", "-m", f"commit {n}")
    return repo


def commits_in(path: Path) -> int:
    with Repo(path) as repo:
        return len(list(repo.iter_commits()))


@pytest.mark.parametrize("as_url", [True, False], ids=["file-url", "plain-path"])
def test_clone_is_shallow_and_returns_the_head_sha(two_commits: Repo, tmp_path: Path, as_url: bool) -> None:
    """A plain path becomes a file:// URL, because git ignores --depth for a local path."""
    src = Path(two_commits.working_tree_dir or "")
    dest = tmp_path / "clone"
    LEDGER.drain()

    sha = GitAdapter().clone(src.as_uri() if as_url else str(src), dest)

    assert sha == two_commits.head.commit.hexsha
    assert commits_in(dest) == 1
    assert (dest / "f.txt").read_text(encoding="utf-8") == "version 2\n"
    assert [(r.service, r.operation, r.outcome) for r in LEDGER.drain()] == [("git", "clone", "ok")]


def test_clone_replaces_a_half_done_destination(two_commits: Repo, tmp_path: Path) -> None:
    dest = tmp_path / "clone"
    dest.mkdir()
    (dest / "leftover").write_text("x", encoding="utf-8")
    GitAdapter().clone(Path(two_commits.working_tree_dir or "").as_uri(), dest)
    assert not (dest / "leftover").exists()


def test_a_missing_repository_fails_once_with_a_git_error(tmp_path: Path) -> None:
    LEDGER.drain()
    with pytest.raises(ExternalCallError) as caught:
        GitAdapter().clone(str(tmp_path / "nope"), tmp_path / "clone")
    assert isinstance(caught.value.cause, GitError)
    assert "does not exist" in str(caught.value)
    assert not is_transient(caught.value.cause)
    assert [r.attempt for r in LEDGER.drain()] == [1]


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("https://alice:secret@github.com/x.git", "https://***@github.com/x.git"),
        ("cloning 'https://ghp_token123@github.com/x' failed", "cloning 'https://***@github.com/x' failed"),
        ("ssh://git@host:22/x.git", "ssh://***@host:22/x.git"),
        ("git@github.com:opensciencegrid/osg-gfactory.git", "git@github.com:opensciencegrid/osg-gfactory.git"),
        ("https://github.com/opensciencegrid/osg-gfactory.git", "https://github.com/opensciencegrid/osg-gfactory.git"),
        ("mail me at a@b.example", "mail me at a@b.example"),
    ],
)
def test_redact_credentials(text: str, want: str) -> None:
    assert redact_credentials(text) == want
