"""
The driver's timers on the injected clock: at most one pending call per
L{Timer} identity, set again when its due time changes.

A timer is only a reminder: when it fires, the driver hands
C{TimerFired(timer)} to the core, which looks at the conversation as it
stands then and does nothing when nothing is due (a stale timer). So a timer
set late, twice, or after a restart is harmless, and the due times of a
conversation's own timers (wake, fallback, silence) are derived from its
state (L{due_times}) at start and after every commit.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from wsdaemon.conversations.events import Timer, TimerKind
from wsdaemon.conversations.model import Conversation
from wsdaemon.conversations.settings import ConversationSettings
from wsdaemon.conversations.transition import due_times

__all__ = ["DueTimers"]


class DueTimers:
    """
    @ivar due: each pending timer's due time (what tests look at).
    """

    def __init__(self, clock: IReactorTime, fire: Callable[[Timer], object]) -> None:
        self._clock = clock
        self._fire = fire
        self._calls: dict[Timer, IDelayedCall] = {}
        self.due: dict[Timer, float] = {}

    def set(self, timer: Timer, at: float) -> None:
        """Due at C{at} (a time past fires at once, on the next turn of the reactor)."""
        if self.due.get(timer) == at:
            return
        self.cancel(timer)
        delay = max(0.0, at - self._clock.seconds())
        self._calls[timer] = self._clock.callLater(delay, self._fired, timer)
        self.due[timer] = at

    def cancel(self, timer: Timer) -> None:
        call = self._calls.pop(timer, None)
        self.due.pop(timer, None)
        if call is not None and call.active():
            call.cancel()

    def derive(self, conversation: Conversation, settings: ConversationSettings) -> None:
        """Set or cancel the conversation's own timers as its state says."""
        for kind, at in due_times(conversation, settings).items():
            timer = Timer(kind, conversation.conversation_id)
            if at is None:
                self.cancel(timer)
            else:
                self.set(timer, at)

    def cancel_all(self) -> None:
        for timer in list(self._calls):
            self.cancel(timer)

    def pending(self, kind: TimerKind | None = None) -> dict[Timer, float]:
        return {t: at for t, at in self.due.items() if kind is None or t.kind is kind}

    def _fired(self, timer: Timer) -> None:
        del self._calls[timer]
        del self.due[timer]
        self._fire(timer)
