"""End to end in headless Chromium: a real browser logs in through the OpenID provider double.

The dashboard runs under uvicorn on http://127.0.0.1 (``insecure_loopback_http``: the only
way its cookies lose ``Secure``); the provider double runs on HTTPS. The dashboard's server
side verifies the provider's certificate against the test CA. Chromium is told to accept
exactly the provider's server key (``--ignore-certificate-errors-spki-list`` with its
SHA-256), not to ignore certificate errors in general.
"""

from __future__ import annotations

import importlib.util
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from justin_flows.dashboard import create_app
from justin_flows.dashboard.config import CALLBACK_PATH
from justin_flows.testing.oidc_provider import OIDCProviderDouble
from tests.dashboard.conftest import make_config, seed_grid

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

pytestmark = [
    pytest.mark.skipif(
        not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
        reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
    ),
    pytest.mark.skipif(importlib.util.find_spec("selenium") is None, reason="needs the selenium package (pip)"),
]


@pytest.fixture
def live_dashboard(idp: OIDCProviderDouble) -> Iterator[str]:
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    idp.redirect_uris.append(url + CALLBACK_PATH)
    server = uvicorn.Server(uvicorn.Config(create_app(make_config(idp, public_url=url)), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="dashboard", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield url
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()
    idp.redirect_uris.remove(url + CALLBACK_PATH)


@pytest.fixture
def chromium(tmp_path: Path, idp: OIDCProviderDouble) -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,900",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}",
                 f"--ignore-certificate-errors-spki-list={idp.spki_sha256_b64}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for_title(driver: object, title: str, seconds: float = 10) -> None:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        WebDriverWait(driver, seconds).until(expected_conditions.title_contains(title))  # type: ignore[arg-type]
    except TimeoutException:
        page = driver.page_source  # type: ignore[attr-defined]
        main = page[page.find("<main>"):][:1500]
        raise AssertionError(f"no page titled {title!r}; at {driver.current_url}: {main}") from None  # type: ignore[attr-defined]


def test_browser_logs_in_through_the_provider_and_sees_seeded_storage_and_site(
    chromium: object, live_dashboard: str, idp: OIDCProviderDouble, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    driver: WebDriver = chromium  # type: ignore[assignment]
    seed_grid(rse_name="DUNE_UK_MANCHESTER_DISK", site_name="UK_Manchester")

    driver.get(live_dashboard + "/storages")  # -> /login -> provider /authorize -> callback -> /storages
    wait_for_title(driver, "Storages", 20)
    assert driver.current_url == live_dashboard + "/storages"
    assert idp.hits("GET", "/authorize") == 1 and idp.hits("POST", "/oauth2/token") == 1
    row = driver.find_element(By.XPATH, "//tr[td[1][normalize-space()='DUNE_UK_MANCHESTER_DISK']]")
    assert [td.text for td in row.find_elements(By.TAG_NAME, "td")][:3] == ["DUNE_UK_MANCHESTER_DISK", "45.7", "UK_Manchester"]
    assert "Alice Tester" in driver.find_element(By.TAG_NAME, "header").text
    driver.save_screenshot(str(tmp_path / "storages.png"))

    [cookie] = driver.get_cookies()
    assert (cookie["name"], cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == ("justin_session", True, "Lax", "/")

    driver.find_element(By.LINK_TEXT, "Sites and entries").click()
    wait_for_title(driver, "Sites and entries")
    assert driver.find_element(By.XPATH, "//tr[td[1][normalize-space()='UK_Manchester']]")
    assert driver.find_element(By.XPATH, "//tr[td[1][normalize-space()='CMSHTPC_T2_US_Test_ce1']]")

    driver.find_element(By.XPATH, "//button[normalize-space()='Log out']").click()
    wait_for_title(driver, "Logged out")  # a POST with the CSRF token and the page's Origin
    assert driver.current_url == live_dashboard + "/logged-out"
    assert driver.get_cookies() == []
