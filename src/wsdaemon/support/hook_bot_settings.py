"""
A support route's bot that is the team's own backend (issue 24, item 3):
route option C{bot_url} instead of C{bot = FILE}, read and checked when the
config is read, kept as an immutable value (L{BotBackend}).

The backend is reached as the C{webhook} strategy reaches one (its
options, signing, delivery and HTTP client,
L{wsdaemon.strategies.webhook}); these route options are that strategy's
under a C{bot_} prefix, checked by its own option check:

- C{bot_url}: where each visitor message is POSTed (http or https).
- C{bot_secret_file}: the signing secrets (C{whsec_...}, one a line; two
  during a rotation), relative to the config file. Required.
- C{bot_timeout = 10}: seconds one request may take, answer included.
- C{bot_connect_timeout = 3}, C{bot_retries = 2}, C{bot_retry_backoff =
  0.2}: retries (with backoff) only for requests that never reached the
  backend.
- C{bot_max_response = 256KiB}: the longest answer read.
- C{bot_max_requests = 256}: the route's requests in flight at once.
- C{bot_ca_file}: PEM certificates an https backend's must chain to.
- C{bot_max_queue = 32}: a conversation's messages waiting behind its
  request in flight; one more hands the conversation to the operators.
- C{bot_context = 20}: the episode's messages before this one sent with
  it (0 to L{MAX_CONTEXT}).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from wsdaemon.strategies.api import OptionError
from wsdaemon.strategies.webhook.options import WebhookSettings, check_options

__all__ = ["BACKEND_OPTIONS", "DEFAULT_CONTEXT", "MAX_CONTEXT", "BotBackend", "bot_backend"]

#: The webhook strategy's options a bot's backend takes, each as C{bot_<name>}.
_WEBHOOK_OPTIONS = ("url", "secret_file", "timeout", "connect_timeout", "retries",
                    "retry_backoff", "max_response", "max_requests", "max_queue", "ca_file")
#: The route options of a backend bot.
BACKEND_OPTIONS = (*(f"bot_{name}" for name in _WEBHOOK_OPTIONS), "bot_context")
#: Messages of the episode sent with each one, by default and at most.
DEFAULT_CONTEXT = 20
MAX_CONTEXT = 100


@dataclass(frozen=True)
class BotBackend:
    """
    @ivar webhook: how it is reached (only the C{message} event is sent).
    @ivar context: the episode's earlier messages sent with each one.
    """

    webhook: WebhookSettings
    context: int = DEFAULT_CONTEXT

    @property
    def url(self) -> str:
        return self.webhook.url("message")

    @property
    def max_queue(self) -> int:
        return self.webhook.max_queue


def _context(raw: str) -> int:
    value = raw.strip()
    if not value.isdigit() or not 0 <= int(value) <= MAX_CONTEXT:
        raise OptionError("bot_context", f"expected a number of messages from 0 to "
                          f"{MAX_CONTEXT}, got {raw.strip()!r}")
    return int(value)


def bot_backend(options: Mapping[str, str], config_dir: Path) -> BotBackend:
    """
    @return: the route's backend bot (its secrets read).
    @raise OptionError: naming the C{bot_} option that is wrong.
    """
    webhook = {name: options[f"bot_{name}"] for name in _WEBHOOK_OPTIONS
               if f"bot_{name}" in options}
    try:
        settings = check_options(webhook, config_dir)
    except OptionError as e:
        key = None if e.key is None else f"bot_{e.key}"
        expected = e.expected.replace("url = ", "bot_url = ")
        raise OptionError(key, expected, path=e.path, line=e.line) from None
    context = _context(options["bot_context"]) if "bot_context" in options \
        else DEFAULT_CONTEXT
    return BotBackend(settings, context)
