"""Checks on operator-supplied flow parameters, made before any external call."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

_RSE_EXPRESSION = re.compile(r"^[A-Za-z0-9_\-=|&\\()*.:<> ]{1,500}$")
_BRANCH = re.compile(r"^[A-Za-z0-9._/][A-Za-z0-9._/-]{0,254}$")
#: ``scheme://userinfo@``: the userinfo of a refused URL is never echoed (it may be a token).
_USERINFO = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s'\"]+@")


def _shown(url: str) -> str:
    return _USERINFO.sub(r"\g<1>***@", url)


def validate_rse_expression(expression: str) -> str:
    """A Rucio RSE expression: names, ``key=value`` terms and the operators ``| & \\ ( )``."""
    if not _RSE_EXPRESSION.match(expression) or expression.count("(") != expression.count(")"):
        raise ValueError(f"rse_expression {expression!r} is not a Rucio RSE expression")
    return expression


def validate_repo_url(url: str) -> str:
    """A git repository to clone: https, ssh-like or file URL, or an absolute local path.

    Refused: plain http (no integrity), option-looking strings and git's ``ext::``
    transport (both would let a parameter run commands on the worker).
    """
    if not url or url.startswith("-") or "::" in url or any(c in url for c in "\n\r\0"):
        raise ValueError(f"repo_url {_shown(url)!r} is not an acceptable git repository URL")
    if url.startswith("/"):
        return url
    scheme = urlsplit(url).scheme
    if scheme in ("https", "ssh", "file") or re.match(r"^[\w.-]+@[\w.-]+:", url):
        return url
    raise ValueError(f"repo_url {_shown(url)!r}: use https://, ssh://, file:// or an absolute path")


def validate_branch(branch: str) -> str:
    if not _BRANCH.match(branch) or ".." in branch:
        raise ValueError(f"branch {branch!r} is not a valid git branch or tag name")
    return branch
