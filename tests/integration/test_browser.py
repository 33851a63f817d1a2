"""
The demo page in headless Chromium against the real daemon: pick a route,
connect, send, see the reply, close, see the state.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def test_pages_send_security_headers_and_still_work(
        browser: object, write_config: Callable[..., Path],
        start_daemon: Callable[..., Daemon]) -> None:
    """Pages and their scripts come with a CSP that allows no inline script,
    frame-ancestors 'none', nosniff and no-referrer; Chromium runs the pages
    (the demo page, the inbox signed in) under it without a single
    violation, and refuses to frame the inbox."""
    import urllib.request

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    daemon = start_daemon(write_config(CONFIG + """
    [operator]
    tokens = alice:alice-token-0123456789abcdef
    store = conversations.sqlite3
    """))
    for path in ("/", "/console", "/_wsdaemon/inbox/app.js", "/_wsdaemon/demo.css"):
        with urllib.request.urlopen(daemon.http + path, timeout=5) as response:
            headers = response.headers
        csp = headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp and headers["X-Frame-Options"] == "DENY"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "no-referrer"
    assert "<script>" not in urllib.request.urlopen(daemon.http + "/console").read().decode()

    driver: Any = browser
    wait = WebDriverWait(driver, 10)
    driver.get(f"{daemon.http}/console")
    wait.until(lambda d: d.find_element(By.ID, "token").is_displayed())
    driver.find_element(By.ID, "token").send_keys("alice-token-0123456789abcdef")
    driver.find_element(By.ID, "signin-button").click()
    wait.until(lambda d: d.find_element(By.ID, "app").is_displayed())
    driver.get(f"{daemon.http}/")
    driver.find_element(By.ID, "connect").click()
    wait.until(lambda d: d.find_element(By.ID, "state").text == "open")
    # A page of another origin (a data: URL) cannot frame the inbox.
    driver.get("data:text/html,<iframe id=f src='" + daemon.http + "/console'></iframe>")
    time.sleep(1)
    driver.switch_to.frame(driver.find_element(By.ID, "f"))
    assert not driver.find_elements(By.ID, "token")
    driver.switch_to.default_content()
    violations = [entry for entry in driver.get_log("browser")
                  if "Content Security Policy" in entry["message"] and "/console'" not in
                  entry["message"] and "frame-ancestors" not in entry["message"]]
    assert violations == []
