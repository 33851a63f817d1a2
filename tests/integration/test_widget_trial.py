"""
What a user trial of the widget and the sample site found (issue 23), each
in headless Chromium against the real daemon, with the daemon's default
notices: the offline flow tells one consistent story (no acknowledgement
promising an answer soon next to "nobody is available", no request for an
email already given, no promise of an email the daemon never sends); a
visitor whose email is known is not asked for it; the offline form sends on
Enter and its text survives "Chat without email"; the resolved notice is
scrolled into view; a refused connection fires the page's error event with
a calm line; the sample site's anchors, icon, bot hint and route tester.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from websockets.sync.client import connect

from tests.daemon import Daemon, free_port
from tests.integration.test_widget_browser import (
    TOKEN,
    Desk,
    _HostPage,
    all_css,
    csp_violations,
    css,
    run_axe,
    texts,
    wait_for,
    widget,
)
from wsdaemon.conversations.settings import ConversationSettings

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
JWT_SECRET = "jwt-secret-for-the-widget-trial-0123456789"
HASH_SECRET = "hash-secret-for-the-widget-trial-012345"
DEFAULTS = ConversationSettings()
ACK = DEFAULTS.ack_message
OFFLINE = DEFAULTS.offline_message

# The notices left at their defaults, as the shipped config has them.
CONFIG = f"""
[wsdaemon]
listen = tcp:0:interface=127.0.0.1

[operator]
model = conversations
tokens = alice:{TOKEN}
display_names = alice: Alice Martin
store = conversations.sqlite3
fallback_after = 0

[route:/support]
strategy = operator

[route:/bot]
strategy = scripted
rules = {ROOT / "etc" / "bot.rules.toml"}
"""


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    config = tmp_path / "wsdaemon.ini"
    config.write_text(CONFIG, encoding="utf-8")
    running = Daemon(config)
    try:
        yield running
    finally:
        assert running.stop() == 0


SHOP_JS = """
window.wsdaemon = window.wsdaemon || function () {
  (window.wsdaemon.q = window.wsdaemon.q || []).push(arguments);
};
window.seen = [];
wsdaemon("on", "error", function (e) { window.seen.push(["error", e]); });
wsdaemon("on", "identified", function () { window.seen.push(["identified"]); });
"""


def system_texts(root: Any) -> list[str]:
    return texts(root, "li.from-system .bubble")


def test_offline_flow_tells_one_story(browser: Any, daemon: Daemon) -> None:
    """
    Nobody online, the offline form: Enter in its message box sends (here:
    the empty email is caught), Shift+Enter is a new line; once sent the
    thread holds the message, then one notice that nobody is there (no
    acknowledgement promising an answer soon, no request for an email), then
    the honest answer to the address (the team sees it, may write: no
    promise of an answer by email). No CSP violation, axe clean.
    """
    import os

    from selenium.webdriver.common.keys import Keys

    desk = Desk(daemon)  # connected, not online
    try:
        browser.set_window_size(1280, 800)
        browser.get(f"{daemon.http}/")
        root = widget(browser)
        css(root, ".launcher").click()
        wait_for(lambda: css(root, "form.offline").is_displayed())
        text = css(root, "#wsd-offline-text")
        text.send_keys("Can I return worn shoes?")
        text.send_keys(Keys.SHIFT, Keys.ENTER)
        text.send_keys("Bought last week.")
        assert text.get_attribute("value") == "Can I return worn shoes?\nBought last week."
        text.send_keys(Keys.ENTER)  # sends: the missing address is caught
        assert css(root, "[role=alert]").text == "Please enter a valid email address."
        assert not all_css(root, "li.from-visitor")
        css(root, "#wsd-email").send_keys("ann@example.com")
        css(root, "#wsd-offline-text").send_keys(Keys.ENTER)
        wait_for(lambda: texts(root, "li.from-visitor .bubble")
                 == ["Can I return worn shoes?\nBought last week."])
        contact = DEFAULTS.contact_message.replace("{email}", "ann@example.com")
        wait_for(lambda: system_texts(root) == [OFFLINE, contact])
        time.sleep(0.5)  # nothing more comes
        said = system_texts(root)
        assert said == [OFFLINE, contact]
        assert ACK not in said
        assert not any("leave your email" in s.lower() for s in said)
        assert "will answer at" not in " ".join(said)
        summary = wait_for(lambda: (s := desk.conversation())["contact"] and s)
        assert summary["contact"] == "ann@example.com"
        assert css(root, "form.composer").is_displayed()
        assert css(root, ".thanks").text == "✓ Email saved: ann@example.com"
        out = os.environ.get("WSDAEMON_SCREENSHOTS")
        if out:
            browser.save_screenshot(str(Path(out) / "widget-offline.png"))
        assert csp_violations(browser) == []
        assert run_axe(browser) == []
    finally:
        desk.close()


def test_chat_without_email_keeps_what_was_typed(browser: Any, daemon: Daemon) -> None:
    """"Chat without email" carries the form's text over into the chat box,
    focused; Enter sends it, and the one notice is the offline one."""
    from selenium.webdriver.common.keys import Keys

    desk = Desk(daemon)
    try:
        browser.get(f"{daemon.http}/")
        root = widget(browser)
        css(root, ".launcher").click()
        wait_for(lambda: css(root, "form.offline").is_displayed())
        css(root, "#wsd-offline-text").send_keys("Do you ship to Norway?")
        css(root, "form.offline .skip").click()
        wait_for(lambda: css(root, "form.composer").is_displayed())
        box = css(root, "#wsd-input")
        assert box.get_attribute("value") == "Do you ship to Norway?"
        assert browser.execute_script(
            "return document.getElementById('wsdaemon-chat').shadowRoot.activeElement.id"
        ) == "wsd-input"
        box.send_keys(Keys.ENTER)
        wait_for(lambda: texts(root, "li.from-visitor.sent .bubble") == ["Do you ship to Norway?"])
        wait_for(lambda: system_texts(root) == [OFFLINE])
    finally:
        desk.close()


def _shop(daemon_http: str, daemon_url: str, token: str, host_js: str) -> None:
    _HostPage.csp = (f"default-src 'self'; script-src 'self' {daemon_http}; "
                     f"style-src 'self' {daemon_http}; connect-src {daemon_url}; img-src 'self'")
    _HostPage.files = {
        "/": ("text/html; charset=utf-8", (
            "<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>Shop</title>"
            "<script src=/host.js></script>"
            f'<script src="{daemon_http}/_wsdaemon/widget.js" data-route="/support" '
            f'data-token="{token}" data-lang="en" async></script></head>'
            "<body><main><h1>Another shop</h1></main></body></html>").encode()),
        "/host.js": ("text/javascript", host_js.encode()),
    }


@pytest.fixture
def jwt_shop(tmp_path: Path) -> Iterator[tuple[Daemon, str]]:
    """A daemon whose /support takes JWTs minted for a shop on another origin."""
    shop_port = free_port()
    shop = f"http://localhost:{shop_port}"
    (tmp_path / "jwt.secret").write_text(JWT_SECRET)
    (tmp_path / "hash.secret").write_text(HASH_SECRET)
    config = tmp_path / "wsdaemon.ini"
    config.write_text(CONFIG.replace("[route:/support]\nstrategy = operator\n", (
        "[route:/support]\nstrategy = operator\nidentity = jwt\njwt_secret_file = jwt.secret\n"
        f"identity_hash_secret_file = hash.secret\nallowed_origins = {shop}\n")), encoding="utf-8")
    daemon = Daemon(config)
    server = ThreadingHTTPServer(("127.0.0.1", shop_port), _HostPage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield daemon, shop
    finally:
        server.shutdown()
        server.server_close()
        assert daemon.stop() == 0


def _token(sub: str, **claims: Any) -> str:
    return jwt.encode({"sub": sub, "exp": time.time() + 600, **claims}, JWT_SECRET, "HS256")


def test_no_email_form_when_the_email_is_known(browser: Any,
                                               jwt_shop: tuple[Daemon, str]) -> None:
    """
    Nobody online: a visitor without a known address gets the offline form;
    one whose token carries an email claim, or whose page identified it with
    an email and the right HMAC, gets the chat box instead, and no notice
    asks for an address.
    """
    daemon, shop = jwt_shop
    desk = Desk(daemon)
    plain_js = SHOP_JS
    try:
        # Control: nothing known, the form.
        _shop(daemon.http, daemon.url, _token("customer-1"), plain_js)
        browser.get(f"{shop}/")
        root = widget(browser)
        css(root, ".launcher").click()
        wait_for(lambda: css(root, "form.offline").is_displayed())

        # The token's email claim.
        _shop(daemon.http, daemon.url, _token("customer-2", email="bo@example.com"), plain_js)
        browser.get(f"{shop}/")
        root = widget(browser)
        wait_for(lambda: css(root, ".status").text == "We are away right now")
        assert css(root, "form.composer").is_displayed()
        assert not css(root, "form.offline").is_displayed()
        from selenium.webdriver.common.keys import Keys

        css(root, "#wsd-input").send_keys("Where is my order?", Keys.ENTER)
        wait_for(lambda: system_texts(root) == [OFFLINE])

        # identify with an email and the site's HMAC of the visitor id.
        right = hmac.new(HASH_SECRET.encode(), b"customer-3", hashlib.sha256).hexdigest()
        _shop(daemon.http, daemon.url, _token("customer-3"),
              SHOP_JS + "wsdaemon('identify', {name: 'Cy', email: 'cy@example.com', hash: "
              + json.dumps(right) + "});\n")
        browser.get(f"{shop}/")
        root = widget(browser)
        wait_for(lambda: ["identified"] in browser.execute_script("return window.seen"))
        wait_for(lambda: css(root, ".status").text == "We are away right now")
        assert css(root, "form.composer").is_displayed()
        assert not css(root, "form.offline").is_displayed()
        assert csp_violations(browser) == []
    finally:
        desk.close()


def test_a_refused_connection_fires_error_and_says_so_calmly(browser: Any,
                                                            jwt_shop: tuple[Daemon, str]) -> None:
    """
    A token the route refuses (wrong secret): the browser sees only a socket
    that never opened; after three in a row the page's error event fires
    once with the reason, the panel shows a calm line instead of a countdown,
    and the widget keeps trying with its backoff.
    """
    daemon, shop = jwt_shop
    bad = jwt.encode({"sub": "x", "exp": time.time() + 600}, "another-secret-0123456789abcdef",
                     "HS256")
    _shop(daemon.http, daemon.url, bad, SHOP_JS)
    browser.get(f"{shop}/")
    root = widget(browser)
    css(root, ".launcher").click()
    errors = wait_for(lambda: [e for e in browser.execute_script("return window.seen")
                               if e[0] == "error"], timeout=20)
    assert errors[0][1] == {
        "request": None,
        "error": "the server refused the connection: check the page's token and origin"}
    notice = css(root, ".notice")
    assert notice.is_displayed()
    assert notice.text.startswith("Chat is not available on this page right now.")
    assert "Trying again in" not in notice.text
    time.sleep(2.5)  # still trying, still calm, the event not repeated
    assert len([e for e in browser.execute_script("return window.seen") if e[0] == "error"]) == 1
    assert "Trying again in" not in css(root, ".notice").text
    assert csp_violations(browser) == []
    assert run_axe(browser) == []


def test_the_resolved_notice_is_scrolled_into_view(browser: Any, daemon: Daemon) -> None:
    """
    A thread longer than the panel, the visitor at its end: the operator's
    resolve adds the notice at the bottom and the thread follows it (it was
    left ~71 px below the message box).
    """
    from selenium.webdriver.common.keys import Keys

    desk = Desk(daemon)
    try:
        desk.request(type="availability", availability="online")
        browser.set_window_size(1280, 800)
        browser.get(f"{daemon.http}/")
        root = widget(browser)
        css(root, ".launcher").click()
        css(root, "#wsd-input").send_keys("Hello, a question about sizes", Keys.ENTER)
        wait_for(lambda: all_css(root, "li.from-visitor.sent"))
        conversation = desk.conversation()["id"]
        for n in range(8):
            desk.request(type="reply", conversation=conversation,
                         text=f"Answer {n}: sizes run true, order your usual one.")
        wait_for(lambda: len(all_css(root, "li.from-operator")) == 8)
        gap = ("const t = document.getElementById('wsdaemon-chat').shadowRoot"
               ".querySelector('.thread'); return t.scrollHeight - t.scrollTop - t.clientHeight;")
        wait_for(lambda: browser.execute_script(gap) < 2)
        desk.request(type="resolve", conversation=conversation)
        wait_for(lambda: css(root, ".resolved").is_displayed())
        time.sleep(0.2)
        assert browser.execute_script(gap) < 2
        thread, resolved = css(root, ".thread").rect, css(root, ".resolved").rect
        assert resolved["y"] + resolved["height"] <= thread["y"] + thread["height"] + 1
    finally:
        desk.close()


def test_sample_site_nits(browser: Any, daemon: Daemon) -> None:
    """
    The sample site: every nav link has its anchor; no /favicon.ico request
    fails (an icon in the page, allowed by its CSP); the route tester leaves
    out nothing it can reach.
    """
    browser.get(f"{daemon.http}/")
    widget(browser)
    anchors = browser.execute_script(
        "return [...document.querySelectorAll('nav a')].map(a => a.getAttribute('href'))"
        ".filter(h => h.startsWith('#') && !document.getElementById(h.slice(1)))")
    assert anchors == []
    time.sleep(0.5)
    logged = [e["message"] for e in browser.get_log("browser")]
    assert [m for m in logged if "favicon" in m or "404" in m] == []
    assert csp_violations(browser) == []
    options = browser.execute_script(
        "return [...document.querySelectorAll('#route option')].map(o => o.value)")
    assert options == ["/support", "/bot"]


def test_route_tester_leaves_out_jwt_routes_and_says_why(browser: Any,
                                                         jwt_shop: tuple[Daemon, str]) -> None:
    """A route with identity = jwt cannot connect from the sample page: it is
    not offered, and the page says why."""
    daemon, _ = jwt_shop
    browser.get(f"{daemon.http}/")
    options = browser.execute_script(
        "return [...document.querySelectorAll('#route option')].map(o => o.value)")
    assert options == ["/bot"]
    note = browser.execute_script("return document.getElementById('left-out').textContent")
    assert "/support" in note and "identity = jwt" in note


def test_the_bot_hint_and_its_rules_agree(daemon: Daemon) -> None:
    """The shipped bot's hint offers "hello <name>": both "hello" alone and
    "hello Ann" are understood, as is every other word the hint names."""
    with connect(f"{daemon.url}/bot") as ws:
        ws.recv(timeout=5)
        hint = str(ws.recv(timeout=5))
        assert hint.startswith("Try: ping, hello <name>")
        for said in ("hello", "Hello", "hello Ann", "ping", "help"):
            ws.send(said)
            answer = str(ws.recv(timeout=5))
            assert not answer.startswith("Sorry, I do not understand"), (said, answer)
            if said == "help":
                for _ in range(2):
                    ws.recv(timeout=5)
        ws.send("hello Ann")
        assert str(ws.recv(timeout=5)).startswith("Hello, Ann!")
