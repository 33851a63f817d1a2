"""
The operator feature behind one hook (issue 22, item 9): conversations
provide L{IComponent} (the only model since the queue was retired); the
assembly builds it for the [operator] section through the factory it is
given, and mounts, starts, reloads, measures and reports it knowing nothing
else of it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from twisted.internet.testing import MemoryReactorClock
from zope.interface.verify import verifyObject

from wsdaemon.components import operator_component
from wsdaemon.config import ConfigError, DaemonConfig, load_config
from wsdaemon.interfaces import IComponent
from wsdaemon.pages import StaticPage
from wsdaemon.server.assembly import Assembly
from wsdaemon.server.metrics import WORKER_MERGE
from wsdaemon.server.service import WsDaemonService
from wsdaemon.support.component import SupportComponent
from wsdaemon.support.settings import operator_settings

KEY = "k" * 32
CONFIG = """
[wsdaemon]
listen = tcp:8080:interface=127.0.0.1

[admin]
listen = tcp:8081:interface=127.0.0.1
api_keys = ops:{key}

[operator]
{model}tokens = alice:aaaaaaaaaaaaaaaaaaaaaaaa
store = q.sqlite3

[route:/bot]
strategy = scripted
rules = bot.toml

[route:/support]
strategy = operator
"""
RULES = '[[rule]]\ntext = "ping"\nreply = "pong"\n'
#: What the component mounts besides the routes.
MOUNTED = {"/operator", "/console", "/_wsdaemon/inbox", "/_wsdaemon/widget.js", "/_wsdaemon/widget",
           "/_wsdaemon/shared"}
#: The [operator] section's model line: conversations, said or not.
MODELS = ["model = conversations\n", ""]


def _config(write_config: Callable[..., Path], model: str = "") -> Path:
    path = write_config(CONFIG.format(model=model, key=KEY))
    (path.parent / "bot.toml").write_text(RULES)
    return path


def _service(path: Path) -> tuple[Assembly, WsDaemonService]:
    assembly = Assembly(MemoryReactorClock(), lambda: load_config(path),
                        components=operator_component)
    return assembly, assembly.build(load_config(path), handle_signals=False)


def _child(root: Any, path: str) -> Any:
    node = root
    for segment in path.strip("/").split("/"):
        node = node.children[segment.encode()]
    return node


@pytest.mark.parametrize("model", MODELS)
def test_conversations_are_the_component(write_config: Callable[..., Path], model: str) -> None:
    """The chooser makes the conversations' component, model said or not; it
    provides IComponent and contributes the operator strategy, its channel,
    its pages and its collectors."""
    config: DaemonConfig = load_config(_config(write_config, model))
    component = operator_component(config, MemoryReactorClock(), None)
    assert isinstance(component, SupportComponent)
    assert verifyObject(IComponent, component)
    contribution = component.contribute(config)
    assert set(contribution.strategies) == {"operator"}
    assert set(contribution.resources) == MOUNTED
    assert contribution.channel is not None and contribution.channel.path == "/operator"
    assert contribution.collectors
    assert component.name == "conversations"


def test_the_assembly_mounts_and_reports_the_component(
        write_config: Callable[..., Path]) -> None:
    """Routes get the component's factory, the web root its resources, the
    service its health under the component's key, /metrics its collectors."""
    _, service = _service(_config(write_config))
    component = service.parts.component
    assert component is not None and service.parts.contribution is not None
    root = service.site.resource
    console = _child(root, "/console")
    assert isinstance(console, StaticPage) and b"/_wsdaemon/inbox/app.js" in console._body
    assert service.operator_channel is service.parts.contribution.channel
    assert service.operator_channel.path == "/operator"
    health = service.health()
    assert health["conversations"] is not None and "queue" not in health
    admin = service.admin_site
    assert admin is not None
    metrics = generate_latest(admin.resource.children[b"metrics"].registry).decode()
    assert "# TYPE wsdaemon_conversations gauge" in metrics
    assert "wsdaemon_queue_" not in metrics


def test_the_conversations_families_are_declared_for_workers(
        write_config: Callable[..., Path]) -> None:
    """Each family the conversations' collector yields says how a supervisor
    combines it, and none of the retired queue's is left declared."""
    settings = operator_settings(load_config(_config(write_config)))
    assert settings is not None
    component = SupportComponent(settings, MemoryReactorClock())
    names = {family.name for family in component.collector.collect()}
    assert "wsdaemon_conversations" in names
    assert names <= set(WORKER_MERGE)
    assert not [name for name in WORKER_MERGE if name.startswith("wsdaemon_queue")]


def test_an_operator_section_needs_a_component_factory(
        write_config: Callable[..., Path]) -> None:
    """An assembly given no way to run the [operator] section refuses it,
    naming the section, rather than running the daemon without it."""
    config = load_config(_config(write_config))
    with pytest.raises(ConfigError) as error:
        Assembly(MemoryReactorClock()).fresh(config)
    assert error.value.section == "operator" and "operator component" in str(error.value)


#: A strategy plugin that reads its file only when a route is built (as
#: the assembly's ConfigError for a failing factory allows).
PLUGIN = """
from zope.interface import implementer
from wsdaemon.interfaces import IOptionCheck, IStrategyFactory
from wsdaemon.strategies.echo import EchoStrategy


@implementer(IStrategyFactory, IOptionCheck)
class LateFactory:
    def check(self, options, context):
        return None

    def create(self, options, context):
        if (context.config_dir / "broken").exists():
            raise ValueError("broken")
        return EchoStrategy()
"""


@pytest.mark.parametrize("model", MODELS)
def test_a_refused_reload_leaves_the_component_as_it_was(
        write_config: Callable[..., Path], model: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A reload whose routes fail to build does not hand the component the
    new config (a new operator's token is not accepted); the next good one
    does."""
    (tmp_path / "late_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    path = _config(write_config, model)
    path.write_text(path.read_text() + "\n[route:/late]\nstrategy = late_plugin.LateFactory\n")
    assembly, service = _service(path)
    channel = service.operator_channel
    tokens = dict(channel.tokens)
    path.write_text(path.read_text().replace(
        "tokens = alice:aaaaaaaaaaaaaaaaaaaaaaaa",
        "tokens = alice:aaaaaaaaaaaaaaaaaaaaaaaa\n  bob:bbbbbbbbbbbbbbbbbbbbbbbb"))
    (tmp_path / "broken").write_text("")
    with pytest.raises(ConfigError) as error:
        assembly.reload()
    assert error.value.section == "route:/late"
    assert dict(channel.tokens) == tokens
    (tmp_path / "broken").unlink()
    assembly.reload()
    assert service.operator_channel is channel
    assert set(channel.tokens.values()) == {"alice", "bob"}
