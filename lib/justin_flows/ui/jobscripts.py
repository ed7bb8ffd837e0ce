"""showJobscriptCmd (reference §6.1), command ``show-jobscript``: a stage's jobscript from GitHub.

``ORG/REPO/PATH:TAG`` names a file in a GitHub repository at a branch, tag or commit; the
file is fetched from ``<base>/<org>/<repo>/<tag>/<path>`` (raw.githubusercontent.com).

Differences from upstream, on purpose:

* TLS is **verified** (through ``HTTPAdapter``: the certifi store, or ``cilogon.ca_file``).
  Upstream builds a bare ``ssl.SSLContext()`` with verification commented out, so anyone on
  the path could hand a user (and, via createStage, every job) a different script.
* Path segments ``.`` and ``..`` and empty segments are refused: they only pass upstream's
  character check and would make the URL name a different file than the user wrote.
* The base URL is a parameter (raw GitHub by default) so tests can use a local HTTPS server.
* The ``workflow_id``/``stage_id`` form reads ``stages_jobscripts``, a table our schema does
  not have (stages keep only ``jobscript_git``); it says so instead of guessing.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from justin_flows.adapters.calls import ExternalCallError
from justin_flows.adapters.http import HTTPAdapter, is_certificate_failure, require_https
from justin_flows.settings import Settings
from justin_flows.ui.result import CommandResult, UIInputError, UIServiceError

GITHUB_RAW_BASE_URL = "https://raw.githubusercontent.com"
ALLOWED_CHARACTERS = frozenset(string.ascii_letters + string.digits + "/_.:-")
FORM = "ORG/REPO/PATH:TAG"


@dataclass(frozen=True)
class JobscriptGit:
    """A parsed ``ORG/REPO/PATH:TAG``."""

    org: str
    repo: str
    path: str
    tag: str

    def __str__(self) -> str:
        return f"{self.org}/{self.repo}/{self.path}:{self.tag}"

    def url(self, base_url: str = GITHUB_RAW_BASE_URL) -> str:
        """The raw file URL, as upstream builds it (the tag verbatim)."""
        return f"{base_url.rstrip('/')}/{self.org}/{self.repo}/{self.tag}/{self.path}"


def parse_jobscript_git(text: str) -> JobscriptGit:
    """``ORG/REPO/PATH:TAG`` split at the first ``:`` (the tag is mandatory); UIInputError if not."""
    bad = sorted(set(text) - ALLOWED_CHARACTERS)
    if bad:
        raise UIInputError(
            f"jobscript {text!r}: characters {''.join(bad)!r} are not allowed (only letters, digits and /_.:-)"
        )
    left, sep, tag = text.partition(":")
    if not sep or not tag:
        raise UIInputError(f"jobscript {text!r}: expected {FORM}; the :TAG (branch, tag or commit) is mandatory")
    parts = left.split("/", 2)
    if len(parts) != 3 or not all(parts):
        raise UIInputError(f"jobscript {text!r}: expected {FORM}, with an organisation, a repository and a path")
    org, repo, path = parts
    for what, value in (("organisation", org), ("repository", repo), ("path", path), ("tag", tag)):
        if any(segment in ("", ".", "..") for segment in value.split("/")):
            raise UIInputError(f"jobscript {text!r}: the {what} {value!r} has an empty, '.' or '..' segment")
    return JobscriptGit(org, repo, path, tag)


def configured_base_url(settings: Settings) -> str:
    """The raw-GitHub base URL from the settings (tests point it at a local HTTPS server)."""
    return settings.ui.github_raw_base_url


def show_jobscript(http: HTTPAdapter, jobscript_git: str, *, base_url: str = GITHUB_RAW_BASE_URL) -> CommandResult:
    """showJobscriptCmd, git form: the file's text with a trailing newline ensured.

    One verified GET. A 4xx answer (404: no such repository, file or tag) or a malformed
    name is a UIInputError; a 5xx, network or certificate failure is a UIServiceError.
    """
    ref = parse_jobscript_git(jobscript_git)
    url = require_https(ref.url(base_url))
    try:
        text = http.get_text(url)
    except ExternalCallError as exc:
        cause = exc.cause
        if isinstance(cause, httpx.HTTPStatusError) and 400 <= cause.response.status_code < 500:
            status = cause.response.status_code
            if status == 404:
                raise UIInputError(
                    f"jobscript {ref} not found: {url} answered 404 "
                    "(check the organisation, repository, path, and that TAG is a branch, tag or commit)"
                ) from exc
            raise UIInputError(f"jobscript {ref} could not be fetched: {url} answered {status}") from exc
        if is_certificate_failure(cause):
            raise UIServiceError(
                f"jobscript {ref}: the TLS certificate of {urlsplit(url).netloc} did not verify; nothing was fetched"
            ) from exc
        raise UIServiceError(f"jobscript {ref}: fetching {url} failed: {exc}") from exc
    if not text.endswith("\n"):
        text += "\n"
    result = CommandResult("show-jobscript", body=text)
    result.counts["lines"] = text.count("\n")
    result.counts["bytes"] = len(text.encode())
    return result


def show_stage_jobscript(workflow_id: int, stage_id: int) -> CommandResult:
    """showJobscriptCmd, database form: not available (no ``stages_jobscripts`` table here)."""
    raise UIInputError(
        f"show-jobscript for workflow {workflow_id} stage {stage_id} is not available: this database has no "
        f"stages_jobscripts table (stages keep only jobscript_git); give the stage's {FORM} instead"
    )
