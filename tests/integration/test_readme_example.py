"""
The README's "Testing your WebSocket client" example, run as written by an
inner pytest (the wsmock plugin from the installed package).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

pytest_plugins = ["pytester"]

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_pytest_example_passes(pytester: pytest.Pytester) -> None:
    """Every test of the README's example passes against the plugin."""
    source = re.search(r"```python\n(# test_ticker_client\.py.*?)```",
                       README.read_text(encoding="utf-8"), re.S)
    assert source is not None
    pytester.makepyfile(test_ticker_client=source.group(1))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=3)


def test_the_readme_scenario_example_passes(pytester: pytest.Pytester) -> None:
    """The README's scenario example (two connections sharing a state, a test
    that sets it up front) passes against the plugin."""
    source = re.search(r"```python\n(# test_checkout_client\.py.*?)```",
                       README.read_text(encoding="utf-8"), re.S)
    assert source is not None
    pytester.makepyfile(test_checkout_client=source.group(1))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=2)


def test_the_readme_broadcast_example_passes(pytester: pytest.Pytester) -> None:
    """The README's broadcast example (two connections hear one's message)
    passes against the plugin."""
    source = re.search(r"```python\n(# test_chat_client\.py.*?)```",
                       README.read_text(encoding="utf-8"), re.S)
    assert source is not None
    pytester.makepyfile(test_chat_client=source.group(1))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=1)


def test_the_readme_steps_example_passes(pytester: pytest.Pytester) -> None:
    """The README's steps example (a client following the script, one
    caught saying nothing) passes against the plugin."""
    source = re.search(r"```python\n(# test_login_client\.py.*?)```",
                       README.read_text(encoding="utf-8"), re.S)
    assert source is not None
    pytester.makepyfile(test_login_client=source.group(1))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=2)


def test_the_readme_handshake_example_passes(pytester: pytest.Pytester) -> None:
    """The README's handshake example (paths, placeholders, a header and
    subprotocol condition, the journal's handshakes, reset, hang and delay
    through wsmock) passes against the plugin."""
    source = re.search(r"```python\n(# test_rooms_client\.py.*?)```",
                       README.read_text(encoding="utf-8"), re.S)
    assert source is not None
    pytester.makepyfile(test_rooms_client=source.group(1))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=3)
