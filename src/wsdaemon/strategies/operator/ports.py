"""
The operator queue's ports, beside the queue that owns them: its store
(L{IQueueStore}, on SQLite in L{wsdaemon.strategies.operator.store}, in
memory in L{wsdaemon.strategies.operator.memory}) and the queue itself as
the daemon and the operators' channel see it (L{IOperatorQueue}, embedded
or on Redis in L{wsdaemon.broker.queue}). Internal: not for strategy
authors (see L{wsdaemon.strategies}).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface

from wsdaemon.interfaces import ISession
from wsdaemon.records import ItemRecord, MessageRecord

__all__ = ["IOperatorQueue", "IQueueStore"]


class IQueueStore(Interface):
    """
    Where the operator queue keeps items and conversations.

    Every method returns a Deferred; a store may do its I/O on another
    thread or over the network, never blocking the reactor. Records are
    L{wsdaemon.records.ItemRecord} and
    L{wsdaemon.records.MessageRecord}. The queue's state machine
    decides every transition; a store only keeps what it is told.
    """

    def open() -> Deferred[None]:
        """
        Prepare the store (create tables, connect).

        @return: a Deferred firing with None when ready.
        """

    def close() -> Deferred[None]:
        """
        Finish pending writes and release the store.

        @return: a Deferred firing with None once everything is written.
        """

    def load_open_items(preview: int = 0) -> Deferred[list[tuple[ItemRecord, int]]]:
        """
        @param preview: if not 0, each record's text is cut to this many
            characters (the queue keeps only a preview in memory).
        @return: a Deferred firing with (ItemRecord, length of the whole
            text in characters) for every item not yet answered or
            expired, oldest first.
        """

    def item_text(item_id: str) -> Deferred[str | None]:
        """
        @return: a Deferred firing with an item's whole text (None if there
            is no such item).
        """

    def message_body(seq: int) -> Deferred[str | None]:
        """
        @return: a Deferred firing with a message's whole body (None if
            there is no such message).
        """

    def add_item(item: ItemRecord, message: MessageRecord) -> Deferred[None]:
        """
        Store a new item and the client message it holds, atomically.

        @return: a Deferred firing with None once both are durable.
        """

    def update_item(item: ItemRecord) -> Deferred[None]:
        """
        Store an item's new state (claimed, released). Its text is never
        changed.

        @return: a Deferred firing with None once durable (or failing,
            and then nothing changed).
        """

    def answer_item(item: ItemRecord, reply: MessageRecord) -> Deferred[int]:
        """
        Store an item's new state together with a message to its client,
        atomically: an answer and its reply, or a fallback (and expiry)
        and the fallback message.

        @return: a Deferred firing with the message's sequence number (int)
            once both are durable (or failing, and then neither is).
        """

    def add_message(message: MessageRecord) -> Deferred[int]:
        """
        Store an outgoing or incoming message outside any item (a push, a
        broadcast, a fallback).

        @return: a Deferred firing with its sequence number (int).
        """

    def undelivered(client_id: str) -> Deferred[list[MessageRecord]]:
        """
        @return: a Deferred firing with the client's outgoing
            MessageRecords not yet delivered, oldest first.
        """

    def mark_delivered(seqs: Iterable[int]) -> Deferred[None]:
        """
        Record that the messages with these sequence numbers were written
        to a connection of their client.

        @return: a Deferred firing with None.
        """

    def mark_failed(seqs: Iterable[int]) -> Deferred[None]:
        """
        Record that these messages can never be written to their client
        (too big for its route): they are no longer undelivered, and are
        shown as failed in transcripts.

        @return: a Deferred firing with None.
        """

    def transcript(client_id: str | None, before: int | None = None,
                   limit: int | None = None) -> Deferred[list[MessageRecord]]:
        """
        @param before: only messages with a smaller sequence number.
        @param limit: at most this many, the newest ones (None: all).
        @return: a Deferred firing with the MessageRecords of one client's
            conversation (or of all, for None), oldest first.
        """


class IOperatorQueue(Interface):
    """
    The operator queue as the C{operator} strategy, the operators' channel
    and the service use it. Two providers: L{wsdaemon.strategies.operator.queue.
    OperatorQueue} (one daemon, an L{IQueueStore}) and
    L{wsdaemon.broker.queue.SharedOperatorQueue} (several daemons, Redis).

    Items are Anys with C{item_id}, C{state} and C{record} (an
    L{wsdaemon.records.ItemRecord}); operators are links with a
    C{name} and a C{notify(event)} method. Requests an operator may not make
    raise (or fail with) L{wsdaemon.strategies.operator.queue.QueueError}.
    """

    settings = Attribute("The [operator] settings (OperatorSettings); a reload replaces them.")
    started = Attribute("True once the queue has loaded its open items (bool).")
    operators_online = Attribute("Operators connected, on every daemon (int).")
    send_limits = Attribute(
        "route -> the largest message (UTF-8 bytes) its clients accept, '' for a client "
        "whose route is unknown (dict[str, int]); kept up to date by the web root. Replies "
        "and pushes over it are refused before anything is stored."
    )

    def start() -> Deferred[None]:
        """
        @return: a Deferred firing when the daemon may serve (the items may
            still be loading: see C{when_started}).
        """

    def when_started() -> Deferred[None]:
        """
        @return: a Deferred firing once the open items are loaded.
        """

    def stop() -> Deferred[Any]:
        """
        Cancel timers and let pending writes finish.

        @return: a Deferred firing once they have.
        """

    def client_connected(session: ISession) -> Deferred[int]:
        """
        Track the client and deliver what was kept for it.

        @return: a Deferred firing with how many kept messages were sent.
        """

    def client_disconnected(session: ISession) -> None:
        """
        Forget the connection.

        @return: None.
        """

    def enqueue(session: ISession, text: str) -> Deferred[Any]:
        """
        Queue a client message.

        @return: a Deferred firing with the item once it is stored (the
            message is accepted only then), or failing with
            L{wsdaemon.strategies.operator.errors.QueueRefused} when it is over one
            of the caps (nothing is stored).
        """

    def position(item: Any) -> int:
        """
        @return: the item's place in the queue, 1 for the oldest.
        """

    def add_operator(operator: Any) -> None:
        """
        An operator joined (on this daemon).

        @return: None.
        """

    def remove_operator(operator: Any) -> None:
        """
        An operator's connection is gone.

        @return: None.
        """

    def open_items() -> list[Any]:
        """
        @return: the open items, oldest first.
        """

    def count_open() -> int:
        """
        @return: how many items are open (O(1)).
        """

    def iter_open(client_id: str | None = None) -> Iterator[Any]:
        """
        @return: the open items (of one client, or all), oldest first; each
            has an C{order} that grows with arrival (a paging cursor).
        """

    def full_text(item_id: str | None = None, seq: int | None = None) -> Deferred[str | None]:
        """
        @return: a Deferred firing with an item's whole text, or a
            transcript message's whole body (None if there is none).
        """

    def describe(item: Any) -> dict[str, Any]:
        """
        @return: the item as operators see it (JSON-ready).
        """

    def clients() -> list[dict[str, Any]]:
        """
        @return: connected clients: C{client_id}, C{routes}, C{connections}.
        """

    def claim(item_id: str, operator: Any) -> Any:
        """
        @return: the claimed item, or a Deferred firing with it.
        """

    def release(item_id: str, operator: Any) -> Any:
        """
        @return: the released item, or a Deferred firing with it.
        """

    def reply(item_id: str | None, operator: Any, text: str) -> Deferred[dict[str, Any]]:
        """
        Answer an item (the oldest unclaimed one for None), exactly once.

        @return: a Deferred firing with C{{"item": ..., "delivered": N}}.
        """

    def push(client_id: str, text: str, operator: Any) -> Deferred[dict[str, int]]:
        """
        Send to one client, kept for it while it is away.

        @return: a Deferred firing with C{{"delivered": N, "kept": K}}: how
            many connections (here) got it, and 1 if it was kept for the
            client (written on its next connection, or by the daemon that
            holds it), else 0.
        """

    def broadcast(route: str, text: str, operator: Any) -> Deferred[int]:
        """
        Send to every client connected to C{route} now.

        @return: a Deferred firing with how many connections (here) got it.
        """

    def transcript(client_id: str | None, before: int | None = None,
                   limit: int | None = None) -> Deferred[list[MessageRecord]]:
        """
        @param before: only messages with a smaller sequence number.
        @param limit: at most this many, the newest ones (None: all).
        @return: a Deferred firing with one client's conversation (or
            all), oldest first.
        """
