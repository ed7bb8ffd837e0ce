"""git, through GitPython: a shallow clone per run into a directory the caller owns."""

from __future__ import annotations

from pathlib import Path

from justin_flows.adapters.calls import ExternalService
from justin_flows.settings import Settings, get_settings

SERVICE = "git"


def is_transient(exc: BaseException) -> bool:
    from git.exc import GitCommandError

    return isinstance(exc, GitCommandError) and any(
        word in str(exc).lower() for word in ("timed out", "could not resolve", "connection", "early eof")
    )


class GitAdapter:
    def __init__(self, settings: Settings | None = None, service: ExternalService | None = None) -> None:
        self.settings = settings or get_settings()
        self.service = service or ExternalService(SERVICE, self.settings.retry, is_transient)

    def clone(self, url: str, dest: Path, branch: str | None = None) -> str:
        """Clone ``url`` (depth 1) into ``dest``; return the checked-out commit sha."""
        from git import Repo

        def run() -> str:
            if dest.exists():
                import shutil

                shutil.rmtree(dest)  # a half-done attempt must not poison the retry
            kwargs: dict[str, object] = {"depth": 1, "single_branch": True}
            if branch:
                kwargs["branch"] = branch
            repo = Repo.clone_from(url, dest, multi_options=["--no-tags"], **kwargs)
            return repo.head.commit.hexsha

        return self.service.call("clone", run)
