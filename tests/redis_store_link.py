"""
The broker's real link to a test redis-server, for the Redis conversation
store's tests (the store is given the link, as the daemon gives it).
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet import reactor

from tests.redis_server import RedisServer
from wsdaemon.broker.link import BrokerSettings, RedisLink


def redis_link(server: RedisServer, prefix: str = "t:", timeout: float = 2.0,
               daemon_id: str = "d1") -> RedisLink:
    """A started link on the real reactor (stop it after the test)."""
    link = RedisLink(BrokerSettings(url=server.url, port=server.port, prefix=prefix,
                                    daemon_id=daemon_id, timeout=timeout), reactor)
    link.start()
    return link


#: Makes a started link (the keyword arguments of L{redis_link}); the
#: C{links} fixture (tests/conftest.py) stops them all after the test.
Links = Callable[..., RedisLink]
