"""The Prefect UI as an operator sees it, in headless Chromium (Debian's ``chromium`` and
``chromium-driver``, driven with Selenium).

Skipped, with the reason, when Chromium, its driver or Selenium is missing.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from rucio.client import Client
from sqlalchemy import Engine

from justin_flows.testing.prefect_stack import PrefectStack
from justin_flows.testing.rucio_server import RucioServer
from tests.operators.conftest import PREFECT_YAML, deployment_id, run_deployment
from tests.operators.test_manual_runs import table_artifacts
from tests.rucio_seed import add_rse, unique

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
HAVE_SELENIUM = importlib.util.find_spec("selenium") is not None

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHROMIUM and CHROMEDRIVER and HAVE_SELENIUM),
        reason="the browser test needs Debian's chromium and chromium-driver (apt-get install chromium "
        "chromium-driver) and selenium in the venv (pip install selenium)",
    ),
]

FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1600,1200",
)  # fmt: skip


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="chromium-profile-", dir=tmp_path)
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.save_screenshot(str(tmp_path / "last-page.png"))  # for a failed run's post-mortem
        driver.quit()


def page_text(driver: object) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.TAG_NAME, "body").text)  # type: ignore[attr-defined]


def wait_for_text(driver: object, *texts: str, timeout: float = 60) -> str:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(lambda d: all(t in page_text(d) for t in texts))
    return page_text(driver)


def test_the_ui_lists_every_deployment_with_its_schedule_slug_and_shows_a_runs_table_artifact(
    stack: PrefectStack, db: Engine, rucio_server: RucioServer, browser: object, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    deployments = yaml.safe_load(PREFECT_YAML.read_text())["deployments"]
    t0 = time.monotonic()

    driver.get(f"{stack.ui_url}/deployments")  # type: ignore[attr-defined]
    listing = wait_for_text(driver, "Deployments", f"{len(deployments)} Deployments")
    first_page = sorted(d["name"] for d in deployments)[:5]  # the list is paged (10 a page), A to Z
    assert all(name in listing for name in first_page)

    for spec in deployments:
        driver.get(f"{stack.ui_url}/deployments/deployment/{deployment_id(stack, spec['name'])}")  # type: ignore[attr-defined]
        slugs = [s["slug"] for s in spec.get("schedules") or []]
        text = wait_for_text(driver, spec["entrypoint"], *slugs)
        assert spec["name"] in text
        if slugs:
            assert "Schedules" in text

    t1 = time.monotonic()
    # a manual storages run, limited to one fresh RSE, publishes its tables as artifacts
    tag = unique("ui")
    rse = add_rse(Client(), unique("UI_").upper(), tmp_path / "rse", attributes={"justin_test": tag},
                  protocols=[("file", 1, 1)], limits={rucio_server.root_account: 10**9})  # fmt: skip
    run = run_deployment(stack, "info-collector-storages", {"rse_expression": f"justin_test={tag}"})
    assert run.state is not None and run.state.is_completed(), run.state
    assert "updatestorages" in table_artifacts(stack, run.id)
    t2 = time.monotonic()

    driver.get(f"{stack.ui_url}/runs/flow-run/{run.id}")  # type: ignore[attr-defined]
    wait_for_text(driver, "Completed", "Artifacts")
    driver.find_element(By.ID, "artifacts").click()  # type: ignore[attr-defined]
    wait_for_text(driver, "updatestorages", "updateStorages: ")
    driver.find_element(By.XPATH, "//*[normalize-space(text())='updatestorages']").click()  # type: ignore[attr-defined]
    wait_for_text(driver, "rse_name", rse)
    tables = [t.text for t in driver.find_elements(By.TAG_NAME, "table")]  # type: ignore[attr-defined]
    assert any("rse_name" in t and rse in t for t in tables), tables
    print(
        f"\nUI: {len(deployments)} deployment pages {t1 - t0:.1f} s, storages run {t2 - t1:.1f} s, "
        f"artifact pages {time.monotonic() - t2:.1f} s"
    )
