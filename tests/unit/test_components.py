"""
The operator feature behind one hook (issue 22, item 9): conversations and
the queue each provide L{IComponent}; the assembly builds the one the
[operator] section chooses through the factory it is given, and mounts,
starts, reloads, measures and reports it knowing nothing else of it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from twisted.internet.testing import MemoryReactorClock
from zope.interface.verify import verifyObject

from wsdaemon.broker.queue_component import QueueComponent
from wsdaemon.components import operator_component
from wsdaemon.config import ConfigError, DaemonConfig, load_config
from wsdaemon.interfaces import IComponent
from wsdaemon.pages import StaticPage
from wsdaemon.server.assembly import Assembly
from wsdaemon.server.metrics import WORKER_MERGE
from wsdaemon.server.service import WsDaemonService
from wsdaemon.support.component import SupportComponent

KEY = "k" * 32
CONFIG = """
[wsdaemon]
listen = tcp:8080:interface=127.0.0.1

[admin]
listen = tcp:8081:interface=127.0.0.1
api_keys = ops:{key}

[operator]
model = {model}
tokens = alice:aaaaaaaaaaaaaaaaaaaaaaaa
store = q.sqlite3

[route:/bot]
strategy = scripted
rules = bot.toml

[route:/support]
strategy = operator
"""
RULES = '[[rule]]\ntext = "ping"\nreply = "pong"\n'
#: What each model mounts besides the routes.
MOUNTED = {"queue": {"/operator", "/console"},
           "conversations": {"/operator", "/console", "/_wsdaemon/inbox"}}


def _config(write_config: Callable[..., Path], model: str) -> Path:
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


@pytest.mark.parametrize("model, kind", [("queue", QueueComponent),
                                         ("conversations", SupportComponent)])
def test_each_model_is_a_component(write_config: Callable[..., Path], model: str,
                                   kind: type) -> None:
    """The chooser makes the model's component; it provides IComponent and
    contributes the operator strategy, its channel, its pages and its
    collectors."""
    config: DaemonConfig = load_config(_config(write_config, model))
    assert config.operator is not None
    component = operator_component(config.operator, MemoryReactorClock(), None)
    assert isinstance(component, kind)
    assert verifyObject(IComponent, component)
    contribution = component.contribute(config)
    assert set(contribution.strategies) == {"operator"}
    assert set(contribution.resources) == MOUNTED[model]
    assert contribution.channel is not None and contribution.channel.path == "/operator"
    assert contribution.collectors
    assert component.name in {"queue", "conversations"}


@pytest.mark.parametrize("model, page", [("queue", b"console.js"),
                                         ("conversations", b"/_wsdaemon/inbox/app.js")])
def test_the_assembly_mounts_and_reports_the_component(
        write_config: Callable[..., Path], model: str, page: bytes) -> None:
    """Routes get the component's factory, the web root its resources, the
    service its health under the component's key, /metrics its collectors."""
    _, service = _service(_config(write_config, model))
    component = service.parts.component
    assert component is not None and service.parts.contribution is not None
    root = service.site.resource
    console = _child(root, "/console")
    assert isinstance(console, StaticPage) and page in console._body
    assert service.operator_channel is service.parts.contribution.channel
    assert service.operator_channel.path == "/operator"
    health = service.health()
    assert health[component.name] is not None
    assert ({"queue", "conversations"} - {component.name}).isdisjoint(health)
    admin = service.admin_site
    assert admin is not None
    metrics = generate_latest(admin.resource.children[b"metrics"].registry).decode()
    family = {"queue": "wsdaemon_queue_items", "conversations": "wsdaemon_conversations"}[model]
    assert f"# TYPE {family} gauge" in metrics


def test_the_queue_gauges_are_declared_for_workers(write_config: Callable[..., Path]) -> None:
    """Each family the queue's collector yields says how a supervisor
    combines it."""
    config = load_config(_config(write_config, "queue"))
    assert config.operator is not None
    component = QueueComponent(config.operator, MemoryReactorClock())
    names = {family.name for family in component.collector.collect()}
    assert names == {"wsdaemon_queue_items", "wsdaemon_queue_oldest_item_age_seconds",
                     "wsdaemon_operators_online"}
    assert names <= set(WORKER_MERGE)


def test_an_operator_section_needs_a_component_factory(
        write_config: Callable[..., Path]) -> None:
    """An assembly given no way to run the [operator] section refuses it,
    naming the section, rather than running the daemon without it."""
    config = load_config(_config(write_config, "conversations"))
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


@pytest.mark.parametrize("model", ["queue", "conversations"])
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
