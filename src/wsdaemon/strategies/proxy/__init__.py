"""
The proxy strategy: relays connections to an upstream WebSocket server
(C{strategy}), records the conversations (C{recording}), and turns a
recording into a rules file that replays the upstream's side (C{replay},
the C{wsdaemon-replay} command).
"""
