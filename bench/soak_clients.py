"""
The soak's clients (bench/soak.py): plain-text visitors of a conversations
route, the operators answering them on protocol 2, echo and bot clients, and
what the visitors were told, against what the store holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Coroutine
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

TOKEN = "soak-token-0123456789abcdef"
FALLBACK = "soak fallback"
NOT_QUEUED = "Sorry, your message could not be queued"
UNCONFIRMED = "Sorry, we could not confirm that your message reached us"
ACK, OFFLINE = "soak ack", "soak offline"
CHAT = "wsdaemon.chat.v1"
#: Who answered each question (shown for one answered twice).
REPLIES: dict[str, list[str]] = {}
#: The operators (routing = auto gives each conversation to one of them).
OPERATORS = {"alice": TOKEN, "bob": TOKEN.replace("soak-", "soak-b-")}


class Tally:
    """What the visitors asked and were told, by question."""

    def __init__(self) -> None:
        self.sure: set[str] = set()  # sent, not said to have failed: one answer
        self.unsure: set[str] = set()  # "could not confirm": at most one
        self.answers: dict[str, int] = {}
        self.notices: dict[str, int] = {}
        self.errors: list[str] = []
        self.refused = 0
        self.cookies: dict[str, str] = {}  # visitor -> its identity cookie
        #: question -> the connections it came on ("visit 3 to PORT") and when.
        self.heard_on: dict[str, list[tuple[str, float]]] = {}
        #: Copies of an answer written again by the other daemon after Redis
        #: was away (see L{around_the_outage}), by question.
        self.known_copies: dict[str, int] = {}


async def stored_answers(url: str, cookie: str) -> dict[str, int]:
    """How many times each question is answered in a visitor's thread, as stored."""
    counts: dict[str, int] = {}
    async with connect(f"{url}/support", subprotocols=[CHAT],  # type: ignore[list-item]
                       additional_headers={"Cookie": cookie}) as ws:
        await ws.send(json.dumps({"type": "hello", "after": 0}))
        more, top = True, 0
        while more:
            page = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if page.get("type") not in ("welcome", "history"):
                continue
            for message in page["messages"]:
                top = max(top, message["seq"])
                if message["author"] == "operator":
                    question = message["text"].removeprefix("answer to ")
                    counts[question] = counts.get(question, 0) + 1
            more = page["more"]
            if more:
                await ws.send(json.dumps({"type": "history", "after": top, "limit": 100}))
    return counts


async def echo_client(urls: list[str], deadline: float) -> None:
    while time.monotonic() < deadline:
        async with connect(f"{random.choice(urls)}/echo") as ws:
            for n in range(random.randint(1, 20)):
                await ws.send(f"m{n}")
                assert await ws.recv() == f"m{n}"


async def bot_client(urls: list[str], deadline: float) -> None:
    while time.monotonic() < deadline:
        async with connect(f"{random.choice(urls)}/bot") as ws:
            await ws.recv()
            await ws.send(random.choice(["tick", "slow", "hello"]))
            await asyncio.sleep(random.uniform(0, 0.6))  # leave with timers running


def heard(tally: Tally, name: str, text: str, where: str) -> str | None:
    """
    Note what a visitor was told on the connection C{where}; @return: the
    question it answers, or NOT_QUEUED / UNCONFIRMED, or None (a notice).
    """
    if text.startswith("answer to "):
        question = text.removeprefix("answer to ")
        tally.answers[question] = tally.answers.get(question, 0) + 1
        tally.heard_on.setdefault(question, []).append((where, time.time()))
        return question
    for failure in (NOT_QUEUED, UNCONFIRMED):
        if text.startswith(failure):
            return failure
    if text in (ACK, OFFLINE, FALLBACK):
        tally.notices[text] = tally.notices.get(text, 0) + 1
    else:
        tally.errors.append(f"{name}: unexpected {text!r}")
    return None


async def support_client(urls: list[str], deadline: float, name: str, tally: Tally) -> None:
    """
    A visitor at the plain page: asks a question, waits for its answer (or
    leaves after 8 s: it comes on a later connection), now and then leaves
    and comes back, to either daemon, with its cookie. Each question its own
    text.
    """
    cookie: str | None = None
    asked = visits = 0
    while time.monotonic() < deadline:
        headers = {"Cookie": cookie} if cookie else {}
        url = random.choice(urls)
        visits += 1
        where = f"visit {visits} to {url.rsplit(':', 1)[1]}"
        async with connect(f"{url}/support", additional_headers=headers) as ws:
            if cookie is None and ws.response is not None:
                cookie = tally.cookies[name] = ws.response.headers["Set-Cookie"].split(";", 1)[0]
            for _ in range(random.randint(1, 4)):
                if time.monotonic() >= deadline:
                    break
                asked += 1
                question = f"{name} question {asked}"
                await ws.send(question)
                outcome: str | None = None
                end = time.monotonic() + 8
                try:
                    while (left := end - time.monotonic()) > 0:
                        said = heard(tally, name, str(await asyncio.wait_for(ws.recv(), left)), where)
                        if said in (question, NOT_QUEUED):
                            outcome = said
                            break
                        if said == UNCONFIRMED:
                            outcome = said  # (its answer may still come)
                except TimeoutError:
                    pass
                if outcome == NOT_QUEUED:
                    tally.refused += 1  # not stored: no answer to expect
                    break
                (tally.unsure if outcome == UNCONFIRMED else tally.sure).add(question)
    # Come back once more for what was answered after the visitor left.
    if cookie is None:
        return
    mine = {q for q in tally.sure if q.startswith(f"{name} ")}
    url = random.choice(urls)
    where = f"last visit to {url.rsplit(':', 1)[1]}"
    async with connect(f"{url}/support", additional_headers={"Cookie": cookie}) as ws:
        end = time.monotonic() + 20
        while (left := end - time.monotonic()) > 0:
            if not mine - set(tally.answers):
                end = min(end, time.monotonic() + 2)  # listen for second copies
            try:
                heard(tally, name, str(await asyncio.wait_for(ws.recv(), min(left, 0.5))), where)
            except TimeoutError:
                pass


async def operator(urls: list[str], done: asyncio.Event, login: str,
                   replied: set[tuple[str, str]]) -> None:
    """
    One operator coming and going: online for 1 to 5 s at a time, answering
    each question of the conversations routing gives it ("answer to" the
    question), one in ten only on its next look (every second, and when it
    comes back), after the fallback. It leaves once its replies are
    answered: a conversation it leaves goes to the other operator, who must
    find the reply in the thread.
    """
    while not done.is_set():
        try:
            url = random.choice(urls)
            async with connect(f"{url}/operator?token={OPERATORS[login]}") as ws:
                desk = Desk(ws, login, replied, url.rsplit(":", 1)[1])
                await desk.serve(time.monotonic() + random.uniform(1, 5))
        except (OSError, TimeoutError, ConnectionClosed):
            await asyncio.sleep(0.2)  # a reload or Redis away: come back


class Desk:
    """An operator's protocol-2 connection: requests by id, events as they come."""

    def __init__(self, ws: ClientConnection, login: str,
                 replied: set[tuple[str, str]], url: str) -> None:
        self.ws = ws
        self.url = url
        self.login = login
        self.replied = replied
        self.waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.ids = 0
        self.pending: set[asyncio.Task[None]] = set()
        self.leaving = False

    async def request(self, **body: Any) -> dict[str, Any]:
        self.ids += 1
        rid = f"{self.login}-{self.ids}"
        answer = self.waiting[rid] = asyncio.get_running_loop().create_future()
        await self.ws.send(json.dumps({"id": rid, **body}))
        try:
            return await asyncio.wait_for(answer, 10)
        finally:
            self.waiting.pop(rid, None)

    async def serve(self, leave_at: float) -> None:
        reader = asyncio.create_task(self.read())
        try:
            # Operators start offline: online, routing gives them conversations.
            await self.request(type="availability", availability="online")
            look = 0.0
            while time.monotonic() < leave_at and not reader.done():
                if time.monotonic() >= look:
                    look = time.monotonic() + 1
                    self.spawn(self.look())
                await asyncio.sleep(0.05)
            # Leave once every reply sent has its answer, taking nothing new.
            self.leaving = True
            while self.pending and not reader.done():
                await asyncio.wait(set(self.pending), timeout=10)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await reader

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(self.guarded(work))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    @staticmethod
    async def guarded(work: Coroutine[Any, Any, None]) -> None:
        with contextlib.suppress(TimeoutError, ConnectionClosed, OSError):
            await work

    async def read(self) -> None:
        async for frame in self.ws:
            event = json.loads(frame)
            answer = self.waiting.get(str(event.get("id")))
            if answer is not None and event.get("type") in ("ok", "error"):
                if not answer.done():
                    answer.set_result(event)
                continue
            if self.leaving:
                continue
            message = event.get("message") or {}
            summary = event.get("conversation")
            if event.get("type") in ("conversation", "message") \
                    and message.get("author") == "visitor" and isinstance(summary, dict) \
                    and summary.get("assignee") == self.login and random.random() >= 0.1:
                self.spawn(self.answer(summary["id"], message["text"]))
            elif event.get("type") == "assigned":
                self.spawn(self.look())

    async def answer(self, conversation: str, question: str) -> None:
        if (conversation, question) in self.replied:
            return
        key = (conversation, question)
        self.replied.add(key)
        try:
            said = await self.request(type="reply", conversation=conversation,
                                      text=f"answer to {question}")
        except BaseException:
            # Its outcome unknown: the thread will say, once it has landed.
            asyncio.get_running_loop().call_later(3, self.replied.discard, key)
            raise
        if said["type"] != "ok":
            self.replied.discard(key)  # not done: look in the thread later
        else:
            REPLIES.setdefault(question, []).append(
                f"{self.login} on {self.url} at {time.strftime('%H:%M:%S')}: {said['type']}")

    async def look(self) -> None:
        """Answer what waits in the conversations assigned to this operator, from the store."""
        listed = await self.request(type="conversations", view="mine", limit=100)
        for summary in listed.get("conversations", ()):
            if summary.get("waiting_since") is None:
                continue
            thread = await self.request(type="open", conversation=summary["id"], limit=100)
            # Still its own? Leaving on another daemon a moment ago handed it
            # over, which that daemon's listing may not show yet.
            if thread["type"] != "ok" or thread["conversation"]["assignee"] != self.login:
                continue
            messages = [e for e in thread["entries"] if e.get("kind") == "message"]
            answered = {e["text"].removeprefix("answer to ") for e in messages
                        if e["author"] == "operator"}
            for entry in messages:
                if entry["author"] == "visitor" and entry["text"] not in answered:
                    await self.answer(summary["id"], entry["text"])
