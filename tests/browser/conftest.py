"""Fixtures for the browser tests: one headless Chromium per session, a fresh page per
test that fails the test on any JavaScript error, and a live node on 127.0.0.1.

Chromium is Debian's ``/usr/bin/chromium`` (``scripts/install-browser`` installs it);
Playwright never downloads a browser of its own. ``launch()`` gives the browser a fresh
temporary profile (user-data-dir) that Playwright deletes on close, and each test gets
a new browser context: no cookies, storage or cache carry over between tests.

The tests use Playwright's async API in one event loop for the whole session (the
browser is started once): every async test and fixture here runs with
``loop_scope="session"``. The sync API is not used because it leaves its own loop
marked as running in the main thread, which breaks the other async tests of the run.

The live node is the real ``create_app`` served by ``node.server.start_site`` (what
``fora serve`` runs) on a real 127.0.0.1 port the kernel picks, in the same process and
loop as the test, so a test can seed and read the node's store directly
(``await live_node.store.write(fn)``) before and after driving the browser.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from playwright.async_api import Browser, Page, async_playwright
from pytest_asyncio import is_async_test

from node.app import create_app
from node.appkeys import STORE
from node.folder import NodeConfig
from node.publish import add_account, init_node, publish
from protocol import signing
from protocol.messages import Message
from storage.store import Store

from .tools import CHROMIUM, CHROMIUM_ARGS, ConsoleWatch, serve

#: Playwright waits this long (ms) for a page or an element before failing the test.
TIMEOUT_MS = 15_000

WATCH = pytest.StashKey[ConsoleWatch]()
HERE = Path(__file__).parent
SESSION_LOOP = pytest.mark.asyncio(loop_scope="session")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.browser)
            if is_async_test(item):
                item.add_marker(SESSION_LOOP, append=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> object:
    """After the test body: fail it on any console error or uncaught page exception."""
    result = yield
    watch = item.stash.get(WATCH, None)
    if watch is not None:
        watch.check()
    return result


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"the browser tests need Debian's chromium at {CHROMIUM}: run scripts/install-browser"
            " (scripts/test does), or deselect them with -m 'not browser'"
        )
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=list(CHROMIUM_ARGS)
        )
        try:
            yield browser
        finally:
            await browser.close()


@pytest_asyncio.fixture(loop_scope="session")
async def page(browser: Browser, request: pytest.FixtureRequest) -> AsyncIterator[Page]:
    """A fresh page in a fresh context; any console error or page error fails the test."""
    context = await browser.new_context(locale="en-GB", timezone_id="Europe/Rome")
    context.set_default_timeout(TIMEOUT_MS)
    try:
        page = await context.new_page()
        watch = ConsoleWatch()
        watch.attach(page)
        request.node.stash[WATCH] = watch
        yield page
    finally:
        await context.close()


@pytest.fixture
def console_watch(page: Page, request: pytest.FixtureRequest) -> ConsoleWatch:
    """The page's error collector, for tests that expect an error (``take()`` it)."""
    return request.node.stash[WATCH]


@dataclass
class LiveNode:
    url: str
    config: NodeConfig
    key: Ed25519PrivateKey
    app: web.Application

    @property
    def store(self) -> Store:
        return self.app[STORE]

    @property
    def community(self) -> bytes:
        return signing.public_key_bytes(self.key)

    async def publish(
        self, kind: str, fields: dict[str, Any], refs: Sequence[bytes] = ()
    ) -> Message:
        """Sign ``kind`` with the community's own key and store it."""
        return await self.store.write(publish, self.key, self.community, kind, fields, refs)

    async def add_account(self, name: str, role: str = "member") -> None:
        """A web account ``name`` with ``role`` (password :data:`tests.webflow.PASSWORD`;
        the tests' fast password hashing, for the account and for logins)."""
        from web.accounts import ACCOUNTS

        from ..webflow import FAST, PASSWORD

        self.app[ACCOUNTS].params = FAST
        await self.store.write(
            add_account, self.key, name=name, password=PASSWORD, role=role, params=FAST
        )


@pytest_asyncio.fixture(loop_scope="session")
async def live_node(tmp_path: Path) -> AsyncIterator[LiveNode]:
    """A freshly initialised node folder served by the real app on 127.0.0.1."""
    config, key, _profile = await asyncio.to_thread(
        init_node,
        tmp_path / "node",
        name="Bomarzo",
        country="IT",
        region="Lazio",
        languages=("it", "en"),
        about="A test municipality.",
    )
    app = create_app(config, sync_interval=3600.0, mdns=False)
    async with serve(app) as url:
        yield LiveNode(url=url, config=config, key=key, app=app)
