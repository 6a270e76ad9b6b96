"""The Gradio app in a real browser: headless Chromium (Debian's package, driven by Playwright) uploads images, types
names and questions, clicks, and reads the answers from the page; each must equal what `frozen_hf.app` gives for the
same inputs. Bad input must show a readable message, never a traceback.

Needs /usr/bin/chromium (``bash scripts/setup_browser.sh`` installs it; scripts/test.sh runs that). Screenshots of
every tab go to ``$FROZEN_APP_SCREENSHOTS`` when set (the README's pictures), else to a temporary folder.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from frozen_hf import app as lib
from tests.helpers.tiny import random_images, tiny_model, tiny_processor

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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("app")


@pytest.fixture(scope="module")
def checkpoint(workdir) -> Path:
    folder = workdir / "tiny-frozen"
    processor = tiny_processor()
    tiny_model(processor).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def cache_dir(workdir) -> Path:
    return workdir / "cache"


@pytest.fixture(scope="module")
def app_url(checkpoint, cache_dir):
    port = _free_port()
    env = dict(os.environ, FROZEN_HF_CACHE=str(cache_dir), OMP_NUM_THREADS="1", GRADIO_ANALYTICS_ENABLED="False",
               PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "app" / "app.py"), "--model", str(checkpoint), "--port", str(port)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: list[str] = []
    ready = threading.Event()

    def read():
        for line in proc.stdout:
            lines.append(line)
            if line.startswith(READY):
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        if not ready.wait(START_TIMEOUT):
            pytest.fail(f"The app did not start in {START_TIMEOUT} s:\n{''.join(lines)[-4000:]}")
        assert "Loaded" in lines[-1], lines[-1]
        yield f"http://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    # Stopped: nothing listens on its port any more.
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `bash scripts/setup_browser.sh` (installs Debian's chromium).")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def library(checkpoint):
    """The same checkpoint, loaded in the test process: the reference for every answer."""
    return lib.load_app_model(str(checkpoint))


@pytest.fixture(scope="module")
def shots_dir(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("FROZEN_APP_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def images(workdir) -> list[str]:
    paths = []
    for i, image in enumerate(random_images(4, seed=11)):
        paths.append(str(workdir / f"upload-{i}.png"))
        image.save(paths[-1])
    corrupt = workdir / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png")
    paths.append(str(corrupt))
    return paths


@pytest.fixture
def page(browser, app_url):
    page = browser.new_page(viewport={"width": 1280, "height": 1500})
    page.goto(app_url)
    page.wait_for_selector("#binding-run")
    yield page
    page.close()


def _open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def _upload(page, elem_id: str, paths) -> None:
    page.locator(f"#{elem_id} input[type=file]").set_input_files(paths)
    # The upload finishes when the component lists the file; clicking earlier would send no file.
    for path in paths if isinstance(paths, list) else [paths]:
        page.locator(f"#{elem_id}").get_by_text(Path(path).stem, exact=False).first.wait_for()


def _fill(page, elem_id: str, text: str) -> None:
    page.locator(f"#{elem_id} textarea, #{elem_id} input:not([type=file]):not([type=range])").first.fill(str(text))
    page.locator(f"#{elem_id} textarea, #{elem_id} input:not([type=file]):not([type=range])").first.press("Tab")


def _run(page, prefix: str) -> str:
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


def _value(page, elem_id: str) -> str:
    return page.locator(f"#{elem_id} textarea").input_value()


def test_few_shot_binding_tab_answers_like_the_library(page, library, images, shots_dir):
    _upload(page, "binding-support", images[:2])
    _upload(page, "binding-query", images[2])
    _fill(page, "binding-names", "dax, blicket")
    assert _run(page, "binding").startswith("done in")
    answer, prompt = lib.answer_binding(*library, images[:2], "dax, blicket", images[2])
    assert _value(page, "binding-answer") == answer
    assert _value(page, "binding-prompt") == prompt.text
    assert page.locator("#binding-gallery img").count() == 3


def test_shapes_example_in_the_binding_tab(page, library, shots_dir):
    _fill(page, "binding-ways", 3)
    page.locator("#binding-layout").get_by_role("radio", name="paper").check()
    page.click("#binding-example")
    page.wait_for_function("() => document.querySelector('#binding-names textarea').value.split(',').length == 3")
    episode = lib.shapes_binding_example(library[1], ways=3, seed=0)
    assert _value(page, "binding-names") == ", ".join(episode["names"])
    assert _run(page, "binding").startswith("done in")
    answer, prompt = lib.answer_binding(*library, episode["support_images"], episode["names"], episode["query_image"],
                                        layout="paper")
    assert prompt.text.count("This is a") == 4 and _value(page, "binding-prompt") == prompt.text
    assert _value(page, "binding-answer") == answer
    page.screenshot(path=str(shots_dir / "app-binding.png"), full_page=True)


def test_free_prompt_tab_answers_like_the_library(page, library, images, shots_dir):
    _open_tab(page, "Free prompt")
    text = "<image> this is a dax . <image> this is a"
    _fill(page, "free-text", text)
    _upload(page, "free-images", images[:2])
    _fill(page, "free-max-new", 6)
    assert _run(page, "free").startswith("done in")
    expected = lib.generate_interleaved(*library, text, images[:2], lib.GenerationSettings(max_new_tokens=6))
    assert _value(page, "free-answer") == expected
    page.get_by_role("radio", name="beam").check()
    assert _run(page, "free").startswith("done in")
    beams = lib.generate_interleaved(*library, text, images[:2], lib.GenerationSettings(6, "beam", num_beams=3))
    assert _value(page, "free-answer") == beams
    page.screenshot(path=str(shots_dir / "app-free.png"), full_page=True)


def test_vqa_tab_with_retrieved_examples(page, library, images, cache_dir, shots_dir, monkeypatch):
    _open_tab(page, "VQA")
    _upload(page, "vqa-image", images[3])
    question = "what colour is the circle ?"
    _fill(page, "vqa-question", question)
    _fill(page, "vqa-k", 3)
    assert _run(page, "vqa").startswith("done in")
    # The app stored its index in its cache; the library finds it current and reuses it.
    monkeypatch.setenv("FROZEN_HF_CACHE", str(cache_dir))
    index = lib.shapes_support_index(*library, "vqa")
    assert index.status == "loaded"
    answer, prompt, rows = lib.answer_vqa(*library, images[3], question, index=index, k=3)
    assert _value(page, "vqa-answer") == answer
    assert _value(page, "vqa-prompt") == prompt.text
    assert page.locator("#vqa-retrieved img").count() == 3
    shown = page.locator("#vqa-retrieved").inner_text()
    for row in rows:
        assert f"Q: {row['question']} A: {row['answer']} (similarity {row['score']:.3f})" in shown
    page.screenshot(path=str(shots_dir / "app-vqa.png"), full_page=True)


def test_captioning_tab(page, library, images, cache_dir, shots_dir, monkeypatch):
    _open_tab(page, "Captioning")
    _upload(page, "caption-image", images[0])
    assert _run(page, "caption").startswith("done in")
    assert _value(page, "caption-answer") == lib.caption_image(*library, images[0])[0]
    _fill(page, "caption-k", 2)
    assert _run(page, "caption").startswith("done in")
    monkeypatch.setenv("FROZEN_HF_CACHE", str(cache_dir))
    text, prompt, rows = lib.caption_image(*library, images[0], index=lib.shapes_support_index(*library, "captions"), k=2)
    assert _value(page, "caption-prompt") == prompt.text
    assert _value(page, "caption-answer") == text
    assert all(row["caption"] in page.locator("#caption-retrieved").inner_text() for row in rows)
    page.screenshot(path=str(shots_dir / "app-captioning.png"), full_page=True)


def _error(page, prefix: str) -> str:
    status = _run(page, prefix)
    assert status.startswith("Error:"), status
    assert "Traceback" not in page.content()
    return status


def test_bad_input_gets_a_readable_message(page, images):
    # No image at all.
    _fill(page, "binding-names", "dax")
    assert "No support images" in _error(page, "binding")
    _upload(page, "binding-support", images[:2])
    assert "2 support images but 1 names" in _error(page, "binding")
    _fill(page, "binding-names", "dax, blicket")
    assert "No query image" in _error(page, "binding")
    # More markers than images.
    _open_tab(page, "Free prompt")
    _fill(page, "free-text", "<image> this is a dax . <image> this is a")
    _upload(page, "free-images", images[:1])
    message = _error(page, "free")
    assert "2 <image> markers but 1 images (more markers than images)" in message
    # A corrupt upload.
    _open_tab(page, "VQA")
    _upload(page, "vqa-image", images[4])
    assert "(corrupt.png) is not a readable image" in _error(page, "vqa")
