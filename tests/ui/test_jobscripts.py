"""show-jobscript (showJobscriptCmd, reference §6.1) against a local HTTPS server with a test CA."""

from __future__ import annotations

import pytest

from justin_flows.adapters.http import HTTPAdapter
from justin_flows.settings import get_settings
from justin_flows.testing.https_server import LocalHTTPSServer
from justin_flows.ui.jobscripts import (
    GITHUB_RAW_BASE_URL,
    JobscriptGit,
    configured_base_url,
    parse_jobscript_git,
    show_jobscript,
    show_stage_jobscript,
)
from justin_flows.ui.result import UIInputError, UIServiceError, markdown_code_block
from tests.conftest import reset_caches
from tests.ui.conftest import JOBSCRIPT_BODY, JOBSCRIPT_GIT, JOBSCRIPT_PATH, ledger_calls


def test_the_name_splits_at_the_first_colon_and_the_url_is_upstreams() -> None:
    ref = parse_jobscript_git("DUNE/dune-justin/testing/sub/dir/x.jobscript:v1:2")
    assert ref == JobscriptGit("DUNE", "dune-justin", "testing/sub/dir/x.jobscript", "v1:2")
    assert ref.url() == "https://raw.githubusercontent.com/DUNE/dune-justin/v1:2/testing/sub/dir/x.jobscript"
    assert ref.url("https://mirror.example/raw/") == "https://mirror.example/raw/DUNE/dune-justin/v1:2/testing/sub/dir/x.jobscript"
    assert str(ref) == "DUNE/dune-justin/testing/sub/dir/x.jobscript:v1:2"
    assert GITHUB_RAW_BASE_URL == "https://raw.githubusercontent.com"
    assert configured_base_url(get_settings()) == GITHUB_RAW_BASE_URL


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("DUNE/dune-justin/testing/x.jobscript", "the :TAG (branch, tag or commit) is mandatory"),
        ("DUNE/dune-justin/testing/x.jobscript:", "the :TAG (branch, tag or commit) is mandatory"),
        ("DUNE/dune-justin:main", "with an organisation, a repository and a path"),
        ("DUNE//x.jobscript:main", "with an organisation, a repository and a path"),
        ("DUNE/repo/x.jobscript;rm -rf:main", "characters ' ;' are not allowed"),
        ("DUNE/repo/x?y=1:main", "characters '=?' are not allowed"),
        ("DUNE/repo/../../other/repo/x:main", "the path '../../other/repo/x' has an empty, '.' or '..' segment"),
        ("DUNE/repo/a//b:main", "has an empty, '.' or '..' segment"),
        ("DUNE/repo/x:main/..", "the tag 'main/..' has an empty"),
    ],
)
def test_malformed_names_are_refused_with_the_reason_and_no_call(text: str, problem: str, ledger: None) -> None:
    with pytest.raises(UIInputError) as info:
        parse_jobscript_git(text)
    assert problem in str(info.value)
    assert repr(text) in str(info.value)
    assert ledger_calls() == []


def test_a_jobscript_is_fetched_verified_with_one_get_and_a_trailing_newline_added(github: LocalHTTPSServer) -> None:
    with HTTPAdapter() as http:
        result = show_jobscript(http, JOBSCRIPT_GIT, base_url=github.url)
    assert result.text == JOBSCRIPT_BODY + "\n"
    assert github.requests == [JOBSCRIPT_PATH]
    assert ledger_calls() == [("http", "GET 127.0.0.1", 1, "ok")]
    assert dict(result.counts) == {"lines": 3, "bytes": len(JOBSCRIPT_BODY) + 1}


def test_a_jobscript_that_already_ends_with_a_newline_gets_no_second_one(github: LocalHTTPSServer) -> None:
    github.routes[JOBSCRIPT_PATH] = (200, "text/plain", "echo hi\n")
    with HTTPAdapter() as http:
        assert show_jobscript(http, JOBSCRIPT_GIT, base_url=github.url).text == "echo hi\n"


def test_an_unknown_jobscript_is_a_clear_input_error_after_one_attempt(github: LocalHTTPSServer) -> None:
    with HTTPAdapter() as http, pytest.raises(UIInputError) as info:
        show_jobscript(http, "DUNE/dune-justin/testing/nothing-here.jobscript:main", base_url=github.url)
    message = str(info.value)
    assert message.startswith("jobscript DUNE/dune-justin/testing/nothing-here.jobscript:main not found: ")
    assert f"{github.url}/DUNE/dune-justin/main/testing/nothing-here.jobscript answered 404" in message
    assert ledger_calls() == [("http", "GET 127.0.0.1", 1, "error")]  # a 404 is final: not retried


def test_certificate_is_verified_fix_for_upstreams_unverified_context(
    github: LocalHTTPSServer, impostor: LocalHTTPSServer
) -> None:
    """[BUG] fixed on purpose: upstream fetches jobscripts with verification switched off. A
    server whose certificate the configured CA did not sign is refused before any request."""
    with HTTPAdapter() as http, pytest.raises(UIServiceError) as info:
        show_jobscript(http, JOBSCRIPT_GIT, base_url=impostor.url)
    assert str(info.value) == (
        f"jobscript {JOBSCRIPT_GIT}: the TLS certificate of 127.0.0.1:{impostor.port} did not verify; nothing was fetched"
    )
    assert impostor.requests == []  # the handshake failed: no HTTP request was ever sent
    assert ledger_calls() == [("http", "GET 127.0.0.1", 1, "error")]  # a bad certificate is not retried


def test_by_default_only_the_system_store_is_trusted(
    github: LocalHTTPSServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without ``cilogon.ca_file`` the certifi store applies, and it does not know the test CA."""
    monkeypatch.delenv("JUSTIN_CILOGON__CA_FILE")
    reset_caches()
    with HTTPAdapter() as http, pytest.raises(UIServiceError, match="did not verify"):
        show_jobscript(http, JOBSCRIPT_GIT, base_url=github.url)
    assert github.requests == []


def test_a_plain_http_base_url_is_refused_without_a_call(ledger: None) -> None:
    with HTTPAdapter() as http, pytest.raises(ValueError, match="only https:// URLs are fetched"):
        show_jobscript(http, JOBSCRIPT_GIT, base_url="http://raw.githubusercontent.com")
    assert ledger_calls() == []


def test_the_stage_form_says_it_is_not_available() -> None:
    with pytest.raises(UIInputError) as info:
        show_stage_jobscript(7, 2)
    assert str(info.value).startswith("show-jobscript for workflow 7 stage 2 is not available: ")
    assert "no stages_jobscripts table" in str(info.value)


def test_markdown_fence_is_longer_than_any_backtick_run_in_the_script() -> None:
    assert markdown_code_block(JOBSCRIPT_BODY) == "````\n" + JOBSCRIPT_BODY + "\n````\n"
    assert markdown_code_block("echo\n", "bash") == "```bash\necho\n```\n"
