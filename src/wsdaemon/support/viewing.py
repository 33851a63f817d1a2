"""
Who has which conversation open through the other daemons sharing Redis
(viewing indicators across daemons): each daemon tells the others as its
operators' connections open and close conversations (one conversation at
a time per connection, as the hub keeps them), through the event stream
(L{wsdaemon.support.redis_team}); never stored in a conversation's record.

L{RemoteViewers} is this daemon's index of what it was told: by daemon
and connection, and by conversation, so a change and a look-up cost the
same however many conversations are open. A daemon's entries go when it
says so, when it is gone (its heartbeat ran out), when it comes back as a
new run (its earlier run's connections are gone), or are replaced whole
by its snapshot (sent when a daemon starts or its link comes back: what
was said meanwhile may be lost).

L{ViewingNews} is the news itself: this daemon's connections' changes
out (C{"type": "operator_viewing"}: the daemon and its run, the
connection, the operator, the conversation or null), the others' in; when
the link comes up everything viewed here, with a question for the others'.

News is best effort (a publish that fails while the link stays up, a
daemon so far behind that the capped stream dropped it): the heartbeat
puts it right (L{ViewingNews.beat}). After a publish of this daemon's
news failed, the next heartbeat sends everything viewed here; and every
L{SNAPSHOT_EVERY} heartbeats it is sent anyway, so whatever another
daemon lost is right again within that many heartbeats (10 s with the
default heartbeat of 2 s). A snapshot is one stream entry per daemon,
as big as the connections here that view a conversation.

Bounded: at most L{MAX_REMOTE_VIEWING} entries (more are ignored, and
logged once); names and ids longer than L{MAX_NAME} are not taken.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from wsdaemon.escaping import visible

__all__ = ["MAX_NAME", "MAX_REMOTE_VIEWING", "SNAPSHOT_EVERY", "VIEWING", "RemoteViewers",
           "TeamLink", "ViewersHub", "ViewingNews"]

#: The viewing news' type in the event stream.
VIEWING = "operator_viewing"

#: Connections of other daemons viewing a conversation, remembered at most.
MAX_REMOTE_VIEWING = 10_000
#: Characters of an operator's name, a connection's or a daemon's id taken.
MAX_NAME = 200
#: Heartbeats between two snapshots of what this daemon's connections view.
SNAPSHOT_EVERY = 5

_log = Logger(namespace="wsdaemon.operators")

#: A daemon's connection: (daemon, connection id).
_Key = tuple[str, str]


class RemoteViewers:
    """@param max_entries: connections remembered at most (L{MAX_REMOTE_VIEWING})."""

    def __init__(self, max_entries: int = MAX_REMOTE_VIEWING) -> None:
        self.max_entries = max_entries
        self._entries: dict[_Key, tuple[str, str]] = {}
        self._by_conversation: dict[str, dict[_Key, str]] = {}
        self._by_daemon: dict[str, set[str]] = {}
        self._runs: dict[str, str] = {}
        self._full_told = False

    def __len__(self) -> int:
        return len(self._entries)

    def operators(self, conversation_id: str) -> set[str]:
        """The operators viewing C{conversation_id} through other daemons."""
        return set(self._by_conversation.get(conversation_id, {}).values())

    def view(self, daemon: str, run: str, connection: str, operator: str,
             conversation_id: str | None) -> set[str]:
        """
        C{connection} of C{daemon} (its run C{run}) has C{conversation_id}
        open now (None: none).

        @return: the conversations whose viewers this changed.
        """
        changed = self._new_run(daemon, run)
        if not all(isinstance(v, str) and len(v) <= MAX_NAME
                   for v in (daemon, connection, operator)):
            return changed
        if conversation_id is not None and (not isinstance(conversation_id, str)
                                            or len(conversation_id) > MAX_NAME):
            return changed
        key = (daemon, connection)
        changed |= self._drop(key)
        if conversation_id is None:
            return changed
        if len(self._entries) >= self.max_entries:
            if not self._full_told:
                self._full_told = True
                _log.warn("operators: more than {limit} connections of other daemons view "
                          "conversations; the others are not shown", limit=self.max_entries)
            return changed
        self._entries[key] = (operator, conversation_id)
        self._by_conversation.setdefault(conversation_id, {})[key] = operator
        self._by_daemon.setdefault(daemon, set()).add(connection)
        changed.add(conversation_id)
        return changed

    def replace(self, daemon: str, run: str,
                entries: Iterable[tuple[str, str, str]]) -> set[str]:
        """C{daemon}'s whole state: (connection, operator, conversation) each."""
        changed = self.forget(daemon)
        self._runs[daemon] = run
        for connection, operator, conversation_id in entries:
            changed |= self.view(daemon, run, connection, operator, conversation_id)
        return changed

    def forget(self, daemon: str) -> set[str]:
        """C{daemon} is gone: its connections view nothing. @return: what changed."""
        changed: set[str] = set()
        for connection in list(self._by_daemon.get(daemon, ())):
            changed |= self._drop((daemon, connection))
        self._runs.pop(daemon, None)
        return changed

    def _new_run(self, daemon: str, run: str) -> set[str]:
        """A daemon seen under a new run: its earlier run's connections are gone."""
        if self._runs.get(daemon) == run:
            return set()
        changed = self.forget(daemon) if daemon in self._runs else set()
        self._runs[daemon] = run
        return changed

    def _drop(self, key: _Key) -> set[str]:
        entry = self._entries.pop(key, None)
        if entry is None:
            return set()
        _, conversation_id = entry
        viewers = self._by_conversation[conversation_id]
        del viewers[key]
        if not viewers:
            del self._by_conversation[conversation_id]
        daemon, connection = key
        connections = self._by_daemon[daemon]
        connections.discard(connection)
        if not connections:
            del self._by_daemon[daemon]
        return {conversation_id}


class ViewersHub(Protocol):
    """
    What the news needs of this daemon's operator hub
    (L{wsdaemon.support.hub.OperatorHub}): its own viewers, the others'
    it keeps, and being told which conversations' viewers changed.
    """

    remote: RemoteViewers

    def viewing_here(self) -> Iterable[tuple[str, str, str]]: ...

    def viewing_changed(self, conversation_ids: set[str]) -> None: ...


class TeamLink(Protocol):
    """What the team's keys and news need of the broker's link."""

    daemon_id: str
    prefix: str
    #: When the link last became up (None while it is down).
    up_since: float | None

    def call(self, *args: Any) -> Deferred[Any]: ...

    def on_events(self, handler: Callable[[list[dict[str, Any]]], None]) -> None: ...

    def publish(self, event: dict[str, Any]) -> Deferred[Any]: ...


class ViewingNews:
    """
    @param link: the broker's link (its stream).

    @ivar hub: whose connections' viewing is told, and whose C{remote}
        index takes the others' (none yet: nothing is told).
    @ivar run: this process's run: another daemon seeing a new one under
        the same name drops what the previous run's connections viewed.
    """

    def __init__(self, link: TeamLink) -> None:
        self._link = link
        self.daemon_id = link.daemon_id
        self.run = secrets.token_hex(6)
        self.hub: ViewersHub | None = None
        #: Heartbeats since the last snapshot; whether news was lost since.
        self._beats = 0
        self._lost = False
        link.on_events(self._events)

    def viewing(self, connection: str, operator: str, conversation_id: str | None) -> None:
        self._publish({"view": [connection, operator, conversation_id]})

    def announce(self, ask: bool) -> None:
        """Everything this daemon's connections view (C{ask}: and the others, theirs)."""
        if self.hub is not None:
            self._beats = 0
            self._lost = False
            self._publish({"views": [list(entry) for entry in self.hub.viewing_here()],
                           "ask": ask})

    def beat(self) -> None:
        """
        A heartbeat ran (the link is up): a snapshot if news was lost
        since the last one, or every L{SNAPSHOT_EVERY} heartbeats.
        """
        self._beats += 1
        if self._lost or self._beats >= SNAPSHOT_EVERY:
            self.announce(ask=False)

    def gone(self, daemons: Iterable[str]) -> None:
        """These daemons are gone: their connections view nothing."""
        if self.hub is not None:
            for daemon in daemons:
                self.hub.viewing_changed(self.hub.remote.forget(daemon))

    def _publish(self, fields: dict[str, Any]) -> None:
        d = self._link.publish({"type": VIEWING, "daemon": self.daemon_id, "run": self.run,
                                **fields})
        d.addErrback(self._not_published)

    def _not_published(self, failure: Failure) -> None:
        self._lost = True  # the next heartbeat sends a snapshot
        _log.debug("operators: viewing news not published: {why}",
                   why=failure.getErrorMessage())

    def _events(self, events: list[dict[str, Any]]) -> None:
        hub = self.hub
        for event in events:
            if event.get("type") != VIEWING or event.get("daemon") == self.daemon_id \
                    or hub is None:
                continue
            try:
                daemon, run = str(event["daemon"]), str(event["run"])
                if "view" in event:
                    connection, operator, conversation_id = event["view"]
                    changed = hub.remote.view(daemon, run, connection, operator, conversation_id)
                else:
                    changed = hub.remote.replace(daemon, run, [
                        (str(c), str(o), str(v)) for c, o, v in event["views"]])
                    if event.get("ask"):
                        self.announce(ask=False)
            except (KeyError, TypeError, ValueError):
                _log.warn("operators: skipped malformed viewing news from {daemon}",
                          daemon=visible(str(event.get("daemon"))[:64]))
                continue
            hub.viewing_changed(changed)
