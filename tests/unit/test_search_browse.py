"""
The search request without words (issue 23, the inbox's "Resolved" filter):
with a status it browses every conversation in that state; without one it
is refused, naming what it takes.
"""

from __future__ import annotations

import sqlite3

import pytest

from wsdaemon.support.schema import SCHEMA
from wsdaemon.support.search import SearchError, SearchQuery, live_search
from wsdaemon.support.search_index import BROWSE_AFTER, BROWSE_COUNT, BROWSE_FIRST


def test_a_status_alone_browses() -> None:
    """{status} alone: no terms, that status, the usual page bounds."""
    query = SearchQuery.from_request({"status": "resolved", "limit": 7, "after": [5.0, "k"]})
    assert query.terms == () and query.status == "resolved"
    assert query.limit == 7 and query.after == (5.0, "k")


@pytest.mark.parametrize("request_", [{}, {"text": "   "}, {"text": "  ", "status": "open"},
                                      {"status": "closed"}, {"text": None}])
def test_no_words_without_a_status_is_refused(request_: dict[str, object]) -> None:
    """Nothing to look for and no status (or blank words, or an unknown status): refused."""
    with pytest.raises(SearchError, match="'text'|'status'"):
        SearchQuery.from_request(request_)


def test_live_browse_never_lists_resolved_ones() -> None:
    """Without an index (Redis) the live conversations are all there is: none resolved."""
    result = live_search([], SearchQuery.from_request({"status": "resolved"}))
    assert result.found == () and result.total == 0 and result.scope == "live"


@pytest.mark.parametrize("query", [BROWSE_COUNT, BROWSE_FIRST, BROWSE_AFTER])
def test_a_list_by_state_reads_an_index_not_the_table(query: str) -> None:
    """
    The "Resolved" list's count and pages come from the conversations'
    index by state, already in order: no scan of the whole table (which
    costs in the number of conversations ever stored) and no sort.
    """
    db = sqlite3.connect(":memory:")
    db.executescript(SCHEMA)
    arguments = (2, 3, 4, 5, 6)[:query.count("?")]
    plan = " | ".join(row[-1] for row in db.execute(f"EXPLAIN QUERY PLAN {query}", arguments))
    assert "conversations_by_status" in plan, plan
    assert "SCAN conversations" not in plan and "TEMP B-TREE" not in plan, plan
