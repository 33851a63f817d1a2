"""
The web inbox follows the team as a reload changes the operators' tokens
(issue 22, section 15): in headless Chromium against the real daemon, a
SIGHUP that adds Carol's token and removes Bob's (never connected, no
conversation) makes the conversation's assign list offer Carol and no
longer Bob, without reloading the page.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.daemon import Daemon
from tests.integration.test_inbox_browser import (
    ALICE,
    BOB,
    chromium,
    daemon,
    next_of,
    sign_in,
    visitor,
    wait_for,
)

pytestmark = pytest.mark.slow

__all__ = ["chromium", "daemon"]  # the fixtures, used by name

CAROL = "carol-token-0123456789abcdef"


def _offered(browser: Any) -> list[str]:
    from selenium.webdriver.common.by import By

    select = browser.find_element(By.ID, "assignee")
    return [str(o.get_attribute("value")) for o in select.find_elements(By.TAG_NAME, "option")]


def test_the_assign_list_follows_a_reload(daemon: Daemon, chromium: Any,
                                          tmp_path: Path) -> None:
    """Alice has a conversation open: the assign list offers Alice and Bob;
    after the reload, Alice and Carol ('Carol · offline'), and not Bob."""
    from selenium.webdriver.common.by import By

    ann = visitor(daemon)
    ann.send(json.dumps({"type": "message", "id": "a", "text": "Hello?"}))
    next_of(ann, "ack")
    sign_in(chromium, daemon, ALICE)
    row = wait_for(lambda: chromium.find_element(By.CSS_SELECTOR, ".conversation-row"),
                   what="the conversation")
    row.click()
    wait_for(lambda: _offered(chromium) == ["", "alice", "bob"], what="alice and bob")
    config = tmp_path / "wsdaemon.ini"
    config.write_text(config.read_text(encoding="utf-8").replace(
        f"  bob:{BOB}\n", f"  carol:{CAROL}\n").replace("  bob: Bob Chen\n", ""),
        encoding="utf-8")
    daemon.process.send_signal(signal.SIGHUP)
    wait_for(lambda: _offered(chromium) == ["", "alice", "carol"], what="alice and carol")
    labels = [o.text for o in chromium.find_element(By.ID, "assignee")
              .find_elements(By.TAG_NAME, "option")]
    assert labels[-1] == "carol · offline", labels
    ann.close()
