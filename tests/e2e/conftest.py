"""Fixtures for the page's browser test: a small lake, the real app over HTTP, Debian chromium."""

from __future__ import annotations

import datetime as dt
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from spymaster.lake import Lake
from spymaster.settings import StorageSettings

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
START = dt.date(2026, 3, 2)
DAYS = 6


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: real browser tests (Debian chromium)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def page_lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    """Six generated days at a small scale, through bronze → silver → gold → vector index."""
    from spymaster import synth
    from spymaster.layers import index, models, pipeline
    from spymaster.layers import streams as streams_job
    from spymaster.settings import LearnedSimilarity

    lake = Lake(StorageSettings(lake_uri=str(tmp_path_factory.mktemp("page") / "lake")))
    dates = synth.generate(lake, START, DAYS, scale=0.02, seed=5, progress=False)
    results = pipeline.run(lake.settings, dates)
    failed = [(r.date, r.failed_stage, r.error) for r in results if r.error]
    assert not failed, failed
    index.index(lake)
    models.fit(lake, LearnedSimilarity(min_train_days=2))  # the learned similarity's models
    streams_job.fit_projections(lake, min_days=2)  # the streams' projection models
    return lake


@pytest.fixture(scope="session")
def app_url(page_lake: Lake) -> Iterator[str]:
    """The real app (``spymaster.api.create_app``) served by uvicorn on 127.0.0.1 in a thread."""
    import uvicorn

    from spymaster.api import create_app

    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(lake=page_lake), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, name="uvicorn-e2e", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the app did not start")
        time.sleep(0.05)
    httpx.get(f"{url}/health", timeout=10).raise_for_status()
    yield url
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")  # playwright's sync API holds the main thread's event loop while open
def browser() -> Iterator[Any]:
    """Headless Debian chromium driven by playwright (never ``playwright install``)."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the page test needs Debian's chromium "
            "(`make browser`, i.e. apt-get install chromium)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()
