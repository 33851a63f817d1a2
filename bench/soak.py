#!/usr/bin/env python3
"""
A bounded soak: for --minutes (default 5), clients connect and disconnect,
send messages to echo, the scripted bot (tickers included) and a
conversations route (plain-text visitors, the seed's page), two operators
(protocol 2, `routing = auto`) come and go, and the daemon is reloaded every
20 s. Then everything stops and the daemon must be back where it started:
memory (RSS, within --rss-slack-mib), file descriptors, pending timers; and
every question a visitor asked got exactly one answer (an operator leaving
hands its conversations to the other; some answers come after the fallback
notice, some on the visitor's next connection).

    python bench/soak.py --minutes 5
    python bench/soak.py --minutes 5 --redis

With --redis, two daemons share a redis-server (AOF on) and the identity
key: visitors and operators land on either at random, and Redis is
restarted once in the middle (down for two seconds). A visitor told its
message "could not be queued" while Redis is away expects no answer to it;
one told "we could not confirm" it expects at most one; every other question
must still get exactly one answer.

(Until 2026-12-07 the soak ran the operator queue, now retired.)

Only loopback; every loop is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

KEY = "soak-key-0123456789abcdef"
TOKEN = "soak-token-0123456789abcdef"
FALLBACK = "soak fallback"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


NOT_QUEUED = "Sorry, your message could not be queued"
UNCONFIRMED = "Sorry, we could not confirm that your message reached us"
ACK, OFFLINE = "soak ack", "soak offline"
CHAT = "wsdaemon.chat.v1"
#: Who answered each question (shown for one answered twice).
REPLIES: dict[str, list[str]] = {}
#: The operators (routing = auto gives each conversation to one of them).
OPERATORS = {"alice": TOKEN, "bob": TOKEN.replace("soak-", "soak-b-")}


def write_config(directory: Path, port: int, admin: int, broker: str = "",
                 name: str = "soak") -> Path:
    (directory / "bot.toml").write_text(textwrap.dedent("""
        [[greeting]]
        text = "hi {session}"
        [[rule]]
        text = "tick"
        reply = "ticking"
        start_ticker = { name = "t", every = 0.2, text = "tick {tick}" }
        [[rule]]
        text = "slow"
        [[rule.send]]
        text = "later"
        delay = 0.5
        [default]
        reply = "{message}"
    """))
    path = directory / f"{name}.ini"
    path.write_text(textwrap.dedent(f"""
        [wsdaemon]
        listen = tcp:{port}:interface=127.0.0.1
        demo_page = no
        [admin]
        listen = tcp:{admin}:interface=127.0.0.1
        api_keys = soak:{KEY}
        [protocol]
        max_message_rate = 0
        # Both daemons know a visitor by the same cookie.
        identity_secret_file = {directory}/identity.key
        [operator]
        tokens =
            alice:{OPERATORS["alice"]}
            bob:{OPERATORS["bob"]}
        store = {directory}/{name}.sqlite3
        routing = auto
        ack_message = {ACK}
        offline_message = {OFFLINE}
        fallback_after = 3
        fallback_message = {FALLBACK}
        [route:/echo]
        strategy = echo
        [route:/bot]
        strategy = scripted
        rules = bot.toml
        [route:/support]
        strategy = operator
    """) + broker)
    return path


def snapshot(pid: int, admin: int) -> dict[str, int]:
    rss = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text()
               .splitlines() if line.startswith("VmRSS:"))
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/healthz", timeout=10) as r:
        health = json.loads(r.read())
    return {"rss_kib": rss, "fds": fds, "timers": health["pending_timers"],
            "connections": health["connections"],
            "ready": int(health["ready"] and health["broker"]["up"])}


def settled(pid: int, admin: int) -> dict[str, int]:
    """
    The lowest of a few snapshots over a second: a Redis call in flight at
    the instant of one snapshot holds timers (its timeouts) that are not a
    leak.
    """
    samples = []
    for _ in range(5):
        samples.append(snapshot(pid, admin))
        time.sleep(0.2)
    return {key: min(sample[key] for sample in samples) for key in samples[0]}


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
        self.heard_on: dict[str, list[str]] = {}  # question -> the connections it came on


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
        tally.heard_on.setdefault(question, []).append(f"{where} {time.strftime('%H:%M:%S')}")
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
                answer.done() or answer.set_result(event)
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
            if thread["type"] != "ok":
                continue
            messages = [e for e in thread["entries"] if e.get("kind") == "message"]
            answered = {e["text"].removeprefix("answer to ") for e in messages
                        if e["author"] == "operator"}
            for entry in messages:
                if entry["author"] == "visitor" and entry["text"] not in answered:
                    await self.answer(summary["id"], entry["text"])


async def reloader(processes: list[subprocess.Popen[bytes]], deadline: float) -> None:
    while time.monotonic() + 20 < deadline:
        await asyncio.sleep(20)
        for process in processes:
            process.send_signal(signal.SIGHUP)


async def redis_restart(redis: Redis, seconds: float) -> None:
    await asyncio.sleep(seconds / 2)
    await asyncio.to_thread(redis.restart, 2.0)
    print(f"redis restarted at {time.strftime('%H:%M:%S')} (down the 2 s before)", flush=True)


async def soak(urls: list[str], processes: list[subprocess.Popen[bytes]], seconds: float,
               tally: Tally, redis: Redis | None) -> None:
    deadline = time.monotonic() + seconds
    # The operators stay until the visitors have come back for their answers.
    done = asyncio.Event()

    async def visitors() -> None:
        await asyncio.gather(*(support_client(urls, deadline, f"c{n}", tally)
                               for n in range(10)))
        done.set()

    tasks = [echo_client(urls, deadline) for _ in range(8)]
    tasks += [bot_client(urls, deadline) for _ in range(6)]
    # What either operator is answering: as people in one room see each other
    # typing, the two never answer one question both (the daemon does not stop
    # two operators answering one message; it stores and delivers each once).
    replied: set[tuple[str, str]] = set()
    tasks += [visitors(), *(operator(urls, done, login, replied) for login in OPERATORS)]
    tasks.append(reloader(processes, deadline))
    if redis is not None:
        tasks.append(redis_restart(redis, seconds))
    await asyncio.gather(*tasks)


class Redis:
    """A redis-server with AOF on, in the soak's directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        server = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.process = subprocess.Popen(
            [server, "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
             str(self.directory), "--appendonly", "yes", "--appendfsync", "always",
             "--save", ""], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        raise SystemExit("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=15)
            self.process = None

    def restart(self, down_for: float) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--rss-slack-mib", type=float, default=16)
    parser.add_argument("--redis", action="store_true",
                        help="two daemons on one redis-server, restarted once midway")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        redis = Redis(directory) if args.redis else None
        broker = ("" if redis is None else "\n[broker]\nbackend = redis\n"
                  f"url = redis://127.0.0.1:{redis.port}/0\nprefix = soak:\ntimeout = 1\n")
        daemons: list[tuple[str, int, int, subprocess.Popen[bytes]]] = []
        befores: dict[str, dict[str, int]] = {}
        afters: dict[str, dict[str, int]] = {}
        codes: dict[str, int] = {}
        tally = Tally()
        try:
            # One after the other: the first writes the identity key both use.
            for name in (["a", "b"] if redis else ["soak"]):
                port, admin = free_port(), free_port()
                config = write_config(directory, port, admin, broker, name)
                twistd = shutil.which("twistd", path=str(Path(sys.executable).parent)) or "twistd"
                log = open(directory / f"{name}.log", "wb")  # noqa: SIM115
                process = subprocess.Popen([twistd, "-n", "--pidfile=", "wsdaemon", "--config",
                                            str(config)], stdout=log, stderr=subprocess.STDOUT)
                daemons.append((name, port, admin, process))
                for _ in range(100):
                    try:
                        time.sleep(0.2)
                        # Ready, and with Redis both connections up.
                        if snapshot(process.pid, admin)["ready"]:
                            time.sleep(0.5)
                            befores[name] = settled(process.pid, admin)
                            break
                    except OSError:
                        pass
                else:
                    raise SystemExit(f"daemon {name} did not start")
                print(f"before {name}: {befores[name]}", flush=True)
            processes = [d[3] for d in daemons]
            asyncio.run(soak([f"ws://127.0.0.1:{d[1]}" for d in daemons], processes,
                             args.minutes * 60, tally, redis))
            time.sleep(6)  # fallbacks, close handshakes settle
            # What the visitors heard against what is stored.
            for cookie in tally.cookies.values():
                stored = asyncio.run(stored_answers(f"ws://127.0.0.1:{daemons[0][1]}", cookie))
                for question, count in stored.items():
                    if count != 1:
                        tally.errors.append(f"{question!r}: stored {count} answers "
                                            f"({'; '.join(REPLIES.get(question, []))})")
                    if tally.answers.get(question, 0) > count:
                        tally.errors.append(
                            f"{question!r}: stored {count} answer(s), written "
                            f"{tally.answers[question]} times to the visitor "
                            f"({'; '.join(tally.heard_on.get(question, []))})")
            for name, _, admin, process in daemons:
                afters[name] = settled(process.pid, admin)
                print(f"after {name}:  {afters[name]}", flush=True)
        finally:
            for _, _, _, process in daemons:
                process.send_signal(signal.SIGTERM)
            for name, _, _, process in daemons:
                codes[name] = process.wait(timeout=30)
            if redis is not None:
                redis.stop()
        problems = list(tally.errors)
        for question in sorted(tally.sure):
            if tally.answers.get(question, 0) != 1:
                problems.append(f"{question!r}: {tally.answers.get(question, 0)} answers "
                                f"({'; '.join(REPLIES.get(question, []))})")
        for question, count in sorted(tally.answers.items()):
            if question not in tally.sure and (question not in tally.unsure or count > 1):
                problems.append(f"{question!r}: {count} answers, asked "
                                f"{'unconfirmed' if question in tally.unsure else 'never'}")
        for name, before in befores.items():
            after = afters.get(name, before)
            if after["fds"] > before["fds"]:
                problems.append(f"{name}: file descriptors {before['fds']} -> {after['fds']}")
            if after["timers"] > before["timers"]:
                problems.append(f"{name}: pending timers {before['timers']} -> "
                                f"{after['timers']}")
            if after["rss_kib"] - before["rss_kib"] > args.rss_slack_mib * 1024:
                problems.append(f"{name}: RSS {before['rss_kib']} -> {after['rss_kib']} KiB")
            if codes.get(name) != 0:
                problems.append(f"daemon {name} exited with {codes.get(name)}")
        print(f"conversations: {len(tally.sure)} questions asked, each answered once: "
              f"{'yes' if not any('answers' in p for p in problems) else 'NO'}; "
              f"{len(tally.unsure)} unconfirmed (at most one answer); notices {tally.notices}"
              + (f"; {tally.refused} refused while Redis was away" if redis else ""))
        for problem in problems:
            print(f"PROBLEM: {problem}")
        if problems:
            kept = Path(tempfile.mkdtemp(prefix="wsdaemon-soak-"))
            for name, *_ in daemons:
                shutil.copy(directory / f"{name}.log", kept)
            print(f"daemon logs kept in {kept}")
        print("soak: OK" if not problems else "soak: FAILED")
        return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
