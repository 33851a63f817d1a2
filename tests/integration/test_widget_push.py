"""
A push from the site's backend (the admin API's POST /push) reaches the chat
widget: shown in the thread after the conversation (not a message of it:
not numbered, not stored), escaped as every text, and given to the page's
on("push") listeners. Before, the widget dropped the frame: a push to a
route or to everyone showed nothing to the visitor using the widget.
"""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemon import Daemon, free_port
from tests.integration.test_widget_browser import all_css, css, run_axe, texts, wait_for, widget
from tests.operator_client import ADMIN_KEY, support_config

pytestmark = pytest.mark.slow

HOSTILE = "<img src=x onerror=alert(1)> Sale today: 20% off"


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[Daemon, int]]:
    admin = free_port()
    config = tmp_path / "wsdaemon.ini"
    config.write_text(support_config("[route:/support]\nstrategy = operator", admin=True)
                      .replace("ADMIN_PORT", str(admin)), encoding="utf-8")
    running = Daemon(config)
    try:
        yield running, admin
    finally:
        assert running.stop() == 0


def push(admin: int, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{admin}/push", data=json.dumps(body).encode(), method="POST",
        headers={"Authorization": f"Bearer {ADMIN_KEY}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as answer:
        result: dict[str, Any] = json.loads(answer.read())
        return result


def test_a_push_is_shown_in_the_widget_and_given_to_the_page(
        browser: Any, daemon: tuple[Daemon, int]) -> None:
    """With WSDAEMON_SCREENSHOTS=DIR the widget showing it is saved as
    widget-push.png (docs/)."""
    running, admin = daemon
    running.wait_for_log("live conversations loaded")
    browser.get(f"{running.http}/")
    root = widget(browser)
    browser.execute_script("window.pushed = []; wsdaemon.on('push', p => window.pushed.push(p));")
    css(root, ".launcher").click()
    wait_for(lambda: css(root, ".panel").is_displayed())
    wait_for(lambda: browser.execute_script(
        "return document.getElementById('wsdaemon-chat') !== null"))
    answer = wait_for(lambda: (lambda a: a if a.get("delivered") else None)(
        push(admin, {"route": "/support", "text": HOSTILE})))
    assert answer["delivered"] >= 1
    shown = wait_for(lambda: all_css(root, "li.from-system"))
    assert HOSTILE in texts(root, "li.from-system")[-1]
    assert not browser.execute_script(
        "return document.getElementById('wsdaemon-chat').shadowRoot.querySelector('img')")
    assert wait_for(lambda: browser.execute_script("return window.pushed")) == [{"text": HOSTILE}]
    assert shown
    assert run_axe(browser) == []
    out = os.environ.get("WSDAEMON_SCREENSHOTS")
    if out:
        browser.save_screenshot(str(Path(out) / "widget-push.png"))
