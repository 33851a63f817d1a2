"""
The operators' web inbox's files (static/inbox/), read as shipped: nothing
from the network can become markup, the page needs no inline script or style
(the CSP forbids both), and every module it imports is served.
"""

from __future__ import annotations

import re
from importlib.resources import files
from importlib.resources.abc import Traversable

from wsdaemon.pages import widget_assets
from wsdaemon.server.web import inbox_assets

FOLDER = files("wsdaemon").joinpath("static/inbox")
#: The modules the inbox shares with the widget (the link rule).
SHARED = files("wsdaemon").joinpath("static/shared")


def _scripts(folder: Traversable = FOLDER) -> dict[str, str]:
    return {entry.name: entry.read_text(encoding="utf-8")
            for entry in folder.iterdir() if entry.name.endswith(".js")}


def test_no_markup_from_strings() -> None:
    """No script builds markup from text (innerHTML and friends, eval): all
    text goes in as text nodes."""
    forbidden = re.compile(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|"
                           r"new Function|setAttribute\(\s*[\"']on|\.style\.")
    scripts = {**_scripts(), **{f"shared/{n}": s for n, s in _scripts(SHARED).items()}}
    found = {name: forbidden.findall(text) for name, text in scripts.items()}
    assert {name: hits for name, hits in found.items() if hits} == {}


def test_the_page_has_no_inline_script_or_style() -> None:
    """The page's only scripts are the data block and the module file; no
    style attribute, no <style>, no on* handler."""
    page = FOLDER.joinpath("inbox.html").read_text(encoding="utf-8")
    scripts = re.findall(r"<script[^>]*>", page)
    assert scripts == ['<script id="data" type="application/json">',
                       '<script type="module" src="/_wsdaemon/inbox/app.js">']
    assert not re.search(r"\sstyle=|<style|\son[a-z]+=", page)


def test_every_import_is_served() -> None:
    """Each relative import of each module names a file served at
    /_wsdaemon/inbox/, or at /_wsdaemon/shared/ for "../shared/" (a missing
    one would break the page at load); nothing else is imported."""
    served = {name.decode() for name in inbox_assets().children}
    shared = {name.decode() for name in widget_assets("/_wsdaemon")["/_wsdaemon/shared"].children}
    scripts = _scripts()
    assert set(scripts) <= served and "inbox.css" in served
    assert set(_scripts(SHARED)) <= shared
    for name, text in scripts.items():
        for imported in re.findall(r"from \"([^\"]+)\"", text):
            if imported.startswith("../shared/"):
                assert imported.removeprefix("../shared/") in shared, name
            else:
                assert imported.removeprefix("./") in served, f"{name} imports {imported}"
