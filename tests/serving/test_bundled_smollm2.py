"""The bundled SmolLM2-135M as the frozen LM: `vllm.LLM` gives HF `generate()`'s greedy tokens on a real tokenizer,
a real chat-tuned LM (30 layers, grouped-query attention) and its out-of-vocabulary `<image>` id (49152 of 49152)."""

from __future__ import annotations

import pytest
import torch

from frozen_hf.eval.prompting import open_ended_prompts
from frozen_hf.serving import vllm_prompt
from tests.serving.conftest import engine_kwargs, scene_images

# EOS is suppressed in both engines (min tokens = max tokens), so that both decode exactly this many tokens and a
# stop-token convention of either engine cannot hide or fake a difference.
NEW_TOKENS = 8


@pytest.fixture(scope="module")
def smollm2_dir(tmp_path_factory):
    from frozen_hf import FrozenForConditionalGeneration, FrozenProcessor, default_language_model_path

    lm = str(default_language_model_path())
    folder = tmp_path_factory.mktemp("frozen_smollm2_servable")
    torch.manual_seed(0)
    FrozenForConditionalGeneration.from_language_model(lm).save_pretrained(folder)
    FrozenProcessor.from_language_model(lm, image_size=64).save_pretrained(folder)
    return folder


def prompts():
    support = scene_images(2, seed=21)
    (few_shot,) = open_ended_prompts(support, ["dax", "blicket"], scene_images(1, seed=22), task_induction=True)
    assert few_shot.text.count("<image>") == 3
    single = ("<image> A photo of", scene_images(1, seed=23))
    three = (few_shot.text, list(few_shot.images))
    # The same texts with another image and with the support images swapped: the images must change the tokens.
    other = (single[0], scene_images(1, seed=99))
    swapped = (three[0], [three[1][1], three[1][0], three[1][2]])
    return [single, three, other, swapped]


def hf_token_ids(folder, requests):
    from frozen_hf import FrozenForConditionalGeneration, FrozenProcessor

    model = FrozenForConditionalGeneration.from_pretrained(folder).eval()
    processor = FrozenProcessor.from_pretrained(folder)
    results = []
    for text, images in requests:
        batch = processor(text=[text], images=[images], return_tensors="pt")
        with torch.no_grad():
            out = model.generate(**batch, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False)
        results.append(out[0, batch["input_ids"].shape[1]:].tolist())
    return results


def test_smollm2_frozen_matches_hf_generate(smollm2_dir):
    from vllm import LLM, SamplingParams

    requests = prompts()
    expected = hf_token_ids(smollm2_dir, requests)
    assert all(len(ids) == NEW_TOKENS for ids in expected)
    assert expected[0] != expected[2] and expected[1] != expected[3]
    llm = LLM(model=str(smollm2_dir), trust_remote_code=True, model_impl="transformers", **engine_kwargs())
    try:
        assert llm.llm_engine.model_config.architecture == "TransformersMultiModalForCausalLM"
        greedy = SamplingParams(temperature=0.0, max_tokens=NEW_TOKENS, min_tokens=NEW_TOKENS)
        # One batch of prompts with one and three images.
        outputs = llm.generate([vllm_prompt(text, images) for text, images in requests], greedy, use_tqdm=False)
        assert [list(output.outputs[0].token_ids) for output in outputs] == expected
    finally:
        llm.llm_engine.engine_core.shutdown()
