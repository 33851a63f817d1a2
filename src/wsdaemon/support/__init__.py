"""
The support inbox as a component (issue 22; in progress: not yet serving
routes, see docs/conversations.md): where conversations are stored, and,
in the steps to come, the driver that runs the conversation core
(L{wsdaemon.conversations}) on the reactor, the visitor and operator
protocols, and the hook the assembly calls.

C{store}: conversations in SQLite (C{schema}: its tables; C{writer}: the
one thread that writes, with group commit; C{migration}: the operator
queue's items and messages taken over); C{memory}: the same contract in
memory, for tests.
"""
