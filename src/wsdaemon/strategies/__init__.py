"""
Writing a reply strategy: everything a strategy author uses, and nothing
else. Import it from here; the rest of wsdaemon may change without notice.

What you implement: L{IStrategyFactory} (found by the config's C{strategy}
name: a Twisted plugin or a dotted path), optionally L{IOptionCheck} (the
options checked when the config is read, not when the daemon starts), and
the L{IReplyStrategy} it builds, optionally an L{IHandshakeHook} (accept,
refuse or name a client during its opening handshake).

What you get: a L{StrategyContext} (the clock, the config's directory, the
route) and an L{OptionContext} for the check; an L{ISession} per
connection (which may provide L{IFlowControl}); a L{HandshakeRequest} in
the hook.

What you may raise or return: L{OptionError} for a wrong option (the daemon
names the file, route and key), L{HandshakeRefused} from the hook (the HTTP
status the client gets), L{HandshakeAnswer} to accept.

Helpers: L{reject_unknown_options}; L{SENDABLE_CLOSE_CODES} (the codes
C{ISession.close} takes, and how they read in a message:
L{SENDABLE_CLOSE_CODES_TEXT}); L{public_query} and L{public_headers} (a
handshake's query and headers without the client's credentials, before
they go anywhere else); L{visible} (untrusted text made safe for a log
line); L{MessageLimits} (a route's limits on one message).

Test a strategy with L{wsdaemon.testing} (C{StrategyHarness}: a route, its
clients and the clock in memory). The built-in strategies live below this
package; C{webhook} and C{command} use only what is here.
"""

from wsdaemon.client_ids import public_headers, public_query
from wsdaemon.escaping import visible
from wsdaemon.interfaces import (
    IFlowControl,
    IHandshakeHook,
    IOptionCheck,
    IReplyStrategy,
    ISession,
    IStrategyFactory,
)
from wsdaemon.records import (
    SENDABLE_CLOSE_CODES,
    SENDABLE_CLOSE_CODES_TEXT,
    HandshakeAnswer,
    HandshakeRefused,
    HandshakeRequest,
    MessageLimits,
)
from wsdaemon.strategies.api import (
    OptionContext,
    OptionError,
    StrategyContext,
    reject_unknown_options,
)

__all__ = [
    "SENDABLE_CLOSE_CODES",
    "SENDABLE_CLOSE_CODES_TEXT",
    "HandshakeAnswer",
    "HandshakeRefused",
    "HandshakeRequest",
    "IFlowControl",
    "IHandshakeHook",
    "IOptionCheck",
    "IReplyStrategy",
    "ISession",
    "IStrategyFactory",
    "MessageLimits",
    "OptionContext",
    "OptionError",
    "StrategyContext",
    "public_headers",
    "public_query",
    "reject_unknown_options",
    "visible",
]
