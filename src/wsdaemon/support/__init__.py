"""
The support inbox as a component (issue 22; in progress: not yet serving
routes, see docs/conversations.md): where conversations are stored, the
driver that runs the conversation core (L{wsdaemon.conversations}) on
the reactor, and in the steps to come the visitor and operator
protocols and the hook the assembly calls.

C{store}: conversations in SQLite (C{schema}: its tables; C{writer}: the
one thread that writes, with group commit; C{migration}: the operator
queue's items and messages taken over); C{memory}: the same contract in
memory, for tests. C{driver}: the conversation driver (not yet wired into
routes): the core on a store and an injected clock, one conversation's events
at a time (C{lanes}), effects through ports after the commit lands, timers
from state (C{timers}).
"""
