"""
The operator queue: client messages wait for human operators, who answer
from a terminal or web console.

C{records} are the stored values, C{item} is one item's state machine,
C{store} the embedded SQLite store, C{queue} the queue itself, C{strategy}
the reply strategy of client routes, C{channel} the operators' WebSocket
endpoint (tokens are checked by L{wsdaemon.credentials}), C{console} the
terminal console.
"""
