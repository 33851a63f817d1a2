"""
The visitor proved who it is (L{Identify}): the profile is kept on its
conversation, merged with what it had (a token's fields stand), and the
operators are told.
"""

from __future__ import annotations

from wsdaemon.conversations.events import Identify
from wsdaemon.conversations.model import conversation_id_for, evolve
from wsdaemon.conversations.profile import merged
from wsdaemon.conversations.transition import Draft

__all__ = ["identify"]


def identify(draft: Draft, event: Identify) -> None:
    """
    Nothing changes when the visitor has no conversation yet (its first
    message brings the profile) or the profile adds nothing: no commit.
    """
    found = draft.get(conversation_id_for(event.route, event.visitor))
    if found is None:
        return
    profile = merged(found.profile, event.profile)
    if profile is found.profile:
        return
    conversation = evolve(found, profile=profile)
    draft.put(conversation)
    draft.notify("updated", conversation)
