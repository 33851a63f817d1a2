"""
The operators' web inbox (issue 23, item 1) in headless Chromium against the
real daemon (`[operator] model = conversations`), with a structured visitor
speaking `wsdaemon.chat.v1` over `websockets`: the whole flow an operator
lives in, errors where the eye is, no CSP violation, no serious or critical
axe-core finding.

Screenshots for the README: WSDAEMON_INBOX_SCREENSHOTS=DIR saves inbox.png
and inbox-conversation.png (1280x800) there.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin, Subprotocol

from tests.conftest import CHROMEDRIVER, CHROMIUM, require_tool
from tests.daemon import REPO, Daemon

pytestmark = pytest.mark.slow

ALICE = "alice-token-0123456789abcdef"
BOB = "bob-token-0123456789abcdefgh"
ACK = "Thanks! We will be with you shortly."
CHAT = "wsdaemon.chat.v1"
NPM_HOME = Path(os.environ.get("WSDAEMON_NPM_HOME", "/opt/wsdaemon-npm"))
AXE = NPM_HOME / "node_modules" / "axe-core" / "axe.min.js"

CONFIG = f"""
[wsdaemon]
listen = tcp:0:interface=127.0.0.1

[operator]
model = conversations
tokens = alice:{ALICE}
  bob:{BOB}
display_names = alice: Alice Martin
  bob: Bob Chen
canned_file = canned.txt
store = conversations.sqlite3
ack_message = {ACK}
offline_message =
fallback_after = 0

[route:/support]
strategy = operator
identity_hash_secret_file = identify.key
"""

#: The site's secret for identify hashes (the route's identity_hash_secret_file).
IDENTIFY_SECRET = "site-secret-0123456789abcdef0123456789"

CANNED = """# the team's replies
/late Sorry {name}, this is {operator}: it ships today.
/hello Hello {name}! How can I help?
/refund Refunds take 5 working days.
"""


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    (tmp_path / "canned.txt").write_text(CANNED, encoding="utf-8")
    (tmp_path / "identify.key").write_text(IDENTIFY_SECRET + "\n", encoding="utf-8")
    config = tmp_path / "wsdaemon.ini"
    config.write_text(CONFIG, encoding="utf-8")
    running = Daemon(config)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def chromium() -> Iterator[Any]:
    """Headless Chromium whose console log the test reads (CSP reports land there)."""
    require_tool(Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists(),
                 "Chromium and chromedriver (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="wsdaemon-inbox-")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(20)
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": False})
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(condition: Callable[[], Any], timeout: float = 15, what: str = "") -> Any:
    """Retry C{condition} until it holds (elements may be redrawn under us)."""
    from selenium.common.exceptions import (
        NoSuchElementException,
        StaleElementReferenceException,
    )

    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
        except (StaleElementReferenceException, NoSuchElementException):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {timeout} s: {what}")
        time.sleep(0.05)


def visitor(daemon: Daemon, **profile: Any) -> ClientConnection:
    """A structured visitor; with C{profile} (name, email, attributes) it
    identifies as the site's backend would sign it."""
    import hashlib
    import hmac

    ws = connect(f"{daemon.url}/support", subprotocols=[Subprotocol(CHAT)],
                 origin=Origin(daemon.http))
    ws.send(json.dumps({"type": "hello"}))
    welcome = next_of(ws, "welcome")
    if profile:
        digest = hmac.new(IDENTIFY_SECRET.encode(), welcome["visitor"].encode(),
                          hashlib.sha256).hexdigest()
        ws.send(json.dumps({"type": "identify", "hash": digest, **profile}))
        assert next_of(ws, "ok")["request"] == "identify"
    return ws


def next_of(ws: ClientConnection, kind: str, timeout: float = 10) -> dict[str, Any]:
    """The visitor's next frame of C{kind} (others skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        frame = json.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic())))
        if frame.get("type") == kind:
            return dict(frame)


def text_of(browser: Any, selector: str) -> str:
    """The text of the first match; the list redraws its rows as events come,
    so an element found may be replaced before it is read: read it again."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    for _ in range(20):
        try:
            return str(browser.find_element(By.CSS_SELECTOR, selector).text)
        except StaleElementReferenceException:
            time.sleep(0.05)
    raise AssertionError(f"{selector} kept being redrawn")


def sign_in(browser: Any, daemon: Daemon, token: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{daemon.http}/console")
    field = wait_for(lambda: browser.find_element(By.ID, "token"), what="the sign-in form")
    field.clear()
    field.send_keys(token)
    browser.find_element(By.ID, "signin-button").click()


def problems(browser: Any) -> list[str]:
    """Console messages that are errors or CSP violations."""
    return [entry["message"] for entry in browser.get_log("browser")
            if entry["level"] == "SEVERE" or "Content Security Policy" in entry["message"]]


def axe_findings(browser: Any) -> list[str]:
    """Serious and critical axe-core violations on the page as it is now."""
    require_tool(AXE.exists(), f"axe-core in {NPM_HOME} (scripts/install-test-deps.sh)")
    browser.execute_script(AXE.read_text(encoding="utf-8"))
    result = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']}).then(r => done(r.violations),"
        " e => done(String(e)));")
    assert isinstance(result, list), result
    return [f"{v['id']} ({v['impact']}): {v['help']} at "
            f"{[n['target'] for n in v['nodes']][:3]}"
            for v in result if v["impact"] in ("serious", "critical")]


def screenshot(browser: Any, name: str) -> None:
    folder = os.environ.get("WSDAEMON_INBOX_SCREENSHOTS")
    if folder:
        browser.save_screenshot(str(Path(folder) / name))


def test_an_operator_answers_a_visitor_from_the_inbox(daemon: Daemon, chromium: Any) -> None:
    """
    Alice signs in; a visitor's conversation appears live; she opens it, sees
    the visitor type, answers with a canned reply chosen on "/", which the
    visitor gets with her display name; the visitor's read receipt shows;
    a private note is styled apart and never reaches the visitor; "e"
    resolves and the conversation leaves the list; the visitor writes again
    and it is back. Visitor text is shown as text. No CSP violation, no
    serious or critical axe-core finding.
    """
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser = chromium
    find = browser.find_element
    sign_in(browser, daemon, ALICE)
    wait_for(lambda: find(By.ID, "me").text == "Alice Martin", what="signed in")
    assert not find(By.ID, "app").get_attribute("hidden")
    wait_for(lambda: find(By.ID, "availability").get_attribute("value") == "online",
             what="online on sign-in")

    guest = visitor(daemon)
    guest.send(json.dumps({"type": "message", "id": "c-1",
                           "text": "My parcel <b>is</b> late <img src=x onerror=alert(1)>"}))
    ack = next_of(guest, "ack")
    row = wait_for(lambda: find(By.CSS_SELECTOR, ".conversation-row"), what="the row")
    wait_for(lambda: "My parcel <b>is</b> late" in row.text, what="the preview, as text")
    alias = text_of(browser, ".row-name")
    assert alias.startswith("Visitor ")
    wait_for(lambda: text_of(browser, ".conversation-row .badge") == "1", what="1 unread")
    assert "Unassigned" in row.text or "You" in row.text
    screenshot(browser, "inbox-list.png")

    row.find_element(By.CSS_SELECTOR, "button").click()
    wait_for(lambda: find(By.ID, "conversation-title").text == alias, what="opened")
    wait_for(lambda: "My parcel <b>is</b> late" in text_of(browser, "#entries .entry.visitor"),
             what="the visitor's message")
    assert not browser.find_elements(By.CSS_SELECTOR, "#entries b, #entries img")
    assert ACK in text_of(browser, "#entries .entry.system")
    wait_for(lambda: not browser.find_elements(By.CSS_SELECTOR, ".conversation-row .badge"),
             what="read on opening")

    guest.send(json.dumps({"type": "typing", "on": True}))
    wait_for(lambda: f"{alias} is typing" in find(By.ID, "typing").text, what="typing shown")

    box = find(By.ID, "text")
    box.send_keys("/la")
    wait_for(lambda: find(By.ID, "canned").is_displayed(), what="the canned menu")
    assert "/late" in text_of(browser, "#canned .canned-item.active")
    box.send_keys(Keys.ENTER)
    expected = f"Sorry {alias}, this is Alice Martin: it ships today."
    wait_for(lambda: box.get_attribute("value") == expected, what="the canned reply filled in")
    assert next_of(guest, "typing") == {"type": "typing", "on": True, "name": "Alice Martin"}
    box.send_keys(Keys.ENTER)
    reply = next_of(guest, "message")
    while reply["author"] != "operator":
        reply = next_of(guest, "message")
    assert reply["text"] == expected and reply["name"] == "Alice Martin"
    wait_for(lambda: box.get_attribute("value") == "", what="the composer emptied")
    mine = wait_for(lambda: text_of(browser, "#entries .entry.operator"), what="the reply")
    assert expected in mine and "You" in mine
    guest.send(json.dumps({"type": "read", "upto": reply["seq"]}))
    wait_for(lambda: "Read" in text_of(browser, "#entries .entry.operator .state"),
             what="the read tick")

    # Shift+Enter: a new line; Enter sends both lines as one message.
    box.send_keys("Tracking: 1Z999")
    box.send_keys(Keys.SHIFT, Keys.ENTER)
    box.send_keys("Arrives Friday", Keys.ENTER)
    second = next_of(guest, "message")
    while second["author"] != "operator":
        second = next_of(guest, "message")
    assert second["text"] == "Tracking: 1Z999\nArrives Friday"

    # A private note: styled apart, never sent to the visitor.
    find(By.CSS_SELECTOR, "input[name=mode][value=note]").click()
    box.send_keys("VIP customer, be nice", Keys.ENTER)
    note = wait_for(lambda: text_of(browser, "#entries .entry.note"), what="the note")
    assert "VIP customer" in note and "private note" in note
    find(By.CSS_SELECTOR, "input[name=mode][value=reply]").click()
    with pytest.raises(TimeoutError):
        next_of(guest, "message", timeout=0.5)  # the note stays with the team
    screenshot(browser, "inbox-conversation.png")

    # Accessibility and CSP, with everything on screen.
    assert axe_findings(browser) == []
    assert problems(browser) == []

    # Resolve with "e" (focus off the composer first).
    box.send_keys(Keys.ESCAPE)
    find(By.TAG_NAME, "body").send_keys("e")
    assert next_of(guest, "status") == {"type": "status", "status": "resolved"}
    wait_for(lambda: not browser.find_elements(By.CSS_SELECTOR, ".conversation-row"),
             what="resolved: out of the list")
    wait_for(lambda: find(By.ID, "resolve").text == "Reopen", what="the button says Reopen")

    guest.send(json.dumps({"type": "message", "id": "c-2", "text": "One more question"}))
    assert next_of(guest, "ack")["seq"] > ack["seq"]
    wait_for(lambda: "One more question" in text_of(browser, ".conversation-row"),
             what="reopened in the list")
    wait_for(lambda: "One more question" in text_of(browser, "#entries"), what="in the thread")
    assert problems(browser) == []
    guest.close()


def test_help_labels_assign_and_keyboard(daemon: Daemon, chromium: Any) -> None:
    """
    "?" shows the shortcuts; j moves to a conversation; the side panel shows
    who an identified visitor is (name, email, attributes, as text); labels
    are added and removed there; assigning to a colleague shows in the list;
    a colleague viewing and typing in the same conversation is shown.
    """
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.select import Select

    browser = chromium
    find = browser.find_element
    # Alice on the team (online, from another client) so Bob can assign to her.
    alice = connect(f"{daemon.url}/operator",
                    additional_headers={"Authorization": f"Bearer {ALICE}"})
    next_of(alice, "hello")
    alice.send(json.dumps({"type": "availability", "availability": "online", "id": 1}))
    next_of(alice, "ok")
    first = visitor(daemon, name="Ann <i>Lee</i>", email="ann@example.com",
                    attributes={"plan": "Pro", "orders": "12"})
    second = visitor(daemon)
    first.send(json.dumps({"type": "message", "id": "a", "text": "first visitor"}))
    next_of(first, "ack")
    second.send(json.dumps({"type": "message", "id": "b", "text": "second visitor"}))
    next_of(second, "ack")
    sign_in(browser, daemon, BOB)
    wait_for(lambda: len(browser.find_elements(By.CSS_SELECTOR, ".conversation-row")) == 2,
             what="two rows")
    body = find(By.TAG_NAME, "body")
    body.send_keys("?")
    wait_for(lambda: find(By.ID, "help").is_displayed(), what="help")
    assert "Next conversation" in find(By.ID, "help").text
    assert axe_findings(browser) == []  # the dialog open
    find(By.ID, "help-close").click()
    wait_for(lambda: not find(By.ID, "help").is_displayed(), what="help closed")
    body.send_keys("j")
    wait_for(lambda: "first visitor" in text_of(browser, "#entries"), what="j opened the first")
    assert text_of(browser, "#visitor-name") == "Ann <i>Lee</i>"
    assert text_of(browser, "#visitor-email") == "ann@example.com"
    details = text_of(browser, "#visitor-details")
    assert "plan\nPro" in details and "orders\n12" in details, details
    assert "Ann <i>Lee</i>" in text_of(browser, ".conversation-row.selected")
    assert not browser.find_elements(By.CSS_SELECTOR, "#panel i, .conversations i")
    body.send_keys("j")
    wait_for(lambda: "second visitor" in text_of(browser, "#entries"), what="j: the next")

    field = find(By.ID, "label-input")
    field.send_keys("billing\n")
    wait_for(lambda: "billing" in text_of(browser, "#labels"), what="label added")
    wait_for(lambda: "billing" in text_of(browser, ".conversation-row.selected"),
             what="label in the list")
    find(By.CSS_SELECTOR, "#labels .chip-remove").click()
    wait_for(lambda: "billing" not in text_of(browser, "#labels"), what="label removed")

    Select(find(By.ID, "assignee")).select_by_value("alice")
    wait_for(lambda: "Alice Martin" in text_of(browser, ".conversation-row.selected"),
             what="assigned to Alice")

    # A colleague opens the same conversation and types: Bob sees both.
    selected = find(By.CSS_SELECTOR, ".conversation-row.selected").get_attribute("data-id")
    alice.send(json.dumps({"type": "open", "conversation": selected, "id": 2}))
    wait_for(lambda: "Also viewing: Alice Martin" in text_of(browser, "#conversation-subtitle"),
             what="viewing")
    alice.send(json.dumps({"type": "typing", "conversation": selected, "on": True, "id": 3}))
    wait_for(lambda: "Alice Martin is typing" in find(By.ID, "typing").text, what="typing")
    alice.send(json.dumps({"type": "close", "id": 4}))
    wait_for(lambda: "Also viewing" not in text_of(browser, "#conversation-subtitle"),
             what="no longer viewing")

    # Alt+Up: back to the first; snooze it until the visitor replies.
    body.send_keys(Keys.ALT, Keys.ARROW_UP)
    wait_for(lambda: "first visitor" in text_of(browser, "#entries"), what="Alt+Up: previous")
    find(By.ID, "snooze-button").click()
    find(By.CSS_SELECTOR, "[data-snooze=reply]").click()
    wait_for(lambda: "Snoozed" in text_of(browser, ".conversation-row.selected"),
             what="snoozed in the list")
    assert "Snoozed" in text_of(browser, "#conversation-subtitle")

    # Bob goes away: his colleagues are told.
    Select(find(By.ID, "availability")).select_by_value("away")
    while True:
        team = next_of(alice, "team")
        if team["operator"]["name"] == "bob" and team["operator"]["availability"] == "away":
            break
    assert "away" in find(By.ID, "availability-dot").get_attribute("class")
    find(By.ID, "settings-button").click()
    wait_for(lambda: find(By.ID, "settings").is_displayed(), what="the settings menu")
    assert axe_findings(browser) == []  # a menu open, a snoozed conversation shown
    assert problems(browser) == []
    for ws in (first, second, alice):
        ws.close()


def test_a_wrong_token_is_refused_on_the_form(daemon: Daemon, chromium: Any) -> None:
    """A wrong token: the sign-in form says so, under the field."""
    from selenium.webdriver.common.by import By

    sign_in(chromium, daemon, "not-a-token-of-this-team")
    error = wait_for(lambda: chromium.find_element(By.ID, "signin-error"), what="the error")
    wait_for(lambda: error.is_displayed() and "refused this token" in error.text,
             what="the error on the form")
    assert chromium.find_element(By.ID, "token").get_attribute("aria-invalid") == "true"
    assert not chromium.find_element(By.ID, "app").is_displayed()
    assert axe_findings(chromium) == []


def test_a_revoked_token_signs_out_saying_so(daemon: Daemon, chromium: Any,
                                            tmp_path: Path) -> None:
    """A reload that removes Bob's token closes his inbox (4001): the sign-in
    form says the token was revoked."""
    import signal

    from selenium.webdriver.common.by import By

    sign_in(chromium, daemon, BOB)
    wait_for(lambda: chromium.find_element(By.ID, "me").text == "Bob Chen", what="in")
    config = tmp_path / "wsdaemon.ini"
    config.write_text(config.read_text().replace(f"  bob:{BOB}\n", "")
                      .replace("  bob: Bob Chen\n", ""), encoding="utf-8")
    daemon.process.send_signal(signal.SIGHUP)
    error = chromium.find_element(By.ID, "signin-error")
    wait_for(lambda: error.is_displayed() and "revoked" in error.text, what="revoked on the form")
    assert not chromium.find_element(By.ID, "app").is_displayed()


def test_a_lost_daemon_shows_the_reconnecting_banner(daemon: Daemon, chromium: Any,
                                                     tmp_path: Path) -> None:
    """The daemon killed: a banner says the connection is lost and when it
    tries again; the inbox stays on screen. The daemon back on its port: the
    inbox reconnects by itself and the banner goes."""
    import signal

    from selenium.webdriver.common.by import By

    sign_in(chromium, daemon, ALICE)
    wait_for(lambda: chromium.find_element(By.ID, "me").text == "Alice Martin", what="in")
    daemon.process.send_signal(signal.SIGKILL)
    daemon.process.wait(timeout=10)
    banner = chromium.find_element(By.ID, "banner")
    wait_for(lambda: banner.is_displayed() and "Reconnecting" in banner.text, what="banner")
    assert "Connection lost" in banner.text
    assert chromium.find_element(By.ID, "app").is_displayed()
    again = Daemon(tmp_path / "wsdaemon.ini", port=daemon.port)
    try:
        wait_for(lambda: not banner.is_displayed(), timeout=40, what="reconnected")
        assert chromium.find_element(By.ID, "me").text == "Alice Martin"
    finally:
        again.stop()


def fill_conversations(path: Path, count: int, now: float, chatter: int = 0,
                       resolved: frozenset[int] = frozenset(),
                       said: dict[int, str] | None = None) -> None:
    """C{count} open conversations, each waiting on a visitor's message after
    an answer (after C{chatter} more messages before them); those numbered in
    C{resolved} resolved instead; C{said}: a visitor's last message by number."""
    import sqlite3

    from wsdaemon.conversations.model import (
        Author,
        Conversation,
        Message,
        Status,
        conversation_id_for,
    )
    from wsdaemon.support.schema import SCHEMA, insert_conversation, insert_message

    db = sqlite3.connect(path)
    db.executescript(SCHEMA)
    db.execute("CREATE TABLE IF NOT EXISTS wsdaemon_migrations (name TEXT PRIMARY KEY)")
    with db:
        for n in range(count):
            visitor_id = f"visitor-{n:06d}"
            key = conversation_id_for("/support", visitor_id)
            opened = now - 2 * count + n
            texts = [(Author.VISITOR, f"Hello, order {n} has not arrived"),
                     *((Author.OPERATOR if i % 2 else Author.VISITOR, f"chatter {i}")
                       for i in range(chatter)),
                     (Author.OPERATOR, "Let me check that for you."),
                     (Author.VISITOR, (said or {}).get(n, f"Thanks. It is order number {n}."))]
            for seq, (author, text) in enumerate(texts, start=1):
                insert_message(db, Message(key, seq, author, text, opened + seq,
                                           "alice" if author is Author.OPERATOR else None))
            done = n in resolved
            insert_conversation(db, Conversation(
                conversation_id=key, route="/support", visitor=visitor_id, created_at=opened,
                opened_at=opened, last_activity_at=opened + len(texts),
                status=Status.RESOLVED if done else Status.OPEN,
                resolved_at=opened + len(texts) if done else None,
                version=1, last_seq=len(texts),
                waiting_since=None if done else opened + len(texts), unanswered=0 if done else 1,
                delivered_upto=len(texts),
                recent_visitor_seqs=(1, 3), ack_sent=True, preview=texts[-1][1]))
    db.close()


FIRST_ROWS = """
const done = arguments[arguments.length - 1];
const started = performance.now();
const list = document.getElementById('conversations');
const check = () => {
  if (list.children.length) { done(performance.now() - started); return true; }
  return false;
};
if (!check()) { new MutationObserver((m, o) => { if (check()) { o.disconnect(); } })
  .observe(list, {childList: true}); }
document.getElementById('signin-button').click();
"""

SWITCH = """
const [index, done] = [arguments[0], arguments[arguments.length - 1]];
const row = document.querySelectorAll('.conversation-row')[index];
const name = row.querySelector('.row-name').textContent;
const started = performance.now();
const title = document.getElementById('conversation-title');
const entries = document.getElementById('entries');
const poll = () => {
  if (title.textContent === name && entries.children.length === 3) {
    done(performance.now() - started);
  } else { requestAnimationFrame(poll); }
};
row.querySelector('button').click();
poll();
"""


SEARCH = """
const [text, done] = [arguments[0], arguments[arguments.length - 1]];
const box = document.getElementById('search');
const summary = document.getElementById('search-summary');
const panel = document.getElementById('search-panel');
const started = performance.now();
const finished = () => text ? summary.textContent === '1 conversation found' : panel.hidden;
new MutationObserver((m, o) => {
  if (finished()) { o.disconnect(); done(performance.now() - started); }
}).observe(document.querySelector('.sidebar'),
           {childList: true, characterData: true, subtree: true, attributes: true});
box.value = text;
box.dispatchEvent(new Event('input'));
"""

TAB = """
const [id, done] = [arguments[0], arguments[arguments.length - 1]];
const summary = document.getElementById('list-summary');
const before = summary.textContent;
const started = performance.now();
new MutationObserver((m, o) => { o.disconnect(); done(performance.now() - started); })
  .observe(summary, {childList: true, characterData: true, subtree: true});
document.getElementById(id).click();
"""


def test_the_inbox_stays_fast_with_10000_open_conversations(tmp_path: Path,
                                                             chromium: Any) -> None:
    """
    10,000 open conversations: the first list comes in one page (50 rows,
    not 10,000), the total is told, the next page comes on scrolling, and
    opening a conversation takes one round trip. Measured in Chromium
    (printed; bounds generous for a loaded CI machine).
    """
    import statistics

    from selenium.webdriver.common.by import By

    (tmp_path / "canned.txt").write_text(CANNED, encoding="utf-8")
    (tmp_path / "identify.key").write_text(IDENTIFY_SECRET + "\n", encoding="utf-8")
    config = tmp_path / "wsdaemon.ini"
    config.write_text(CONFIG, encoding="utf-8")
    fill_conversations(tmp_path / "conversations.sqlite3", 10_000, time.time())
    daemon = Daemon(config)
    try:
        daemon.wait_for_log("10000 live conversations loaded", timeout=60)
        browser = chromium
        browser.set_script_timeout(30)
        browser.get(f"{daemon.http}/console")
        browser.find_element(By.ID, "token").send_keys(ALICE)
        first_list = browser.execute_async_script(FIRST_ROWS)
        rows = browser.find_elements(By.CSS_SELECTOR, ".conversation-row")
        assert len(rows) == 50  # the greeting's page
        wait_for(lambda: "10000 conversations" in browser.find_element(
            By.ID, "list-summary").text, what="the total")
        switches = [browser.execute_async_script(SWITCH, i) for i in range(0, 50, 5)]
        found = browser.execute_async_script(SEARCH, "order number 9876")
        assert "order number 9876" in text_of(browser, "#search-results .result-row")
        browser.execute_async_script(SEARCH, "")
        assert browser.find_element(By.ID, "conversations").is_displayed()
        tab = browser.execute_async_script(TAB, "tab-unassigned")
        browser.get(f"{daemon.http}/console")  # a reload: signed in again from the session
        reload = browser.execute_script(
            "return performance.getEntriesByType('navigation')[0].startTime")
        wait_for(lambda: len(browser.find_elements(By.CSS_SELECTOR, ".conversation-row")) == 50,
                 what="rows after a reload")
        loaded = browser.execute_script("return performance.now()") - reload
        browser.execute_async_script(SWITCH, 0)
        browser.execute_script(
            "const l = document.getElementById('conversations'); l.scrollTop = l.scrollHeight;")
        wait_for(lambda: len(browser.find_elements(By.CSS_SELECTOR, ".conversation-row")) == 150,
                 what="the next page on scrolling")
        # A change to the open conversation redraws the list, which stays
        # where the operator scrolled it.
        scrolled = browser.execute_script(
            "return document.getElementById('conversations').scrollTop")
        assert scrolled > 1000
        browser.find_element(By.ID, "label-input").send_keys("checked\n")
        wait_for(lambda: "checked" in text_of(browser, ".conversation-row.selected"),
                 what="redrawn")
        assert abs(browser.execute_script(
            "return document.getElementById('conversations').scrollTop") - scrolled) < 50
        print(f"\n10,000 open: first list {first_list:.0f} ms after sign-in, page reload to rows "
              f"<= {loaded:.0f} ms; switch conversation median "
              f"{statistics.median(switches):.0f} ms, max {max(switches):.0f} ms; "
              f"the Unassigned tab listed in {tab:.0f} ms; a search found one of 10,000 in "
              f"{found:.0f} ms (300 ms of it the typing pause)")
        assert first_list < 5000 and max(switches) < 3000
        assert problems(browser) == []
    finally:
        daemon.stop()


def test_unread_count_in_the_title_while_looking_elsewhere(daemon: Daemon,
                                                           chromium: Any) -> None:
    """
    With the inbox in a background tab, visitors' messages are counted in its
    title ("(2) Inbox · wsdaemon") and shown as desktop notifications once
    allowed (asked on a click); back on the tab the count goes and the open
    conversation's new messages are marked read. The sound is off until the
    operator turns it on.
    """
    from selenium.webdriver.common.by import By

    sign_in(chromium, daemon, ALICE)
    wait_for(lambda: chromium.find_element(By.ID, "me").text == "Alice Martin", what="in")
    assert not chromium.find_element(By.ID, "sound").is_selected()
    # Desktop notifications: asked on the button, once; then shown as text.
    chromium.execute_cdp_cmd("Browser.grantPermissions", {
        "origin": daemon.http, "permissions": ["notifications"]})
    chromium.find_element(By.ID, "settings-button").click()
    chromium.find_element(By.ID, "desktop-notify").click()
    state = chromium.find_element(By.ID, "desktop-state")
    wait_for(lambda: "on" in state.text, what="notifications allowed")
    assert not chromium.find_element(By.ID, "desktop-notify").is_displayed()
    chromium.execute_script(
        "window.shown = []; const Real = window.Notification;"
        "window.Notification = class extends Real {"
        "constructor(title, options) { super(title, options); shown.push([title, options.body]); }"
        "};")
    guest = visitor(daemon)
    guest.send(json.dumps({"type": "message", "id": "m0", "text": "hello 0"}))
    row = wait_for(lambda: chromium.find_element(By.CSS_SELECTOR, ".conversation-row"),
                   what="the conversation")
    row.find_element(By.CSS_SELECTOR, "button").click()
    wait_for(lambda: "hello 0" in text_of(chromium, "#entries"), what="opened")
    assert chromium.title == "Inbox · wsdaemon"  # seen: not counted
    inbox = chromium.current_window_handle
    chromium.switch_to.new_window("tab")

    def inbox_title() -> str:
        targets = chromium.execute_cdp_cmd("Target.getTargets", {})["targetInfos"]
        return str(next(t["title"] for t in targets if t["url"].endswith("/console")))

    for n in (1, 2):
        guest.send(json.dumps({"type": "message", "id": f"m{n}", "text": f"hello {n}"}))
        next_of(guest, "ack")
    wait_for(lambda: inbox_title() == "(2) Inbox · wsdaemon", what=f"counted: {inbox_title()}")
    chromium.close()
    chromium.switch_to.window(inbox)
    wait_for(lambda: chromium.title == "Inbox · wsdaemon", what="seen")
    # What came in the open conversation meanwhile is read on coming back.
    wait_for(lambda: not chromium.find_elements(By.CSS_SELECTOR, ".conversation-row .badge"),
             what="read on coming back")
    shown = chromium.execute_script("return window.shown")
    assert [body for _, body in shown] == ["hello 1", "hello 2"]
    assert all(title.startswith("Visitor ") for title, _ in shown)
    guest.close()


def test_the_bots_part_is_shown_apart(tmp_path: Path, chromium: Any) -> None:
    """
    A route whose bot answers first (etc/support-bot.toml): the conversation
    says the bot is answering, the bot's messages are shown as the bot's;
    "human" hands it over and the chip goes.
    """
    from selenium.webdriver.common.by import By

    (tmp_path / "canned.txt").write_text(CANNED, encoding="utf-8")
    (tmp_path / "identify.key").write_text(IDENTIFY_SECRET + "\n", encoding="utf-8")
    shutil.copy(REPO / "etc" / "support-bot.toml", tmp_path / "support-bot.toml")
    config = tmp_path / "wsdaemon.ini"
    config.write_text(CONFIG + "bot = support-bot.toml\n", encoding="utf-8")
    daemon = Daemon(config)
    try:
        guest = visitor(daemon)
        guest.send(json.dumps({"type": "message", "id": "b1", "text": "When are you open?"}))
        while "20:00" not in next_of(guest, "message")["text"]:
            pass
        sign_in(chromium, daemon, ALICE)
        row = wait_for(lambda: chromium.find_element(By.CSS_SELECTOR, ".conversation-row"),
                       what="the bot's conversation listed")
        assert "Bot answering" in row.text
        row.find_element(By.CSS_SELECTOR, "button").click()
        bot = wait_for(lambda: chromium.find_elements(By.CSS_SELECTOR, "#entries .entry.bot"),
                       what="the bot's messages")
        assert any("20:00" in entry.text and "Bot" in entry.text for entry in bot)
        assert "The bot is answering" in text_of(chromium, "#conversation-subtitle")
        guest.send(json.dumps({"type": "message", "id": "b2", "text": "human please"}))
        wait_for(lambda: "Bot answering" not in text_of(chromium, ".conversation-row"),
                 what="handed over")
        assert problems(chromium) == []
        guest.close()
    finally:
        daemon.stop()


def test_a_visitor_in_the_widget_and_an_operator_in_the_inbox(
        daemon: Daemon, chromium: Any, browser: Any) -> None:
    """
    Two browsers, as people use them (issue 23, item 3): the visitor on the
    sample site's widget types and the operator sees it in the inbox; a
    canned reply chosen on "/" reaches the widget under the operator's
    name; the visitor reloads and the thread is there; the operator
    resolves with "e"; the visitor writes again and it is back in the list.
    """
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    inbox, site = chromium, browser
    sign_in(inbox, daemon, ALICE)
    wait_for(lambda: inbox.find_element(By.ID, "me").text == "Alice Martin", what="in")
    wait_for(lambda: inbox.find_element(By.ID, "availability").get_attribute("value")
             == "online", what="online")

    def widget() -> Any:
        def ready() -> Any:
            root = site.find_element(By.ID, "wsdaemon-chat").shadow_root
            return root if root.find_elements(By.CSS_SELECTOR, ".frame.ready") else None
        return wait_for(ready, what="the widget")

    def bubbles(root: Any, selector: str) -> list[str]:
        return [str(e.text) for e in root.find_elements(By.CSS_SELECTOR, selector)]

    site.get(f"{daemon.http}/")
    root = widget()
    root.find_element(By.CSS_SELECTOR, ".launcher").click()
    field = wait_for(lambda: root.find_element(By.CSS_SELECTOR, "#wsd-input"), what="input")
    field.send_keys("Do you have the Trail Runner in size 44?", Keys.ENTER)

    row = wait_for(lambda: inbox.find_element(By.CSS_SELECTOR, ".conversation-row"),
                   what="the conversation in the inbox")
    wait_for(lambda: "size 44" in row.text, what="its preview")
    alias = text_of(inbox, ".row-name")
    row.find_element(By.CSS_SELECTOR, "button").click()
    wait_for(lambda: "size 44" in text_of(inbox, "#entries"), what="opened")

    field.send_keys("Black if possible")
    wait_for(lambda: f"{alias} is typing" in inbox.find_element(By.ID, "typing").text,
             what="the visitor's typing in the inbox")

    box = inbox.find_element(By.ID, "text")
    box.send_keys("/hel")
    wait_for(lambda: "/hello" in text_of(inbox, "#canned .canned-item.active"), what="menu")
    box.send_keys(Keys.ENTER)
    wait_for(lambda: box.get_attribute("value") == f"Hello {alias}! How can I help?",
             what="filled in")
    box.send_keys(Keys.ENTER)
    reply = wait_for(lambda: root.find_elements(By.CSS_SELECTOR, "li.from-operator"),
                     what="the reply in the widget")[0]
    assert reply.find_element(By.CSS_SELECTOR, ".name").text == "Alice Martin"
    assert f"Hello {alias}! How can I help?" in reply.text

    site.refresh()
    root = widget()
    wait_for(lambda: f"Hello {alias}! How can I help?" in bubbles(root, "li.message .bubble"),
             what="the thread after a reload")

    box.send_keys(Keys.ESCAPE)
    inbox.find_element(By.TAG_NAME, "body").send_keys("e")
    wait_for(lambda: not inbox.find_elements(By.CSS_SELECTOR, ".conversation-row"),
             what="resolved")
    root = widget()
    field = wait_for(lambda: root.find_element(By.CSS_SELECTOR, "#wsd-input"), what="input")
    field.send_keys("One more thing: do you ship to Canada?", Keys.ENTER)
    wait_for(lambda: "Canada" in text_of(inbox, ".conversation-row"), what="reopened")
    wait_for(lambda: "Canada" in text_of(inbox, "#entries"), what="in the open thread")
    assert problems(inbox) == []


def test_signing_in_while_the_daemon_is_down(daemon: Daemon, chromium: Any,
                                             tmp_path: Path) -> None:
    """The form, submitted while the daemon is down, says it cannot reach it
    and keeps trying; the daemon back, the operator is signed in."""
    import signal

    from selenium.webdriver.common.by import By

    chromium.get(f"{daemon.http}/console")
    daemon.process.send_signal(signal.SIGKILL)
    daemon.process.wait(timeout=10)
    chromium.find_element(By.ID, "token").send_keys(ALICE)
    chromium.find_element(By.ID, "signin-button").click()
    error = chromium.find_element(By.ID, "signin-error")
    wait_for(lambda: error.is_displayed() and "Cannot reach the daemon" in error.text,
             what="said on the form")
    again = Daemon(tmp_path / "wsdaemon.ini", port=daemon.port)
    try:
        wait_for(lambda: chromium.find_element(By.ID, "me").text == "Alice Martin",
                 timeout=40, what="signed in once it is back")
    finally:
        again.stop()


def test_a_long_thread_pages_back(tmp_path: Path, chromium: Any) -> None:
    """
    A thread of 73 messages opens on its newest 50; "Earlier messages" brings
    the rest above them, in order, once. (Search: test_inbox_search.py.)
    """
    from selenium.webdriver.common.by import By

    (tmp_path / "canned.txt").write_text(CANNED, encoding="utf-8")
    (tmp_path / "identify.key").write_text(IDENTIFY_SECRET + "\n", encoding="utf-8")
    config = tmp_path / "wsdaemon.ini"
    config.write_text(CONFIG, encoding="utf-8")
    fill_conversations(tmp_path / "conversations.sqlite3", 3, time.time(), chatter=70)
    daemon = Daemon(config)
    try:
        sign_in(chromium, daemon, ALICE)
        rows = wait_for(lambda: chromium.find_elements(By.CSS_SELECTOR, ".conversation-row"),
                        what="rows")
        assert len(rows) == 3
        rows[0].find_element(By.CSS_SELECTOR, "button").click()

        def entries() -> list[str]:
            return [str(e.text) for e in chromium.find_elements(
                By.CSS_SELECTOR, "#entries .bubble")]

        wait_for(lambda: len(entries()) == 50, what="the newest 50")
        assert entries()[-1] == "Thanks. It is order number 0."
        older = chromium.find_element(By.ID, "older")
        assert older.is_displayed()
        older.click()
        wait_for(lambda: len(entries()) == 73, what="all 73")
        shown = entries()
        assert shown[0] == "Hello, order 0 has not arrived"
        assert shown[1:71] == [f"chatter {i}" for i in range(70)]
        assert not older.is_displayed()
        assert problems(chromium) == []
    finally:
        daemon.stop()


def test_a_thread_keeps_at_most_1000_entries(tmp_path: Path, chromium: Any) -> None:
    """
    Paging back through a thread of 1,103 messages stops at the newest 1,000
    on the page (thread.js MAX_ENTRIES), saying where the whole thread is.
    """
    from selenium.webdriver.common.by import By

    (tmp_path / "canned.txt").write_text(CANNED, encoding="utf-8")
    (tmp_path / "identify.key").write_text(IDENTIFY_SECRET + "\n", encoding="utf-8")
    config = tmp_path / "wsdaemon.ini"
    config.write_text(CONFIG, encoding="utf-8")
    fill_conversations(tmp_path / "conversations.sqlite3", 1, time.time(), chatter=1100)
    daemon = Daemon(config)
    try:
        sign_in(chromium, daemon, ALICE)
        row = wait_for(lambda: chromium.find_element(By.CSS_SELECTOR, ".conversation-row"),
                       what="the row")
        row.find_element(By.CSS_SELECTOR, "button").click()
        older = wait_for(lambda: chromium.find_element(By.ID, "older"), what="older")
        def shown() -> int:
            return len(chromium.find_elements(By.CSS_SELECTOR, "#entries .entry"))

        def grew(before: int) -> Callable[[], bool]:
            return lambda: shown() > before or not older.is_displayed()

        for _ in range(30):
            if not older.is_displayed():
                break
            count = shown()
            older.click()
            wait_for(grew(count), what="a page more")
        assert len(chromium.find_elements(By.CSS_SELECTOR, "#entries .entry")) == 1000
        assert chromium.find_element(By.ID, "thread-full").is_displayed()
        assert text_of(chromium, "#entries .entry:last-child .bubble") == \
            "Thanks. It is order number 0."
        assert problems(chromium) == []
    finally:
        daemon.stop()
