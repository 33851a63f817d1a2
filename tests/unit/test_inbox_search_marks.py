"""
The web inbox's search snippets (static/inbox/format.js markedParts, run in
Node): the daemon's marks are offsets into the plain-text snippet, never
HTML; the parts always join back into the snippet exactly, and marks that
are not whole numbers in order inside it are ignored rather than trusted.
"""

from __future__ import annotations

import json
from typing import Any

from tests.unit.test_inbox_format import run_node
from wsdaemon.support.search import marked

CASES: list[tuple[str, Any]] = [
    ("I want a refund now", [[9, 15]]),
    ("refund, refund!", [[0, 6], [8, 14]]),
    ("<b>refund</b> & more", [[3, 9]]),
    ("no marks", []),
    ("", []),
    ("out of order", [[7, 12], [0, 3]]),
    ("overlap here", [[0, 7], [3, 9]]),
    ("bad values", [[-1, 2], [2, 99], [3, 3], ["0", "2"], [1.5, 3], [0], None, [4, 6]]),
    ("not a list", "0,3"),
]


def parts(cases: list[tuple[str, Any]]) -> list[list[dict[str, Any]]]:
    got = run_node(f"console.log(JSON.stringify({json.dumps(cases)}.map("
                   "([text, marks]) => f.markedParts(text, marks))));")
    return list(got)


def test_parts_join_back_and_marks_are_the_matched_spans() -> None:
    """Joined, the parts are the snippet; the marked ones are exactly the valid spans."""
    got = parts(CASES)
    for (snippet, _), shown in zip(CASES, got, strict=True):
        assert "".join(p["text"] for p in shown) == snippet
    assert [p["text"] for p in got[0] if p["mark"]] == ["refund"]
    assert [p["text"] for p in got[1] if p["mark"]] == ["refund", "refund"]
    assert [p["text"] for p in got[2] if p["mark"]] == ["refund"]
    assert got[3] == [{"text": "no marks", "mark": False}]
    assert [p["text"] for p in got[5] if p["mark"]] == ["order"]  # the later, earlier one skipped
    assert [p["text"] for p in got[6] if p["mark"]] == ["overlap"]
    assert [p["text"] for p in got[7] if p["mark"]] == ["va"]  # only [4, 6]
    assert not any(p["mark"] for p in got[8])


def test_the_daemons_own_snippets_show_as_marked() -> None:
    """A snippet the index made (MARK_START/MARK_END) shows its matches marked."""
    made = [marked("\x02Refund\x03 for the <i>blue</i> one, \x02refunds\x03 too")]
    got = parts([(text, [list(m) for m in marks]) for text, marks in made])
    assert [p["text"] for p in got[0] if p["mark"]] == ["Refund", "refunds"]
    assert "".join(p["text"] for p in got[0]) == "Refund for the <i>blue</i> one, refunds too"
