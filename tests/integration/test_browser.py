"""
The demo page in headless Chromium against the real daemon: pick a route,
connect, send, see the reply, close, see the state; as a plain visitor of
conversations it keeps the identity the daemon issued (a cookie).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.daemon import Daemon

pytestmark = pytest.mark.slow

ALICE = "alice-token-0123456789abcdef"

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


def test_demo_page_gets_reply_after_coming_back(browser: Any, write_config: Callable[..., Path],
                                                start_daemon: Callable[..., Daemon]) -> None:
    """The demo page's identity is issued by the daemon (an HttpOnly cookie):
    the operator sees the public id derived from it, never the credential,
    and a reply sent while the page was away reaches it when it comes back."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.select import Select
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.operator_client import operator_desk, request
    from wsdaemon.client_ids import public_id

    daemon = start_daemon(write_config(CONFIG + f"""
    [operator]
    tokens = alice:{ALICE}
    store = conversations.sqlite3
    ack_message = We will answer here.
    fallback_after = 0
    offline_message =

    [protocol]
    identity = anonymous

    # The page embeds the chat widget for the first conversations route:
    # /chat, so that the page's own plain connection is /support's only one.
    [route:/chat]
    strategy = operator

    [route:/support]
    strategy = operator
    """))
    driver: Any = browser
    find = driver.find_element
    wait = WebDriverWait(driver, 10)

    def open_support() -> None:
        driver.get(f"{daemon.http}/")
        Select(find(By.ID, "route")).select_by_value("/support")
        find(By.ID, "connect").click()
        wait.until(lambda d: find(By.ID, "state").text == "open")

    open_support()
    find(By.ID, "message").send_keys("Call me back")
    find(By.ID, "send").click()
    wait.until(lambda d: "We will answer here." in find(By.ID, "log").text)
    cookie = driver.get_cookie("wsdaemon_client")
    driver.get("about:blank")  # the page goes away, and its connection
    deadline = time.monotonic() + 10
    while daemon.log().count(" left /support ") < daemon.log().count(" connected to /support "):
        assert time.monotonic() < deadline, daemon.log()
        time.sleep(0.05)

    assert cookie is not None and cookie["httpOnly"]
    assert len(cookie["value"].split(".")[0]) == 22  # 128 random bits
    with operator_desk(daemon, ALICE) as desk:
        listed = request(desk, {"type": "conversations", "view": "all"})
        [summary] = listed["conversations"]
        assert summary["visitor"] == public_id(cookie["value"])
        assert cookie["value"] not in json.dumps(listed)
        answer = request(desk, {"type": "reply", "conversation": summary["id"],
                                "text": "Calling you back"}, "reply")
        assert answer["type"] == "ok", answer

    open_support()  # a new page load: the same identity, from the cookie
    wait.until(lambda d: "Calling you back" in find(By.ID, "log").text)
