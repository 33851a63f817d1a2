"""
Several daemons as one service, through Redis: the link they share
(L{wsdaemon.broker.link}, which the conversations' Redis store uses) and
pushes that reach every daemon (L{wsdaemon.broker.push}).
"""
