"""
What a visitor is told when its message opens an episode (issue 23, the
user trial's item 1): one acknowledgement that fits, never an "operator
will answer soon" next to "nobody is available", and defaults that promise
nothing the product does not do (the daemon sends no email).
"""

from __future__ import annotations

from tests.conversation_desk import ROUTE, Desk, cid
from wsdaemon.conversations import DeliverMessage, LeaveContact, Resolve, VisitorMessage
from wsdaemon.conversations.settings import ConversationSettings

ACK = "Thanks! An operator will answer here soon."
OFFLINE = "Nobody is here right now."


def write(desk: Desk, text: str = "hello") -> None:
    desk.step(VisitorMessage(ROUTE, "v1", text))


def bodies(desk: Desk) -> list[str]:
    """What the last step delivered."""
    return [effect.message.body for effect in desk.effects(DeliverMessage)]


def test_nobody_online_gets_the_offline_notice_instead_of_the_acknowledgement() -> None:
    """Nobody online: the offline notice alone, once an episode; no acknowledgement
    follows later in that episode, even once an operator is online."""
    desk = Desk(ack_message=ACK, offline_message=OFFLINE)
    write(desk)
    assert bodies(desk) == [OFFLINE]
    write(desk, "hello?")
    assert bodies(desk) == []
    desk.online("alice")
    write(desk, "still there?")
    assert bodies(desk) == []
    desk.step(Resolve(cid("v1"), "alice"))
    write(desk, "one more thing")
    assert bodies(desk) == [ACK]


def test_the_acknowledgement_when_nobody_is_online_and_no_offline_notice() -> None:
    """offline_message empty: the acknowledgement goes, as the only notice."""
    desk = Desk(ack_message=ACK, offline_message="")
    write(desk)
    assert bodies(desk) == [ACK]


def test_every_time_when_configured() -> None:
    """notices_once off: the offline notice after every message while nobody is online."""
    desk = Desk(ack_message=ACK, offline_message=OFFLINE, notices_once=False)
    write(desk)
    write(desk, "again")
    assert bodies(desk) == [OFFLINE]


def test_the_default_texts_promise_no_email() -> None:
    """The offline notice asks for no address (the widget's form does, only when
    none is known); the contact's answer says the team sees it, not that the
    daemon will answer by email."""
    desk = Desk(ConversationSettings())
    write(desk)
    [offline] = bodies(desk)
    assert "email" not in offline.lower() and "soon" not in offline.lower()
    desk.step(LeaveContact(ROUTE, "v1", "ann@example.com"))
    assert bodies(desk) == ["Got it: the team will see your email address (ann@example.com) "
                            "and may write to you there."]


def test_the_shipped_config_ships_the_defaults() -> None:
    """etc/wsdaemon.ini (what a trial runs) says what the defaults say: no
    email asked for with nobody online, none promised for an address left."""
    from pathlib import Path

    from wsdaemon.config import load_config
    from wsdaemon.support.settings import operator_settings

    shipped = operator_settings(
        load_config(Path(__file__).resolve().parents[2] / "etc" / "wsdaemon.ini"))
    assert shipped is not None
    settings = shipped.conversations
    defaults = ConversationSettings()
    assert (settings.ack_message, settings.offline_message, settings.contact_message) == (
        defaults.ack_message, defaults.offline_message, defaults.contact_message)
