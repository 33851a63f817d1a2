"""
The chat widget's pure parts run in Node: the thread it holds (static/widget/
thread.js: by seq, once, bounded at 500 with the oldest dropped, unread
counts, the visitor's messages in a range). The links found in a message's
text are the rule it shares with the inbox (test_links_js).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from importlib.resources import as_file, files
from typing import Any

from tests.conftest import require_tool


def run_node(module: str, script: str) -> Any:
    node = shutil.which("node")
    require_tool(node is not None, "node (Debian package nodejs)")
    assert node is not None
    with as_file(files("wsdaemon").joinpath(f"static/widget/{module}")) as path:
        source = f"import * as m from {json.dumps(path.as_uri())};\n{script}"
        done = subprocess.run([node, "--input-type=module", "-e", source], capture_output=True,
                              text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_thread_holds_each_seq_once_and_at_most_its_bound() -> None:
    """Messages are held by seq, a second copy or a malformed one is not
    taken; past the bound (500) the oldest go, and are said to have gone."""
    got = run_node("thread.js", """
const t = new m.Thread(500);
const taken = [t.add({seq: 2, author: "operator", name: "Alice", text: "b", at: 1}),
               t.add({seq: 2, author: "operator", text: "again"}),
               t.add({seq: 0, author: "visitor", text: "x"}), t.add({seq: "3", text: "x"}),
               t.add(null), t.add({seq: 1, author: "visitor", text: "a", id: "c-1"})];
const dropped = [];
for (let seq = 3; seq <= 501; seq++) { t.add({seq, author: "system", text: String(seq)}); }
dropped.push(...t.trim().map((e) => e.seq));
console.log(JSON.stringify({taken: taken.map((e) => e && e.key), size: t.size,
  min: t.minSeq(), max: t.maxSeq(), dropped, kept: t.size}));
""")
    assert got["taken"] == ["s2", None, None, None, None, "s1"]
    assert got["dropped"] == [1]
    assert (got["kept"], got["min"], got["max"]) == (500, 2, 501)


def test_thread_unread_and_the_visitors_range() -> None:
    """Unread counts what operators, the bot and the daemon wrote after the
    mark, never the visitor's own; a truncated text is marked as cut."""
    got = run_node("thread.js", """
const t = new m.Thread(500);
const authors = ["visitor", "system", "operator", "visitor", "bot", "operator"];
authors.forEach((author, i) => t.add({seq: i + 1, author, text: "t" + i}));
const cut = new m.Thread(5).add({seq: 1, author: "operator", text: "long", truncated: true});
console.log(JSON.stringify({none: t.unread(6), after2: t.unread(2), all: t.unread(0),
  visitor: t.visitorBetween(1, 6).map((e) => e.seq), cut: cut.text}));
""")
    assert got == {"none": 0, "after2": 3, "all": 4, "visitor": [4], "cut": "long…"}


def test_the_newest_unread_reply() -> None:
    """What shows by the closed launcher: the newest operator's or bot's
    message after the read mark, never the visitor's or the daemon's."""
    got = run_node("thread.js", """
const t = new m.Thread(500);
["operator", "bot", "system", "visitor"].forEach((author, i) =>
  t.add({seq: i + 1, author, text: "t" + (i + 1)}));
console.log(JSON.stringify([t.newestUnread(0).seq, t.newestUnread(2), t.newestUnread(1).seq]));
""")
    assert got == [2, None, 2]
