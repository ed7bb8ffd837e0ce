"""git, through GitPython: a shallow clone per run into a directory the caller owns.

Every clone has a deadline (``timeout_seconds``, default the setting
``sites.clone_timeout_seconds``): GitPython's ``Repo.clone_from`` waits for
git without one (its ``kill_after_timeout`` is ignored for clones), and git's own low-speed
limit only covers HTTP transfers, so a server that trickles bytes or an ssh remote that
never answers could otherwise hold the sites flow until its run timeout.
"""

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
    "did not complete in",  # our deadline (GitPython's kill_after_timeout message)
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
    def __init__(
        self,
        settings: Settings | None = None,
        service: ExternalService | None = None,
        *,
        timeout_seconds: float | None = None,
    ) -> None:
        self.settings = settings or get_settings()
        if timeout_seconds is None:
            timeout_seconds = self.settings.sites.clone_timeout_seconds
        if not timeout_seconds > 0:
            raise ValueError(f"git timeout_seconds must be > 0, got {timeout_seconds}")
        self.service = service or ExternalService(SERVICE, self.settings.retry, is_transient)
        self.timeout_seconds = timeout_seconds

    def clone(self, url: str, dest: Path, branch: str | None = None) -> str:
        """Clone ``url`` (depth 1, one branch, no tags) into ``dest``; return the checked-out commit sha.

        ``url`` may be an https/ssh/file URL or a local directory. Failures raise
        ``ExternalCallError`` whose cause is a ``GitError`` free of URL credentials.
        """
        from git import Git, Repo
        from git.exc import GitCommandError

        source = Git.polish_url(_clone_source(url), expand_vars=False)
        argv = [Git.GIT_PYTHON_GIT_EXECUTABLE or "git", "clone", "--depth", "1", "--single-branch", "--no-tags"]
        if branch:
            argv += ["--branch", branch]
        argv += ["--", source, str(dest)]

        def run() -> str:
            Git.check_unsafe_protocols(source)  # as Repo.clone_from does: no ext:: transports
            if dest.exists():
                shutil.rmtree(dest)  # a half-done attempt must not poison the retry
            env = {k: v for k, v in _CLONE_ENV.items() if k not in os.environ}
            try:
                # not Repo.clone_from: it runs git as a process GitPython never times out
                Git().execute(argv, env=env, kill_after_timeout=self.timeout_seconds)
                with Repo(dest) as repo:
                    return repo.head.commit.hexsha
            except GitCommandError as exc:
                # GitPython masks passwords in the command line, git in its own messages;
                # redact again here so no ledger row or log can ever carry one.
                raise GitError(redact_credentials(str(exc))) from None

        return self.service.call("clone", run)
