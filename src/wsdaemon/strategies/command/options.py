"""
A command route's options, checked when the config is read: values only,
nothing that runs. The executable is found here, so a route naming one that
is missing (or not executable) is a config error, not a failure on the first
connection.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from wsdaemon.strategies import OptionError, reject_unknown_options

__all__ = ["DEFAULT_PASS_ENV", "CommandSettings", "check_options"]

#: The daemon's environment variables a process gets unless C{pass_env} says otherwise.
DEFAULT_PASS_ENV = ("PATH", "LANG")
KiB = 1024
_SIZES = {"": 1, "b": 1, "k": KiB, "kb": KiB, "kib": KiB, "m": KiB * KiB, "mb": KiB * KiB,
          "mib": KiB * KiB}
#: Headers that carry a credential or belong to the handshake: never passed.
_NUMBER = re.compile(r"([0-9]+)\s*([a-z]*)")
_NEVER_PASS = {"sec-websocket-key", "sec-websocket-accept", "upgrade", "connection"}
_OPTIONS = {"command", "working_dir", "pass_headers", "pass_env", "max_processes", "kill_grace",
            "max_line", "max_stdin_buffer", "stderr_lines_per_second", "binary"}


@dataclass(frozen=True)
class CommandSettings:
    """
    A command route's checked options.

    @ivar executable: the absolute path of the program, found at check time.
    @ivar argv: the command split as a shell would, with no shell (argv[0]
        as written).
    @ivar environ: the daemon's variables passed on (C{pass_env}), as they
        were when the config was read.
    """

    executable: str
    argv: tuple[str, ...]
    working_dir: str
    pass_headers: tuple[str, ...] = ()
    environ: tuple[tuple[str, str], ...] = ()
    max_processes: int = 64
    kill_grace: float = 2.0
    max_line: int = 64 * KiB
    max_stdin_buffer: int = 1024 * KiB
    stderr_lines_per_second: int = 20
    binary: bool = False


def _whole(options: Mapping[str, str], key: str, default: int, low: int, high: int,
           what: str) -> int:
    raw = options.get(key)
    if raw is None:
        return default
    match = _NUMBER.fullmatch(raw.strip().lower())
    unit = None if match is None else _SIZES.get(match.group(2))
    if match is None or unit is None or (what != "bytes" and match.group(2)):
        raise OptionError(key, f"expected {what} from {low} to {high}, got {raw!r}")
    value = int(match.group(1)) * unit
    if not low <= value <= high:
        raise OptionError(key, f"expected {what} from {low} to {high}, got {raw!r}")
    return value


def _executable(words: list[str], config_dir: Path, path: str) -> str:
    program = words[0]
    if "/" in program:
        candidate = Path(config_dir, program)
        if not candidate.is_file():
            raise OptionError("command", f"{candidate} does not exist or is not a file")
        if not os.access(candidate, os.X_OK):
            raise OptionError("command", f"{candidate} is not executable")
        return str(candidate.resolve())
    found = shutil.which(program, path=path)
    if found is None:
        raise OptionError("command", f"{program!r} is not an executable on PATH ({path})")
    return str(Path(found).resolve())


def check_options(options: Mapping[str, str], config_dir: Path,
                  environ: Mapping[str, str] | None = None) -> CommandSettings:
    """
    @param environ: the daemon's environment (C{os.environ} when None).
    @return: the route's options, checked (the executable found).
    @raise OptionError: naming the option that is wrong.
    """
    reject_unknown_options(options, _OPTIONS)
    daemon_env = os.environ if environ is None else environ
    try:
        words = shlex.split(options.get("command", ""))
    except ValueError as e:
        raise OptionError("command", f"cannot split it into words as a shell would: {e}") \
            from None
    if not words:
        raise OptionError("command", "expected the program to run and its arguments, e.g. "
                                     "command = ./reply.py --verbose")
    pass_env = (DEFAULT_PASS_ENV if options.get("pass_env") is None
                else tuple(options["pass_env"].replace(",", " ").split()))
    environ_passed = tuple((name, daemon_env[name]) for name in pass_env if name in daemon_env)
    search = dict(environ_passed).get("PATH", os.defpath)
    executable = _executable(words, config_dir, search)
    working = Path(config_dir, options.get("working_dir", "").strip() or ".")
    if not working.is_dir():
        raise OptionError("working_dir", f"{working} is not a directory")
    headers = tuple(n.lower() for n in options.get("pass_headers", "").replace(",", " ").split())
    blocked = [n for n in headers if n in _NEVER_PASS]
    if blocked:
        raise OptionError("pass_headers", f"{blocked[0]} belongs to the handshake itself")
    binary_raw = options.get("binary", "no").strip().lower()
    if binary_raw not in ("yes", "no", "true", "false", "on", "off", "1", "0"):
        raise OptionError("binary", f"expected yes or no, got {options['binary']!r}")
    grace_raw = options.get("kill_grace", "2").strip()
    try:
        grace = float(grace_raw)
    except ValueError:
        grace = -1.0
    if not 0 <= grace <= 60:
        raise OptionError("kill_grace", f"expected seconds from 0 to 60, got {grace_raw!r}")
    return CommandSettings(
        executable=executable, argv=tuple(words), working_dir=str(working.resolve()),
        pass_headers=headers, environ=environ_passed,
        max_processes=_whole(options, "max_processes", 64, 1, 100_000, "a number"),
        kill_grace=grace,
        max_line=_whole(options, "max_line", 64 * KiB, 1, 64 * KiB * KiB, "bytes"),
        max_stdin_buffer=_whole(options, "max_stdin_buffer", 1024 * KiB, 1, 64 * KiB * KiB,
                                "bytes"),
        stderr_lines_per_second=_whole(options, "stderr_lines_per_second", 20, 0, 10_000,
                                       "a number"),
        binary=binary_raw in ("yes", "true", "on", "1"))
