"""
What a user trial of the web inbox found (issue 23), each fixed and checked
in headless Chromium against the real daemon:

1. a reply to a visitor who left: the visitor's presence (connected now,
   "last seen"), "Not connected: they will see your reply when they come
   back" under the composer, the email as a mailto link;
2. small screens: the side panel behind a "Details" toggle (aria-expanded),
   on a phone the list or the conversation with a back button;
3. resolved conversations browsed from the store ("Resolved" in the status
   filter: the search request with a status and no words), paged;
4. notes signed with the display name, addresses in the thread as links
   (rel=noopener), assignment and resolve as system lines, the Snooze
   button closed after a choice, times without a leading zero, "Offline —
   reconnecting" while the connection is lost.

Screenshots: WSDAEMON_INBOX_SCREENSHOTS=DIR saves inbox-narrow.png and
inbox-phone.png (and inbox-away.png) there.
"""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.daemon import Daemon
from tests.integration import test_inbox_browser as inbox
from tests.integration.test_conversations_redis import config_text
from tests.integration.test_inbox_panel import say, visitor_on
from tests.operator_client import operator_desk, request
from tests.redis_server import RedisServer

pytestmark = pytest.mark.slow

chromium = inbox.chromium
daemon = inbox.daemon
wait_for = inbox.wait_for


def by_css(browser: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(browser.find_elements(By.CSS_SELECTOR, selector))


def open_row(browser: Any, text: str) -> None:
    rows = wait_for(lambda: [r for r in by_css(browser, ".conversation-row") if text in r.text],
                    what=f"a row with {text!r}")
    rows[0].find_element("css selector", "button").click()
    wait_for(lambda: text in inbox.text_of(browser, "#entries"), what="the thread open")


def size(browser: Any, width: int, height: int) -> None:
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 500})


def test_a_reply_to_a_visitor_who_left(daemon: Daemon, chromium: Any) -> None:
    """
    Ann (email given) writes and is connected: the subtitle says so. She
    closes her tab: without reloading, the inbox says under the composer that
    she is not connected and will see the reply when she comes back, with her
    email as a mailto link (the side panel's email too); the reply's state
    says it waits for her. A web address in her message is a link (rel
    noopener, the markup beside it text). Bob's note is signed "Bob Chen"
    (his display name, not his login); her reply took the conversation
    ("Assigned to Alice Martin by you") and a transfer says "Transferred to
    Bob Chen by you"."""
    browser = chromium
    ann = inbox.visitor(daemon, name="Ann Lee", email="ann@example.com")
    ann.send('{"type": "message", "id": "m1", "text": "See https://shop.example/o/1234, <b>x</b>"}')
    inbox.next_of(ann, "ack")
    inbox.sign_in(browser, daemon, inbox.ALICE)
    open_row(browser, "shop.example")
    wait_for(lambda: "Connected now" in inbox.text_of(browser, "#conversation-subtitle"),
             what="connected now")
    assert not by_css(browser, "#visitor-away")[0].is_displayed()
    link = by_css(browser, "#entries .entry.visitor a")[0]
    assert link.get_attribute("href") == "https://shop.example/o/1234"
    assert link.text == "https://shop.example/o/1234"
    assert "noopener" in link.get_attribute("rel")
    assert "<b>x</b>" in inbox.text_of(browser, "#entries")
    panel_email = wait_for(lambda: by_css(browser, "#visitor-email a"), what="mailto in the panel")
    assert panel_email[0].get_attribute("href") == "mailto:ann@example.com"
    time_text = by_css(browser, "#entries .entry.visitor time")[0].text
    assert re.fullmatch(r"[1-9]\d?:\d\d(\s?[AaPp]\.?[Mm]\.?)?", time_text), time_text

    ann.close()
    away = by_css(browser, "#visitor-away")[0]
    wait_for(lambda: away.is_displayed(), what="the not-connected line")
    assert away.text.startswith("Not connected: they will see your reply when they come back")
    mailto = away.find_element("css selector", "a")
    assert mailto.get_attribute("href") == "mailto:ann@example.com"
    assert "Last seen" in inbox.text_of(browser, "#conversation-subtitle")
    assert "last seen" in inbox.text_of(browser, "#visitor-details")

    text = browser.find_element("id", "text")
    text.send_keys("It ships today.\n")
    wait_for(lambda: "waits for the visitor" in inbox.text_of(browser, "#entries .entry.operator"),
             what="the reply's state")
    browser.find_element("css selector", "input[name=mode][value=note]").click()
    text.send_keys("Checked the warehouse.\n")
    wait_for(lambda: by_css(browser, "#entries .entry.note"), what="the note")
    assert "You · private note" in inbox.text_of(browser, "#entries .entry.note")
    key = browser.execute_script(
        "return document.querySelector('.conversation-row.selected').dataset.id")
    with operator_desk(daemon, inbox.BOB) as bob:
        assert request(bob, {"type": "note", "conversation": key,
                             "text": "Bob here: refund approved."}, "n")["type"] == "ok"
    wait_for(lambda: "Bob Chen · private note" in inbox.text_of(browser, "#entries"),
             what="Bob's note signed with his display name")

    from selenium.webdriver.support.ui import Select

    # Her reply took the conversation (the daemon assigns who answers first).
    wait_for(lambda: "Assigned to Alice Martin by you" in inbox.text_of(browser, "#entries"),
             what="the assignment line")
    Select(browser.find_element("id", "assignee")).select_by_value("bob")
    wait_for(lambda: "Transferred to Bob Chen by you" in inbox.text_of(browser, "#entries"),
             what="the transfer line")
    assert inbox.axe_findings(browser) == []
    inbox.screenshot(browser, "inbox-away.png")
    assert inbox.problems(browser) == []


def test_snooze_closes_and_others_see_the_move(daemon: Daemon, chromium: Any) -> None:
    """After a snooze choice the Snooze button says aria-expanded=false; when
    Bob resolves it, Alice's open thread says "Resolved by Bob Chen"."""
    browser = chromium
    ann = inbox.visitor(daemon)
    ann.send('{"type": "message", "id": "m1", "text": "Hello there"}')
    inbox.next_of(ann, "ack")
    inbox.sign_in(browser, daemon, inbox.ALICE)
    open_row(browser, "Hello there")
    button = browser.find_element("id", "snooze-button")
    button.click()
    assert button.get_attribute("aria-expanded") == "true"
    browser.find_element("css selector", "[data-snooze='3600']").click()
    wait_for(lambda: "Snoozed" in inbox.text_of(browser, "#conversation-subtitle"),
             what="snoozed")
    assert button.get_attribute("aria-expanded") == "false"
    assert "Snoozed by you" in inbox.text_of(browser, "#entries")
    with operator_desk(daemon, inbox.BOB) as bob:
        key = browser.execute_script(
            "return document.querySelector('.conversation-row.selected').dataset.id")
        assert request(bob, {"type": "resolve", "conversation": key}, "x")["type"] == "ok"
        wait_for(lambda: "Resolved by Bob Chen" in inbox.text_of(browser, "#entries"),
                 what="Bob's resolve seen")
    ann.close()


def test_lost_connection_says_offline(daemon: Daemon, chromium: Any, tmp_path: Path) -> None:
    """The daemon gone: the green dot turns grey and "Offline — reconnecting"
    shows beside it; back, the dot is the availability again."""
    browser = chromium
    inbox.sign_in(browser, daemon, inbox.ALICE)
    dot = wait_for(lambda: [d for d in by_css(browser, "#availability-dot.online")],
                   what="online")[0]
    state = browser.find_element("id", "connection-state")
    assert not state.is_displayed()
    daemon.process.send_signal(signal.SIGKILL)
    daemon.process.wait(timeout=10)
    wait_for(lambda: state.is_displayed(), what="offline shown")
    assert state.text == "Offline — reconnecting"
    assert "online" not in dot.get_attribute("class")
    again = Daemon(tmp_path / "wsdaemon.ini", port=daemon.port)
    try:
        wait_for(lambda: not state.is_displayed(), timeout=40, what="reconnected")
        wait_for(lambda: "online" in dot.get_attribute("class"), what="online again")
    finally:
        again.stop()


def test_narrow_and_phone_layouts(daemon: Daemon, chromium: Any) -> None:
    """
    At 1024x640 the side panel is hidden behind "Details" (aria-expanded
    false), which opens it over the thread (Close details or Escape close it,
    the focus back on Details); at 390x740 the list fills the
    screen, a conversation replaces it (its thread the screen's width) and
    Back brings the list back. No serious axe finding either way.
    """
    browser = chromium
    ann = inbox.visitor(daemon, name="Ann Lee", email="ann@example.com")
    say(ann, "My parcel is late, order 1234.", 1)
    size(browser, 1024, 640)
    inbox.sign_in(browser, daemon, inbox.ALICE)
    open_row(browser, "parcel is late")
    toggle = browser.find_element("id", "panel-toggle")
    panel = browser.find_element("id", "panel")
    assert toggle.get_attribute("aria-expanded") == "false"
    assert not panel.is_displayed()
    toggle.send_keys("\n")
    wait_for(lambda: panel.is_displayed(), what="the panel opened by keyboard")
    assert toggle.get_attribute("aria-expanded") == "true"
    assert panel.rect["width"] >= 300
    assert inbox.axe_findings(browser) == []
    inbox.screenshot(browser, "inbox-narrow.png")
    browser.find_element("id", "panel-close").click()
    wait_for(lambda: not panel.is_displayed(), what="the panel closed")
    assert toggle.get_attribute("aria-expanded") == "false"
    assert browser.switch_to.active_element == toggle
    toggle.send_keys("\n")
    wait_for(lambda: panel.is_displayed(), what="open again")
    browser.switch_to.active_element.send_keys("\ue00c")  # Escape
    wait_for(lambda: not panel.is_displayed(), what="closed by Escape")
    assert toggle.get_attribute("aria-expanded") == "false"

    size(browser, 390, 740)
    browser.find_element("id", "back").click()
    sidebar = browser.find_element("css selector", ".sidebar")
    main = browser.find_element("id", "main")
    wait_for(lambda: sidebar.is_displayed() and not main.is_displayed(), what="list only")
    assert sidebar.rect["width"] >= 380
    open_row(browser, "parcel is late")
    wait_for(lambda: main.is_displayed() and not sidebar.is_displayed(), what="thread only")
    assert browser.find_element("id", "thread").rect["width"] >= 380
    assert browser.find_element("id", "text").rect["width"] >= 300
    assert inbox.axe_findings(browser) == []
    inbox.screenshot(browser, "inbox-phone.png")
    browser.find_element("id", "back").click()
    wait_for(lambda: sidebar.is_displayed() and not main.is_displayed(), what="back to the list")
    assert inbox.problems(browser) == []
    ann.close()


RESOLVED = frozenset(range(5, 60))


def test_resolved_conversations_are_browsed_from_the_store(tmp_path: Path,
                                                            chromium: Any) -> None:
    """
    55 resolved conversations of 60 in the store: the search request with
    status resolved and no words pages through them most recent first (50,
    then 5); without a status, no words is refused. "Resolved" in the
    status filter lists them, most recent first, and pages on scrolling.
    """
    (tmp_path / "canned.txt").write_text(inbox.CANNED, encoding="utf-8")
    (tmp_path / "identify.key").write_text(inbox.IDENTIFY_SECRET + "\n", encoding="utf-8")
    config = tmp_path / "wsdaemon.ini"
    config.write_text(inbox.CONFIG, encoding="utf-8")
    inbox.fill_conversations(tmp_path / "conversations.sqlite3", 60, time.time(),
                             resolved=RESOLVED)
    running = Daemon(config)
    try:
        running.wait_for_log("live conversations loaded", timeout=30)
        with operator_desk(running, inbox.BOB) as bob:
            first = request(bob, {"type": "search", "status": "resolved", "limit": 50}, "a")
            assert first["type"] == "ok", first
            assert first["total"] == 55 and first["more"] is True
            shown = [r["conversation"]["visitor"] for r in first["results"]]
            assert shown == [f"visitor-{n:06d}" for n in range(59, 9, -1)]
            assert all(r["conversation"]["status"] == "resolved" for r in first["results"])
            second = request(bob, {"type": "search", "status": "resolved", "limit": 50,
                                   "after": first["next"]}, "b")
            assert [r["conversation"]["visitor"] for r in second["results"]] == [
                f"visitor-{n:06d}" for n in range(9, 4, -1)]
            assert second["more"] is False
            refused = request(bob, {"type": "search"}, "c")
            assert refused["type"] == "error" and "'text'" in refused["error"]

        browser = chromium
        inbox.sign_in(browser, running, inbox.ALICE)
        wait_for(lambda: len(by_css(browser, ".conversation-row")) == 5, what="5 open")
        from selenium.webdriver.support.ui import Select

        Select(browser.find_element("id", "status-filter")).select_by_value("resolved")
        wait_for(lambda: len(by_css(browser, ".conversation-row")) == 50, what="a page")
        assert "55 conversations resolved" in inbox.text_of(browser, "#list-summary")
        ids = browser.execute_script(
            "return [...document.querySelectorAll('.conversation-row')].map(r => r.dataset.id)")
        assert ids == [r["conversation"]["id"] for r in first["results"]]
        browser.execute_script(
            "const l = document.getElementById('conversations'); l.scrollTop = l.scrollHeight;")
        wait_for(lambda: len(by_css(browser, ".conversation-row")) == 55, what="the next page")
        by_css(browser, ".conversation-row button")[0].click()
        wait_for(lambda: browser.find_element("id", "resolved-bar").is_displayed(),
                 what="a resolved one open, read-only")
        assert inbox.axe_findings(browser) == []
        assert inbox.problems(browser) == []
    finally:
        running.stop()


def test_on_redis_resolved_ones_cannot_be_listed_and_presence_is_unknown(
        redis_server: RedisServer, tmp_path: Path, chromium: Any) -> None:
    """
    Conversations in Redis (no index, other daemons may hold the visitors):
    "Resolved" lists none and says why; a visitor connected here is
    "Connected now", and once gone it is unknown (perhaps on another daemon),
    so no "Not connected" line is shown.
    """
    config = tmp_path / "a.ini"
    config.write_text(config_text(redis_server, tmp_path, "a"), encoding="utf-8")
    running = Daemon(config)
    try:
        running.wait_for_log("live conversations loaded", timeout=10)
        ws, _ = visitor_on(running, "/support", None)
        say(ws, "My parcel to Lisbon is late", 1)
        with operator_desk(running, inbox.BOB) as bob:
            browsed = request(bob, {"type": "search", "status": "resolved"}, "a")
            assert browsed["type"] == "ok" and browsed["scope"] == "live"
            assert browsed["results"] == [] and browsed["total"] == 0
        browser = chromium
        inbox.sign_in(browser, running, inbox.ALICE)
        open_row(browser, "Lisbon")
        wait_for(lambda: "Connected now" in inbox.text_of(browser, "#conversation-subtitle"),
                 what="connected here")
        ws.close()
        wait_for(lambda: "Connected now" not in inbox.text_of(browser, "#conversation-subtitle"),
                 what="gone from here")
        assert not browser.find_element("id", "visitor-away").is_displayed()
        assert "Not connected" not in inbox.text_of(browser, "#conversation-subtitle")
        from selenium.webdriver.support.ui import Select

        Select(browser.find_element("id", "status-filter")).select_by_value("resolved")
        wait_for(lambda: "keeps no list of resolved conversations"
                 in inbox.text_of(browser, "#list-end"), what="said why")
        assert by_css(browser, ".conversation-row") == []
        assert inbox.problems(browser) == []
    finally:
        running.stop()
