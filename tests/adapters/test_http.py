"""The HTTPS adapter against a local TLS server: trust, redirects, time-outs, retries, sizes."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from justin_flows.adapters.calls import ExternalCallError, ExternalService
from justin_flows.adapters.http import SERVICE, HTTPAdapter, is_transient
from justin_flows.ledger import Ledger
from justin_flows.settings import CILogonSettings, RetryPolicy, Settings
from justin_flows.testing.https_server import LocalHTTPSServer, Route

FAST = RetryPolicy(attempts=3, backoff_seconds=0.01, max_backoff_seconds=0.02, jitter=0)


@pytest.fixture
def server() -> Iterator[LocalHTTPSServer]:
    with LocalHTTPSServer({"/doc": (200, "application/json; charset=utf-8", '{"ok": true}')}) as srv:
        yield srv


def adapter(
    ca_file: Path | None, *, timeout: float = 5.0, attempts: int = 3, max_body_bytes: int = 1 << 20
) -> tuple[HTTPAdapter, Ledger]:
    ledger = Ledger()
    settings = Settings(cilogon=CILogonSettings(ca_file=ca_file, timeout_seconds=timeout), retry=FAST)
    service = ExternalService(SERVICE, FAST.model_copy(update={"attempts": attempts}), is_transient, ledger=ledger)
    return HTTPAdapter(settings, service, max_body_bytes=max_body_bytes), ledger


def outcomes(ledger: Ledger) -> list[tuple[str, int, str]]:
    return [(r.operation, r.attempt, r.outcome) for r in ledger.snapshot()]


def test_trusted_ca_file_verifies_and_one_get_is_one_ledger_record(server: LocalHTTPSServer) -> None:
    http, ledger = adapter(server.ca_file)
    assert http.get_json(server.url_for("/doc")) == {"ok": True}
    fetched = http.get(server.url_for("/doc"))
    assert (fetched.status_code, fetched.content_type, fetched.text) == (
        200, "application/json; charset=utf-8", '{"ok": true}'
    )
    assert outcomes(ledger) == [("GET 127.0.0.1", 1, "ok")] * 2


def test_system_store_does_not_trust_the_test_ca(server: LocalHTTPSServer) -> None:
    http, ledger = adapter(None)
    with pytest.raises(ExternalCallError, match="CERTIFICATE_VERIFY_FAILED"):
        http.get_json(server.url_for("/doc"))
    assert outcomes(ledger) == [("GET 127.0.0.1", 1, "error")]  # not retried
    assert server.requests == []


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is needed to hash the CA directory")
def test_hashed_ca_directory_works_like_grid_security_certificates(server: LocalHTTPSServer, tmp_path: Path) -> None:
    """Upstream trusted the capath /etc/grid-security/certificates; a directory is accepted too."""
    ca_dir = tmp_path / "certificates"
    ca_dir.mkdir()
    digest = subprocess.run(
        ["openssl", "x509", "-hash", "-noout", "-in", str(server.ca_file)], capture_output=True, text=True, check=True
    ).stdout.strip()
    shutil.copy(server.ca_file, ca_dir / f"{digest}.0")
    http, _ = adapter(ca_dir)
    assert http.get_json(server.url_for("/doc")) == {"ok": True}


def test_missing_ca_file_is_refused_at_construction(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="neither a CA bundle file nor a CA directory"):
        adapter(tmp_path / "nope.pem")


def test_https_redirect_is_followed(server: LocalHTTPSServer) -> None:
    server.routes["/moved"] = Route(302, "text/plain", "", {"Location": "/doc"})
    http, ledger = adapter(server.ca_file)
    fetched = http.get(server.url_for("/moved"))
    assert fetched.url == server.url_for("/doc") and fetched.text == '{"ok": true}'
    assert server.requests == ["/moved", "/doc"]
    assert outcomes(ledger) == [("GET 127.0.0.1", 1, "ok")]


def test_redirect_to_plain_http_is_refused_and_not_retried(server: LocalHTTPSServer) -> None:
    server.routes["/downgrade"] = Route(301, "text/plain", "", {"Location": f"http://127.0.0.1:{server.port}/doc"})
    http, ledger = adapter(server.ca_file)
    with pytest.raises(ExternalCallError, match=r"InsecureURLError: refusing 'http://127\.0\.0\.1:\d+/doc'"):
        http.get(server.url_for("/downgrade"))
    assert server.requests == ["/downgrade"]
    assert outcomes(ledger) == [("GET 127.0.0.1", 1, "error")]


def test_redirect_loop_stops_after_five_hops(server: LocalHTTPSServer) -> None:
    server.routes["/loop"] = Route(302, "text/plain", "", {"Location": "/loop"})
    http, ledger = adapter(server.ca_file)
    with pytest.raises(ExternalCallError, match="TooManyRedirects"):
        http.get(server.url_for("/loop"))
    assert server.requests == ["/loop"] * 6  # the first request and five redirects
    assert outcomes(ledger) == [("GET 127.0.0.1", 1, "error")]


def test_server_error_is_retried_and_client_error_is_not(server: LocalHTTPSServer) -> None:
    server.routes["/busy"] = (503, "text/plain", "try later")
    server.routes["/gone"] = (404, "text/plain", "no")
    http, ledger = adapter(server.ca_file)
    with pytest.raises(ExternalCallError, match="after 3 attempt"):
        http.get(server.url_for("/busy"))
    with pytest.raises(ExternalCallError, match="after 1 attempt"):
        http.get(server.url_for("/gone"))
    assert server.requests == ["/busy"] * 3 + ["/gone"]
    assert [a for _, a, _ in outcomes(ledger)] == [1, 2, 3, 1]


def test_a_silent_server_times_out_per_attempt(server: LocalHTTPSServer) -> None:
    server.routes["/slow"] = Route(200, "text/plain", "late", delay=2.0)
    http, ledger = adapter(server.ca_file, timeout=0.3, attempts=2)
    start = time.monotonic()
    with pytest.raises(ExternalCallError, match="ReadTimeout"):
        http.get(server.url_for("/slow"))
    assert time.monotonic() - start < 1.5
    assert outcomes(ledger) == [("GET 127.0.0.1", 1, "error"), ("GET 127.0.0.1", 2, "error")]


def test_a_trickling_server_hits_the_whole_response_deadline(server: LocalHTTPSServer) -> None:
    """Each 16-byte piece arrives well within the read time-out; the whole body does not."""
    server.routes["/drip"] = Route(200, "text/plain", "x" * 400, trickle=0.05)  # 25 pieces, about 1.25 s
    http, ledger = adapter(server.ca_file, timeout=0.4, attempts=1)
    start = time.monotonic()
    with pytest.raises(ExternalCallError, match="DeadlineExceeded: .* not complete after 0.4 s"):
        http.get(server.url_for("/drip"))
    assert time.monotonic() - start < 0.9


def test_an_oversized_body_is_refused(server: LocalHTTPSServer) -> None:
    server.routes["/big"] = (200, "application/json", "[" + "0," * 5000 + "0]")
    http, ledger = adapter(server.ca_file, max_body_bytes=1000)
    with pytest.raises(ExternalCallError, match="ResponseTooLarge: .* larger than 1000 bytes"):
        http.get(server.url_for("/big"))
    assert outcomes(ledger) == [("GET 127.0.0.1", 1, "error")]


def test_plain_http_url_is_refused_without_a_call() -> None:
    http, ledger = adapter(None)
    with pytest.raises(ValueError, match="only https:// URLs are fetched"):
        http.get_text("http://example.org/x")
    assert outcomes(ledger) == []
