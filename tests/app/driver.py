"""Drives the Gradio app (app/app.py) in headless Chromium: start and stop it on a loopback port, and fill, upload,
click and read its widgets. Shared by the browser test and the start/request-time measurement (measure_app.py)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
READY = "frozen-app ready on "
# Generous: the app imports Gradio, transformers and datasets on 2 shared cores.
START_TIMEOUT = 240
ANSWER_TIMEOUT_MS = 120_000


class AppDidNotStart(RuntimeError):
    """The app exited or printed no ready line in time; the message holds its output."""


@dataclass
class RunningApp:
    url: str
    port: int
    start_seconds: float
    ready_line: str
    output: list[str]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def running_app(model: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None, threads: int = 1,
                extra_args: tuple[str, ...] = ()):
    """Runs ``python app/app.py --model <model>`` on a free loopback port until the block ends, then stops it.
    ``start_seconds`` is the wall time from launching the process to its ready line (model loaded, server up)."""
    port = free_port()
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1")
    if cache_dir is not None:
        env["FROZEN_HF_CACHE"] = str(cache_dir)
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "app" / "app.py"), "--model", str(model), "--port", str(port), *extra_args],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: list[str] = []
    ready = threading.Event()
    started: list[float] = []

    def read():
        for line in proc.stdout:
            lines.append(line)
            if line.startswith(READY) and not ready.is_set():
                started.append(time.perf_counter() - start)
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        if not ready.wait(START_TIMEOUT):
            raise AppDidNotStart(f"The app did not start in {START_TIMEOUT} s:\n{''.join(lines)[-4000:]}")
        ready_line = next(line for line in lines if line.startswith(READY))
        yield RunningApp(f"http://127.0.0.1:{port}/", port, started[0], ready_line.strip(), lines)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@contextlib.contextmanager
def chromium():
    """Debian's headless Chromium under Playwright (no browser download)."""
    if not Path(CHROMIUM).exists():
        raise FileNotFoundError(f"{CHROMIUM} is missing: run `bash scripts/setup_browser.sh` (installs Debian's chromium).")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def open_page(browser, url: str):
    page = browser.new_page(viewport={"width": 1280, "height": 1500})
    page.goto(url)
    page.wait_for_selector("#binding-run")
    return page


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def upload(page, elem_id: str, paths) -> None:
    page.locator(f"#{elem_id} input[type=file]").set_input_files(paths)
    # The upload has finished when the component lists every file and no longer says "Uploading": it shows the names
    # under "Uploading 1 file..." before the server has them, and a click then can run on the wrong inputs.
    stems = [Path(path).stem for path in (paths if isinstance(paths, list) else [paths])]
    page.wait_for_function(
        "([id, stems]) => { const t = document.querySelector(id).innerText;"
        " return !t.includes('Uploading') && stems.every(s => t.includes(s)); }",
        arg=[f"#{elem_id}", stems], timeout=ANSWER_TIMEOUT_MS,
    )


def fill(page, elem_id: str, text) -> None:
    box = page.locator(f"#{elem_id} textarea, #{elem_id} input:not([type=file]):not([type=range])").first
    box.fill(str(text))
    box.press("Tab")


def run(page, prefix: str) -> str:
    """Clicks the tab's button and waits for a new status line (each is numbered); returns it without its number."""
    status = page.locator(f"#{prefix}-status")
    before = status.inner_text()
    page.click(f"#{prefix}-run")
    page.wait_for_function(
        "([id, before]) => { const t = document.querySelector(id).innerText;"
        " return t !== before && /^Request \\d+: (done in|Error)/.test(t); }",
        arg=[f"#{prefix}-status", before], timeout=ANSWER_TIMEOUT_MS,
    )
    return status.inner_text().split(": ", 1)[1]


def value(page, elem_id: str) -> str:
    return page.locator(f"#{elem_id} textarea").input_value()
