"""
Clients that load a conversations daemon the way visitors and operators do
(the widget's resends and resumes, a person at a plain page, an operator
answering), for the outage tests; and reading a visitor's whole thread.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from websockets.sync.client import ClientConnection, connect

from tests.daemon import Daemon
from tests.operator_client import Operator
from wsdaemon.support.visitor import NOT_STORED, UNCONFIRMED

CHAT = "wsdaemon.chat.v1"
#: The acknowledgement the outage tests configure (once per conversation).
ACK = "Thanks! We will be with you shortly."


def frames(ws: ClientConnection, kind: str | tuple[str, ...], timeout: float = 10,
           where: Callable[[dict[str, Any]], bool] = lambda _: True) -> dict[str, Any]:
    """The next frame of C{kind} (one of) that C{where} accepts (others skipped)."""
    kinds = (kind,) if isinstance(kind, str) else kind
    deadline = time.monotonic() + timeout
    while True:
        frame = json.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic())))
        if frame.get("type") in kinds and where(frame):
            return frame  # type: ignore[no-any-return]


def structured(daemon: Daemon, cookie: str | None = None) -> ClientConnection:
    ws = connect(f"{daemon.url}/support", subprotocols=[CHAT],  # type: ignore[list-item]
                 additional_headers={"Cookie": cookie} if cookie else {})
    assert ws.subprotocol == CHAT
    return ws


def cookie_of(ws: ClientConnection) -> str:
    assert ws.response is not None
    return ws.response.headers["Set-Cookie"].split(";", 1)[0]


class LoadVisitor(threading.Thread):
    """
    A structured visitor as the widget behaves: numbered messages one after
    another, each with its own id, sent again with the same id until it is
    acknowledged (told to resend, or its connection broke); on a new
    connection it resumes after the highest seq it has. Collects the acks
    and every operator message it is written (live or on resume).
    """

    def __init__(self, daemons: list[Daemon], name: str, stop_sending: threading.Event) -> None:
        super().__init__(daemon=True)
        self.daemons = daemons
        self.name = name
        self.stop_sending = stop_sending
        self.cookie: str | None = None
        self.acked: dict[str, int] = {}  # client id -> seq
        self.got: list[tuple[int, str]] = []  # operator messages (seq, text), as written
        self.top = 0
        self.told: Counter[str] = Counter()
        self.problems: list[str] = []
        self.reconnects = 0
        self.receipts: list[dict[str, Any]] = []

    def connect(self) -> ClientConnection:
        ws = structured(self.daemons[self.reconnects % len(self.daemons)], self.cookie)
        if self.cookie is None:
            self.cookie = cookie_of(ws)
        ws.send(json.dumps({"type": "hello", "after": self.top}))
        return ws

    def take(self, frame: dict[str, Any]) -> None:
        """A frame of the thread: an operator's message is collected, seqs must rise."""
        if frame.get("author") == "operator":
            self.got.append((frame["seq"], frame["text"]))
            # As the widget does: received, and read at once.
            self.receipts.append({"type": "received", "upto": frame["seq"]})
            self.receipts.append({"type": "read", "upto": frame["seq"]})
        if frame.get("author") != "visitor" and frame["seq"] <= self.top:
            self.problems.append(f"seq {frame['seq']} after {self.top}: {frame}")
        self.top = max(self.top, frame["seq"])

    def run(self) -> None:
        try:
            self.converse()
        except Exception as e:  # a thread's failure must reach the test
            self.problems.append(f"failed: {e!r}")

    def converse(self) -> None:
        pending: tuple[str, str] | None = None
        n = 0
        deadline: float | None = None
        ws = self.connect()
        while True:
            while self.receipts:
                ws.send(json.dumps(self.receipts.pop(0)))
            if pending is None and n and n % 8 == 0 and not self.stop_sending.is_set() \
                    and self.reconnects < n // 8:
                # Now and then the page is left, and the visitor comes back
                # through the other daemon and resumes.
                ws.close()
                self.reconnects += 1
                ws = self.connect()
            if pending is None and not self.stop_sending.is_set():
                pending, n = (f"m-{n}", f"{self.name}-{n}"), n + 1
                ws.send(json.dumps({"type": "message", "id": pending[0], "text": pending[1]}))
            if pending is None and deadline is None:
                deadline = time.monotonic() + 30
            answered = {text.removeprefix("answer to ") for _, text in self.got}
            if deadline is not None and not {f"{self.name}-{k}" for k in range(n)} - answered:
                # All answered: listen a little longer for a second copy.
                deadline = min(deadline, time.monotonic() + 2)
            if deadline is not None and time.monotonic() > deadline:
                break
            try:
                frame = json.loads(ws.recv(timeout=0.5))
            except TimeoutError:
                continue
            except Exception as e:  # the daemon closed it: resume on a new one
                self.problems.append(f"connection lost: {e!r}")
                self.reconnects += 1
                time.sleep(0.2)
                try:
                    ws = self.connect()
                except OSError:
                    continue
                if pending is not None:
                    ws.send(json.dumps({"type": "message", "id": pending[0],
                                        "text": pending[1]}))
                continue
            kind = frame.get("type")
            if kind == "welcome":
                for message in frame["messages"]:
                    if message["seq"] > self.top:
                        self.take(message)
                if frame.get("more"):
                    self.problems.append(f"welcome with more after {self.top}")
            elif kind == "message":
                self.take(frame)
            elif kind == "ack" and pending is not None and frame["id"] == pending[0]:
                self.told["duplicate" if frame.get("duplicate") else "ack"] += 1
                self.acked[pending[0]] = frame["seq"]
                self.top = max(self.top, frame["seq"])
                pending = None
                time.sleep(0.1)
            elif kind in ("error", "refused") and pending is not None \
                    and frame.get("id") == pending[0]:
                self.told[f"{kind}: {frame.get('error') or frame.get('reason')}"] += 1
                time.sleep(0.2)
                ws.send(json.dumps({"type": "message", "id": pending[0], "text": pending[1]}))
            elif kind in ("ack", "error", "refused"):
                self.problems.append(f"unexpected {frame}")
        ws.close()


class PlainLoadVisitor(threading.Thread):
    """
    A plain-text visitor sending a question every half second or so: one
    told it could not be queued is sent again; one told it may have reached
    us is not (it waits for the answer). Collects the answers.
    """

    def __init__(self, daemon: Daemon, name: str, stop_sending: threading.Event) -> None:
        super().__init__(daemon=True)
        self.daemon_ = daemon
        self.name = name
        self.stop_sending = stop_sending
        self.cookie: str | None = None
        self.answers: list[str] = []
        self.told: Counter[str] = Counter()
        self.problems: list[str] = []
        self.sure: list[str] = []  # not told anything: stored
        self.unsure: list[str] = []  # told it may have reached us

    def run(self) -> None:
        try:
            self.converse()
        except Exception as e:  # a thread's failure must reach the test
            self.problems.append(f"failed: {e!r}")

    def listen(self, ws: ClientConnection, seconds: float) -> str | None:
        """What the daemon said of the last question within C{seconds}, if anything."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            try:
                text = str(ws.recv(timeout=left))
            except TimeoutError:
                break
            if text.startswith("answer to "):
                self.answers.append(text.removeprefix("answer to "))
            elif text in (NOT_STORED, UNCONFIRMED):
                return text
            elif text != ACK:
                self.problems.append(f"unexpected {text!r}")
        return None

    def converse(self) -> None:
        ws = connect(f"{self.daemon_.url}/support")
        self.cookie = cookie_of(ws)
        n = 0
        while not self.stop_sending.is_set():
            question = f"{self.name}-{n}"
            n += 1
            while True:
                ws.send(question)
                # (A store call fails within the 1 s timeout.)
                said = self.listen(ws, 1.5)
                if said != NOT_STORED:
                    break
                self.told["not queued"] += 1
            if said == UNCONFIRMED:
                self.told["may have reached us"] += 1
                self.unsure.append(question)
            else:
                self.sure.append(question)
        end = time.monotonic() + 30
        expected = set(self.sure)
        while time.monotonic() < end and expected - set(self.answers):
            self.listen(ws, 0.5)
        self.listen(ws, 2)  # second copies
        ws.close()


class AnsweringOperator(threading.Thread):
    """
    Answers each visitor message ("answer to TEXT") it finds unanswered in
    the threads (read from the store through `open`). A reply whose outcome
    is unknown is looked for again a little later, not sent again at once.
    """

    def __init__(self, daemon: Daemon, token: str, stop: threading.Event,
                 answers: Callable[[str], bool]) -> None:
        super().__init__(daemon=True)
        self.daemon_ = daemon
        self.token = token
        self.answers = answers
        self.stop = stop
        self.answered = 0
        self.errors: Counter[str] = Counter()
        self.problems: list[str] = []

    def run(self) -> None:
        desk: Operator | None = None
        while not self.stop.is_set():
            try:
                if desk is None:
                    desk = Operator(self.daemon_, self.token)
                self.answer_all(desk)
            except Exception as e:  # its connection broke: a new one
                self.problems.append(repr(e))
                desk = None
            time.sleep(0.2)
        if desk is not None:
            desk.close()

    def answer_all(self, desk: Operator) -> None:
        listed = desk.request(type="conversations", view="all", limit=100)
        for summary in listed.get("conversations", ()):
            thread = desk.request(type="open", conversation=summary["id"], limit=100)
            if thread["type"] != "ok":
                self.errors[thread["error"]] += 1
                continue
            messages = [e for e in thread["entries"] if e["kind"] == "message"]
            answered = {e["text"].removeprefix("answer to ") for e in messages
                        if e["author"] == "operator"}
            for entry in messages:
                if entry["author"] != "visitor" or entry["text"] in answered \
                        or not self.answers(entry["text"]):
                    continue
                answer = desk.request(type="reply", conversation=summary["id"],
                                      text=f"answer to {entry['text']}")
                if answer["type"] == "ok":
                    self.answered += 1
                    continue
                self.errors[answer["error"]] += 1
                time.sleep(1)  # Redis away: look again later
                return


def thread_of(daemon: Daemon, cookie: str) -> list[dict[str, Any]]:
    """A visitor's whole thread, as stored, page after page."""
    ws = structured(daemon, cookie)
    ws.send(json.dumps({"type": "hello", "after": 0}))
    page = frames(ws, "welcome")
    messages = list(page["messages"])
    while page["more"]:
        ws.send(json.dumps({"type": "history", "after": messages[-1]["seq"], "limit": 100}))
        page = frames(ws, "history")
        messages.extend(page["messages"])
    ws.close()
    return messages
