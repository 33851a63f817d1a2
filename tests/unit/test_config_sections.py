"""
A component's own config section (issue 22, item 9): the config layer hands
the section to the parser it was given (L{wsdaemon.interfaces.ISectionParser})
through a L{wsdaemon.config.SectionView}, keeps what it returns in
C{DaemonConfig.sections}, and keeps its generic guarantees: every error
names the file, line, section and key; an unknown key gets a did-you-mean.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from twisted.internet.task import Clock

from wsdaemon.config import ConfigError, load_config, parse_count
from wsdaemon.interfaces import SectionContext, SectionReader

MINIMAL = """\
[wsdaemon]
listen = tcp:8080:interface=127.0.0.1

[route:/echo]
strategy = echo
"""


@dataclass(frozen=True)
class Greeting:
    """What the test's section parses to."""

    text: str
    times: int
    context: SectionContext

    def summary(self) -> str:
        return f"greeting x{self.times}"


class GreetingSection:
    """A parser of [greeting] as a component would write one."""

    section = "greeting"

    def parse(self, reader: SectionReader, context: SectionContext) -> Greeting:
        reader.check_keys({"text", "times", "file"})
        if "file" in reader.values and not reader.path_of("file").exists():
            raise reader.error("file", f"{reader.path_of('file')} not found")
        times = reader.convert("times", parse_count) if "times" in reader.values else 1
        if not reader.values.get("text", "").strip():
            raise reader.error("text", "expected some words")
        return Greeting(reader.values["text"].strip(), times, context)


def load(path: Path) -> object:
    return load_config(path, clock=Clock(), sections={"greeting": GreetingSection()})


def test_the_section_is_parsed_by_its_parser(write_config: Callable[..., Path]) -> None:
    """The parser's value is kept under the section's name, it sees the
    listeners and routes read before it, and the summary line shows it."""
    path = write_config(MINIMAL + "\n[greeting]\ntext = hello\ntimes = 3\n")
    config = load_config(path, clock=Clock(), sections={"greeting": GreetingSection()})
    greeting = config.sections["greeting"]
    assert isinstance(greeting, Greeting)
    assert (greeting.text, greeting.times) == ("hello", 3)
    assert greeting.context == SectionContext(listen=("tcp:8080:interface=127.0.0.1",),
                                              routes=("/echo",), shared=False)
    assert config.summary().endswith("; greeting x3")
    assert set(load_config(write_config(MINIMAL), clock=Clock(),
                           sections={"greeting": GreetingSection()}).sections) == set()


@pytest.mark.parametrize("body, where, expected", [
    ("text = hello\ntimes = many", ":9: [greeting] times", "whole number"),
    ("text =", ":8: [greeting] text", "expected some words"),
    ("text = hi\ntimez = 2", ":9: [greeting] timez",
     "unknown key (did you mean times?); expected one of: file, text, times"),
    ("text = hi\nfile = nope.txt", ":9: [greeting] file", "nope.txt not found"),
])
def test_its_errors_name_file_line_section_and_key(
        write_config: Callable[..., Path], body: str, where: str, expected: str) -> None:
    """The parser's errors, made through the view, are the config's own."""
    path = write_config(MINIMAL + f"\n[greeting]\n{body}\n")
    with pytest.raises(ConfigError) as raised:
        load(path)
    message = str(raised.value)
    assert message.startswith(f"{path}{where}: "), message
    assert expected in message


def test_a_section_without_its_parser_is_unknown(write_config: Callable[..., Path]) -> None:
    """Without the parser (a daemon built without the component) the
    section is unknown, with a did-you-mean among the known ones; the list
    of known sections includes the components' given."""
    path = write_config(MINIMAL + "\n[greeting]\ntext = hello\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path, clock=Clock(), sections={})
    assert str(raised.value).startswith(f"{path}:7: [greeting]: unknown section")
    path = write_config(MINIMAL + "\n[greetings]\ntext = hello\n")
    with pytest.raises(ConfigError) as raised:
        load(path)
    assert "unknown section (did you mean [greeting]?)" in str(raised.value)
    assert "[greeting] or [route:/path]" in str(raised.value)


def test_the_builtin_sections_are_the_components(write_config: Callable[..., Path]) -> None:
    """Without sections named, the config is read with the built-in
    components' parsers: [operator] is the support component's."""
    from wsdaemon.components import SECTIONS
    from wsdaemon.config import builtin_sections
    from wsdaemon.support.settings import OperatorSection, OperatorSettings

    assert {name: type(parser) for name, parser in builtin_sections().items()} == \
        {name: type(parser) for name, parser in SECTIONS.items()} == \
        {"operator": OperatorSection}
    path = write_config(MINIMAL + "\n[operator]\ntokens = alice:aaaaaaaaaaaaaaaaaa\n")
    assert isinstance(load_config(path, clock=Clock()).sections["operator"], OperatorSettings)
