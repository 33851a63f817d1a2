"""
The operators' side of the conversation driver: L{OperatorHub} provides
L{IOperatorPort}, so the driver is built with it, and the operator
channel's connections attach to it.

    hub = OperatorHub(inbox, clock, display_names={"alice": "Alice"})
    driver = ConversationDriver(store, inbox, clock, visitors, hub, measures)
    factory = OperatorChannelFactory(driver, hub, operators, canned, settings, clock)

It fans each L{NotifyOperators} out to the operators it names (one, or
all), each copy with that operator's own unread count, and each
L{NotifyTeam} to everyone. A link that fails to take an event is logged
and the others still get it; how much a slow operator may leave unread is
the link's own bound (the channel closes it past C{max_outbound_buffer}),
so it never holds the others up.

It also keeps what operators need to name and list conversations (the
alias index, L{ConversationIndex}, and the list's order, L{WaitingOrder},
kept in step with the inbox: filled from it once, then told of every
conversation the driver notifies about) and who has
which conversation open (viewing indicators, at most one conversation per
connection), here and, with several daemons, through the others (told
through its L{OperatorPresence}, kept in L{RemoteViewers}).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from wsdaemon.conversations.aliases import (
    DEFAULT_MAX_CANDIDATES,
    DEFAULT_MAX_ENTRIES,
    ConversationIndex,
    UnknownReference,
)
from wsdaemon.conversations.effects import NotifyOperators, NotifyTeam
from wsdaemon.conversations.inbox import Inbox
from wsdaemon.conversations.model import Conversation, Status, conversation_id_for
from wsdaemon.support.ordering import WaitingOrder
from wsdaemon.support.ports import IOperatorPort
from wsdaemon.support.summaries import DEFAULT_TEXT_CHARS, message_entry, note_entry, summary
from wsdaemon.support.viewing import RemoteViewers

__all__ = ["ID_LENGTH", "OperatorHub", "OperatorLink", "OperatorPresence"]

_log = Logger(namespace="wsdaemon.operators")

#: Characters of a conversation id (L{conversation_id_for}): a reference
#: this long is taken as an id even when the index does not hold it (a
#: resolved conversation the driver reads from the store).
ID_LENGTH = 20
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz234567")


class OperatorPresence(Protocol):
    """
    Where operators' connections are known across daemons (with Redis:
    L{wsdaemon.support.redis_team.TeamPresence}).
    """

    def hold(self, operator: str) -> Deferred[None]:
        """
        C{operator}'s first connection to this daemon opened.

        @return: a Deferred firing with None once it is known (errors
            handled).
        """

    def release(self, operator: str) -> Deferred[bool]:
        """
        C{operator}'s last connection to this daemon closed.

        @return: a Deferred firing with whether another live daemon still
            holds a connection of it.
        """

    def share_viewing(self, hub: OperatorHub) -> None:
        """Tell C{hub} what the other daemons' operators view (C{hub.remote})."""

    def viewing(self, connection: str, operator: str, conversation_id: str | None) -> None:
        """C{connection} (of C{operator}) here has C{conversation_id} open now (None: none)."""


class OperatorLink(Protocol):
    """What the hub needs of an operator's connection."""

    operator: str

    def send_event(self, event: dict[str, Any]) -> None:
        """Send one event (already bounded); must not raise for a closed link."""


@implementer(IOperatorPort)
class OperatorHub:
    """
    @param inbox: the driver's inbox (the hub reads it, never changes it).
    @param clock: for waiting times in summaries.
    @param display_names: operators' display names by login name.
    @param max_index_entries: conversations the alias index holds (the
        live ones always stay).
    @param max_candidates: candidates an ambiguous reference lists.
    @param text_chars: characters of a message or note sent in an event.
    """

    def __init__(self, inbox: Inbox, clock: IReactorTime, *,
                 display_names: Mapping[str, str] | None = None,
                 max_index_entries: int = DEFAULT_MAX_ENTRIES,
                 max_candidates: int = DEFAULT_MAX_CANDIDATES,
                 text_chars: int = DEFAULT_TEXT_CHARS) -> None:
        if not IReactorTime.providedBy(clock):
            raise TypeError(f"{clock!r} does not provide IReactorTime")
        self.inbox = inbox
        self.clock = clock
        self.display_names = dict(display_names or {})
        self.text_chars = text_chars
        self.index = ConversationIndex(max_entries=max_index_entries,
                                       max_candidates=max_candidates, keep=self._live)
        self.order = WaitingOrder(inbox.conversation)
        self._synced = False
        self._links: list[OperatorLink] = []
        self._viewing: dict[OperatorLink, str] = {}
        self._viewers: dict[str, dict[OperatorLink, None]] = {}
        #: Who views what through the other daemons (with Redis).
        self.remote = RemoteViewers()
        self._presence: OperatorPresence | None = None
        #: (route, visitor) -> its visitor_online and visitor_last_seen (the
        #: visitor sessions' L{VisitorPresence.state}); None: unknown.
        self.visitor_state: Callable[[str, str], Mapping[str, Any]] | None = None
        #: Told an operator's name when its availability or capacity
        #: changed, None when a conversation was updated (an assignee's
        #: load may have dropped): L{wsdaemon.support.roster.Roster.check}.
        self.on_team: Callable[[str | None], None] | None = None

    @property
    def presence(self) -> OperatorPresence | None:
        """
        Told of operators' first and last connections here and what they
        view (several daemons sharing Redis); None with one daemon.
        """
        return self._presence

    @presence.setter
    def presence(self, presence: OperatorPresence | None) -> None:
        self._presence = presence
        if presence is not None:
            presence.share_viewing(self)

    # -- names -----------------------------------------------------------------

    def _live(self, conversation_id: str) -> bool:
        found = self.inbox.conversation(conversation_id)
        return found is not None and found.status is not Status.RESOLVED

    def sync(self) -> None:
        """
        Take every conversation the inbox holds into the index, once: the
        first time it holds any. An operator may connect while the store
        still loads (a queue's take-over, 100,000 conversations): the empty
        inbox it then finds is not yet the loaded one.
        """
        if self._synced or not len(self.inbox):
            return
        self._synced = True
        live = self.inbox.conversations()
        self.index.add_many((c.conversation_id, c.visitor) for c in live)
        self.order.see_all(live)

    def resolve(self, reference: str) -> str:
        """
        The conversation an operator names by id, alias or unique prefix.

        @raise UnknownReference: nothing known matches (a whole id of a
            conversation not in memory is passed on as it is: the driver
            reads it from the store).
        @raise AmbiguousReference: more than one matches.
        """
        self.sync()
        try:
            return self.index.resolve(reference)
        except UnknownReference:
            query = reference.strip().lower()
            if len(query) == ID_LENGTH and set(query) <= _ID_CHARS:
                return query
            raise

    def alias(self, conversation: Conversation) -> str:
        return self.index.add(conversation.conversation_id, conversation.visitor)

    def display_name(self, operator: str) -> str:
        return self.display_names.get(operator, operator)

    def summary(self, conversation: Conversation, operator: str) -> dict[str, Any]:
        """The conversation as C{operator} sees it (its unread count, who views it)."""
        return summary(conversation, operator, self.clock.seconds(),
                       alias=self.alias(conversation),
                       viewing=self.viewers(conversation.conversation_id),
                       names=self.display_names,
                       presence=None if self.visitor_state is None
                       else self.visitor_state(conversation.route, conversation.visitor))

    def visitor_presence_changed(self, route: str, visitor: str) -> None:
        """A visitor came or went: a C{presence} event, when its conversation is live."""
        conversation = self.inbox.conversation(conversation_id_for(route, visitor))
        if conversation is not None and self._links:
            self.notify(NotifyOperators("presence", conversation))

    # -- connections -------------------------------------------------------------

    def attach(self, link: OperatorLink) -> None:
        self.sync()
        if link not in self._links:
            first = not self.links_of(link.operator)
            self._links.append(link)
            if first and self.presence is not None:
                self.presence.hold(link.operator)

    def detach(self, link: OperatorLink) -> bool:
        """
        @return: whether it was its operator's last link (the operator is
            gone: the channel then tells the driver it is offline).
        """
        self.view(link, None)
        if link in self._links:
            self._links.remove(link)
        return not self.links_of(link.operator)

    def links_of(self, operator: str) -> list[OperatorLink]:
        return [link for link in self._links if link.operator == operator]

    @property
    def links(self) -> list[OperatorLink]:
        return list(self._links)

    def viewers(self, conversation_id: str) -> list[str]:
        """Who views C{conversation_id}, here and through the other daemons."""
        here = {link.operator for link in self._viewers.get(conversation_id, {})}
        return sorted(here | self.remote.operators(conversation_id))

    def viewing_here(self) -> list[tuple[str, str, str]]:
        """(connection, operator, conversation) of each connection here viewing one."""
        return [(_connection_id(link), link.operator, conversation_id)
                for link, conversation_id in self._viewing.items()]

    def viewing_changed(self, conversation_ids: set[str]) -> None:
        """Everyone is told who views these conversations now (the others' news moved them)."""
        for conversation_id in sorted(conversation_ids):
            self._broadcast({"type": "viewing", "conversation": conversation_id,
                             "operators": self.viewers(conversation_id)})

    def view(self, link: OperatorLink, conversation_id: str | None) -> None:
        """
        C{link} has C{conversation_id} open now (None: none); everyone is
        told who views the conversations this changed.
        """
        before = self._viewing.get(link)
        if before == conversation_id:
            return
        if before is not None:
            del self._viewing[link]
            held = self._viewers[before]
            del held[link]
            if not held:
                del self._viewers[before]
        if conversation_id is not None:
            self._viewing[link] = conversation_id
            self._viewers.setdefault(conversation_id, {})[link] = None
        if self._presence is not None:
            self._presence.viewing(_connection_id(link), link.operator, conversation_id)
        for changed in (before, conversation_id):
            if changed is not None:
                self._broadcast({"type": "viewing", "conversation": changed,
                                 "operators": self.viewers(changed)})

    # -- IOperatorPort -------------------------------------------------------

    def notify(self, effect: NotifyOperators) -> None:
        conversation = effect.conversation
        if self.on_team is not None and effect.kind == "updated":
            self.on_team(None)  # an assignee's load may have dropped
        self.index.add(conversation.conversation_id, conversation.visitor)
        self.order.see(conversation)
        recipients = (self._links if effect.operator is None
                      else self.links_of(effect.operator))
        extra: dict[str, Any] = {}
        if effect.message is not None:
            extra["message"] = message_entry(effect.message, self.text_chars)
        if effect.note is not None:
            extra["note"] = note_entry(effect.note, self.text_chars)
        if effect.actor is not None:
            extra["actor"] = effect.actor
        copies: dict[str, dict[str, Any]] = {}
        for link in list(recipients):
            event = copies.get(link.operator)
            if event is None:
                event = {"type": effect.kind,
                         "conversation": self.summary(conversation, link.operator), **extra}
                copies[link.operator] = event
            self._send(link, event)

    def team_changed(self, effect: NotifyTeam) -> None:
        """
        Every operator here is told. A member joined by the configuration
        is told as the team holds it (another daemon's news of it may come
        when this one knows it already, online); one that left, only if
        the team here let it go (C{"left": true}).
        """
        if self.on_team is not None:
            self.on_team(effect.operator)
        name = effect.operator
        if effect.joined or effect.left:
            member = self.inbox.team.get(name)
            if member is None and effect.left:
                self._broadcast({"type": "team", "operator": {
                    "name": name, "display_name": self.display_name(name),
                    "availability": effect.availability, "capacity": effect.capacity,
                    "load": 0, "left": True}})
            elif member is not None and not effect.left:
                self._broadcast({"type": "team", "operator": {
                    "name": name, "display_name": self.display_name(name),
                    "availability": str(member.availability), "capacity": member.capacity,
                    "load": member.load}})
            return
        self._broadcast({"type": "team", "operator": {
            "name": name, "display_name": self.display_name(name),
            "availability": effect.availability, "capacity": effect.capacity,
            "load": effect.load}})

    def _broadcast(self, event: dict[str, Any]) -> None:
        for link in list(self._links):
            self._send(link, event)

    def _send(self, link: OperatorLink, event: dict[str, Any]) -> None:
        try:
            link.send_event(event)
        except Exception:
            _log.failure("operator {name}: could not send a {kind} event", name=link.operator,
                         kind=event.get("type"))


def _connection_id(link: OperatorLink) -> str:
    """A connection's name for the other daemons (unique while it is open)."""
    return format(id(link), "x")
