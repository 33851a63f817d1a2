"""
The embeddable chat widget (issue 23, item 2) in headless Chromium against
the real daemon (`[operator] model = conversations`), with an operator
speaking protocol 2 over `websockets`: the sample site at `/` embeds it with
one tag; a visitor opens it, writes, types (the operator sees it), sees the
operator typing, the reply with the operator's name, the read ticks; a
reload keeps the thread; resolve is shown and writing again reopens; the
unread badge and on('message'); with nobody online the offline form leaves
the contact (or is skipped); a page of another site with `identity = jwt`
mints the token and embeds it under its own strict CSP, identify with its
HMAC, a refused origin; reconnection with a visible state and messages that
waited; paging back a long thread; two tabs; layout at desktop and phone
sizes (the docs' screenshots); no CSP violation; axe-core finds no serious
or critical violation.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from websockets.sync.client import ClientConnection, connect

from tests.conftest import require_tool
from tests.daemon import Daemon, free_port
from tests.operator_client import ACK, TOKEN, support_config

pytestmark = pytest.mark.slow

JWT_SECRET = "jwt-secret-for-the-widget-test-0123456789"
HASH_SECRET = "hash-secret-for-identify-0123456789"
REPLY = ("Yes! Size 44 is in stock. <b>Shall I reserve a pair?</b> "
         "https://shop.example/p/44?c=black.")
NPM_HOME = Path(os.environ.get("WSDAEMON_NPM_HOME", "/opt/wsdaemon-npm"))
AXE = NPM_HOME / "node_modules" / "axe-core" / "axe.min.js"

CONFIG = support_config("[route:/support]\nstrategy = operator",
                        "[route:/echo]\nstrategy = echo")


def wait_for(condition: Callable[[], Any], timeout: float = 10) -> Any:
    """Poll until C{condition} gives something true; an element not there
    yet, replaced meanwhile or not clickable yet counts as not yet."""
    from selenium.common.exceptions import (
        ElementNotInteractableException,
        NoSuchElementException,
        NoSuchShadowRootException,
        StaleElementReferenceException,
    )

    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = condition()
        except (StaleElementReferenceException, NoSuchElementException,
                NoSuchShadowRootException, ElementNotInteractableException):
            last = None
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"condition not met in {timeout}s (last: {last!r})")


class Desk:
    """An operator on protocol 2; events that come between answers are kept."""

    def __init__(self, daemon: Daemon) -> None:
        self.ws: ClientConnection = connect(
            f"{daemon.url}/operator", additional_headers={"Authorization": f"Bearer {TOKEN}"})
        self.events: list[dict[str, Any]] = []
        self.hello = self.event(lambda e: e["type"] == "hello")
        self.n = 0

    def _next(self, timeout: float) -> dict[str, Any]:
        message: dict[str, Any] = json.loads(self.ws.recv(timeout=timeout))
        return message

    def request(self, **payload: Any) -> dict[str, Any]:
        self.n += 1
        rid = f"r{self.n}"
        self.ws.send(json.dumps({"id": rid, **payload}))
        while True:
            message = self._next(5)
            if message.get("id") == rid and message.get("type") in ("ok", "error"):
                assert message["type"] == "ok", message
                return message
            self.events.append(message)

    def event(self, match: Callable[[dict[str, Any]], bool],
              timeout: float = 10) -> dict[str, Any]:
        for i, seen in enumerate(self.events):
            if match(seen):
                del self.events[: i + 1]
                return seen
        deadline = time.monotonic() + timeout
        while True:
            message = self._next(max(0.01, deadline - time.monotonic()))
            if match(message):
                return message
            self.events.append(message)

    def conversation(self) -> dict[str, Any]:
        [summary] = self.request(type="conversations", view="all")["conversations"]
        return dict(summary)

    def close(self) -> None:
        self.ws.close()


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    config = tmp_path / "wsdaemon.ini"
    config.write_text(CONFIG, encoding="utf-8")
    running = Daemon(config)
    try:
        yield running
    finally:
        assert running.stop() == 0


def widget(driver: Any) -> Any:
    """The widget's shadow root, once its style sheet is in."""
    from selenium.webdriver.common.by import By

    def ready() -> Any:
        root = driver.find_element(By.ID, "wsdaemon-chat").shadow_root
        return root if root.find_elements(By.CSS_SELECTOR, ".frame.ready") else None

    return wait_for(ready)


def css(root: Any, selector: str) -> Any:
    from selenium.webdriver.common.by import By

    return root.find_element(By.CSS_SELECTOR, selector)


def all_css(root: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(root.find_elements(By.CSS_SELECTOR, selector))


def texts(root: Any, selector: str) -> list[str]:
    return [str(e.text) for e in all_css(root, selector)]


def csp_violations(driver: Any) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser")
            if "Content Security Policy" in entry["message"]
            or "Refused to" in entry["message"]]


def run_axe(driver: Any) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is
    (the widget's Shadow DOM included)."""
    require_tool(AXE.exists(), f"axe-core in {NPM_HOME} (scripts/install-test-deps.sh)")
    driver.execute_script(AXE.read_text(encoding="utf-8"))
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']})"
        ".then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact,"
        " nodes: v.nodes.length}))), e => done([{id: String(e), impact: 'critical'}]));")
    return [v for v in result if v["impact"] in ("serious", "critical")]


def test_visitor_and_operator_through_the_widget(browser: Any, daemon: Daemon) -> None:
    """
    The whole flow on the sample site: typing reaches the operator; Enter
    sends (Shift+Enter is a new line); the operator's typing, name and
    reply show, the visitor's message gets its read tick; a reload brings
    the thread back with the panel open; resolve is shown, writing again
    reopens it; Esc closes the panel and gives the focus back; the
    route list stays in the footer; no CSP violation, no serious axe
    violation.
    """
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.select import Select

    desk = Desk(daemon)
    try:
        desk.request(type="availability", availability="online")
        browser.set_window_size(1280, 800)
        browser.get(f"{daemon.http}/")
        assert "Acme Shoes" in browser.title
        routes = Select(browser.find_element(By.ID, "route"))
        assert [o.get_attribute("value") for o in routes.options] == ["/support", "/echo"]
        root = widget(browser)
        launcher = css(root, ".launcher")
        assert launcher.get_attribute("aria-expanded") == "false"
        assert not css(root, ".panel").is_displayed()
        launcher.click()
        wait_for(lambda: css(root, ".status").text == "We are online")
        # The sample site's tag names the title (data-title); the greeting is the default.
        assert css(root, ".title").text == "Acme Shoes support"
        assert css(root, ".greeting").text == "Hi there! Ask us anything: we are happy to help."
        box = css(root, "#wsd-input")
        assert root.find_element(By.CSS_SELECTOR, "label[for=wsd-input]") is not None
        box.send_keys("Do you have the Trail Runner 2")
        box.send_keys(Keys.SHIFT, Keys.ENTER)
        box.send_keys("in size 44?", Keys.ENTER)
        mine = wait_for(lambda: all_css(root, "li.from-visitor.sent"))
        assert mine[0].find_element(By.CSS_SELECTOR, ".bubble").text == \
            "Do you have the Trail Runner 2\nin size 44?"
        assert box.get_attribute("value") == ""
        wait_for(lambda: ACK in texts(root, "li.from-system .bubble"))
        # Typing in an open conversation reaches the operator.
        box.send_keys("Black if possible")
        typing = desk.event(lambda e: e["type"] == "typing"
                            and "visitor" in e["conversation"]["typing"])
        conversation = typing["conversation"]["id"]
        box.send_keys(Keys.ENTER)
        wait_for(lambda: len(all_css(root, "li.from-visitor.sent")) == 2)
        desk.request(type="read", conversation=conversation)
        wait_for(lambda: all_css(root, "li.from-visitor.read"))
        desk.request(type="typing", conversation=conversation, on=True)
        wait_for(lambda: css(root, ".typing").text == "Alice Martin is typing…")
        desk.request(type="reply", conversation=conversation,
                     text=REPLY)
        reply = wait_for(lambda: all_css(root, "li.from-operator"))[0]
        assert reply.find_element(By.CSS_SELECTOR, ".name").text == "Alice Martin"
        # Shown as text, never as HTML; an address is a link (opened apart).
        assert reply.find_element(By.CSS_SELECTOR, ".bubble").text == \
            REPLY
        link = reply.find_element(By.CSS_SELECTOR, ".bubble a")
        assert link.get_attribute("href") == "https://shop.example/p/44?c=black"
        assert link.get_attribute("rel") == "noopener noreferrer nofollow"
        assert not reply.find_elements(By.CSS_SELECTOR, "b")
        assert reply.find_element(By.CSS_SELECTOR, "time").get_attribute("datetime")
        wait_for(lambda: not css(root, ".typing").is_displayed())

        # A reload: the thread comes back, the panel with it.
        browser.refresh()
        root = widget(browser)
        wait_for(lambda: css(root, ".panel").is_displayed())
        wait_for(lambda: len(all_css(root, "li.message")) == 4)
        assert texts(root, "li.message .bubble") == [
            "Do you have the Trail Runner 2\nin size 44?", ACK, "Black if possible", REPLY]
        assert css(root, "li.from-operator .name").text == "Alice Martin"
        wait_for(lambda: all_css(root, "li.from-visitor.read"))

        desk.request(type="resolve", conversation=conversation)
        wait_for(lambda: css(root, ".resolved").is_displayed())
        box = css(root, "#wsd-input")
        box.send_keys("One more thing: do they run small?", Keys.ENTER)
        wait_for(lambda: "One more thing: do they run small?"
                 in texts(root, "li.from-visitor:not(.sending) .bubble"))
        wait_for(lambda: not css(root, ".resolved").is_displayed())
        assert desk.conversation()["status"] == "open"

        box.send_keys(Keys.ESCAPE)
        wait_for(lambda: not css(root, ".panel").is_displayed())
        assert browser.execute_script(
            "return document.activeElement.shadowRoot.activeElement.className") == "launcher"

        css(root, ".launcher").click()
        wait_for(lambda: css(root, ".panel").is_displayed())
        assert csp_violations(browser) == []
        assert run_axe(browser) == []
    finally:
        desk.close()


def test_unread_badge_and_message_event(browser: Any, daemon: Daemon) -> None:
    """
    With the panel closed, a reply raises the launcher's unread badge (and
    its label says so), shows above the launcher (a click opens the chat, it
    can be dismissed) and reaches the page's on('message') listener;
    opening the panel reads it: the badge goes, the operator sees the read.
    """
    from selenium.webdriver.common.keys import Keys

    desk = Desk(daemon)
    try:
        desk.request(type="availability", availability="online")
        browser.get(f"{daemon.http}/")
        root = widget(browser)
        browser.execute_script(
            "window.heard = []; wsdaemon.on('message', m => window.heard.push(m));")
        css(root, ".launcher").click()
        css(root, "#wsd-input").send_keys("Hello", Keys.ENTER)
        wait_for(lambda: all_css(root, "li.from-visitor.sent"))
        browser.execute_script("wsdaemon.close()")
        wait_for(lambda: not css(root, ".panel").is_displayed())
        conversation = desk.conversation()["id"]
        desk.request(type="reply", conversation=conversation, text="Hi there!")
        badge = wait_for(lambda: css(root, ".badge").is_displayed() and css(root, ".badge"))
        # The acknowledgement notice came while the panel was open: read.
        assert badge.text == "1"
        assert css(root, ".launcher").get_attribute("aria-label") == "Open chat, 1 unread message"
        heard = wait_for(lambda: browser.execute_script("return window.heard"))
        assert heard[-1]["text"] == "Hi there!" and heard[-1]["name"] == "Alice Martin"
        # The reply shows above the launcher; a click on it opens the chat.
        preview = wait_for(lambda: css(root, ".preview").is_displayed() and css(root, ".preview"))
        assert preview.text.splitlines() == ["Alice Martin", "Hi there!"]
        assert run_axe(browser) == []
        css(root, ".preview-open").click()
        wait_for(lambda: css(root, ".panel").is_displayed())
        assert not css(root, ".preview").is_displayed()
        browser.execute_script("wsdaemon.close()")
        wait_for(lambda: not css(root, ".panel").is_displayed())
        assert not css(root, ".preview").is_displayed()  # read now: nothing to show
        desk.request(type="reply", conversation=conversation, text="Anything else?")
        wait_for(lambda: css(root, ".preview").is_displayed())
        css(root, ".preview-dismiss").click()
        wait_for(lambda: not css(root, ".preview").is_displayed())
        assert css(root, ".badge").text == "1"
        browser.execute_script("wsdaemon.open()")
        wait_for(lambda: not css(root, ".badge").is_displayed())
        # The visitor's read receipt reaches the operators.
        desk.event(lambda e: e["type"] == "read")
    finally:
        desk.close()


def test_offline_form_leaves_the_contact(browser: Any, daemon: Daemon) -> None:
    """
    Nobody online: the panel says so and shows the offline form; a wrong
    address is refused in the form (announced); a good one goes to the
    conversation as its contact, with the message, and the visitor is
    thanked; the composer comes back.
    """
    from selenium.webdriver.common.keys import Keys

    desk = Desk(daemon)  # connected, but not online
    try:
        browser.set_window_size(1280, 800)
        browser.get(f"{daemon.http}/")
        root = widget(browser)
        css(root, ".launcher").click()
        wait_for(lambda: css(root, ".status").text == "We are away right now")
        form = wait_for(lambda: css(root, "form.offline").is_displayed() and
                        css(root, "form.offline"))
        assert not css(root, "form.composer").is_displayed()
        css(root, "#wsd-email").send_keys("not an address")
        css(root, "#wsd-offline-text").send_keys("Can I return worn shoes?")
        form.find_element("css selector", "button[type=submit]").click()
        assert css(root, "[role=alert]").text == "Please enter a valid email address."
        css(root, "#wsd-email").clear()
        css(root, "#wsd-email").send_keys("ann@example.com", Keys.ENTER)
        wait_for(lambda: css(root, ".thanks").text == "✓ Email saved: ann@example.com")
        assert css(root, "form.composer").is_displayed()
        wait_for(lambda: texts(root, "li.from-visitor .bubble") == ["Can I return worn shoes?"])
        summary = wait_for(lambda: (s := desk.conversation())["contact"] and s)
        assert summary["contact"] == "ann@example.com"
        assert summary["preview"].startswith("Can I return worn shoes?") or \
            "Can I return" in json.dumps(desk.request(type="open", conversation=summary["id"]))
        assert csp_violations(browser) == []
    finally:
        desk.close()


class _HostPage(BaseHTTPRequestHandler):
    """Another site: its page, its own script, its own strict CSP naming the daemon."""

    files: dict[str, tuple[str, bytes]] = {}
    csp = ""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        found = self.files.get(self.path.split("?")[0])
        if found is None:
            self.send_error(404)
            return
        kind, body = found
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Security-Policy", self.csp)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


HOST_JS = """
window.wsdaemon = window.wsdaemon || function () {
  (window.wsdaemon.q = window.wsdaemon.q || []).push(arguments);
};
window.seen = [];
wsdaemon("on", "error", function (e) { window.seen.push(["error", e]); });
wsdaemon("on", "identified", function () { window.seen.push(["identified"]); });
wsdaemon("on", "ready", function (r) { window.seen.push(["ready", r]); });
wsdaemon("identify", {name: "Ann Lee", email: "ann@example.com", hash: HASH});
TOKEN_CALL
"""


def test_widget_on_another_origin_with_jwt(browser: Any, tmp_path: Path) -> None:
    """
    A shop on another origin (http://localhost:P, another site than the
    daemon's 127.0.0.1) under its own strict CSP embeds the widget with a
    JWT its backend minted (data-token): the route (identity = jwt,
    allowed_origins naming the shop) knows the visitor by the token's
    subject; calls queued on a stub before the widget loaded run: a wrong
    identify hash comes back as an error event, a right one is kept and
    the operator sees the name; no CSP violation on the shop's page.
    """
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
    desk = Desk(daemon)
    try:
        desk.request(type="availability", availability="online")
        token = jwt.encode({"sub": "customer-7", "exp": time.time() + 600}, JWT_SECRET, "HS256")
        right = hmac.new(HASH_SECRET.encode(), b"customer-7", hashlib.sha256).hexdigest()

        def serve(hash_value: str, by_function: bool = False) -> None:
            # The token in the tag, or given by a function queued on the stub.
            attribute = "" if by_function else f'data-token="{token}" '
            call = (f"wsdaemon('token', () => Promise.resolve({json.dumps(token)}));"
                    if by_function else "")
            _HostPage.csp = (f"default-src 'self'; script-src 'self' {daemon.http}; "
                             f"style-src 'self' {daemon.http}; connect-src {daemon.url}; "
                             "img-src 'self'")
            _HostPage.files = {
                "/": ("text/html; charset=utf-8", (
                    "<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>Shop</title>"
                    "<script src=/host.js></script>"
                    f'<script src="{daemon.http}/_wsdaemon/widget.js" data-route="/support" '
                    f'{attribute}data-color="#7a1fa2" data-position="left" '
                    'data-lang="zh-CN" async></script></head>'
                    "<body><main><h1>Another shop</h1></main></body></html>").encode()),
                "/host.js": ("text/javascript", HOST_JS.replace("HASH", json.dumps(hash_value))
                             .replace("TOKEN_CALL", call).encode()),
            }

        serve("00" * 32)
        browser.get(f"{shop}/")
        root = widget(browser)
        seen = wait_for(lambda: [e for e in browser.execute_script("return window.seen")
                                 if e[0] == "error"])
        assert seen[0][1]["request"] == "identify"
        ready = [e for e in browser.execute_script("return window.seen") if e[0] == "ready"]
        assert ready[0][1]["visitor"] == "customer-7"
        # Chinese texts from data-lang; left, purple from data- attributes.
        assert css(root, ".launcher").get_attribute("aria-label") == "打开聊天"
        assert all_css(root, ".frame.pos-left")
        css(root, ".launcher").click()
        from selenium.webdriver.common.keys import Keys

        css(root, "#wsd-input").send_keys("你好，我的订单到哪里了？", Keys.ENTER)
        wait_for(lambda: all_css(root, "li.from-visitor.sent"))
        summary = desk.conversation()
        assert summary["visitor"] == "customer-7"

        serve(right, by_function=True)
        browser.refresh()
        widget(browser)
        wait_for(lambda: ["identified"] in browser.execute_script("return window.seen"))
        named = wait_for(lambda: (s := desk.conversation())["name"] == "Ann Lee" and s)
        assert named["visitor"] == "customer-7"
        # The same customer, the same conversation, its thread back.
        root = widget(browser)
        wait_for(lambda: "你好，我的订单到哪里了？" in texts(root, "li.from-visitor .bubble"))
        assert csp_violations(browser) == []
        # The same page from an origin the route does not list is refused at
        # the handshake: the widget says so and keeps trying.
        browser.get(f"http://127.0.0.1:{shop_port}/")
        root = widget(browser)
        css(root, ".launcher").click()
        notice = wait_for(lambda: css(root, ".notice").is_displayed() and css(root, ".notice"))
        # (a countdown at first; refused three times in a row, a calm line)
        assert "连接已断开" in notice.text or notice.text.startswith("此页面暂时无法使用在线咨询")
        daemon.wait_for_log(f"on /support: origin 'http://127.0.0.1:{shop_port}' not allowed")
        assert csp_violations(browser) == []
    finally:
        desk.close()
        server.shutdown()
        server.server_close()
        assert daemon.stop() == 0


def test_widget_files_are_served_for_other_origins(daemon: Daemon) -> None:
    """widget.js, its modules and the modules it shares with the inbox come
    with their types, nosniff and CORS (other origins' pages import the
    modules); the sample site embeds the
    widget with one tag for the conversations route, no inline script."""
    import urllib.request

    from wsdaemon.pages import SHARED_MODULES, WIDGET_MODULES

    # The shared modules (the link rule) come as the widget's: its pages are other sites'.
    for path in (["/_wsdaemon/widget.js"] + [f"/_wsdaemon/widget/{m}" for m in WIDGET_MODULES]
                 + [f"/_wsdaemon/shared/{m}" for m in SHARED_MODULES]):
        request = urllib.request.Request(daemon.http + path,
                                         headers={"Origin": "https://shop.example"})
        with urllib.request.urlopen(request, timeout=5) as answer:
            headers = answer.headers
            body = answer.read()
        kind = "text/css" if path.endswith(".css") else "text/javascript"
        assert headers["Content-Type"].startswith(kind), path
        assert headers["Access-Control-Allow-Origin"] == "*", path
        assert headers["X-Content-Type-Options"] == "nosniff", path
        assert body, path
    with urllib.request.urlopen(daemon.http + "/", timeout=5) as answer:
        page = answer.read().decode()
    assert ('<script src="/_wsdaemon/widget.js" data-route="/support" data-color="#0f5f58" '
            'data-title="Acme Shoes support" async></script>') in page
    assert "<script>" not in page and "style=" not in page


def test_no_widget_without_a_conversations_route(write_config: Callable[..., Path],
                                                 start_daemon: Callable[..., Daemon]) -> None:
    """A daemon with no conversations ([operator] section, operator route)
    serves the sample site without the widget's tag, and not the widget's
    files either: they are the conversations component's, and there is
    nothing for a widget to talk to."""
    import urllib.error
    import urllib.request

    running = start_daemon(write_config("[wsdaemon]\nlisten = tcp:0:interface=127.0.0.1\n"
                                        "[route:/echo]\nstrategy = echo\n"))
    with urllib.request.urlopen(running.http + "/", timeout=5) as answer:
        page = answer.read().decode()
    assert "widget.js" not in page.split("<footer")[0] and "__WIDGET__" not in page
    for path in ("/_wsdaemon/widget.js", "/_wsdaemon/widget/app.js", "/_wsdaemon/shared/links.js"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(running.http + path, timeout=5)
        assert refused.value.code == 404, path


def test_reconnects_with_a_visible_state_and_sends_what_waited(browser: Any,
                                                               tmp_path: Path) -> None:
    """
    The daemon goes away: the panel says the connection is lost and when it
    tries again; a message written meanwhile waits, marked as sending; the
    daemon comes back (same port, same identity key), "Retry now"
    reconnects at once, the thread resumes and the waiting message is
    stored once in the same conversation.
    """
    from selenium.webdriver.common.keys import Keys

    config = tmp_path / "wsdaemon.ini"
    config.write_text(CONFIG.replace(
        "[operator]", "[protocol]\nidentity_secret_file = identity.key\n\n[operator]"),
        encoding="utf-8")
    daemon = Daemon(config)
    port = daemon.port
    try:
        first = Desk(daemon)
        first.request(type="availability", availability="online")
        browser.get(f"{daemon.http}/")
        root = widget(browser)
        css(root, ".launcher").click()
        css(root, "#wsd-input").send_keys("Before the restart", Keys.ENTER)
        wait_for(lambda: all_css(root, "li.from-visitor.sent"))
        first.close()
    finally:
        assert daemon.stop() == 0
    notice = wait_for(lambda: css(root, ".notice").is_displayed() and css(root, ".notice"))
    assert notice.text.startswith("Connection lost. Trying again in ")
    assert css(root, ".status").text == "Connecting…"
    css(root, "#wsd-input").send_keys("While you were away", Keys.ENTER)
    wait_for(lambda: all_css(root, "li.from-visitor.sending"))
    daemon = Daemon(config, port=port)
    try:
        # "Retry now", unless the backoff's own attempt was quicker.
        wait_for(lambda: not css(root, ".notice").is_displayed()
                 or css(root, ".notice .link").click() or True)
        wait_for(lambda: not css(root, ".notice").is_displayed(), timeout=20)
        wait_for(lambda: len(all_css(root, "li.from-visitor.sent")) == 2)
        assert not all_css(root, "li.from-visitor.sending")
        desk = Desk(daemon)
        try:
            summary = desk.conversation()
            opened = desk.request(type="open", conversation=summary["id"])
            visitor_texts = [e.get("text") for e in opened["entries"]
                             if e.get("author") == "visitor"]
            assert visitor_texts == ["Before the restart", "While you were away"]
        finally:
            desk.close()
    finally:
        assert daemon.stop() == 0


def test_reply_within_texts(browser: Any, daemon: Daemon) -> None:
    """The "we usually reply within" line, from reply_within's seconds, in
    both languages (minutes up to 90, then hours)."""
    browser.get(f"{daemon.http}/")
    said = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "import('/_wsdaemon/widget/texts.js').then(m => {"
        " const en = m.textsFor('en-GB'), zh = m.textsFor('zh-TW');"
        " done([en.replyWithin(30), en.replyWithin(240), en.replyWithin(7200),"
        " zh.replyWithin(240), m.textsFor('fr').lang]); });")
    assert said == ["We usually reply within 1 minute", "We usually reply within 4 minutes",
                    "We usually reply within 2 hours", "通常在 4 分钟内回复", "en"]


def test_long_thread_pages_back(browser: Any, daemon: Daemon) -> None:
    """
    A thread of 75 messages: a new page shows the newest ones it had seen
    (not the oldest page), "Show earlier messages" fetches the rest a page
    at a time until the first, in order, and then goes.
    """
    from selenium.webdriver.common.keys import Keys

    desk = Desk(daemon)
    try:
        desk.request(type="availability", availability="online")
        browser.get(f"{daemon.http}/")
        root = widget(browser)
        css(root, ".launcher").click()
        css(root, "#wsd-input").send_keys("Tell me everything", Keys.ENTER)
        wait_for(lambda: all_css(root, "li.from-visitor.sent"))
        conversation = desk.conversation()["id"]
        for n in range(73):
            desk.request(type="reply", conversation=conversation, text=f"part {n}")
        wait_for(lambda: "part 72" in texts(root, "li.from-operator .bubble"))
        browser.refresh()
        root = widget(browser)
        shown = wait_for(lambda: texts(root, "li.message .bubble"))
        assert shown[-1] == "part 72" and "Tell me everything" not in shown
        assert len(shown) < 75
        earlier = css(root, ".earlier")
        while earlier.is_displayed():
            before = len(all_css(root, "li.message"))
            earlier.click()

            def grew(than: int = before) -> bool:
                return len(all_css(root, "li.message")) > than

            wait_for(grew)
            earlier = css(root, ".earlier")
        shown = texts(root, "li.message .bubble")
        assert shown == ["Tell me everything", ACK] + [f"part {n}" for n in range(73)]
        seqs = [int(e.get_attribute("data-seq")) for e in all_css(root, "li.message")]
        assert seqs == list(range(1, 76))
        # One sender's run of messages shows the name once.
        names = [e for e in all_css(root, "li.from-operator .name") if e.is_displayed()]
        assert [e.text for e in names] == ["Alice Martin"]
    finally:
        desk.close()


def test_offline_form_can_be_skipped(browser: Any, daemon: Daemon) -> None:
    """Nobody online: "Chat without email" puts the composer back, and the
    message goes to the conversation as any other."""
    from selenium.webdriver.common.keys import Keys

    desk = Desk(daemon)
    try:
        browser.get(f"{daemon.http}/")
        root = widget(browser)
        css(root, ".launcher").click()
        wait_for(lambda: css(root, "form.offline").is_displayed())
        # (axe's own script applies inline styles: the CSP is checked first.)
        assert csp_violations(browser) == []
        assert run_axe(browser) == []
        css(root, "form.offline .skip").click()
        wait_for(lambda: css(root, "form.composer").is_displayed())
        assert not css(root, "form.offline").is_displayed()
        css(root, "#wsd-input").send_keys("Just a quick question", Keys.ENTER)
        wait_for(lambda: all_css(root, "li.from-visitor.sent"))
        assert desk.conversation()["preview"] == "Just a quick question"
    finally:
        desk.close()


def test_layout_at_desktop_and_phone_sizes(browser: Any, daemon: Daemon) -> None:
    """
    At 1280x800 the panel stands above the launcher, whole, inside the
    window; on a phone (390x844) it takes the whole screen and the close
    button is in reach. With WSDAEMON_SCREENSHOTS=DIR the two views are
    saved there as widget.png and widget-mobile.png (how docs/ got them).
    """
    from selenium.webdriver.common.keys import Keys

    def size(width: int, height: int, mobile: bool) -> None:
        browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile})

    out = os.environ.get("WSDAEMON_SCREENSHOTS")
    desk = Desk(daemon)
    try:
        desk.request(type="availability", availability="online")
        size(1280, 800, False)
        browser.get(f"{daemon.http}/")
        root = widget(browser)
        css(root, ".launcher").click()
        box = css(root, "#wsd-input")
        box.send_keys("Hi! Do you have the Trail Runner 2 in size 44?", Keys.ENTER)
        wait_for(lambda: all_css(root, "li.from-visitor.sent"))
        conversation = desk.conversation()["id"]
        desk.request(type="read", conversation=conversation)
        desk.request(type="reply", conversation=conversation,
                     text="Hello! Yes, size 44 is in stock in black and in sand.")
        wait_for(lambda: all_css(root, "li.from-operator"))
        box.send_keys("Great, black please. Can it arrive by Friday?", Keys.ENTER)
        wait_for(lambda: len(all_css(root, "li.from-visitor:not(.sending)")) == 2)
        desk.request(type="read", conversation=conversation)
        desk.request(type="typing", conversation=conversation, on=True)
        wait_for(lambda: len(all_css(root, "li.from-visitor.read")) == 2
                 and css(root, ".typing").is_displayed())
        panel, launcher = css(root, ".panel").rect, css(root, ".launcher").rect
        assert panel["x"] >= 0 and panel["y"] >= 0
        assert panel["x"] + panel["width"] <= 1280 and panel["y"] + panel["height"] <= 800
        assert panel["y"] + panel["height"] <= launcher["y"]
        if out:
            browser.save_screenshot(str(Path(out) / "widget.png"))
        size(390, 844, True)
        wait_for(lambda: css(root, ".panel").rect == {"x": 0, "y": 0, "width": 390,
                                                       "height": 844})
        close = css(root, ".close").rect
        assert close["x"] + close["width"] <= 390 and close["y"] >= 0
        if out:
            browser.save_screenshot(str(Path(out) / "widget-mobile.png"))
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        desk.close()



def test_identify_with_a_hash_function_of_the_visitor_id(browser: Any,
                                                         tmp_path: Path) -> None:
    """
    On an anonymous route with identity_hash_secret_file, the page gives
    identify's hash as a function: the widget calls it with the visitor id
    from welcome (the daemon's, which the page cannot read from its cookie)
    and sends what it gives; the operator sees the name.
    """
    from selenium.webdriver.common.keys import Keys

    (tmp_path / "hash.secret").write_text(HASH_SECRET)
    config = tmp_path / "wsdaemon.ini"
    config.write_text(CONFIG.replace(
        "[route:/support]\nstrategy = operator\n",
        "[route:/support]\nstrategy = operator\nidentity_hash_secret_file = hash.secret\n"),
        encoding="utf-8")
    daemon = Daemon(config)
    desk = Desk(daemon)
    try:
        desk.request(type="availability", availability="online")
        browser.get(f"{daemon.http}/")
        root = widget(browser)
        css(root, ".launcher").click()
        css(root, "#wsd-input").send_keys("Hello", Keys.ENTER)
        wait_for(lambda: all_css(root, "li.from-visitor.sent"))
        visitor = desk.conversation()["visitor"]
        signed = hmac.new(HASH_SECRET.encode(), visitor.encode(), hashlib.sha256).hexdigest()
        browser.execute_script(
            "window.asked = []; wsdaemon.on('identified', () => window.asked.push('ok'));"
            "wsdaemon.identify({name: 'Ann Lee', hash: (id) => {"
            " window.asked.push(id); return Promise.resolve(arguments[0]); }});", signed)
        wait_for(lambda: browser.execute_script("return window.asked") == [visitor, "ok"])
        wait_for(lambda: desk.conversation()["name"] == "Ann Lee")
    finally:
        desk.close()
        assert daemon.stop() == 0


def test_two_tabs_and_the_waiting_bound(browser: Any, daemon: Daemon) -> None:
    """
    The same visitor in two tabs: what one writes shows in the other (the
    daemon sends it with its id). With the daemon gone, the 21st message
    written is not taken (20 wait at most): it stays in the box.
    """
    from selenium.webdriver.common.keys import Keys

    desk = Desk(daemon)
    try:
        desk.request(type="availability", availability="online")
        browser.get(f"{daemon.http}/")
        first = browser.current_window_handle
        root = widget(browser)
        css(root, ".launcher").click()
        css(root, "#wsd-input").send_keys("From the first tab", Keys.ENTER)
        wait_for(lambda: all_css(root, "li.from-visitor.sent"))
        browser.switch_to.new_window("tab")
        browser.get(f"{daemon.http}/")
        other = widget(browser)  # the panel opens as it was left
        wait_for(lambda: texts(other, "li.from-visitor .bubble") == ["From the first tab"])
        css(other, "#wsd-input").send_keys("From the second tab", Keys.ENTER)
        wait_for(lambda: len(all_css(other, "li.from-visitor.sent")) == 2)
        browser.switch_to.window(first)
        wait_for(lambda: texts(root, "li.from-visitor .bubble")
                 == ["From the first tab", "From the second tab"])
    finally:
        desk.close()
    assert daemon.stop() == 0
    box = css(root, "#wsd-input")
    wait_for(lambda: css(root, ".notice").is_displayed())
    for n in range(20):
        box.send_keys(f"waiting {n}", Keys.ENTER)
    wait_for(lambda: len(all_css(root, "li.from-visitor.sending")) == 20)
    box.send_keys("one too many", Keys.ENTER)
    assert box.get_attribute("value") == "one too many"
    assert len(all_css(root, "li.from-visitor.sending")) == 20


def test_the_page_s_own_button_instead_of_the_launcher(browser: Any, daemon: Daemon) -> None:
    """
    data-launcher="none": no launcher; the page's own button opens the
    panel through the API, and Esc gives the focus back to that button.
    """
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    port = free_port()
    _HostPage.csp = (f"default-src 'self'; script-src 'self' {daemon.http}; "
                     f"style-src 'self' {daemon.http}; connect-src {daemon.url}")
    _HostPage.files = {
        "/": ("text/html; charset=utf-8", (
            "<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>Help desk</title>"
            "<script src=/page.js defer></script>"
            f'<script src="{daemon.http}/_wsdaemon/widget.js" data-route="/support" '
            'data-launcher="none" async></script></head>'
            "<body><main><h1>Help</h1><button id=help>Chat with us</button></main></body>"
            "</html>").encode()),
        "/page.js": ("text/javascript", (
            b"window.wsdaemon = window.wsdaemon || function () {"
            b" (window.wsdaemon.q = window.wsdaemon.q || []).push(arguments); };"
            b"document.getElementById('help').addEventListener('click',"
            b" () => wsdaemon('open'));")),
    }
    server = ThreadingHTTPServer(("127.0.0.1", port), _HostPage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    desk = Desk(daemon)
    try:
        desk.request(type="availability", availability="online")
        browser.get(f"http://127.0.0.1:{port}/")
        root = widget(browser)
        assert not css(root, ".launcher").is_displayed()
        help_button = browser.find_element(By.ID, "help")
        help_button.click()
        wait_for(lambda: css(root, ".panel").is_displayed() and css(root, ".status").text
                 == "We are online")
        box = css(root, "#wsd-input")
        assert browser.execute_script(
            "return document.activeElement.shadowRoot.activeElement.id") == "wsd-input"
        box.send_keys(Keys.ESCAPE)
        wait_for(lambda: not css(root, ".panel").is_displayed())
        assert browser.execute_script("return document.activeElement.id") == "help"
        assert csp_violations(browser) == []
    finally:
        desk.close()
        server.shutdown()
        server.server_close()


def test_a_csp_without_the_daemon_in_style_src_is_explained(browser: Any,
                                                             daemon: Daemon) -> None:
    """A page whose CSP lets the script in but not the style sheet: the
    widget stays hidden (never unstyled) and the console says why."""
    from selenium.webdriver.common.by import By

    port = free_port()
    _HostPage.csp = (f"default-src 'self'; script-src 'self' {daemon.http}; style-src 'self'; "
                     f"connect-src {daemon.url}")
    _HostPage.files = {"/": ("text/html; charset=utf-8", (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>Shop</title>"
        f'<script src="{daemon.http}/_wsdaemon/widget.js" data-route="/support" async></script>'
        "</head><body><h1>Shop</h1></body></html>").encode())}
    server = ThreadingHTTPServer(("127.0.0.1", port), _HostPage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        browser.get(f"http://127.0.0.1:{port}/")
        said = wait_for(lambda: [e["message"] for e in browser.get_log("browser")
                                 if "style sheet did not load" in e["message"]])
        assert "style-src" in said[0]
        root = browser.find_element(By.ID, "wsdaemon-chat").shadow_root
        assert not css(root, ".launcher").is_displayed()
    finally:
        server.shutdown()
        server.server_close()
