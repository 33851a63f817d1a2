from __future__ import annotations

import os
import shutil
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.logger import LogEvent, globalLogPublisher

from tests.daemon import Daemon
from tests.redis_server import RedisServer, redis_available
from tests.redis_store_link import Links, redis_link
from wsdaemon.broker.link import RedisLink

IN_CI = bool(os.environ.get("CI"))


def require_tool(available: bool, what: str) -> None:
    """Skip a test whose tool is missing, except in CI, where it must be there."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{what} is missing; .ci/run must install it")
    pytest.skip(f"{what} is not installed")


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[str], Path]:
    """Write an INI file (dedented) into the test's directory."""

    def write(text: str, name: str = "wsdaemon.ini") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
        return path

    return write


ECHO_CONFIG = """
    [wsdaemon]
    listen = tcp:0:interface=127.0.0.1

    [protocol]
    max_message_size = 64KiB
    max_frame_size = 64KiB

    [route:/echo]
    strategy = echo
    """


@pytest.fixture
def start_daemon() -> Iterator[Callable[..., Daemon]]:
    """Start real daemons; all are stopped after the test."""
    started: list[Daemon] = []

    def start(config: Path, **kwargs: object) -> Daemon:
        daemon = Daemon(config, **kwargs)  # type: ignore[arg-type]
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.stop()


@pytest.fixture
def echo_daemon(write_config: Callable[[str], Path],
                start_daemon: Callable[..., Daemon]) -> Daemon:
    return start_daemon(write_config(ECHO_CONFIG))


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture
def browser() -> Iterator[object]:
    require_tool(Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists(),
                 "Chromium and chromedriver (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="wsdaemon-chromium-")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)




@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A real redis-server with AOF on, stopped after the test."""
    require_tool(redis_available(), "redis-server (Debian package redis-server)")
    server = RedisServer(tmp_path / "redis")
    yield server
    server.stop()


@pytest.fixture
def failures() -> Iterator[list[LogEvent]]:
    """The events logged with a traceback while the test runs."""
    logged: list[LogEvent] = []

    def observe(event: LogEvent) -> None:
        if "log_failure" in event:
            logged.append(event)

    globalLogPublisher.addObserver(observe)
    try:
        yield logged
    finally:
        globalLogPublisher.removeObserver(observe)


@pytest.fixture
def links(redis_server: RedisServer) -> Iterator[Links]:
    """Started links to the test's redis-server (daemon ids d1, d2... unless
    given), stopped after the test."""
    import pytest_twisted

    made: list[RedisLink] = []

    def make(**kwargs: Any) -> RedisLink:
        kwargs.setdefault("daemon_id", f"d{len(made) + 1}")
        link = redis_link(redis_server, **kwargs)
        made.append(link)
        return link

    yield make
    for link in made:
        pytest_twisted.blockon(link.stop())
