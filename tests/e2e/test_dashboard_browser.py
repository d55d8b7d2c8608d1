"""The built-in dashboard in headless Chromium against the real gateway: sign in with an operator key,
wait for the charts, check the numbers against the usage API, save a screenshot."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import REPO
from tests.e2e.conftest import Gateway
from tests.e2e.test_metering import one_request

pytestmark = pytest.mark.e2e

ARTIFACTS = REPO / "tests" / "artifacts"


@pytest.fixture
def browser() -> Iterator[Any]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        if os.environ.get("CI"):
            raise AssertionError("CI needs Debian's chromium and chromium-driver (.ci/run installs them)")
        pytest.skip("headless Chromium is not installed (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1280,1500",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    session = webdriver.Chrome(service=Service(driver), options=options)
    try:
        yield session
    finally:
        session.quit()


def wait_for(check: Any, browser: Any, timeout_s: float = 30) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.25)
    logs = browser.get_log("browser")
    raise AssertionError(f"timed out waiting for the dashboard; browser log: {logs}")


def test_dashboard_shows_charts_that_match_the_usage_api(gateway: Gateway, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    for tenant in ("board-a", "board-b"):
        key = gateway.create_key(tenant)
        for i in range(2 if tenant == "board-a" else 1):
            one_request(gateway, key, i)
    admin = gateway.create_key(admin=True)

    browser.get(gateway.base_url + "/dashboard")
    assert browser.find_element(By.ID, "login").is_displayed()
    assert not browser.find_element(By.ID, "board").is_displayed()

    browser.find_element(By.ID, "key").send_keys("sk-maas-not-an-operator")
    browser.find_element(By.CSS_SELECTOR, "#login button").click()
    wait_for(lambda: browser.find_element(By.ID, "login-error").text, browser)
    assert not browser.find_element(By.ID, "board").is_displayed()

    browser.find_element(By.ID, "key").clear()
    browser.find_element(By.ID, "key").send_keys(admin)
    browser.find_element(By.CSS_SELECTOR, "#login button").click()
    wait_for(lambda: int(browser.execute_script("return document.body.dataset.rendered || 0")) >= 2, browser)
    assert admin not in browser.current_url

    rows = browser.find_elements(By.CSS_SELECTOR, "#tenants tbody tr")
    shown = {
        cells[0].text: int(cells[2].text) for cells in (r.find_elements(By.TAG_NAME, "td") for r in rows)
    }
    headers = {"Authorization": f"Bearer {admin}"}
    usage = httpx.get(
        gateway.base_url + "/admin/usage",
        params={"group_by": "tenant", "start": time.time() - 6 * 3600},
        headers=headers,
    ).json()["data"]
    expected = {u["tenant"]: u["prompt_tokens"] + u["completion_tokens"] for u in usage}
    for tenant in ("board-a", "board-b"):
        assert shown.get(tenant) == expected[tenant]
    series = json.loads(browser.find_element(By.ID, "chart-series").get_attribute("data-values"))
    assert sum(series["series"][0]["values"]) == sum(expected.values())
    margin = json.loads(browser.find_element(By.ID, "chart-margin-pool").get_attribute("data-values"))
    assert margin["labels"] == ["own"]

    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "dashboard.png"))
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000
