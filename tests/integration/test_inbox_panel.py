"""
The web inbox's side panel, "Previous conversations" (issue 23), in headless
Chromium against the real daemon: a visitor who wrote on two routes, and
whose conversation was resolved and reopened. The panel links the other
route's conversation (opening it) and each episode of this one (showing
where it began in the thread, marked "Reopened").

Screenshot for the README: WSDAEMON_INBOX_SCREENSHOTS=DIR saves
inbox-panel.png there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin, Subprotocol

from tests.daemon import Daemon
from tests.integration import test_inbox_browser as inbox
from tests.operator_client import operator_desk, request

pytestmark = pytest.mark.slow

chromium = inbox.chromium
wait_for = inbox.wait_for


def visitor_on(daemon: Daemon, route: str, cookie: str | None) -> tuple[ClientConnection, str]:
    """A structured visitor on C{route} (as the same browser when C{cookie} is given)."""
    headers = {"Cookie": cookie} if cookie else {}
    ws = connect(f"{daemon.url}{route}", subprotocols=[Subprotocol(inbox.CHAT)],
                 origin=Origin(daemon.http), additional_headers=headers)
    if cookie is None:
        assert ws.response is not None
        cookie = ws.response.headers["Set-Cookie"].split(";", 1)[0]
    ws.send(json.dumps({"type": "hello"}))
    inbox.next_of(ws, "welcome")
    return ws, cookie


def say(ws: ClientConnection, text: str, n: int) -> None:
    ws.send(json.dumps({"type": "message", "id": f"m{n}", "text": text}))
    inbox.next_of(ws, "ack")


def test_previous_conversations_link_other_routes_and_episodes(tmp_path: Path,
                                                                chromium: Any) -> None:
    """
    Ann asks about an order on /support (resolved), comes back (reopened), and
    asks /sales about a discount. Opening her /support conversation, the panel
    lists "On /sales" and two episodes; the first episode's link shows its
    first message; the thread marks where the second began; "On /sales"
    opens that conversation. No CSP violation, no serious axe finding.
    """
    from selenium.webdriver.common.by import By

    (tmp_path / "canned.txt").write_text(inbox.CANNED, encoding="utf-8")
    (tmp_path / "identify.key").write_text(inbox.IDENTIFY_SECRET + "\n", encoding="utf-8")
    config = tmp_path / "wsdaemon.ini"
    config.write_text(inbox.CONFIG + "\n[route:/sales]\nstrategy = operator\n", encoding="utf-8")
    daemon = Daemon(config)
    try:
        support, cookie = visitor_on(daemon, "/support", None)
        say(support, "Where is my order 1234?", 1)
        with operator_desk(daemon, inbox.BOB) as bob:
            listed = request(bob, {"type": "conversations", "view": "all"}, "l")
            key = listed["conversations"][0]["id"]
            assert request(bob, {"type": "reply", "conversation": key,
                                 "text": "It ships today."}, "r")["type"] == "ok"
            assert request(bob, {"type": "resolve", "conversation": key}, "x")["type"] == "ok"
        say(support, "It did not arrive after all.", 2)
        sales, _ = visitor_on(daemon, "/sales", cookie)
        say(sales, "Is there a discount for schools?", 3)

        browser = chromium
        inbox.sign_in(browser, daemon, inbox.ALICE)
        rows = wait_for(lambda: [r for r in browser.find_elements(
            By.CSS_SELECTOR, ".conversation-row") if "did not arrive" in r.text],
            what="the /support conversation listed")
        rows[0].find_element(By.CSS_SELECTOR, "button").click()
        links = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#previous .previous-link"),
                         what="previous conversations")
        texts = [link.text for link in links]
        assert texts[0] == "On /sales"
        assert texts[1].startswith("Episode 1 · ")
        assert texts[2].startswith("This episode · reopened")
        assert "Is there a discount" in inbox.text_of(browser, "#previous")
        marked = browser.find_elements(By.CSS_SELECTOR, "#entries .episode-start")
        assert len(marked) == 1 and "It did not arrive" in marked[0].text
        assert marked[0].get_attribute("data-episode").startswith("Reopened · ")
        assert inbox.axe_findings(browser) == []
        inbox.screenshot(browser, "inbox-panel.png")

        links[1].click()
        wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#entries .entry.pointed"),
                 what="the first episode pointed out")
        pointed = browser.find_element(By.CSS_SELECTOR, "#entries .entry.pointed")
        assert "Where is my order 1234?" in pointed.text

        links[0].click()
        wait_for(lambda: "Is there a discount" in inbox.text_of(browser, "#entries"),
                 what="the /sales conversation open")
        assert "/sales" in inbox.text_of(browser, "#visitor-details")
        back = wait_for(lambda: [link for link in browser.find_elements(
            By.CSS_SELECTOR, "#previous .previous-link") if link.text == "On /support"],
            what="a link back to /support")
        assert back
        assert inbox.problems(browser) == []
        support.close()
        sales.close()
    finally:
        daemon.stop()


def test_an_operator_who_never_connected_is_listed_offline_and_assignable(
        tmp_path: Path, chromium: Any) -> None:
    """
    Bob is configured but has never connected: the assign list shows him
    offline from the start, and alice gives him the conversation (manual
    routing: it waits for him); the list row says so.
    """
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    (tmp_path / "canned.txt").write_text(inbox.CANNED, encoding="utf-8")
    (tmp_path / "identify.key").write_text(inbox.IDENTIFY_SECRET + "\n", encoding="utf-8")
    config = tmp_path / "wsdaemon.ini"
    config.write_text(inbox.CONFIG, encoding="utf-8")
    daemon = Daemon(config)
    try:
        ws, _ = visitor_on(daemon, "/support", None)
        say(ws, "Hello, anyone?", 1)
        browser = chromium
        inbox.sign_in(browser, daemon, inbox.ALICE)
        row = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, ".conversation-row"),
                       what="the conversation")
        row[0].find_element(By.CSS_SELECTOR, "button").click()
        options = wait_for(lambda: [o.text for o in browser.find_elements(
            By.CSS_SELECTOR, "#assignee option") if "Bob" in o.text], what="bob listed")
        assert options == ["Bob Chen · offline"]
        Select(browser.find_element(By.ID, "assignee")).select_by_value("bob")
        wait_for(lambda: "Bob Chen" in inbox.text_of(browser, ".conversation-row"),
                 what="assigned to bob")
        assert inbox.text_of(browser, "#banner") == "" or not browser.find_element(
            By.ID, "banner").is_displayed()
        assert inbox.problems(browser) == []
        ws.close()
    finally:
        daemon.stop()
