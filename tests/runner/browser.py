"""Headless Chromium for the dashboard tests: a page's DOM after its scripts ran, and a
screenshot kept in test-artifacts/."""

from __future__ import annotations

import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import plotly.graph_objects as go
import pytest
from plotly.offline import get_plotlyjs

from runner.dashboard.figure_config import FIGURE_CONFIG, MODEBAR_SCRIPT

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("PLASTICITY_TEST_ARTIFACTS", ROOT / "test-artifacts"))
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--virtual-time-budget=15000",
]  # fmt: skip


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        message = "Debian's chromium is not installed (apt-get install chromium)"
        if os.environ.get("PLASTICITY_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    return path


class _Elements(HTMLParser):
    """Attributes of every element of a DOM dump, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.elements.append((tag, dict(attrs)))


def open_in_chromium(page: Path, tmp_path: Path, screenshot: str,
                     height: int = 3600) -> list[tuple[str, dict]]:  # fmt: skip
    """The page's DOM after its scripts ran, and a full-page screenshot in ARTIFACTS."""
    browser = chromium()
    profile = ["--user-data-dir=" + str(tmp_path / "profile")]
    dom = subprocess.run(
        [browser, *FLAGS, *profile, "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / screenshot
    subprocess.run(
        [browser, *FLAGS, *profile, f"--window-size=1400,{height}", f"--screenshot={shot}",
         page.as_uri()],
        capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    assert shot.stat().st_size > 10_000
    parser = _Elements()
    parser.feed(dom)
    return parser.elements


def plots(elements) -> dict[str, dict]:
    return {
        attrs["id"]: attrs
        for tag, attrs in elements
        if tag == "div" and "js-plotly-plot" in attrs.get("class", "")
    }


def body(elements) -> dict:
    return next(attrs for tag, attrs in elements if tag == "body")


_ERRORS = """<script>window.__errors=[];
window.addEventListener("error",function(e){window.__errors.push(String(e.message))});
(function(){var original=console.error;console.error=function(){
window.__errors.push(Array.prototype.join.call(arguments," "));
original.apply(console,arguments)}})();</script>"""


def figures_page(path: Path, figures: list[go.Figure], script: str = "") -> Path:
    """A page of `figures` (div ids fig-0, fig-1, ...) as the dashboard renders them
    (FIGURE_CONFIG, MODEBAR_SCRIPT), then `script`; once it ran, the body's data-errors
    holds the JavaScript errors and data-ready is '1'."""
    divs = "".join(
        f.to_html(full_html=False, include_plotlyjs=False, div_id=f"fig-{i}",
                  config=FIGURE_CONFIG)
        for i, f in enumerate(figures)
    )  # fmt: skip
    done = ('<script>window.addEventListener("load",function(){setTimeout(function(){'
            'document.body.setAttribute("data-errors",JSON.stringify(window.__errors));'
            'document.body.setAttribute("data-ready","1")},500)});</script>')  # fmt: skip
    path.write_text(
        f'<!doctype html><html><head><meta charset="utf-8">{_ERRORS}'
        f"<script>{get_plotlyjs()}</script>{MODEBAR_SCRIPT}</head>"
        f'<body style="max-width:1400px">{divs}{script}{done}</body></html>'
    )
    return path


def wrap_page(path: Path, page: str) -> Path:
    """A dashboard page (build_page's HTML) with plotly.js, as write_dashboard writes it,
    and MODEBAR_SCRIPT after plotly.js."""
    path.write_text(page.replace("<title>", f"<script>{get_plotlyjs()}</script>"
                                            f"{MODEBAR_SCRIPT}<title>", 1))  # fmt: skip
    return path
