"""The Gradio app in a real browser: headless Chromium (Debian's package, driven by Playwright) uploads images, types
names and questions, clicks, and reads the answers from the page; each must equal what `frozen_hf.app` gives for the
same inputs. Bad input must show a readable message, never a traceback.

Needs /usr/bin/chromium (``bash scripts/setup_browser.sh`` installs it; scripts/test.sh runs that). Screenshots of
every tab go to ``$FROZEN_APP_SCREENSHOTS`` when set (the README's pictures), else to a temporary folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from frozen_hf import app as lib
from tests.app.driver import chromium, fill, open_page, open_tab, port_is_open, run, running_app, upload, value
from tests.helpers.tiny import random_images, tiny_model, tiny_processor


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
    with running_app(checkpoint, cache_dir=cache_dir) as app:
        assert "Loaded" in app.ready_line, app.ready_line
        yield app.url
    # Stopped: nothing listens on its port any more.
    assert not port_is_open(app.port)


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser


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
    page = open_page(browser, app_url)
    yield page
    page.close()


def test_few_shot_binding_tab_answers_like_the_library(page, library, images, shots_dir):
    upload(page, "binding-support", images[:2])
    upload(page, "binding-query", images[2])
    fill(page, "binding-names", "dax, blicket")
    assert run(page, "binding").startswith("done in")
    answer, prompt = lib.answer_binding(*library, images[:2], "dax, blicket", images[2])
    assert value(page, "binding-answer") == answer
    assert value(page, "binding-prompt") == prompt.text
    assert page.locator("#binding-gallery img").count() == 3


def test_shapes_example_in_the_binding_tab(page, library, shots_dir):
    fill(page, "binding-ways", 3)
    page.locator("#binding-layout").get_by_role("radio", name="paper").check()
    page.click("#binding-example")
    page.wait_for_function("() => document.querySelector('#binding-names textarea').value.split(',').length == 3")
    episode = lib.shapes_binding_example(library[1], ways=3, seed=0)
    assert value(page, "binding-names") == ", ".join(episode["names"])
    assert run(page, "binding").startswith("done in")
    answer, prompt = lib.answer_binding(*library, episode["support_images"], episode["names"], episode["query_image"],
                                        layout="paper")
    assert prompt.text.count("This is a") == 4 and value(page, "binding-prompt") == prompt.text
    assert value(page, "binding-answer") == answer
    page.screenshot(path=str(shots_dir / "app-binding.png"), full_page=True)


def test_free_prompt_tab_answers_like_the_library(page, library, images, shots_dir):
    open_tab(page, "Free prompt")
    text = "<image> this is a dax . <image> this is a"
    fill(page, "free-text", text)
    upload(page, "free-images", images[:2])
    fill(page, "free-max-new", 6)
    assert run(page, "free").startswith("done in")
    expected = lib.generate_interleaved(*library, text, images[:2], lib.GenerationSettings(max_new_tokens=6))
    assert value(page, "free-answer") == expected
    page.get_by_role("radio", name="beam").check()
    assert run(page, "free").startswith("done in")
    beams = lib.generate_interleaved(*library, text, images[:2], lib.GenerationSettings(6, "beam", num_beams=3))
    assert value(page, "free-answer") == beams
    page.screenshot(path=str(shots_dir / "app-free.png"), full_page=True)


def test_vqa_tab_with_retrieved_examples(page, library, images, cache_dir, shots_dir, monkeypatch):
    open_tab(page, "VQA")
    upload(page, "vqa-image", images[3])
    question = "what colour is the circle ?"
    fill(page, "vqa-question", question)
    fill(page, "vqa-k", 3)
    assert run(page, "vqa").startswith("done in")
    # The app stored its index in its cache; the library finds it current and reuses it.
    monkeypatch.setenv("FROZEN_HF_CACHE", str(cache_dir))
    index = lib.shapes_support_index(*library, "vqa")
    assert index.status == "loaded"
    answer, prompt, rows = lib.answer_vqa(*library, images[3], question, index=index, k=3)
    assert value(page, "vqa-answer") == answer
    assert value(page, "vqa-prompt") == prompt.text
    assert page.locator("#vqa-retrieved img").count() == 3
    shown = page.locator("#vqa-retrieved").inner_text()
    for row in rows:
        assert f"Q: {row['question']} A: {row['answer']} (similarity {row['score']:.3f})" in shown
    page.screenshot(path=str(shots_dir / "app-vqa.png"), full_page=True)


def test_captioning_tab(page, library, images, cache_dir, shots_dir, monkeypatch):
    open_tab(page, "Captioning")
    upload(page, "caption-image", images[0])
    assert run(page, "caption").startswith("done in")
    assert value(page, "caption-answer") == lib.caption_image(*library, images[0])[0]
    fill(page, "caption-k", 2)
    assert run(page, "caption").startswith("done in")
    monkeypatch.setenv("FROZEN_HF_CACHE", str(cache_dir))
    text, prompt, rows = lib.caption_image(*library, images[0], index=lib.shapes_support_index(*library, "captions"), k=2)
    assert value(page, "caption-prompt") == prompt.text
    assert value(page, "caption-answer") == text
    assert all(row["caption"] in page.locator("#caption-retrieved").inner_text() for row in rows)
    page.screenshot(path=str(shots_dir / "app-captioning.png"), full_page=True)


def _error(page, prefix: str) -> str:
    status = run(page, prefix)
    assert status.startswith("Error:"), status
    assert "Traceback" not in page.content()
    return status


def test_bad_input_gets_a_readable_message(page, images):
    # No image at all.
    fill(page, "binding-names", "dax")
    assert "No support images" in _error(page, "binding")
    upload(page, "binding-support", images[:2])
    assert "2 support images but 1 names" in _error(page, "binding")
    fill(page, "binding-names", "dax, blicket")
    assert "No query image" in _error(page, "binding")
    # More markers than images.
    open_tab(page, "Free prompt")
    fill(page, "free-text", "<image> this is a dax . <image> this is a")
    upload(page, "free-images", images[:1])
    message = _error(page, "free")
    assert "2 <image> markers but 1 images (more markers than images)" in message
    # A corrupt upload.
    open_tab(page, "VQA")
    upload(page, "vqa-image", images[4])
    assert "(corrupt.png) is not a readable image" in _error(page, "vqa")
