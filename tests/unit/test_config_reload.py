"""
The [operator] section on a reload: what only a restart can change, and the
retired queue, are refused with the key named, and the running daemon keeps
every part it had (issue 22, item 9).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from twisted.internet.testing import MemoryReactorClock

from wsdaemon.components import operator_component
from wsdaemon.config import ConfigError, load_config
from wsdaemon.server.assembly import Assembly

CONFIG = """
[wsdaemon]
listen = tcp:8080:interface=127.0.0.1

[operator]
tokens = alice:aaaaaaaaaaaaaaaaaaaaaaaa
store = c.sqlite3

[route:/support]
strategy = operator
"""


def daemon(write_config: Callable[..., Path]) -> tuple[Assembly, Path]:
    path = write_config(CONFIG)
    assembly = Assembly(MemoryReactorClock(), lambda: load_config(path),
                        components=operator_component)
    assembly.build(load_config(path), handle_signals=False)
    return assembly, path


@pytest.mark.parametrize("change, key, expected", [
    (lambda text: text.replace("store = c.sqlite3", "store = c.sqlite3\nmodel = queue"),
     "model", "the item queue was retired in this version"),
    (lambda text: text.replace("store = c.sqlite3", "store = other.sqlite3"),
     "store", "restart to apply"),
    (lambda text: text.replace("tokens = alice", "tokens = alice:short\n  bob"),
     "tokens", "at least 16 characters"),
])
def test_a_refused_reload_keeps_the_old_config(write_config: Callable[..., Path],
                                               change: Callable[[str], str], key: str,
                                               expected: str) -> None:
    """A reload to a config with model = queue, another store or a bad key
    of [operator] raises ConfigError naming the section and key, and the
    daemon keeps its parts, its component and its settings."""
    assembly, path = daemon(write_config)
    service = assembly.service
    assert service is not None
    before, resource = service.parts, service.site.resource
    component = before.component
    assert component is not None
    path.write_text(change(path.read_text()))
    with pytest.raises(ConfigError) as error:
        assembly.reload()
    assert (error.value.section, error.value.key) == ("operator", key)
    assert expected in str(error.value)
    assert service.parts is before and service.site.resource is resource
    assert service.parts.config is before.config


def test_a_good_reload_hands_the_component_the_new_settings(
        write_config: Callable[..., Path]) -> None:
    """The same store, new notices: the component persists and takes them."""
    assembly, path = daemon(write_config)
    service = assembly.service
    assert service is not None
    component = service.parts.component
    path.write_text(path.read_text().replace("store = c.sqlite3",
                                             "store = c.sqlite3\nack_message = Hello."))
    after = assembly.reload()
    assert after.component is component
    driver = getattr(component, "driver", None)
    assert driver is not None and driver.settings.ack_message == "Hello."
