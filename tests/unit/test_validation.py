"""Operator parameters are refused before any external call when they are unsafe or malformed."""

from __future__ import annotations

import pytest

from justin_flows.domain.validation import validate_branch, validate_repo_url, validate_rse_expression


@pytest.mark.parametrize("expr", ["UK_MANCHESTER", "site=UK_Manchester", "(A|B)&type=DISK", "tier=2\\decommissioned=True"])
def test_rse_expressions_accepted(expr: str) -> None:
    assert validate_rse_expression(expr) == expr


@pytest.mark.parametrize("expr", ["", "A;drop table", "(A|B", "A'B", "x" * 501, "A\nB"])
def test_rse_expressions_refused(expr: str) -> None:
    with pytest.raises(ValueError, match="rse_expression"):
        validate_rse_expression(expr)


@pytest.mark.parametrize(
    "url",
    ["https://github.com/opensciencegrid/osg-gfactory.git", "file:///srv/gfactory", "/srv/gfactory", "git@github.com:o/r.git"],
)
def test_repo_urls_accepted(url: str) -> None:
    assert validate_repo_url(url) == url


@pytest.mark.parametrize(
    "url", ["", "--upload-pack=touch /tmp/x", "ext::sh -c touch% /tmp/pwned", "http://example.org/r.git", "relative/path", "ftp://x/y"]
)
def test_repo_urls_refused(url: str) -> None:
    with pytest.raises(ValueError, match="repo_url"):
        validate_repo_url(url)


@pytest.mark.parametrize("branch", ["-x", "a..b", "a b", ""])
def test_bad_branches_refused(branch: str) -> None:
    with pytest.raises(ValueError, match="branch"):
        validate_branch(branch)


def test_branches_accepted() -> None:
    assert validate_branch("main") == "main" and validate_branch("release/2026.12") == "release/2026.12"
