"""
The support component's ports, beside the driver that uses them: where
conversations are stored (L{IConversationStore}) and what the driver's
effects go through (L{IVisitorPort}, L{IOperatorPort},
L{IConversationMeasures}). Internal: not for strategy authors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred
from zope.interface import Interface

if TYPE_CHECKING:
    from wsdaemon.conversations.effects import (
        AnnounceAvailability,
        Commit,
        ConfirmVisitorMessage,
        DeliverMessage,
        Measure,
        NotifyOperators,
        NotifyTeam,
        RefuseVisitor,
        SignalVisitor,
    )
    from wsdaemon.conversations.model import Conversation, Message, Note
    from wsdaemon.support.search import SearchQuery, SearchResult

__all__ = ["IConversationMeasures", "IConversationSearch", "IConversationStore", "IOperatorPort",
           "IVisitorPort"]


class IConversationStore(Interface):
    """
    Where conversations are kept (in progress: not yet used by the daemon;
    see docs/conversations.md).

    Records are those of L{wsdaemon.conversations.model}. The core
    (L{wsdaemon.conversations.decide}) decides every change; a store keeps
    what it is told, all of a commit or nothing, and refuses a commit
    decided on a version it no longer holds. Every method returns a
    Deferred; I/O happens off the reactor thread or over the network.
    Ephemeral fields (typing) are not kept: loaded records have none.
    """

    def open() -> Deferred[None]:
        """
        Prepare the store: create its tables, and on first open take over
        the operator queue's items and messages (kept as they were).

        @return: a Deferred firing with None when ready.
        """

    def close() -> Deferred[None]:
        """
        Finish pending writes and release the store.

        @return: a Deferred firing with None once everything is written.
        """

    def commit(commit: Commit) -> Deferred[None]:
        """
        Store a L{wsdaemon.conversations.effects.Commit}, all or nothing:
        each conversation only if the stored one has its version minus one
        (none stored, for version 1); its messages and notes only if their
        numbers are new.

        @return: a Deferred firing with None once durable, or failing with
            L{wsdaemon.conversations.errors.StaleConversation} naming the
            conversations that clashed (nothing stored then).
        """

    def load_live() -> Deferred[list[Conversation]]:
        """
        @return: a Deferred firing with every open or snoozed conversation,
            in the order they opened (the queue's order after a restart).
        """

    def load(conversation_id: str) -> Deferred[Conversation | None]:
        """
        @return: a Deferred firing with the conversation in any state, or
            None when there is none.
        """

    def messages(conversation_id: str, after: int = 0,
                 limit: int = 100) -> Deferred[list[Message]]:
        """
        What a resuming visitor is sent.

        @return: a Deferred firing with up to C{limit} messages numbered
            after C{after}, oldest first.
        """

    def history(conversation_id: str, before: int | None = None,
                limit: int = 100) -> Deferred[list[Message]]:
        """
        What an operator scrolls back through.

        @return: a Deferred firing with the newest C{limit} messages
            numbered before C{before} (None: of all), oldest first.
        """

    def notes(conversation_id: str, before: int | None = None,
              limit: int = 100) -> Deferred[list[Note]]:
        """
        @return: a Deferred firing with the newest C{limit} private notes
            numbered before C{before} (None: of all), oldest first.
        """


class IConversationSearch(Interface):
    """
    A store that searches every conversation it keeps, resolved ones
    included (L{wsdaemon.support.search}); one that does not is searched in
    what the daemon holds.
    """

    def search(query: SearchQuery) -> Deferred[SearchResult]:
        """
        Find the conversations whose messages (notes too, if asked) or
        visitor details hold every word of C{query}: bounded in rows and
        time, off the reactor thread and off the store's writer.

        @return: a Deferred firing with the page of them, most recent
            activity first, each with its newest hits and their snippets.
        """


class IVisitorPort(Interface):
    """
    How the conversation driver reaches visitors (in progress: not yet
    used by the daemon). The driver calls it only after the commit of what
    an effect carries has landed, from the reactor thread; a port must not
    block, and what it raises is logged and does not undo the commit.
    """

    def deliver(effect: DeliverMessage) -> bool:
        """
        Write a committed message to the visitor's open connections on its
        route (or leave it for the next one: resume sends it then).

        @return: True when it was written to a connection that will not
            acknowledge it itself (plain text): the driver then records it
            as delivered. False otherwise (no connection, or structured
            clients, which send their own receipts).
        """

    def tell(effect: ConfirmVisitorMessage | SignalVisitor | RefuseVisitor) -> None:
        """
        Tell the visitor's connections something that is not a message: its
        message stored (or refused), typing, read up to, a new status.

        @return: None.
        """

    def announce(effect: AnnounceAvailability) -> None:
        """
        Tell every connected visitor whether an operator is available now.

        @return: None.
        """


class IOperatorPort(Interface):
    """
    How the conversation driver reaches operators (the operator channel);
    called as L{IVisitorPort} is, after the commit landed.
    """

    def notify(effect: NotifyOperators) -> None:
        """
        Tell the operators (or the one named) about a conversation; each
        operator's copy carries its own unread count.

        @return: None.
        """

    def team_changed(effect: NotifyTeam) -> None:
        """
        Tell the operators that one of them changed availability or capacity.

        @return: None.
        """


class IConversationMeasures(Interface):
    """Where the conversation driver's measures go (the metrics' histograms)."""

    def observe(effect: Measure) -> None:
        """
        Record one observation (first response or resolution time).

        @return: None.
        """
