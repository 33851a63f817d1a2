"""
The interfaces that hold wsdaemon together.

A *reply strategy* decides what a route answers. The protocol hands it every
message together with the client's *session*; the strategy answers by
returning a reply (see L{IReplyStrategy.message_received}) and may also push
to the session at any later time. A *strategy factory* turns one route's
config options into a strategy; the config names factories by short name,
dotted path or Twisted plugin.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from zope.interface import Attribute, Interface

from wsdaemon.records import (
    HandshakeAnswer,
    HandshakeRequest,
    ItemRecord,
    MessageRecord,
    PushTarget,
)

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
    from wsdaemon.strategies.api import OptionContext, StrategyContext

__all__ = ["IConnectionFaults", "IConversationMeasures", "IConversationStore", "IFlowControl",
           "IHandshakeHook", "IHandshakePolicy", "IOperatorPort", "IOperatorQueue",
           "IOptionCheck", "IPushBus", "IQueueStore", "IReplyStrategy", "IResettable",
           "IRulesReplaceable", "IScenarios", "ISession", "IStrategyFactory", "IVisitorPort"]


class ISession(Interface):
    """
    One client's open WebSocket connection, as a strategy sees it.
    """

    session_id = Attribute("A unique, opaque str naming this connection.")
    client_id = Attribute(
        "The client's identity across reconnects (str): the client_id query parameter "
        "it connected with, or its session_id when it gave none."
    )
    route = Attribute("The URL path (str) of the route the client connected to.")
    peer = Attribute("The client's address as a str, e.g. '127.0.0.1:50312'.")
    connected_at = Attribute("When the connection opened, in the clock's seconds (float).")
    is_open = Attribute("True until the connection starts closing (bool).")

    def send(message: str | bytes) -> bool:
        """
        Send one message: a str as a text frame, bytes as a binary frame.

        @return: True if it was handed to the connection, False if the
            connection is no longer open (nothing is sent, nothing raised).
        """

    def close(code: int = 1000, reason: str = "") -> None:
        """
        Start the closing handshake with a close code and a reason.

        Codes a server may send are accepted (1000-1003, 1007-1014 and
        3000-4999: L{wsdaemon.records.SENDABLE_CLOSE_CODES}), others raise
        ValueError; closing an already closing session does nothing.

        @return: None.
        """


class IConnectionFaults(Interface):
    """
    Faults a strategy may cause on purpose, to test how a client copes
    (wsdaemon's sessions provide it besides L{ISession}; check with
    C{IConnectionFaults.providedBy(session)}). Each does nothing once the
    connection is closed.
    """

    def drop() -> None:
        """
        End the TCP connection now, without a closing handshake: the client
        sees an abnormal closure (1006).

        @return: None.
        """

    def pause_reading(seconds: float) -> None:
        """
        Stop reading the client's data for C{seconds}: its messages wait in
        the kernel's buffers, then its own sends block.

        @return: None.
        """

    def hold_writes(seconds: float) -> None:
        """
        Hold everything sent to the client (replies, pushes) for
        C{seconds}, then send it in order. Past the route's
        C{max_outbound_buffer} the connection is dropped.

        @return: None.
        """

    def send_fragmented(message: str | bytes, frames: int) -> bool:
        """
        Send one message as up to C{frames} frames (continuation frames).

        @return: False if the connection is closed.
        """

    def ping(payload: bytes, timeout: float) -> Deferred[float | None]:
        """
        Send a ping with C{payload} (at most 125 bytes, unique among this
        connection's waiting pings).

        @return: a Deferred firing with the seconds until the pong, or None
            if none came within C{timeout} (the connection is then dropped)
            or the connection closed.
        """


class IFlowControl(Interface):
    """
    A session that tells a producer when its client stops reading
    (wsdaemon's sessions provide it besides L{ISession}; check with
    C{IFlowControl.providedBy(session)}). A strategy relaying a source that
    can wait (a process's output) pauses it instead of piling data up for a
    slow client.
    """

    def register_producer(producer: IPushProducer) -> None:
        """
        Until the connection closes, call C{producer.pauseProducing()} when
        what is sent to the client piles up in its transport, and
        C{producer.resumeProducing()} once the client has caught up; at once
        C{pauseProducing()} if it is behind now. One producer per session:
        another replaces it. Does nothing once the connection is closed.

        @return: None.
        """

    def hold_reading(held: bool) -> None:
        """
        Stop reading the client (C{held} True) until called with False: a
        strategy whose work for this client piles up (a backend behind)
        lets the client's messages wait in the kernel's buffers, then its
        own sends block. Messages already read are still delivered. Does
        nothing once the connection is closed.

        @return: None.
        """


class IReplyStrategy(Interface):
    """
    What a route answers to its clients.

    All methods are called on the reactor thread and must not block. An
    exception raised by a method is logged and the client is closed with
    1011 (internal error); other clients are unaffected.
    """

    def connection_opened(session: ISession) -> None:
        """
        A client finished its opening handshake on this strategy's route.

        The strategy may send greetings through C{session.send}.

        @return: None.
        """

    def message_received(session: ISession, message: str | bytes) -> object:
        """
        A client sent a message: a str for a text message, bytes for binary.

        @return: the reply, one of
            - C{None}: no reply now;
            - a C{str} or C{bytes}: one message (text or binary);
            - a list or tuple of C{str}/C{bytes}: several messages, in order;
            - a L{twisted.internet.defer.Deferred} firing with any of the
              above, for an answer that comes later.
            Return a plain value whenever the answer is ready: a Deferred
            costs measurable throughput on the per-message path.
        """

    def connection_closed(session: ISession, code: int | None, reason: str) -> None:
        """
        The connection is gone; C{code} is the close code (None if the TCP
        connection dropped without a closing handshake).

        The strategy must cancel any timer it holds for this session.

        @return: None.
        """


class IStrategyFactory(Interface):
    """
    Builds a reply strategy from one route's options.

    Register one as a built-in, name it by dotted path in the config, or ship
    it as a Twisted plugin (an object providing both
    L{twisted.plugin.IPlugin} and this interface in a C{twisted/plugins/}
    module).
    """

    name = Attribute("Short name (str) used in the config, e.g. 'echo'.")
    description = Attribute("One line (str) saying what the strategy does.")

    def create(options: Mapping[str, str], context: StrategyContext) -> IReplyStrategy:
        """
        Validate C{options} (a read-only mapping of str to str: the route's
        keys that are not generic route settings) and build a strategy.

        @param context: a L{wsdaemon.strategies.api.StrategyContext} (clock,
            config directory, route path).

        @raise wsdaemon.strategies.api.OptionError: naming the offending key and
            what was expected; the config loader adds file, section and line.

        @return: a provider of L{IReplyStrategy}.
        """


class IOptionCheck(Interface):
    """
    A strategy factory that can check a route's options without building
    anything (optional, alongside L{IStrategyFactory}).

    Reading the config calls C{check}: a mistake is reported (and a reload
    refused) before anything runs, and C{--check-config} finds it. A factory
    without it is checked by building one strategy on a stopped clock and
    dropping it.
    """

    def check(options: Mapping[str, str], context: OptionContext) -> object:
        """
        Validate C{options} (as for L{IStrategyFactory.create}).

        @param context: a L{wsdaemon.strategies.OptionContext} (config
            directory, route path, whether the daemon has an operator queue).

        @raise wsdaemon.strategies.OptionError: as C{create} would.

        @return: an immutable value (e.g. a parsed rules file), handed to
            C{create} as C{context.checked}; None if there is nothing to keep.
        """


class IResettable(Interface):
    """
    A strategy whose state the admin API can reset while it runs
    (C{POST /routes/reset}): a test starts from a known state without a
    reload or a new connection.
    """

    def reset() -> None:
        """
        Forget every open connection's state (counters, cycles, answered
        once-rules) and cancel its timers (tickers, delayed replies).

        @return: None.
        """


class IScenarios(Interface):
    """
    A strategy with named states shared by its route's connections
    (WireMock's scenarios): the admin API reads and sets them
    (C{GET/PUT /routes/scenarios}); a reset puts each back where it starts.
    """

    def scenarios() -> dict[str, str]:
        """
        @return: each scenario's name and its current state.
        """

    def set_scenarios(states: Mapping[str, str]) -> None:
        """
        Move each scenario named to its state now, for every connection;
        all are checked first, so a mistake changes nothing.

        @raise KeyError: naming a scenario no rule names.
        @raise ValueError: if a state is not a usable state name.
        @return: None.
        """


class IHandshakePolicy(Interface):
    """
    A strategy that says how its route answers opening handshakes on
    purpose: subprotocols, refusals (a rules file's C{[handshake]}).
    """

    handshake_plan = Attribute(
        "A wsdaemon.records.HandshakePlan, or None for the ordinary handshake. Read when "
        "the route is built or reloaded, its rules replaced or its state reset.")


class IHandshakeHook(Interface):
    """
    A strategy that takes part in each client's opening handshake (the
    C{proxy} strategy opens its upstream connection there, so that the
    client gets the upstream's subprotocol, or its refusal).
    """

    def connecting(request: HandshakeRequest) -> Deferred[HandshakeAnswer]:
        """
        A client asks to connect (every other check passed).

        @param request: a L{wsdaemon.records.HandshakeRequest}; its
            C{session_id} is the one C{connection_opened} will see.
        @return: a Deferred firing with a L{wsdaemon.records.HandshakeAnswer}
            to accept (the subprotocol must be one the client offered), or
            failing with L{wsdaemon.records.HandshakeRefused} to refuse with
            its status; it is cancelled if the client goes away first.
        """

    def abandoned(session_id: str) -> None:
        """
        The client went away after C{connecting} answered and before its
        connection opened: forget what was prepared for it.

        @return: None.
        """


class IRulesReplaceable(Interface):
    """
    A strategy driven by a rules file whose rules the admin API can replace
    while it runs (C{PUT /routes/rules}), without touching the file.
    """

    def replace_rules(source: bytes) -> int:
        """
        Parse C{source}, a rules file's contents, and answer by it from now
        on, open connections included (their state is reset).

        @raise wsdaemon.strategies.OptionError: with the line and what was
            expected, if C{source} is wrong; nothing changes then.

        @return: the number of rules.
        """


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


class IPushBus(Interface):
    """
    The one seam every push goes through (the push API, and anything else
    that sends to clients it did not hear from). In-process by default; a
    broker-backed bus fans out across daemons without the API changing.
    """

    def publish(target: PushTarget, message: str | bytes) -> Deferred[int]:
        """
        Send C{message} (str: text, bytes: binary) to every connection the
        L{wsdaemon.connections.index.PushTarget} names.

        @return: a Deferred firing with how many connections it was written
            to (on this daemon).
        """

    def publish_counted(target: PushTarget,
                        message: str | bytes) -> Deferred[tuple[int, int]]:
        """
        Like C{publish}.

        @return: a Deferred firing with (connections written to, open
            connections that could not take it) on this daemon.
        """
