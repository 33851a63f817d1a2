"""
The interfaces between the daemon's layers: what a strategy implements and
what the connections and the admin API ask of it (strategy authors import
theirs from L{wsdaemon.strategies}; the ports of the conversations, the
push bus and the support component live beside their owners).

A *reply strategy* decides what a route answers. The protocol hands it every
message together with the client's *session*; the strategy answers by
returning a reply (see L{IReplyStrategy.message_received}) and may also push
to the session at any later time. A *strategy factory* turns one route's
config options into a strategy; the config names factories by short name,
dotted path or Twisted plugin.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from zope.interface import Attribute, Interface

from wsdaemon.records import HandshakeAnswer, HandshakeRequest

if TYPE_CHECKING:
    from wsdaemon.strategies.api import OptionContext, StrategyContext

__all__ = ["IConnectionFaults", "IFlowControl", "IHandshakeHook", "IHandshakePolicy",
           "IJournalNotes", "IOptionCheck", "IReplyStrategy", "IResettable", "IRulesReplaceable",
           "IScenarios", "ISession", "IStrategyFactory"]

_T = TypeVar("_T")


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
            directory, route path, the config's section names).

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


class IJournalNotes(Interface):
    """
    A connection whose route's journal takes notes from its strategy (what
    a scripted rule's steps expected, met or missed: direction C{step}).
    """

    def note(text: str) -> None:
        """
        Add C{text} to the route's journal as this connection's C{step}
        entry (nothing when the journal is off or the connection closed).

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


class IPushFraming(Interface):
    """
    A strategy whose connections speak a protocol of their own (the
    conversations' C{wsdaemon.chat.v1}): a push from the admin API or
    another daemon reaches them framed in it, not as a bare message.
    """

    def frame_push(session_id: str, message: str | bytes) -> str | bytes:
        """
        What a push of C{message} is written as to this session's
        connection: C{message} itself for a connection without a protocol of
        its own. The same message must give the same frame on every
        connection that frames it (it is framed once for all of them).
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


@dataclass(frozen=True)
class Contribution:
    """
    What a component adds to the daemon for one config (L{IComponent}): the
    assembly mounts it and knows nothing else of the feature.

    @ivar strategies: the strategy factories it serves, by name, bound to
        it (they win over the registry's of the same name).
    @ivar resources: what the web root serves, by URL path (WebSocket
        resources, pages, folders of scripts).
    @ivar collectors: Prometheus collectors (C{collect()} yielding metric
        families) for C{/metrics}; registered once, when the daemon is
        built (a reload's are not looked at).
    @ivar channel: its operators' WebSocket server factory, or None: the
        daemon counts its refusals in C{/metrics} (C{refusals}, by reason, at
        C{path}) and closes its C{connections} with the clients' on a stop;
        it gives it the routes' C{trusted_proxies} (L{wsdaemon.forwarded}).
    """

    strategies: Mapping[str, IStrategyFactory] = field(default_factory=dict)
    resources: Mapping[str, Any] = field(default_factory=dict)
    collectors: tuple[Any, ...] = ()
    channel: Any = None


class IComponent(Interface):
    """
    A feature that runs inside the daemon behind one hook (issue 22, item
    9): the operator feature, conversations. The assembly
    builds it once, from the config's values, through the factory it is
    given; asks it what to mount (L{contribute}) for each config, the
    first and every reload's; hands it the config that took effect
    (L{update}); starts it before listening and stops it after the last
    connection closed (the service); and shows its L{health}.
    """

    name = Attribute("What logs and errors call it (str), e.g. 'conversations'.")

    def contribute(config: Any) -> Contribution:
        """
        What to mount for C{config} (a L{wsdaemon.config.DaemonConfig}),
        without applying it yet: a reload whose routes then fail to build
        leaves the component as it was.

        @return: the L{Contribution}.
        """

    def update(config: Any) -> None:
        """
        C{config} took effect (it built whole): its settings apply from now
        on (the next event, the next connection); what persists (the store,
        the connections) stays.

        @return: None.
        """

    def start() -> Deferred[None]:
        """
        Open what it keeps (its store), before the daemon listens.

        @return: a Deferred firing with None once it serves, or failing
            with why it cannot (the daemon then exits with status 1).
        """

    def stop() -> Deferred[None]:
        """
        Finish what is under way and close what it keeps, once the
        daemon's connections are closed.

        @return: a Deferred firing with None once everything is written.
        """

    def health() -> Mapping[str, object]:
        """
        @return: what C{/healthz} says of it, by key (e.g.
            C{{"conversations": {...}}}); plain JSON values.
        """


# -- a component's config section (issue 22, item 9) ------------------------------


class SectionReader(Protocol):
    """
    One section of the config file, as the config layer hands it to the
    section's parser (L{ISectionParser}): its values, and errors that name
    the file, the line, the section and the key
    (L{wsdaemon.config.SectionView}).
    """

    @property
    def path(self) -> Path:
        """The config file (relative paths in values are relative to its folder)."""

    @property
    def section(self) -> str:
        """The section's name."""

    @property
    def values(self) -> Mapping[str, str]:
        """The section's keys (lower case) and raw values."""

    def error(self, key: str | None, message: str) -> Exception:
        """
        @return: the error to raise (a L{wsdaemon.config.ConfigError}) for
            C{key} (None: the section), naming the file and its line.
        """

    def convert(self, key: str, parse: Callable[[str], _T]) -> _T:
        """
        @return: C{parse} of C{key}'s value; its ValueError becomes the
            error naming the key, with the ValueError's text.
        """

    def check_keys(self, allowed: Collection[str]) -> None:
        """
        Refuse the first key not in C{allowed}, with a did-you-mean and the
        list of allowed keys.

        @return: None.
        """

    def path_of(self, key: str) -> Path:
        """
        @return: the file C{key} names, relative to the config file's
            folder, with C{${CREDENTIALS_DIRECTORY}} expanded.
        """

    def secrets(self, inline_key: str, file_key: str, what: str) -> dict[str, str]:
        """
        @return: secret -> name, from C{name:secret} lines inline and/or in
            the file C{file_key} names (at least one), each at least 16
            characters, no secret twice.
        """


@dataclass(frozen=True)
class SectionContext:
    """
    What the rest of the config says, read before a component's section,
    for the checks that cross sections.

    @ivar listen: the daemon's endpoints (C{[wsdaemon] listen} or
        C{--listen}).
    @ivar routes: the routes' URL paths.
    @ivar shared: whether daemons share a broker (C{[broker] backend =
        redis}).
    """

    listen: tuple[str, ...] = ()
    routes: tuple[str, ...] = ()
    shared: bool = False


class SectionSettings(Protocol):
    """
    A component section's values, as L{ISectionParser.parse} returns them:
    immutable; the component reads them back by their own type.
    """

    def summary(self) -> str:
        """
        @return: what C{--check-config}'s line says of the section (no
            secret).
        """


class ISectionParser(Protocol):
    """
    The parser of a component's own config section: the entry point hands
    the config layer one per section name (L{wsdaemon.components.SECTIONS});
    the config layer checks the file, the sections' names and every generic
    rule, and keeps what C{parse} returns in C{DaemonConfig.sections}.
    """

    @property
    def section(self) -> str:
        """The section's name, e.g. C{operator}."""

    def parse(self, reader: SectionReader, context: SectionContext) -> SectionSettings:
        """
        @return: the section's settings.
        @raise Exception: the error C{reader.error} made, naming the key.
        """
