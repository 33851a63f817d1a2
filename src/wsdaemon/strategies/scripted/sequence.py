"""
A rule's steps as one connection runs them: send, expect the client's next
message within a time, close. Each expectation met or missed is noted in the
route's journal (direction C{step}); a miss ends the run and, with the
rule's C{fail_close}, closes the connection with that code.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from wsdaemon.interfaces import IJournalNotes, ISession
from wsdaemon.strategies.scripted.matching import NOT_PARSED, match
from wsdaemon.strategies.scripted.rules import Outgoing, Rule, Step

__all__ = ["StepRun"]

_log = Logger(namespace="wsdaemon.scripted")


def _shown(message: str | bytes) -> str:
    if isinstance(message, bytes):
        return f"<{len(message)} bytes: {message[:16].hex()}>"
    return repr(message if len(message) <= 80 else message[:77] + "...")


class StepRun:
    """
    One run of C{rule}'s steps on C{session}; its one timer comes from
    C{clock} and is cancelled by L{cancel}.

    @param render: fills a message's template (from the message that
        started the run).
    """

    def __init__(self, rule: Rule, session: ISession, clock: IReactorTime,
                 render: Callable[[Outgoing], str | bytes]) -> None:
        self.rule = rule
        self._session = session
        self._clock = clock
        self._render = render
        self._position = 0
        self._waiting: Step | None = None
        self._call: IDelayedCall | None = None
        self.finished = False

    def start(self) -> None:
        self._advance()

    def cancel(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        self.finished = True

    def offer(self, message: str | bytes) -> bool:
        """
        @return: whether the run took C{message} (it was waiting for one).
        """
        step = self._waiting
        if step is None or self.finished:
            return False
        self._waiting = None
        if self._call is not None and self._call.active():
            self._call.cancel()
        assert step.expect is not None
        matched, _, _ = match(step.expect, message, NOT_PARSED)
        if matched:
            self._note(f"rule {self.rule.name} step {self._position}: got {_shown(message)} "
                       f"as expected ({step.expect_text})")
            self._advance()
        else:
            self._fail(f"expected {step.expect_text}, got {_shown(message)}")
        return True

    # -- running ---------------------------------------------------------------------

    def _advance(self) -> None:
        steps = self.rule.steps
        while self._position < len(steps) and not self.finished:
            step = steps[self._position]
            self._position += 1
            if step.send is not None:
                if step.send.delay:
                    self._call = self._clock.callLater(step.send.delay, self._send_later,
                                                       step.send)
                    return
                self._session.send(self._render(step.send))
            elif step.close is not None:
                self.finished = True
                self._note(f"rule {self.rule.name}: steps done (closed {step.close.code})")
                self._session.close(step.close.code, step.close.reason)
                return
            else:
                self._waiting = step
                self._call = self._clock.callLater(step.within, self._timed_out)
                return
        if not self.finished:
            self.finished = True
            self._note(f"rule {self.rule.name}: steps done")

    def _send_later(self, message: Outgoing) -> None:
        self._call = None
        self._session.send(self._render(message))
        self._advance()

    def _timed_out(self) -> None:
        self._call = None
        step, self._waiting = self._waiting, None
        assert step is not None
        self._fail(f"expected {step.expect_text} within {step.within:g} s, got nothing")

    def _fail(self, why: str) -> None:
        self.finished = True
        text = f"rule {self.rule.name} step {self._position} failed: {why}"
        _log.info("{session}: {failure}", session=self._session.session_id, failure=text)
        self._note(text)
        close = self.rule.fail_close
        if close is not None:
            self._session.close(close.code, close.reason)

    def _note(self, text: str) -> None:
        if IJournalNotes.providedBy(self._session):
            self._session.note(text)
