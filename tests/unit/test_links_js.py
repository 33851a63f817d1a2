"""
The link rule both pages share (static/shared/links.js, imported by the
widget's dom.js and the inbox's format.js) runs in Node: which parts of a
message's text are web addresses. The anchors it builds are checked in
Chromium (test_widget_browser, test_inbox_trial).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from importlib.resources import as_file, files
from typing import Any

from tests.conftest import require_tool


def link_parts(texts: list[str]) -> Any:
    """What linkParts makes of each of C{texts}."""
    node = shutil.which("node")
    require_tool(node is not None, "node (Debian package nodejs)")
    assert node is not None
    with as_file(files("wsdaemon").joinpath("static/shared/links.js")) as path:
        source = (f"import {{ linkParts }} from {json.dumps(path.as_uri())};\n"
                  f"console.log(JSON.stringify({json.dumps(texts)}.map(linkParts)));")
        done = subprocess.run([node, "--input-type=module", "-e", source], capture_output=True,
                              text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_links_in_a_message() -> None:
    """http and https addresses become links, without the punctuation that
    ends a sentence; nothing else does (javascript:, bare domains)."""
    assert link_parts([
        "Track it: https://track.example/p/44?c=black. Thanks!",
        "(see http://a.example/x), or javascript:alert(1) or www.example.com",
        "no links at all", "https://x.example/a_b-c/#frag", "",
    ]) == [
        [{"text": "Track it: "},
         {"text": "https://track.example/p/44?c=black", "href": "https://track.example/p/44?c=black"},
         {"text": ". Thanks!"}],
        [{"text": "(see "}, {"text": "http://a.example/x", "href": "http://a.example/x"},
         {"text": "), or javascript:alert(1) or www.example.com"}],
        [{"text": "no links at all"}],
        [{"text": "https://x.example/a_b-c/#frag", "href": "https://x.example/a_b-c/#frag"}],
        [],
    ]


def test_markup_is_text_and_addresses_stop_before_it() -> None:
    """Markup in a text stays text (its javascript: never an href); an address
    ends at a quote or an angle bracket, and at a full stop ending the text."""
    got = link_parts(["<a href='javascript:alert(1)'>x</a> https://ok.example/?q=<b>",
                      "See https://shop.example/o/1234, and (http://x.org/y). Then https://z.io",
                      "https://end.example/path."])
    assert got[0] == [{"text": "<a href='javascript:alert(1)'>x</a> "},
                      {"text": "https://ok.example/?q=", "href": "https://ok.example/?q="},
                      {"text": "<b>"}]
    assert [p["href"] for p in got[1] if "href" in p] == [
        "https://shop.example/o/1234", "http://x.org/y", "https://z.io"]
    assert got[2] == [{"text": "https://end.example/path", "href": "https://end.example/path"},
                      {"text": "."}]
