"""
The demo page in headless Chromium against the real daemon: pick a route,
connect, send, see the reply, close, see the state.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.daemon import Daemon

pytestmark = pytest.mark.slow

CONFIG = """
    [wsdaemon]
    listen = tcp:0:interface=127.0.0.1

    [route:/echo]
    strategy = echo

    [route:/other/echo]
    strategy = echo
"""


def test_demo_page_round_trip(browser: object, write_config: Callable[..., Path],
                              start_daemon: Callable[..., Daemon]) -> None:
    """The demo page connects to a chosen route, sends, shows the reply and the close."""
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
