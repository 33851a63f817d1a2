"""
The core's errors: a move the conversation's state does not allow, and a
commit a store refused because another writer got there first.
"""

from __future__ import annotations

__all__ = ["InvalidMove", "StaleConversation"]


class InvalidMove(Exception):  # noqa: N818 - says what happened, as InvalidTransition does
    """
    The conversation is not in a state that allows this (or the request is
    wrong for it): nothing changed.

    @ivar conversation_id: the conversation, or C{""} for a move of the team
        (an operator joining a full team, a capacity below 0).
    @ivar state: the conversation's state in words (L{describe_state}), or
        C{"unknown"} when there is no such conversation.
    @param for_its_state: False when the state is not why (e.g. no such
        operator): the message then leads with the reason.
    """

    def __init__(self, conversation_id: str, state: str, action: str, why: str = "", *,
                 for_its_state: bool = True) -> None:
        subject = f"conversation {conversation_id}" if conversation_id else "the team"
        if not for_its_state:
            # Refused for something else (who it would go to): its state is
            # not the reason, and is not said as if it were.
            super().__init__(f"{subject}: cannot {action}: {why}")
        else:
            message = f"{subject} is {state}: cannot {action}"
            super().__init__(f"{message} ({why})" if why else message)
        self.conversation_id = conversation_id
        self.state = state
        self.action = action
        self.why = why


class StaleConversation(Exception):  # noqa: N818 - says what happened
    """
    A store refused a commit: a conversation's stored version is not the
    one the commit was decided on (another writer got there first), or a
    message or note number is taken. Nothing of the commit was stored; the
    caller reloads these conversations and decides again.
    """

    def __init__(self, conversation_ids: tuple[str, ...]) -> None:
        super().__init__("stale: " + ", ".join(conversation_ids))
        self.conversation_ids = conversation_ids
