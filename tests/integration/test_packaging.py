"""
Packaging: the wheel carries the twistd plugin and nothing that would break
Twisted's own plugins, and both `pip install .` and `pip install -e .` make
`twistd --help` list wsdaemon, from a fresh virtualenv.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.daemon import REPO

pytestmark = pytest.mark.slow

IGNORE = shutil.ignore_patterns(".git", "__pycache__", "*.pyc", ".pytest_cache", ".mypy_cache",
                                ".ruff_cache", "dist", "build", "*.egg-info", "reports",
                                "dropin.cache")


def copy_tree(tmp_path: Path) -> Path:
    """A copy of the checkout, with a stale plugin cache planted in it."""
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=IGNORE)
    (source / "twisted" / "plugins" / "dropin.cache").write_bytes(b"stale cache")
    return source


def run(*command: str | Path, cwd: Path, timeout: float = 300) -> str:
    result = subprocess.run([str(c) for c in command], cwd=cwd, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_wheel_contents(tmp_path: Path) -> None:
    """The wheel holds the plugin and no twisted/__init__.py or dropin.cache."""
    source = copy_tree(tmp_path)
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
        "-w", tmp_path / "dist", source, cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("wsdaemon-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "twisted/plugins/wsdaemon_plugin.py" in names
    assert {"wsdaemon/__init__.py", "wsdaemon/tap.py", "wsdaemon/py.typed",
            "wsdaemon/static/demo.html"} <= names
    assert "twisted/__init__.py" not in names
    assert "twisted/plugins/__init__.py" not in names
    assert not [n for n in names if n.endswith("dropin.cache") or "__pycache__" in n]
    # The README, where the systemd unit's Documentation= looks for it.
    assert [n for n in names if n.endswith(".data/data/share/doc/wsdaemon/README.md")]


def twistd_help(python: Path, cwd: Path) -> str:
    return run(python, "-c",
               "import sys; sys.argv = ['twistd', '--help']\n"
               "from twisted.scripts.twistd import run; run()", cwd=cwd)


def tap_location(python: Path, cwd: Path) -> str:
    return run(python, "-c",
               "from twisted.plugin import getPlugins\n"
               "from twisted.application.service import IServiceMaker\n"
               "maker = [p for p in getPlugins(IServiceMaker) if p.tapname == 'wsdaemon'][0]\n"
               "import importlib; print(importlib.import_module(maker.module).__file__)",
               cwd=cwd).strip()


def test_install_and_editable_install_list_the_plugin(tmp_path: Path) -> None:
    """Install and editable install list the plugin."""
    source = copy_tree(tmp_path)
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    run(python, "-m", "pip", "install", "-q", source, cwd=elsewhere)
    assert "wsdaemon" in twistd_help(python, elsewhere)
    assert (venv / "share" / "doc" / "wsdaemon" / "README.md").is_file()
    assert tap_location(python, elsewhere).startswith(str(venv))
    # Autobahn's accelerated code comes with a plain install (24x on 16 KiB here).
    nvx = run(python, "-c", "from autobahn.websocket import USES_NVX; print(USES_NVX)",
              cwd=elsewhere)
    assert nvx.strip() == "True"
    # So does the C masking function the fast frame path uses.
    masker = run(python, "-c", "from wsdaemon.connections.accel import MASKER; print(MASKER)",
                 cwd=elsewhere)
    assert masker.strip() == "websockets' C apply_mask"

    run(python, "-m", "pip", "uninstall", "-q", "-y", "wsdaemon", cwd=elsewhere)
    assert "wsdaemon" not in twistd_help(python, elsewhere)

    run(python, "-m", "pip", "install", "-q", "--no-deps", "-e", source, cwd=elsewhere)
    assert "wsdaemon" in twistd_help(python, elsewhere)
    assert tap_location(python, elsewhere) == str(source / "src" / "wsdaemon" / "tap.py")
