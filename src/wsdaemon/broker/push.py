"""
Pushing to clients on every daemon, through the shared event stream.
"""

from __future__ import annotations

import base64
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from wsdaemon.broker.bus import IPushBus
from wsdaemon.broker.link import RedisLink
from wsdaemon.broker.local import LocalPushBus
from wsdaemon.connections.index import PushTarget, SessionIndex

__all__ = ["RedisPushBus"]

_log = Logger(namespace="wsdaemon.push")


@implementer(IPushBus)
class RedisPushBus:
    """
    Writes a push to this daemon's connections at once and appends it to
    the event stream for the others. Pushes made in the same reactor turn
    go out as one stream entry (one Redis call for a burst, not one per
    message); each daemon writes the batch to its own connections.
    """

    def __init__(self, index: SessionIndex, link: RedisLink, clock: IReactorTime) -> None:
        self._local = LocalPushBus(index)
        self._link = link
        self._clock = clock
        self._batch: list[dict[str, Any]] = []
        self._waiting: list[Deferred[None]] = []
        self._flush_call: Any = None
        link.on_events(self._handle_events)

    def publish(self, target: PushTarget, message: str | bytes) -> Deferred[int]:
        """
        @return: a Deferred firing with how many connections here got it,
            once the other daemons can read it; failing with
            L{wsdaemon.broker.link.BrokerUnavailable} if Redis cannot be
            reached (the connections here got it all the same).
        """
        return self.publish_counted(target, message).addCallback(lambda counts: counts[0])

    def publish_counted(self, target: PushTarget,
                        message: str | bytes) -> Deferred[tuple[int, int]]:
        """
        Like L{publish}, with the connections here that could not take it.
        """
        here = self._local.deliver(target, message)
        entry: dict[str, Any] = {"target": target.to_json()}
        if isinstance(message, bytes):
            entry["base64"] = base64.b64encode(message).decode("ascii")
        else:
            entry["text"] = message
        self._batch.append(entry)
        sent: Deferred[None] = Deferred()
        self._waiting.append(sent)
        if self._flush_call is None or not self._flush_call.active():
            self._flush_call = self._clock.callLater(0, self._flush)
        return sent.addCallback(lambda _: here)

    def _flush(self) -> None:
        batch, self._batch = self._batch, []
        waiting, self._waiting = self._waiting, []
        event = {"type": "push", "origin": self._link.daemon_id, "pushes": batch}
        d = self._link.publish(event)

        def written(_: Any) -> None:
            for w in waiting:
                w.callback(None)

        def failed(failure: Failure) -> None:
            _log.error("push: {count} message(s) not sent to the other daemons: {why}",
                       count=len(batch), why=failure.getErrorMessage())
            for w in waiting:
                w.errback(failure)

        d.addCallbacks(written, failed)

    def _handle_events(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            if event.get("type") != "push" or event.get("origin") == self._link.daemon_id:
                continue
            for entry in event.get("pushes", ()):
                raw = entry["target"]
                target = PushTarget(raw["kind"], raw.get("value"))
                message: str | bytes = (base64.b64decode(entry["base64"]) if "base64" in entry
                                        else entry["text"])
                self._local.deliver(target, message)
