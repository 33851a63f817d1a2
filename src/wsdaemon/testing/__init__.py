"""
Testing reply strategies, wsdaemon's own and third parties', in
milliseconds and without sockets.

L{StrategyHarness} serves a strategy on one route of the real daemon's
protocol, in memory: clients connect, send and read, and time passes only
when the test advances its clock. L{RecordingSession} stands in for one
connection when a test calls a strategy directly; L{check_strategy} runs
the contract every strategy must meet (the same one wsdaemon's test suite
runs against every built-in strategy).
"""

from wsdaemon.testing._contract import RecordingSession, check_strategy, is_valid_reply
from wsdaemon.testing._harness import HarnessClient, StrategyHarness

__all__ = ["HarnessClient", "RecordingSession", "StrategyHarness", "check_strategy",
           "is_valid_reply"]
