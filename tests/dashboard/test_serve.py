"""Starting the dashboard: configuration from settings, and the one start command."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx
import pytest

from justin_flows.dashboard import DashboardConfig, DashboardConfigError
from justin_flows.dashboard.__main__ import main
from justin_flows.settings import get_settings
from tests.conftest import reset_caches


def test_config_comes_from_dashboard_url_and_the_cilogon_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUSTIN_DASHBOARD_URL", "https://justin-dev.dune.hep.ac.uk/")
    monkeypatch.setenv("JUSTIN_CILOGON__CLIENT_ID", "cilogon:/client_id/abc")
    monkeypatch.setenv("JUSTIN_CILOGON__CLIENT_SECRET", "from-the-environment-secret")
    reset_caches()
    try:
        config = DashboardConfig.from_settings()
        assert config.redirect_uri == "https://justin-dev.dune.hep.ac.uk/login/cilogon/login"
        assert config.client_id == "cilogon:/client_id/abc"
        assert config.client_secret.get_secret_value() == "from-the-environment-secret"
        assert config.openid_configuration_url == get_settings().cilogon.openid_configuration_url
        assert (config.secure_cookies, config.cookie_name, config.session_seconds) == (True, "__Host-justin_session", 86400)
        assert "from-the-environment-secret" not in repr(config)
    finally:
        monkeypatch.undo()
        reset_caches()


def test_start_command_without_a_client_id_says_what_to_set(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("JUSTIN_CILOGON__CLIENT_ID", raising=False)
    reset_caches()
    try:
        assert main(["--port", "1"]) == 2
        assert "JUSTIN_CILOGON__CLIENT_ID" in capsys.readouterr().err
    finally:
        reset_caches()
    with pytest.raises(DashboardConfigError):
        DashboardConfig.from_settings(client_id="x", client_secret="y", public_url="ftp://x")


def test_python_m_justin_flows_dashboard_serves(tmp_path: object) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "JUSTIN_CILOGON__CLIENT_ID": "cid", "JUSTIN_CILOGON__CLIENT_SECRET": "csecret-value",
           "JUSTIN_DASHBOARD_URL": "https://dashboard.test"}
    proc = subprocess.Popen([sys.executable, "-m", "justin_flows.dashboard", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
                assert time.monotonic() < deadline, "the dashboard did not start"
                time.sleep(0.2)
        assert response.text == "ok"
        assert "server" not in response.headers  # no version banner
        login = httpx.get(f"http://127.0.0.1:{port}/storages", timeout=5)
        assert login.status_code == 302 and login.headers["location"] == "/login?next=%2Fstorages"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
