"""
A store left open does not keep the process alive: its threads are
daemon threads (a failed test, or a start that failed half way, used to
hang the interpreter's exit on the store's idle thread).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.daemon import REPO

_LEFT_OPEN = """
import sys
from pathlib import Path
from twisted.internet import reactor, task
from wsdaemon.support.store import SQLiteConversationStore

store = SQLiteConversationStore(Path(sys.argv[1]), reactor)

def opened(_):
    # A search too: its own pool's thread is started by it.
    from wsdaemon.support.search import SearchQuery
    return store.search(SearchQuery.from_request({"text": "anything"}))

def stop(_):
    reactor.stop()  # the store is never closed

d = store.open().addCallback(opened).addBoth(stop)
reactor.run()
print("reactor stopped", flush=True)
"""


def test_a_store_left_open_does_not_hang_the_exit(tmp_path: Path) -> None:
    """A process that opened a conversation store (writer and search
    threads started) and never closed it exits once its main code ends."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(_LEFT_OPEN),
                           str(tmp_path / "store.sqlite3")],
                          capture_output=True, text=True, timeout=30, cwd=REPO,
                          env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert "reactor stopped" in done.stdout
