"""git, through GitPython: a shallow clone per run into a directory the caller owns."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from justin_flows.adapters.calls import ExternalService
from justin_flows.settings import Settings, get_settings

SERVICE = "git"

#: ``scheme://userinfo@`` anywhere in a text: the userinfo may be a password or a token.
_URL_CREDENTIALS = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s'\"]+@")

#: The clone never waits for a person or for a stalled server (env of the git process):
#: no username/password prompt, and a transfer slower than 1 KiB/s for 60 s is aborted.
_CLONE_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_HTTP_LOW_SPEED_LIMIT": "1024",
    "GIT_HTTP_LOW_SPEED_TIME": "60",
}

_TRANSIENT_WORDS = (
    "timed out",
    "could not resolve",
    "connection",
    "couldn't connect",
    "failed to connect",
    "early eof",
    "rpc failed",
    "operation too slow",
    "the remote end hung up",
    "returned error: 5",  # HTTP 5xx
)


def redact_credentials(text: str) -> str:
    """``text`` with the userinfo of every ``scheme://user:pass@host`` URL replaced by ``***``.

    ``git@host:path`` (scp-like ssh, whose userinfo is a login name, never a secret) is kept.
    """
    return _URL_CREDENTIALS.sub(r"\g<scheme>***@", text)


class GitError(RuntimeError):
    """A git command failed; the message never holds credentials embedded in a URL."""


def is_transient(exc: BaseException) -> bool:
    from git.exc import GitCommandError

    return isinstance(exc, (GitError, GitCommandError)) and any(word in str(exc).lower() for word in _TRANSIENT_WORDS)


def _clone_source(url: str) -> str:
    """A local directory as a ``file://`` URL: git ignores ``--depth`` for a plain path."""
    if "://" not in url and not re.match(r"^[\w.-]+@[\w.-]+:", url) and Path(url).is_dir():
        return Path(url).resolve().as_uri()
    return url


class GitAdapter:
    def __init__(self, settings: Settings | None = None, service: ExternalService | None = None) -> None:
        self.settings = settings or get_settings()
        self.service = service or ExternalService(SERVICE, self.settings.retry, is_transient)

    def clone(self, url: str, dest: Path, branch: str | None = None) -> str:
        """Clone ``url`` (depth 1, one branch, no tags) into ``dest``; return the checked-out commit sha.

        ``url`` may be an https/ssh/file URL or a local directory. Failures raise
        ``ExternalCallError`` whose cause is a ``GitError`` free of URL credentials.
        """
        from git import Repo
        from git.exc import GitCommandError

        source = _clone_source(url)

        def run() -> str:
            if dest.exists():
                shutil.rmtree(dest)  # a half-done attempt must not poison the retry
            kwargs: dict[str, object] = {"depth": 1, "single_branch": True}
            if branch:
                kwargs["branch"] = branch
            env = {k: v for k, v in _CLONE_ENV.items() if k not in os.environ}
            try:
                with Repo.clone_from(source, dest, env=env, multi_options=["--no-tags"], **kwargs) as repo:
                    return repo.head.commit.hexsha
            except GitCommandError as exc:
                # GitPython masks passwords in the command line, git in its own messages;
                # redact again here so no ledger row or log can ever carry one.
                raise GitError(redact_credentials(str(exc))) from None

        return self.service.call("clone", run)
