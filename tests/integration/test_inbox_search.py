"""
The web inbox's search box (issue 23) in headless Chromium against the real
daemon: the store-wide `search` request, not a filter of the live list.
Resolved conversations are found too; each result shows its matching
snippet with the match highlighted from the daemon's offsets (the text
escaped: a visitor's markup stays text); "More results" pages on; opening a
resolved result shows its history read-only with Reopen; Escape brings the
live list back.

Screenshot for the README: WSDAEMON_INBOX_SCREENSHOTS=DIR saves
inbox-search.png there.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.daemon import Daemon
from tests.integration import test_inbox_browser as inbox
from tests.integration.test_conversations_redis import config_text
from tests.integration.test_inbox_panel import say, visitor_on
from tests.redis_server import RedisServer

pytestmark = pytest.mark.slow

chromium = inbox.chromium
wait_for = inbox.wait_for

#: What three visitors last said (the others: "Thanks. It is order number N.").
SAID = {
    3: "Can I get a refund for the blue one?",
    7: "<img src=x onerror=alert(1)> I want a refund <b>now</b>",
    12: "A refund for order 12, please",
}
RESOLVED = frozenset({3, 7})


def start(tmp_path: Path) -> Daemon:
    (tmp_path / "canned.txt").write_text(inbox.CANNED, encoding="utf-8")
    (tmp_path / "identify.key").write_text(inbox.IDENTIFY_SECRET + "\n", encoding="utf-8")
    config = tmp_path / "wsdaemon.ini"
    config.write_text(inbox.CONFIG, encoding="utf-8")
    inbox.fill_conversations(tmp_path / "conversations.sqlite3", 30, time.time(),
                             resolved=RESOLVED, said=SAID)
    daemon = Daemon(config)
    daemon.wait_for_log("live conversations loaded", timeout=30)
    return daemon


def summary(browser: Any) -> str:
    return inbox.text_of(browser, "#search-summary")


def results(browser: Any) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(browser.find_elements(By.CSS_SELECTOR, "#search-results .result-row"))


def search_for(browser: Any, text: str) -> None:
    from selenium.webdriver.common.by import By

    box = browser.find_element(By.ID, "search")
    box.clear()
    box.send_keys(text)


def test_search_finds_resolved_ones_highlights_pages_and_clears(tmp_path: Path,
                                                                chromium: Any) -> None:
    """
    "refund" finds three conversations, two of them resolved, none of which
    the live list alone would search; the word is marked in each snippet and
    a visitor's markup is shown as text. A resolved one opens read-only and
    reopens; the status choice narrows; "order" pages 20 then 30; Escape
    gives the live list back. No CSP violation, no serious axe finding.
    """
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser = chromium
    daemon = start(tmp_path)
    try:
        inbox.sign_in(browser, daemon, inbox.ALICE)
        wait_for(lambda: len(browser.find_elements(By.CSS_SELECTOR, ".conversation-row")) == 28,
                 what="the 28 open ones listed")
        search_for(browser, "refund")
        wait_for(lambda: summary(browser) == "3 conversations found", what="three found")
        assert not browser.find_element(By.ID, "conversations").is_displayed()
        rows = results(browser)
        assert len(rows) == 3
        marks = [m.text for m in browser.find_elements(By.CSS_SELECTOR, "#search-results mark")]
        assert marks and all(m.lower() == "refund" for m in marks), marks
        # Markup from the network is text: no element was made of it.
        assert browser.find_elements(By.CSS_SELECTOR, "#search-results img, "
                                     "#search-results b") == []
        shown = " ".join(r.text for r in rows)
        assert "<img src=x onerror=alert(1)> I want a refund <b>now</b>" in shown
        statuses = sorted(r.find_element(By.CSS_SELECTOR, ".chip").text for r in rows)
        assert statuses == ["Open", "Resolved", "Resolved"]
        assert inbox.axe_findings(browser) == []

        # A resolved one: its history, read-only, and Reopen.
        hostile = next(r for r in rows if "<img" in r.text)
        name = hostile.find_element(By.CSS_SELECTOR, ".row-name").text
        hostile.find_element(By.CSS_SELECTOR, "button").click()
        wait_for(lambda: browser.find_element(By.ID, "conversation-title").text == name,
                 what="the resolved one open")
        wait_for(lambda: browser.find_element(By.ID, "resolved-bar").is_displayed(),
                 what="read-only")
        assert not browser.find_element(By.ID, "composer").is_displayed()
        assert not browser.find_element(By.ID, "snooze-button").is_displayed()
        assert not browser.find_element(By.ID, "assignee").is_enabled()
        bubbles = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#entries .bubble")]
        assert SAID[7] in bubbles
        assert "selected" in hostile.get_attribute("class")
        assert inbox.axe_findings(browser) == []
        inbox.screenshot(browser, "inbox-search.png")
        browser.find_element(By.ID, "reopen").click()
        wait_for(lambda: browser.find_element(By.ID, "composer").is_displayed(), what="reopened")
        assert not browser.find_element(By.ID, "resolved-bar").is_displayed()
        assert browser.find_element(By.ID, "assignee").is_enabled()

        # Only resolved ones: one left (the other was just reopened).
        from selenium.webdriver.support.ui import Select

        Select(browser.find_element(By.ID, "search-status")).select_by_value("resolved")
        wait_for(lambda: summary(browser) == "1 conversation found", what="one resolved")
        assert "blue one" in results(browser)[0].text
        Select(browser.find_element(By.ID, "search-status")).select_by_value("")

        # Paging: every conversation says "order" once.
        search_for(browser, "arrived")
        wait_for(lambda: summary(browser) == "30 conversations found" and
                 len(results(browser)) == 20, what="the first page")
        more = browser.find_element(By.ID, "search-more")
        assert more.is_displayed()
        more.click()
        wait_for(lambda: len(results(browser)) == 30, what="the second page")
        assert not more.is_displayed()
        ids = [r.get_attribute("data-id") for r in results(browser)]
        assert len(set(ids)) == 30

        # Escape: the box empties and the live list is back.
        browser.find_element(By.ID, "search").send_keys(Keys.ESCAPE)
        wait_for(lambda: browser.find_element(By.ID, "conversations").is_displayed(),
                 what="the live list back")
        assert browser.find_element(By.ID, "search").get_attribute("value") == ""
        assert not browser.find_element(By.ID, "search-panel").is_displayed()
        assert inbox.problems(browser) == []
    finally:
        daemon.stop()


def test_on_redis_the_search_says_it_saw_live_conversations_only(
        redis_server: RedisServer, tmp_path: Path, chromium: Any) -> None:
    """
    A daemon whose conversations live in Redis (no search index): the search
    finds the open conversation and says that only open and snoozed ones
    were searched.
    """
    from selenium.webdriver.common.by import By

    config = tmp_path / "a.ini"
    config.write_text(config_text(redis_server, tmp_path, "a"), encoding="utf-8")
    daemon = Daemon(config)
    try:
        daemon.wait_for_log("live conversations loaded", timeout=10)
        ws, _ = visitor_on(daemon, "/support", None)
        say(ws, "My parcel to Lisbon is late", 1)
        browser = chromium
        inbox.sign_in(browser, daemon, inbox.ALICE)
        wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, ".conversation-row"),
                 what="the conversation listed")
        search_for(browser, "lisbon")
        wait_for(lambda: summary(browser) == "1 conversation found", what="found")
        scope = browser.find_element(By.ID, "search-scope")
        assert scope.is_displayed()
        assert "Open and snoozed conversations only" in scope.text
        assert [m.text for m in browser.find_elements(
            By.CSS_SELECTOR, "#search-results mark")] == ["Lisbon"]
        assert inbox.problems(browser) == []
        ws.close()
    finally:
        daemon.stop()
