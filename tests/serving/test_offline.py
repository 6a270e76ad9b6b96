"""Offline batch inference: `vllm.LLM` on a folder written by `save_pretrained` gives HF `generate()`'s greedy tokens."""

from __future__ import annotations

import pytest

from frozen_hf.serving import vllm_prompt
from tests.serving.conftest import engine_kwargs, scene_images

MAX_NEW_TOKENS = 12


@pytest.fixture(scope="module")
def llm(model_dir):
    from vllm import LLM

    engine = LLM(model=str(model_dir), trust_remote_code=True, model_impl="transformers", **engine_kwargs())
    yield engine
    engine.llm_engine.engine_core.shutdown()


@pytest.fixture(scope="module")
def greedy():
    from vllm import SamplingParams

    return SamplingParams(temperature=0.0, max_tokens=MAX_NEW_TOKENS)


def vllm_token_ids(llm, greedy, prompts):
    outputs = llm.generate([vllm_prompt(text, images) for text, images in prompts], greedy, use_tqdm=False)
    return [list(output.outputs[0].token_ids) for output in outputs]


def test_loaded_through_the_transformers_backend(llm):
    config = llm.llm_engine.model_config
    assert config.architecture == "TransformersMultiModalForCausalLM"
    assert config.hf_config.model_type == "frozen"


def test_single_image_matches_hf_generate(llm, greedy, hf):
    prompt = ("<image> a photo of", scene_images(1, seed=1))
    expected = hf.token_ids(*prompt, MAX_NEW_TOKENS)
    assert vllm_token_ids(llm, greedy, [prompt]) == [expected]
    assert len(set(expected)) > 1  # a continuation that varies, not one token repeated


def test_three_interleaved_images_match_hf_generate(llm, greedy, hf):
    text = "Answer with dax or wug.\n<image> This is a dax.\n<image> This is a wug.\n<image> Q: What is this? A: This is a"
    images = scene_images(3, seed=2)
    expected = hf.token_ids(text, images, MAX_NEW_TOKENS)
    assert vllm_token_ids(llm, greedy, [(text, images)]) == [expected]
    # The images matter: the same text with the support images swapped continues differently, in both engines.
    swapped = [images[1], images[0], images[2]]
    expected_swapped = hf.token_ids(text, swapped, MAX_NEW_TOKENS)
    assert expected_swapped != expected
    assert vllm_token_ids(llm, greedy, [(text, swapped)]) == [expected_swapped]


def test_batch_with_different_image_counts_matches_hf_generate(llm, greedy, hf):
    prompts = [
        ("<image> a photo of", scene_images(1, seed=3)),
        ("Q: what colour? A:", []),
        ("<image> one. <image> two. <image> three.\n<image> and", scene_images(4, seed=4)),
        ("first <image> then <image>", scene_images(2, seed=5)),
    ]
    expected = [hf.token_ids(text, images, MAX_NEW_TOKENS) for text, images in prompts]
    assert vllm_token_ids(llm, greedy, prompts) == expected


def test_marker_and_image_counts_must_agree(llm, greedy, hf):
    images = scene_images(2, seed=6)
    with pytest.raises(ValueError, match=r"1 <image> markers but 2 images"):
        vllm_prompt("<image> this is a", images)
    with pytest.raises(ValueError, match=r"2 <image> markers but 0 images"):
        vllm_prompt("<image> and <image>", [])
    # vLLM itself refuses more images than markers too (with its own message) and keeps serving.
    with pytest.raises(Exception):
        llm.generate([{"prompt": "<image> this is a", "multi_modal_data": {"image": images}}], greedy, use_tqdm=False)
    prompt = ("<image> a photo of", scene_images(1, seed=1))
    assert vllm_token_ids(llm, greedy, [prompt]) == [hf.token_ids(*prompt, MAX_NEW_TOKENS)]
