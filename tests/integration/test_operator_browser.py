"""
The operator queue through browsers: the web console answers a client, and
the demo page keeps its client id, so a reply sent while it was away
reaches it when it comes back.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from tests.daemon import Daemon
from tests.integration.test_operator_daemon import ALICE, CONFIG, Operator
from wsdaemon.client_ids import public_id

pytestmark = pytest.mark.slow


def wait_for(condition: Callable[[], Any], timeout: float = 10) -> Any:
    """Poll until C{condition} is true. The console redraws its table on every
    event, so an element found a moment ago may be stale, or not there yet
    (the row comes with the next event): try again then."""
    from selenium.common.exceptions import (
        NoSuchElementException,
        StaleElementReferenceException,
    )

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
        except (StaleElementReferenceException, NoSuchElementException):
            value = None
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_web_console_answers_a_client(browser: Any, write_config: Callable[..., Path],
                                      start_daemon: Callable[..., Daemon]) -> None:
    """An operator claims and answers a client from the web console; transcripts show it."""
    from selenium.webdriver.common.by import By

    daemon = start_daemon(write_config(CONFIG))
    find = browser.find_element
    browser.get(f"{daemon.http}/console")
    find(By.ID, "token").send_keys(ALICE)
    find(By.ID, "login").click()
    wait_for(lambda: find(By.ID, "state").text == "open")
    wait_for(lambda: "as alice" in find(By.ID, "whoami").text)

    with connect(f"{daemon.url}/support?client_id=web-test") as client:
        client.send("Where is my order?")
        assert str(client.recv(timeout=5)).startswith("queued #1")
        text = wait_for(lambda: find(By.CSS_SELECTOR, "#items tr").text)
        assert "Where is my order?" in text and "web-test" in text
        wait_for(lambda: find(By.CSS_SELECTOR, "#items tr button.claim").click() or True)
        wait_for(lambda: "claimed by alice" in find(By.CSS_SELECTOR, "#items tr").text)
        wait_for(lambda: find(By.CSS_SELECTOR, "#items tr").click() or True)
        find(By.ID, "reply-text").send_keys("It ships today.")
        find(By.ID, "reply-send").click()
        assert client.recv(timeout=10) == "It ships today."
        wait_for(lambda: not browser.find_elements(By.CSS_SELECTOR, "#items tr"))
        assert "replied to" in find(By.ID, "events").text

    find(By.ID, "transcript-client").send_keys("web-test")
    find(By.ID, "transcript-show").click()
    text = wait_for(lambda: find(By.ID, "transcript").text)
    assert "<- client: Where is my order?" in text and "-> alice: It ships today." in text


def test_demo_page_gets_reply_after_coming_back(browser: Any, write_config: Callable[..., Path],
                                                start_daemon: Callable[..., Daemon]) -> None:
    """The demo page's identity is issued by the daemon (a cookie): a reply sent
    while the page was away reaches it when it comes back."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.select import Select

    daemon = start_daemon(write_config(CONFIG.replace("identity = claimed",
                                                      "identity = anonymous")))
    find = browser.find_element

    def open_support() -> None:
        browser.get(f"{daemon.http}/")
        Select(find(By.ID, "route")).select_by_value("/support")
        find(By.ID, "connect").click()
        wait_for(lambda: find(By.ID, "state").text == "open")

    open_support()
    find(By.ID, "message").send_keys("Call me back")
    find(By.ID, "send").click()
    wait_for(lambda: "queued #1" in find(By.ID, "log").text)
    find(By.ID, "disconnect").click()
    wait_for(lambda: find(By.ID, "state").text == "closed")

    operator = Operator(daemon, ALICE)
    try:
        (item,) = operator.hello["items"]
        cookie = browser.get_cookie("wsdaemon_client")
        assert cookie is not None and cookie["httpOnly"]
        # The operator sees the id derived from the cookie's credential, not it.
        assert item["client_id"] == public_id(cookie["value"]) and item["online"] is False
        assert len(cookie["value"].split(".")[0]) == 22  # 128 random bits
        answer = operator.request(type="reply", item=item["item_id"], text="Calling you back")
        assert answer["delivered"] == 0
    finally:
        operator.close()

    open_support()  # a new page load: the same identity, from the cookie
    wait_for(lambda: "Calling you back" in find(By.ID, "log").text)


def test_web_console_large_queue_long_texts_and_revocation(
        browser: Any, write_config: Callable[..., Path],
        start_daemon: Callable[..., Daemon]) -> None:
    """With 2,001 open items the console shows the first page and how many more
    there are, loads the next page, searches; a long message is shortened with
    a "show all" that fetches it whole; a reload that revokes the token signs
    the operator out and says why."""
    import signal

    from selenium.webdriver.common.by import By

    from tests.integration.test_operator_scale import fill_store

    config = write_config(CONFIG)
    fill_store(config.parent / "state" / "queue.sqlite3", 2000)
    daemon = start_daemon(config)
    daemon.wait_for_log("2001 open item(s) restored", timeout=30)
    long = "A long story. " * 200
    with connect(f"{daemon.url}/support?client_id=storyteller") as client:
        client.send(long)
        client.recv(timeout=5)

    find = browser.find_element
    browser.get(f"{daemon.http}/console")
    find(By.ID, "token").send_keys(ALICE)
    find(By.ID, "login").click()
    wait_for(lambda: find(By.ID, "count").text == "2002")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#items tr")) == 100
    assert find(By.ID, "queue-nav").text.startswith("100 shown, 1902 more in the queue")
    find(By.ID, "load-more").click()
    wait_for(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#items tr")) == 200)

    find(By.ID, "filter-text").send_keys("storyteller")
    find(By.ID, "filter-client").click()
    find(By.ID, "filter-apply").click()
    wait_for(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#items tr")) == 1)
    row = find(By.CSS_SELECTOR, "#items tr")
    assert f"{len(long) - 500} more characters" in row.text
    row.find_element(By.CSS_SELECTOR, "button.show-all").click()
    wait_for(lambda: find(By.ID, "full").text.count("A long story.") == 200)
    browser.set_window_size(1280, 900)
    browser.save_screenshot(str(config.parent / "console.png"))

    config.write_text(config.read_text().replace(f"alice:{ALICE}\n", ""))
    daemon.process.send_signal(signal.SIGHUP)
    wait_for(lambda: find(By.ID, "state").text == "signed out: your token was revoked")
    assert "token was revoked" in find(By.ID, "events").text
