"""`frozen_hf.app`, the library behind the Gradio page: answers through the one prompt builder and engine, and
readable messages for bad input (no browser here; tests/app/test_app_browser.py drives the page)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from frozen_hf import app as lib
from frozen_hf.eval.engine import generate_answers
from frozen_hf.eval.prompting import open_ended_prompts
from tests.helpers.tiny import random_images, tiny_model, tiny_processor


@pytest.fixture(scope="module")
def model_and_processor():
    processor = tiny_processor()
    return tiny_model(processor), processor


def test_missing_default_model_says_how_to_make_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(lib.AppInputError, match="bash scripts/demo.sh"):
        lib.load_app_model(None)
    (tmp_path / "not-a-model").mkdir()
    with pytest.raises(lib.AppInputError, match="config.json"):
        lib.load_app_model(str(tmp_path / "not-a-model"))


def test_read_image_accepts_images_and_rejects_junk(tmp_path):
    png = io.BytesIO()
    Image.new("RGBA", (5, 7), (1, 2, 3, 4)).save(png, format="PNG")
    for source in (png.getvalue(), Image.open(io.BytesIO(png.getvalue())), np.zeros((7, 5, 3), np.uint8)):
        image = lib.read_image(source)
        assert image.mode == "RGB" and image.size == (5, 7)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(png.getvalue()[:40])
    with pytest.raises(lib.AppInputError, match=r"query image \(truncated.png\) is not a readable image"):
        lib.read_image(str(truncated), "query image")
    with pytest.raises(lib.AppInputError, match="No image"):
        lib.read_image(None)
    with pytest.raises(lib.AppInputError, match="missing"):
        lib.read_image(str(tmp_path / "gone.png"))


def test_binding_answer_is_the_engine_answer(model_and_processor):
    model, processor = model_and_processor
    support, query = random_images(2, seed=4), random_images(1, seed=5)[0]
    answer, prompt = lib.answer_binding(model, processor, support, "dax,\n blicket", query, layout="paper")
    (expected_prompt,) = open_ended_prompts(support, ["dax", "blicket"], [query], task_induction=True, layout="paper")
    assert prompt.text == expected_prompt.text == (
        "Answer with dax or blicket.\n<image> This is a dax.\n<image> This is a blicket.\n"
        "<image> Q: What is this? A: This is a"
    )
    assert answer == generate_answers(model, processor, [expected_prompt], max_new_tokens=lib.NAME_TOKENS)[0]
    with pytest.raises(lib.AppInputError, match="2 support images but 3 names"):
        lib.answer_binding(model, processor, support, "dax, blicket, wug", query)
    with pytest.raises(lib.AppInputError, match="Unknown prompt layout"):
        lib.answer_binding(model, processor, support, "dax, blicket", query, layout="fancy")


def test_free_prompt_checks_markers_and_settings(model_and_processor):
    model, processor = model_and_processor
    images = random_images(2)
    with pytest.raises(lib.AppInputError, match="1 <image> markers but 2 images \\(more images than markers\\)"):
        lib.generate_interleaved(model, processor, "<image> this is a", images)
    with pytest.raises(lib.AppInputError, match="Empty prompt"):
        lib.generate_interleaved(model, processor, "  ", [])
    with pytest.raises(lib.AppInputError, match="temperature above 0"):
        lib.generate_interleaved(model, processor, "<image> a", images[:1], lib.GenerationSettings(decoding="sample",
                                                                                                  temperature=0))
    greedy = lib.generate_interleaved(model, processor, "<image> this is a", images[:1], lib.GenerationSettings(5))
    assert greedy == lib.generate_interleaved(model, processor, "<image> this is a", images[:1],
                                              lib.GenerationSettings(5))
    assert len(processor.tokenizer(greedy)["input_ids"]) <= 5


def test_vqa_and_caption_inputs(model_and_processor):
    model, processor = model_and_processor
    image = random_images(1)[0]
    with pytest.raises(lib.AppInputError, match="No question"):
        lib.answer_vqa(model, processor, image, "  ")
    with pytest.raises(lib.AppInputError, match="needs a support data set"):
        lib.caption_image(model, processor, image, k=2)
    answer, prompt, rows = lib.answer_vqa(model, processor, image, "what colour is it ?", layout="paper")
    assert prompt.text == "<image> Question: what colour is it ? Answer:" and rows == []


def test_shapes_example_is_a_held_out_episode():
    episode = lib.shapes_binding_example(ways=3, seed=2)
    assert len(episode["support_images"]) == len(episode["names"]) == 3
    assert episode["answer"] in episode["names"]
    with pytest.raises(lib.AppInputError, match="Shapes example"):
        lib.shapes_binding_example(ways=40)
