"""
The web inbox's text helpers (static/inbox/format.js) run in Node: a canned
reply is filled in exactly as the daemon's own L{expand} (which the terminal
console uses) fills it, and durations read as people say them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from importlib.resources import as_file, files
from typing import Any

import pytest

from tests.conftest import require_tool
from wsdaemon.support.canned import expand

CASES: list[tuple[str, dict[str, Any]]] = [
    ("Sorry {name}, this is {operator}: it ships today.",
     {"name": "Ann Lee", "alias": "Visitor 4821", "email": None, "operator": "Alice Martin"}),
    ("Hello {name}!", {"name": None, "alias": "Visitor 4821", "email": None, "operator": "A"}),
    ("Write to {email} {{or}} call; {alias}", {"name": "", "alias": "Visitor 7",
                                              "email": "ann@example.com", "operator": ""}),
    ("{{name}} is literal, {name} is not: }}{{", {"name": "<b>x</b>", "alias": "V",
                                                   "email": None, "operator": None}),
    ("No placeholders at all.", {}),
]


def run_node(script: str) -> Any:
    node = shutil.which("node")
    require_tool(node is not None, "node (Debian package nodejs)")
    assert node is not None
    with as_file(files("wsdaemon").joinpath("static/inbox/format.js")) as path:
        source = f"import * as f from {json.dumps(path.as_uri())};\n{script}"
        done = subprocess.run([node, "--input-type=module", "-e", source], capture_output=True,
                              text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_canned_replies_fill_in_as_the_daemon_does() -> None:
    """expandCanned(text, values) == wsdaemon.support.canned.expand(text, values)."""
    got = run_node(f"console.log(JSON.stringify({json.dumps(CASES)}.map("
                   "([text, values]) => f.expandCanned(text, values))));")
    assert got == [expand(text, values) for text, values in CASES]


@pytest.mark.parametrize(("seconds", "said"), [
    (0, "under a minute"), (59, "under a minute"), (60, "1 min"), (4 * 60 + 59, "4 min"),
    (3600, "1 h"), (3600 + 5 * 60, "1 h 5 min"), (11 * 3600 + 5 * 60, "11 h"),
    (86400 * 3 + 5, "3 d"),
])
def test_durations_read_as_people_say_them(seconds: int, said: str) -> None:
    """Waiting and response times: minutes, then hours (with minutes under 10 h), then days."""
    assert run_node(f"console.log(JSON.stringify(f.duration({seconds})));") == said


@pytest.mark.parametrize(("email", "href"), [
    ("ann@example.com", "mailto:ann@example.com"),
    (" ann@example.com ", "mailto:ann@example.com"),
    ("a?cc=x@example.com", "mailto:a%3Fcc%3Dx@example.com"),
    ("ann@localhost", None), ("not an email", None), ("+44 20 7946 0000", None),
    ("a@b@example.com", None), ("<ann@example.com>", None),
])
def test_emails_become_mailto_links_only_when_they_are_one(email: str, href: str | None) -> None:
    """mailtoHref: one address (its parts encoded, nothing added to the mail), else null."""
    assert run_node(f"console.log(JSON.stringify(f.mailtoHref({json.dumps(email)})));") == href


def test_times_have_no_leading_zero() -> None:
    """clock: the locale's hour without a leading zero (3:08 PM in en-US, as the widget shows)."""
    shown = run_node("const d = new Date(); d.setHours(3, 8, 0, 0);"
                     "console.log(JSON.stringify(f.clock(d.getTime() / 1000)));")
    assert not shown.startswith("0"), shown
    assert shown.startswith("3:08"), shown
