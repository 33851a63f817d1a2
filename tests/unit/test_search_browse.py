"""
The search request without words (issue 23, the inbox's "Resolved" filter):
with a status it browses every conversation in that state; without one it
is refused, naming what it takes.
"""

from __future__ import annotations

import pytest

from wsdaemon.support.search import SearchError, SearchQuery, live_search


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
