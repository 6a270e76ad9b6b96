"""Few-shot engine: prefix KV reuse gives the plain path's answers; closed-ended scores; blind/oracle runs."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from frozen_hf.eval.engine import EngineStats, generate_answers
from frozen_hf.eval.scoring import rank_candidates, score_candidates
from frozen_hf.eval.prompting import LAYOUTS, Prompt, PromptPrefix, fast_vqa_prompts, open_ended_prompts, to_blind, to_text_oracle, vqa_prompts
from frozen_hf import FrozenConfig, FrozenForConditionalGeneration
from tests.helpers.tiny import tiny_model, tiny_processor, tiny_text_config, tiny_vision_config

COLOURS = [
    (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255), (255, 255, 0), (0, 255, 255),
    (128, 0, 255), (40, 40, 40), (255, 128, 0), (90, 200, 30), (200, 30, 120), (10, 90, 160),
]
IMAGES = [Image.new("RGB", (32, 28), c) for c in COLOURS]


@pytest.fixture(scope="module")
def processor():
    return tiny_processor()


def sensitive_model(processor, seed: int):
    """A tiny random model whose greedy answers vary with the words and the images (random init at the
    default scale makes it repeat one token whatever the prompt, which would hide mix-ups)."""
    return sensitize(tiny_model(processor, seed=seed), seed)


def sensitize(model, seed: int):
    """Rescales a tiny model's random weights so that its greedy answers vary with words and images."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.ndim > 1 and "vision_model" not in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
        weight = model.model.visual_prefix.linear.weight
        weight.copy_(torch.randn(weight.shape, generator=generator) * 3.0)
    return model


def episodes(layout: str = "paper") -> list[Prompt]:
    prompts: list[Prompt] = []
    for e in range(3):
        support = IMAGES[e : e + 4]
        queries = [IMAGES[(e + 5 + q) % len(IMAGES)] for q in range(3 + e)]  # groups of 3, 4, 5 queries
        prompts += open_ended_prompts(
            support, ["dax", "blicket", "wug", "dax"], queries, task_induction=e % 2 == 0, repeats=1 + e % 2,
            layout=layout,
        )
    # Prompts without a shared prefix (0-shot VQA) and a single-query episode go through the plain path.
    prompts += vqa_prompts(IMAGES[:2], ["what colour", "what shape is there ?"], layout=layout)
    prompts += open_ended_prompts(IMAGES[3:5], ["zup", "dax"], IMAGES[6:7], layout=layout)
    return prompts


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("batch_size", [1, 2, 8])
def test_prefix_reuse_gives_the_plain_answers(processor, seed, batch_size):
    model = sensitive_model(processor, seed)
    prompts = episodes()
    stats = EngineStats()
    reused = generate_answers(model, processor, prompts, max_new_tokens=5, batch_size=batch_size, stats=stats)
    plain = generate_answers(model, processor, prompts, max_new_tokens=5, batch_size=batch_size, reuse_prefix_cache=False)
    assert reused == plain
    assert stats.prefix_groups_reused == 3 and stats.prompts_via_reuse == 12 and stats.prompts_via_plain == 3
    assert stats.fallbacks == 0 and stats.prompts == len(prompts)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_prefix_reuse_gives_the_plain_answers_in_every_layout(processor, layout):
    model = sensitive_model(processor, seed=3)
    prompts = episodes(layout) + fast_vqa_prompts(
        IMAGES[:4], ["dax", "blicket", "dax", "blicket"], [IMAGES[5], IMAGES[6]],
        ["What colour is the dax?", "Where is the blicket?"], layout=layout,
    )
    stats = EngineStats()
    reused = generate_answers(model, processor, prompts, max_new_tokens=4, batch_size=2, stats=stats)
    plain = generate_answers(model, processor, prompts, max_new_tokens=4, batch_size=2, reuse_prefix_cache=False)
    assert reused == plain
    assert stats.prefix_groups_reused == 4 and stats.fallbacks == 0


@pytest.mark.parametrize("window", [256, 12])
def test_prefix_reuse_with_a_sliding_window_lm(processor, window):
    # Gemma-3-style layers: rows of the reuse path carry padding between prefix and query, which a sliding window
    # counts; prompts wider than the window must take the plain path, shorter ones may reuse.
    torch.manual_seed(0)
    config = FrozenConfig(
        vision_config=tiny_vision_config(), text_config=tiny_text_config("gemma3", sliding_window=window),
        visual_prefix_length=2, image_token_id=processor.image_token_id,
    )
    model = sensitize(FrozenForConditionalGeneration(config).eval(), 0)
    prompts = episodes()
    stats = EngineStats()
    reused = generate_answers(model, processor, prompts, max_new_tokens=5, batch_size=4, stats=stats)
    assert reused == generate_answers(model, processor, prompts, max_new_tokens=5, batch_size=4, reuse_prefix_cache=False)
    if window == 256:
        assert stats.prompts_via_reuse == 12 and stats.fallbacks == 0
    else:
        assert stats.prompts_via_reuse == 0 and stats.fallbacks == 12
        assert any("sliding attention window" in note for note in stats.notes)


def test_answers_depend_on_the_query_image(processor):
    # Guards the equality test above: a path that mixed up query images would be caught.
    answers = [generate_answers(sensitive_model(processor, s), processor, episodes(), max_new_tokens=5) for s in range(3)]
    assert any(len(set(a[:3])) > 1 for a in answers)


def test_one_prompt_at_a_time_matches_batched(processor):
    model = sensitive_model(processor, 0)
    prompts = episodes()
    batched = generate_answers(model, processor, prompts, max_new_tokens=4, batch_size=8)
    single = [generate_answers(model, processor, [p], max_new_tokens=4)[0] for p in prompts]
    assert batched == single


def test_text_oracle_and_blind_prompts_run_both_paths(processor):
    model = sensitive_model(processor, 1)
    prompts = open_ended_prompts(
        IMAGES[:4], ["dax", "wug", "dax", "wug"], IMAGES[4:8],
        support_descriptions=["red circle", "green circle", "blue circle", "white circle"],
        query_descriptions=["yellow circle", "cyan circle", "purple circle", "grey circle"],
        task_induction=True,
    )
    for variant in (to_text_oracle(prompts), to_blind(prompts)):
        stats = EngineStats()
        reused = generate_answers(model, processor, variant, max_new_tokens=4, stats=stats)
        assert reused == generate_answers(model, processor, variant, max_new_tokens=4, reuse_prefix_cache=False)
        assert stats.prompts_via_reuse == 4
    # Blind prompts see no image content: every query image is the same black image.
    blind = generate_answers(model, processor, to_blind(prompts), max_new_tokens=4)
    assert len(set(blind)) == 1


def test_inexact_token_split_falls_back_to_the_plain_path(processor):
    model = sensitive_model(processor, 0)
    # The word-level tokenizer reads "dax" across the split as one word, but "da" + "x" apart: no reuse.
    prefix = PromptPrefix("<image> this is a da", (IMAGES[0],), (None,))
    prompts = [Prompt(prefix, "x <image> what", (IMAGES[i],), (None,)) for i in (1, 2)]
    stats = EngineStats()
    answers = generate_answers(model, processor, prompts, max_new_tokens=4, stats=stats)
    assert stats.fallbacks == 2 and stats.prompts_via_plain == 2
    assert answers == generate_answers(model, processor, prompts, max_new_tokens=4, reuse_prefix_cache=False)


@pytest.mark.parametrize("batch_size", [1, 3])
def test_closed_ended_scores_match_without_reuse(processor, batch_size):
    model = sensitive_model(processor, 2)
    # An episode with other names in the same batch: rows scored together must share candidates.
    prompts = [p for p in episodes() if p.candidates] + open_ended_prompts(IMAGES[3:5], ["zup", "fep"], IMAGES[6:8])
    reused = score_candidates(model, processor, prompts, batch_size=batch_size)
    plain = score_candidates(model, processor, prompts, batch_size=batch_size, reuse_prefix_cache=False)
    assert [len(s) for s in reused] == [len(p.candidates) for p in prompts]
    for r, q in zip(reused, plain):
        torch.testing.assert_close(torch.tensor(r), torch.tensor(q), atol=1e-4, rtol=1e-4)
    ranked = rank_candidates(model, processor, prompts)
    assert all(answer in p.candidates for answer, p in zip(ranked, prompts))


def test_closed_ended_scores_equal_a_hand_computed_likelihood(processor):
    model = sensitive_model(processor, 0)
    prompt = open_ended_prompts(IMAGES[:2], ["dax", "wug"], IMAGES[2:3])[0]
    (scores,) = score_candidates(model, processor, [prompt], [["blicket dax", "wug"]])
    batch = processor(text=[prompt.text + " blicket dax"], images=[prompt.images], return_tensors="pt")
    with torch.no_grad():
        logp = torch.log_softmax(model(**batch).logits[0].float(), dim=-1)
    ids = batch["input_ids"][0]
    expected = float(logp[-3, ids[-2]] + logp[-2, ids[-1]])
    assert scores[0] == pytest.approx(expected, abs=1e-4)


def test_bad_arguments(processor):
    model = sensitive_model(processor, 0)
    prompts = episodes()[:2]
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate_answers(model, processor, prompts, max_new_tokens=0)
    with pytest.raises(ValueError, match="batch_size"):
        generate_answers(model, processor, prompts, batch_size=0)
    with pytest.raises(ValueError, match="no candidates"):
        score_candidates(model, processor, vqa_prompts(IMAGES[:1], ["what"]))
