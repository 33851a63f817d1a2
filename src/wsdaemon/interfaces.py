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

from collections.abc import Mapping

from zope.interface import Attribute, Interface

from wsdaemon.strategy import StrategyContext

__all__ = ["IReplyStrategy", "ISession", "IStrategyFactory"]


class ISession(Interface):
    """
    One client's open WebSocket connection, as a strategy sees it.
    """

    session_id = Attribute("A unique, opaque str naming this connection.")
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

        Codes 1000, 1001, 1008, 1011 and 3000-4999 are accepted; closing an
        already closing session does nothing.

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

        @param context: a L{wsdaemon.strategy.StrategyContext} (clock,
            config directory, route path).

        @raise wsdaemon.strategy.OptionError: naming the offending key and
            what was expected; the config loader adds file, section and line.

        @return: a provider of L{IReplyStrategy}.
        """
