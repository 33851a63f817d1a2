"""
The demo page in headless Chromium against the real daemon: pick a route,
connect, send, see the reply, close, see the state.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import require_tool
from tests.daemon import Daemon

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

CONFIG = """
    [wsdaemon]
    listen = tcp:0:interface=127.0.0.1

    [route:/echo]
    strategy = echo

    [route:/other/echo]
    strategy = echo
"""


@pytest.fixture
def browser() -> Iterator[object]:
    require_tool(Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists(),
                 "Chromium and chromedriver (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="wsdaemon-chromium-")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_demo_page_round_trip(browser: object, write_config: Callable[..., Path],
                              start_daemon: Callable[..., Daemon]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.select import Select
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    daemon = start_daemon(write_config(CONFIG))
    driver.get(f"{daemon.http}/")  # type: ignore[attr-defined]
    find = driver.find_element  # type: ignore[attr-defined]
    wait = WebDriverWait(driver, 10)

    def state() -> str:
        return str(find(By.ID, "state").text)

    route = Select(find(By.ID, "route"))
    assert [o.get_attribute("value") for o in route.options] == ["/echo", "/other/echo"]
    route.select_by_value("/other/echo")
    assert state() == "closed"

    find(By.ID, "connect").click()
    wait.until(lambda d: state() == "open")
    find(By.ID, "message").send_keys("你好，世界")
    find(By.ID, "send").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#log li.received")) == 1)
    assert find(By.CSS_SELECTOR, "#log li.received").text == "你好，世界"

    find(By.ID, "disconnect").click()
    wait.until(lambda d: state() == "closed")
    assert "closed (code 1000" in find(By.ID, "log").text
    log = daemon.wait_for_log("left /other/echo")
    assert "connected to /other/echo" in log
