"""
The daemon as a Twisted service: one listener per endpoint, one Site.
"""

from __future__ import annotations

from typing import Any

import txaio
from autobahn import __version__ as autobahn_version
from autobahn.websocket import HAS_NVX, USES_NVX
from twisted import __version__ as twisted_version
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from wsdaemon import __version__
from wsdaemon.config import DaemonConfig
from wsdaemon.endpoints import build_endpoint
from wsdaemon.webroot import build_site

__all__ = ["WsDaemonService", "accelerations"]

_log = Logger(namespace="wsdaemon.service")


def accelerations() -> str:
    """
    @return: which of Autobahn's accelerated code paths are in use.
    """
    if USES_NVX:
        return "NVX (masking, UTF-8 validation) in use"
    if HAS_NVX:
        return "NVX built but disabled (AUTOBAHN_USE_NVX=0?): pure Python, slow"
    return "NVX not available: pure Python, slow"


class WsDaemonService(MultiService):
    """
    Listens on every configured endpoint and serves the config's routes.
    """

    def __init__(self, config: DaemonConfig, reactor: Any) -> None:
        super().__init__()
        self.config = config
        self._reactor = reactor
        # Autobahn's own timers (handshake timeouts, auto-ping) run on
        # txaio's loop, not on the factory's reactor: point it at ours.
        txaio.use_twisted()
        txaio.config.loop = reactor  # type: ignore[attr-defined]
        self.site, self.factories = build_site(config, clock=reactor, reactor=reactor)
        for description in config.listen:
            listener = StreamServerEndpointService(build_endpoint(description, reactor), self.site)
            # Fail the start (and the process) if we cannot listen.
            listener._raiseSynchronously = True
            listener.setName(description)
            listener.setServiceParent(self)

    def privilegedStartService(self) -> None:
        # twistd binds here (before dropping privileges); `twist` binds in
        # startService. Either way, a listener that cannot bind ends the
        # process with one clear line instead of a traceback.
        try:
            super().privilegedStartService()
        except Exception as e:
            self._cannot_listen(e)

    def _queue_failed(self, failure: Failure) -> None:
        _log.failure("cannot open the operator queue's store", failure=failure)
        self._reactor.stop()

    def _cannot_listen(self, error: Exception) -> None:
        _log.critical("cannot listen: {error}", error=str(error))
        raise SystemExit(1)

    def stopService(self) -> Deferred[Any]:
        d: Deferred[Any] = maybeDeferred(super().stopService)
        queue = self.config.operator_queue
        if queue is not None:
            # Listeners first (no new messages), then let the store finish.
            d.addCallback(lambda _: queue.stop())
        return d

    def startService(self) -> None:
        config = self.config
        queue = config.operator_queue
        if queue is not None:
            queue.start().addErrback(self._queue_failed)
        _log.info(
            "wsdaemon {version} (Twisted {twisted}, Autobahn {autobahn}; {accel}) "
            "starting with {config}",
            version=__version__, twisted=twisted_version, autobahn=autobahn_version,
            accel=accelerations(), config=str(config.path),
        )
        for route in config.routes:
            _log.info(
                "route {route}: strategy {strategy}, max message {max_message} bytes, "
                "compression {compression}, origins {origins}",
                route=route.path, strategy=route.strategy_name,
                max_message=route.protocol.max_message_size,
                compression="on" if route.protocol.compression else "off",
                origins=" ".join(route.protocol.origins.patterns) or "(none)",
            )
        try:
            super().startService()
        except Exception as e:
            self._cannot_listen(e)
        for description in config.listen:
            _log.info("listening on {endpoint}", endpoint=description)
