"""
Several daemons as one service, through Redis: the shared operator queue
(L{wsdaemon.broker.queue}), pushes that reach every daemon
(L{wsdaemon.broker.push}), and the link they share (L{wsdaemon.broker.link}).
"""
