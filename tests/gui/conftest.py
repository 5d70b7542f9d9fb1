"""GUI test fixtures: a workspace with the DSB2018 demo image, a running `cellbench gui`, Chromium via Playwright.

Browser tests drive Debian's Chromium (`apt-get install chromium`; Playwright's own browser
download is not used) and are skipped, with the reason, when it or Playwright is missing.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from gui_helpers import CHROMIUM, GuiServer, make_workspace  # noqa: E402


@pytest.fixture(scope="session")
def gui_workspace(tmp_path_factory) -> Path:
    return make_workspace(tmp_path_factory.mktemp("gui-workspace"))


@pytest.fixture(scope="session")
def token_server(gui_workspace):
    """The server on 0.0.0.0 (not loopback): a token is generated and required."""
    pytest.importorskip("nicegui", reason="the GUI server needs nicegui: pip install 'cellbench[gui]'")
    server = GuiServer(gui_workspace, "--host", "0.0.0.0")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def browser():
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install -y chromium); browser tests skipped")
    sync_api = pytest.importorskip("playwright.sync_api", reason="browser tests need playwright (pip install playwright)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture()
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(60_000)
    yield page
    context.close()


