"""
Screenshots of the operators' web inbox for the README, run by hand:

    python3 scripts/inbox_screenshots.py [--out docs]

Starts the real daemon (model = conversations) on a store filled with a
day's worth of conversations (names, labels, waiting times), brings in a
live identified visitor and a colleague, signs Alice in with headless
Chromium at 1280x800, and saves inbox.png (a conversation open: the thread
with a private note, the visitor typing, the side panel),
inbox-conversation.png (the canned replies on "/"), inbox-search.png (a
search over every conversation, a resolved one open read-only) and
inbox-panel.png (a returning customer: the previous conversations, the
earlier episode marked in the thread), then, Ann gone, inbox-narrow.png
(1024x640, Details open over the thread) and inbox-phone.png (390x740: the
conversation alone, "Not connected" under the composer).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "src")]

from tests.daemon import Daemon  # noqa: E402
from tests.integration.test_inbox_browser import (  # noqa: E402
    ALICE,
    BOB,
    CANNED,
    CONFIG,
    IDENTIFY_SECRET,
    next_of,
    visitor,
    wait_for,
)
from websockets.sync.client import connect  # noqa: E402

from wsdaemon.conversations.model import (  # noqa: E402
    Author,
    Conversation,
    Message,
    Status,
    conversation_id_for,
)
from wsdaemon.conversations.profile import Profile  # noqa: E402
from wsdaemon.support.schema import SCHEMA, insert_conversation, insert_message  # noqa: E402

#: (minutes ago, name or None, email, visitor's messages, labels, assignee, status)
EARLIER: list[tuple[int, str | None, str | None, list[str], tuple[str, ...], str | None, str]] = [
    (47, "Marco Rossi", "marco@rossi.it", ["I was charged twice for my March subscription.",
                                           "Both charges show on my card statement."],
     ("billing",), "bob", "open"),
    (31, None, None, ["Do you ship to Canada? And how long does it take?"], (), None, "open"),
    (18, "Priya Shah", "priya@shah.dev", ["Can I still change the size of order #5120?"],
     ("orders",), "alice", "open"),
    (9, None, None, ["The password reset email never arrives, I checked spam too."],
     ("account",), None, "open"),
    (4, "Tom Becker", None, ["Hi! Is the blue jacket coming back in size M?"], (), None, "open"),
    (2, None, None, ["hello? anyone there"], (), None, "open"),
    (120, "Julia Novak", "julia@novak.cz", ["I will send the receipt tomorrow."], ("billing",),
     "alice", "snoozed"),
]


#: Resolved conversations: (days ago, name, email, route, [(author, text)], labels, assignee).
RESOLVED: list[tuple[float, str, str, str, list[tuple[Author, str]], tuple[str, ...], str]] = [
    (2.2, "Lena Fischer", "lena@fischer.de", "/support",
     [(Author.VISITOR, "I returned the hiking boots last week. When will I get my refund?"),
      (Author.OPERATOR, "The boots reached us on Monday; your refund of \u20ac129 went out "
                        "today."),
      (Author.VISITOR, "The refund arrived, thank you!")], ("returns",), "alice"),
    (5.5, "Omar Haddad", None, "/support",
     [(Author.VISITOR, "How do refunds work when I paid with a gift card?"),
      (Author.OPERATOR, "A refund goes back onto the gift card, usable right away.")],
     (), "bob"),
    (3.1, "Marco Rossi", "marco@rossi.it", "/sales",
     [(Author.VISITOR, "Do you offer a discount for a team order of 12 jackets?"),
      (Author.OPERATOR, "Yes: 15% from 10 pieces. I have sent you the quote.")],
     ("b2b",), "bob"),
]
#: Marco's support conversation began nine days ago (an episode resolved since).
MARCO_BEFORE = [(Author.VISITOR, "Where is the refund for order #3920?"),
                (Author.OPERATOR, "It went out today: up to 5 working days on your card.")]


def fill(path: Path, now: float) -> None:
    db = sqlite3.connect(path)
    db.executescript(SCHEMA)
    db.execute("CREATE TABLE IF NOT EXISTS wsdaemon_migrations (name TEXT PRIMARY KEY)")
    with db:
        for n, (minutes, name, email, texts, labels, assignee, status) in enumerate(EARLIER):
            visitor_id = f"earlier-{n}"
            key = conversation_id_for("/support", visitor_id)
            at = now - minutes * 60
            # Marco (the first) came back: his first episode, nine days ago.
            before = MARCO_BEFORE if n == 0 else []
            began = now - 9 * 86400
            for seq, (author, text) in enumerate(before, start=1):
                insert_message(db, Message(key, seq, author, text, began + seq * 600,
                                           "bob" if author is Author.OPERATOR else None,
                                           "Bob Chen" if author is Author.OPERATOR else None))
            floor = len(before)
            for seq, text in enumerate(texts, start=floor + 1):
                insert_message(db, Message(key, seq, Author.VISITOR, text, at + seq * 20))
            profile = Profile(name=name, email=email) if name else None
            snoozed = status == "snoozed"
            insert_conversation(db, Conversation(
                conversation_id=key, route="/support", visitor=visitor_id,
                created_at=began if before else at,
                opened_at=at, last_activity_at=at + (floor + len(texts)) * 20,
                status=Status.SNOOZED if snoozed else Status.OPEN, version=1,
                last_seq=floor + len(texts), waiting_since=None if snoozed else at + 20,
                snoozed_until=now + 86400 if snoozed else None, unanswered=len(texts),
                assignee=assignee, assigned_at=at if assignee else None,
                recent_visitor_seqs=tuple(range(floor + 1, floor + len(texts) + 1)),
                labels=labels, unread_floor=floor,
                episodes=((0, began, began + 1800),) if before else (),
                ack_sent=True, preview=texts[-1], profile=profile))
        for n, (days, name, email, route, said, labels, assignee) in enumerate(RESOLVED):
            # Marco's /sales conversation is the same visitor's as his /support one.
            visitor_id = "earlier-0" if name == "Marco Rossi" else f"resolved-{n}"
            key = conversation_id_for(route, visitor_id)
            at = now - days * 86400
            for seq, (author, text) in enumerate(said, start=1):
                operator = author is Author.OPERATOR
                insert_message(db, Message(key, seq, author, text, at + seq * 300,
                                           assignee if operator else None,
                                           ("Alice Martin" if assignee == "alice" else "Bob Chen")
                                           if operator else None))
            end = at + len(said) * 300
            insert_conversation(db, Conversation(
                conversation_id=key, route=route, visitor=visitor_id, created_at=at,
                opened_at=at, last_activity_at=end, status=Status.RESOLVED,
                resolved_at=end + 60, version=1, last_seq=len(said), first_response_at=at + 600,
                assignee=assignee, assigned_at=at, labels=labels, ack_sent=True,
                delivered_upto=len(said), visitor_read_upto=len(said), preview=said[-1][1],
                profile=Profile(name=name, email=email)))
    db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--out", type=Path, default=REPO / "docs")
    args = parser.parse_args()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    home = Path(tempfile.mkdtemp(prefix="wsdaemon-inbox-shots-"))
    (home / "canned.txt").write_text(CANNED, encoding="utf-8")
    (home / "identify.key").write_text(IDENTIFY_SECRET + "\n", encoding="utf-8")
    config = home / "wsdaemon.ini"
    config.write_text(CONFIG + "\n[route:/sales]\nstrategy = operator\n", encoding="utf-8")
    fill(home / "conversations.sqlite3", time.time())
    daemon = Daemon(config)
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-dev-shm-usage", f"--user-data-dir={home / 'chromium'}",
                 "--hide-scrollbars"):
        options.add_argument(flag)
    browser: Any = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": False})
    find = browser.find_element
    try:
        bob = connect(f"{daemon.url}/operator",
                      additional_headers={"Authorization": f"Bearer {BOB}"})
        next_of(bob, "hello")
        bob.send(json.dumps({"type": "availability", "availability": "online", "id": 1}))
        next_of(bob, "ok")
        ann = visitor(daemon, name="Ann Lee", email="ann.lee@example.com",
                      attributes={"plan": "Pro", "company": "Northwind", "orders": "14"})
        ann.send(json.dumps({"type": "message", "id": "a1",
                             "text": "Hi! My order #4821 still says \u201cprocessing\u201d after "
                                     "3 days. Can you check?"}))
        next_of(ann, "ack")

        browser.get(f"{daemon.http}/console")
        find(By.ID, "token").send_keys(ALICE, Keys.ENTER)
        wait_for(lambda: find(By.ID, "me").text == "Alice Martin")
        row = wait_for(lambda: [r for r in browser.find_elements(
            By.CSS_SELECTOR, ".conversation-row") if "Ann Lee" in r.text][0])
        row.find_element(By.CSS_SELECTOR, "button").click()
        wait_for(lambda: find(By.ID, "conversation-title").text == "Ann Lee")
        box = find(By.ID, "text")
        box.send_keys("Hi Ann, I\u2019m checking with the warehouse right now.", Keys.ENTER)
        seq = next_of(ann, "message")["seq"]
        while next_of(ann, "message")["author"] != "operator":
            pass
        ann.send(json.dumps({"type": "received", "upto": seq + 1}))
        ann.send(json.dumps({"type": "read", "upto": seq + 1}))
        ann.send(json.dumps({"type": "message", "id": "a2", "text": "Thank you! It\u2019s a "
                             "birthday present, so it really needs to arrive by Friday."}))
        next_of(ann, "ack")
        find(By.CSS_SELECTOR, "input[name=mode][value=note]").click()
        box.send_keys("Carrier shows a delay at the Lyon hub; asked them for priority.",
                      Keys.ENTER)
        wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#entries .entry.note"))
        find(By.CSS_SELECTOR, "input[name=mode][value=reply]").click()
        find(By.ID, "label-input").send_keys("shipping", Keys.ENTER)
        wait_for(lambda: "shipping" in find(By.ID, "labels").text)
        ann.send(json.dumps({"type": "typing", "on": True}))
        wait_for(lambda: "typing" in find(By.ID, "typing").text)
        box.click()
        wait_for(lambda: find(By.ID, "count-mine").text == "3")  # Ann's is Alice's now
        browser.save_screenshot(str(args.out / "inbox.png"))
        box.send_keys("/")
        wait_for(lambda: find(By.ID, "canned").is_displayed())
        browser.save_screenshot(str(args.out / "inbox-conversation.png"))
        box.send_keys(Keys.ESCAPE)
        box.clear()
        ann.send(json.dumps({"type": "typing", "on": False}))

        # Search: every conversation, resolved ones too; one opened read-only.
        find(By.ID, "search").send_keys("refund")
        wait_for(lambda: "found" in find(By.ID, "search-summary").text
                 and browser.find_elements(By.CSS_SELECTOR, "#search-results .result-row"))
        lena = wait_for(lambda: [r for r in browser.find_elements(
            By.CSS_SELECTOR, "#search-results .result-row") if "Lena" in r.text][0])
        lena.find_element(By.CSS_SELECTOR, "button").click()
        wait_for(lambda: find(By.ID, "resolved-bar").is_displayed())
        browser.save_screenshot(str(args.out / "inbox-search.png"))
        find(By.ID, "search").send_keys(Keys.ESCAPE)

        # A returning customer: Marco's previous conversations.
        marco = wait_for(lambda: [r for r in browser.find_elements(
            By.CSS_SELECTOR, ".conversation-row") if "Marco" in r.text][0])
        marco.find_element(By.CSS_SELECTOR, "button").click()
        wait_for(lambda: "On /sales" in find(By.ID, "previous").text
                 and browser.find_elements(By.CSS_SELECTOR, "#entries .episode-start"))
        browser.save_screenshot(str(args.out / "inbox-panel.png"))

        # Ann has left; smaller screens: 1024x640 with Details open, a phone.
        ann.close()
        row = wait_for(lambda: [r for r in browser.find_elements(
            By.CSS_SELECTOR, ".conversation-row") if "Ann Lee" in r.text][0])
        row.find_element(By.CSS_SELECTOR, "button").click()
        wait_for(lambda: find(By.ID, "visitor-away").is_displayed())
        browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": 1024, "height": 640, "deviceScaleFactor": 1, "mobile": False})
        wait_for(lambda: find(By.ID, "panel-toggle").get_attribute("aria-expanded") == "false")
        find(By.ID, "panel-toggle").click()
        wait_for(lambda: find(By.ID, "panel").is_displayed())
        browser.save_screenshot(str(args.out / "inbox-narrow.png"))
        find(By.ID, "panel-close").click()
        browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": 390, "height": 740, "deviceScaleFactor": 2, "mobile": True})
        wait_for(lambda: not find(By.CSS_SELECTOR, ".sidebar").is_displayed())
        find(By.ID, "thread").click()
        browser.save_screenshot(str(args.out / "inbox-phone.png"))
        print(f"saved inbox.png, inbox-conversation.png, inbox-search.png, inbox-panel.png, "
              f"inbox-narrow.png and inbox-phone.png in {args.out}")
        bob.close()
    finally:
        browser.quit()
        daemon.stop()


if __name__ == "__main__":
    main()
