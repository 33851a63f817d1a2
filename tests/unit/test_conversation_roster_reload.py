"""
A reload that changes the operators' tokens changes the team at once
(support/roster.py, the core's RosterChanged): an added name joins,
offline, and every operator connected is told; a removed name leaves once
it is offline and holds no open conversation. Across daemons the change is
news: a daemon that knows the name already keeps what it knows.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock

from tests.conversation_desk import ROUTE, Desk, cid
from tests.driver_bench import GatedStore, RecordingPorts
from wsdaemon.conversations import (
    Assign,
    Availability,
    ConversationSettings,
    Inbox,
    NotifyTeam,
    OperatorAvailability,
    Resolve,
    RosterChanged,
    VisitorMessage,
)
from wsdaemon.conversations.model import Bounds
from wsdaemon.conversations.routing import Team
from wsdaemon.conversations.transition import Transition
from wsdaemon.support.console_display import event_line
from wsdaemon.support.driver import ConversationDriver
from wsdaemon.support.hub import OperatorHub
from wsdaemon.support.peers import Adopted, adopted_team
from wsdaemon.support.redis_news import decode_change, encode_news
from wsdaemon.support.roster import Roster


def test_names_join_offline_and_leave_only_when_free() -> None:
    """RosterChanged: carol joins offline with the default capacity, told as
    joined; a known name and names past the team's bound do not join; bob,
    online, and dave, holding a conversation, do not leave; erin, offline
    and free, leaves, told as left."""
    desk = Desk(default_capacity=2, bounds=Bounds(max_operators=5))
    desk.inbox.enrol(["bob", "dave", "erin"])
    desk.online("bob")
    desk.step(VisitorMessage(ROUTE, "v1", "Hello?"))
    desk.step(Assign(cid("v1"), "dave", "bob"))
    desk.step(RosterChanged(joined=("carol", "bob", "x1", "x2")))
    assert [o.name for o in desk.inbox.team.operators] == ["bob", "carol", "dave", "erin", "x1"]
    carol = desk.inbox.team.get("carol")
    assert carol is not None and (carol.availability, carol.capacity) == (Availability.OFFLINE, 2)
    assert desk.effects(NotifyTeam) == [NotifyTeam("carol", "offline", 2, 0, joined=True),
                                        NotifyTeam("x1", "offline", 2, 0, joined=True)]
    desk.step(RosterChanged(left=("bob", "dave", "erin", "nobody")))
    assert [o.name for o in desk.inbox.team.operators] == ["bob", "carol", "dave", "x1"]
    assert desk.effects(NotifyTeam) == [NotifyTeam("erin", "offline", 2, 0, left=True)]
    assert desk.last is not None and desk.last.commit is None  # stores nothing


class Link:
    """An operator's connection to the hub: the events it is sent."""

    def __init__(self, operator: str) -> None:
        self.operator = operator
        self.events: list[dict[str, Any]] = []

    def send_event(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def team(self) -> list[dict[str, Any]]:
        return [e["operator"] for e in self.events if e["type"] == "team"]


class Daemon:
    """A driver on a memory store, the real hub as its operators' port, a roster."""

    def __init__(self, roster: tuple[str, ...]) -> None:
        store = GatedStore()
        ports = RecordingPorts(store)
        inbox = Inbox(ConversationSettings(fallback_after=0))
        self.hub = OperatorHub(inbox, Clock())
        self.driver = ConversationDriver(store, inbox, Clock(), ports, self.hub, ports,
                                         roster=roster)
        self.roster = Roster(self.driver)
        self.hub.on_team = self.roster.check
        assert self.driver.start().called
        self.desk = Link("alice")
        self.hub.attach(self.desk)

    def members(self) -> list[str]:
        return [o.name for o in self.driver.inbox.team.operators]

    def step(self, event: Any) -> Transition:
        d = self.driver.submit(event)
        got: list[Any] = []
        d.addBoth(got.append)
        assert isinstance(got[0], Transition), got
        return got[0]


def test_a_reload_enrols_and_lets_go() -> None:
    """
    The roster alice, bob. A reload adds carol: a member at once, offline,
    and alice's inbox is told (before carol ever connects). A reload then
    removes bob, who holds an open conversation, and alice, online: both
    stay; bob's conversation resolved, he leaves (alice is told, 'left');
    alice going offline, she leaves too. Added back, bob joins again.
    """
    daemon = Daemon(("alice", "bob"))
    daemon.step(OperatorAvailability("alice", Availability.ONLINE))
    daemon.step(VisitorMessage(ROUTE, "v1", "Hello?"))
    daemon.step(Assign(cid("v1"), "bob", "alice"))
    daemon.roster.update(["alice", "bob", "carol"])
    assert daemon.members() == ["alice", "bob", "carol"]
    assert daemon.desk.team()[-1] == {"name": "carol", "display_name": "carol",
                                      "availability": "offline", "capacity": 0, "load": 0}
    told = len(daemon.desk.events)
    daemon.roster.update(["carol"])
    assert daemon.members() == ["alice", "bob", "carol"]
    assert daemon.roster.leaving == {"alice", "bob"}
    assert not [e for e in daemon.desk.events[told:] if e["type"] == "team"]
    daemon.step(Resolve(cid("v1"), "alice"))
    assert daemon.members() == ["alice", "carol"]
    assert daemon.desk.team()[-1]["name"] == "bob" and daemon.desk.team()[-1]["left"] is True
    daemon.step(OperatorAvailability("alice", Availability.OFFLINE))
    assert daemon.members() == ["carol"] and not daemon.roster.leaving
    daemon.roster.update(["bob", "carol"])
    assert daemon.members() == ["bob", "carol"]
    assert daemon.driver.roster == ("bob", "carol")


def test_a_reload_before_the_store_is_open_enrols_directly() -> None:
    """While the driver is not running nothing decides: the name is enrolled as at build."""
    store = GatedStore()
    ports = RecordingPorts(store)
    driver = ConversationDriver(store, Inbox(ConversationSettings()), Clock(), ports, ports,
                                ports, roster=("alice",))
    Roster(driver).update(["alice", "carol"])
    assert [o.name for o in driver.inbox.team.operators] == ["alice", "carol"]


def _news(effect: NotifyTeam) -> Adopted:
    """The effect as another daemon's news brings it (through the event's JSON)."""
    transition = Transition(conversations=(), team=Team(), effects=(effect,))
    change = decode_change({**encode_news(transition, "d2", 0), "type": "conversation_news"})
    assert change is not None
    return change.adopted


def test_roster_news_from_another_daemon() -> None:
    """Another daemon's reload: a name unknown here joins as told; one known
    here (bob, online) stays as it is; a name that left goes only if it is
    offline here, holds nothing and this daemon's configuration does not
    name it."""
    inbox = Inbox(ConversationSettings())
    desk = Desk(ConversationSettings())
    desk.inbox = inbox
    inbox.enrol(["dave"])
    desk.online("bob")
    joined = _news(NotifyTeam("carol", "offline", 3, 0, joined=True))
    assert joined.effects == (NotifyTeam("carol", "offline", 3, 0, joined=True),)
    team = adopted_team(inbox, joined)
    assert team.get("carol") is not None and team.get("carol").capacity == 3  # type: ignore[union-attr]
    known = adopted_team(inbox, _news(NotifyTeam("bob", "offline", 0, 0, joined=True)))
    assert known == inbox.team
    kept = adopted_team(inbox, _news(NotifyTeam("bob", "offline", 0, 0, left=True)))
    assert kept == inbox.team
    gone = adopted_team(inbox, _news(NotifyTeam("dave", "offline", 0, 0, left=True)))
    assert [o.name for o in gone.operators] == ["bob"]
    inbox.configured = frozenset({"dave"})  # this daemon's configuration names dave
    assert adopted_team(inbox, _news(NotifyTeam("dave", "offline", 0, 0, left=True))) \
        == inbox.team


def test_the_terminal_console_says_who_left() -> None:
    """A 'left' team event is one line saying so (names escaped)."""
    line = event_line({"type": "team", "operator": {
        "name": "bob\x1b[2J", "display_name": "Bob", "availability": "offline", "capacity": 0,
        "load": 0, "left": True}}, "alice", 0.0)
    assert line == "team Bob (bob\\x1b[2J) left the team"


def test_only_members_are_kept_leaving() -> None:
    """A removed name the team does not hold (it never joined: the team was
    full) is not waited for: the set of those leaving stays within the team."""
    store = GatedStore()
    ports = RecordingPorts(store)
    settings = ConversationSettings(bounds=Bounds(max_operators=1))
    driver = ConversationDriver(store, Inbox(settings), Clock(), ports, ports, ports,
                                roster=("alice", "bob"))
    assert driver.start().called
    roster = Roster(driver)
    assert [o.name for o in driver.inbox.team.operators] == ["alice"]
    driver.submit(OperatorAvailability("alice", Availability.ONLINE))
    roster.update(["carol"])
    assert roster.leaving == {"alice"}
