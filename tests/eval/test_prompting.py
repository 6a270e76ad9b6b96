"""Few-shot prompt construction: marker/image counts, support order, task induction, shared prefixes, variants."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from frozen_hf.data import shapes
from frozen_hf.eval.prompting import IMAGE_MARKER, LAYOUTS, OPEN_ENDED_QUERY, Prompt, Segment, build_prompts
from frozen_hf.eval.prompting import caption_prompts, fast_vqa_prompts, open_ended_prompts, task_induction_text
from frozen_hf.eval.prompting import to_blind, to_text_oracle, vqa_prompts


def coloured(n: int) -> list[Image.Image]:
    return [Image.new("RGB", (20 + i, 16), (30 * i % 256, 80, 200)) for i in range(n)]


def check_counts(prompts: list[Prompt]) -> None:
    for p in prompts:
        assert p.text.count(IMAGE_MARKER) == len(p.images)
        assert p.prefix.text.count(IMAGE_MARKER) == p.num_prefix_images
        assert p.text[: p.prefix_length] == p.prefix.text
        assert p.text == p.prefix.text + p.suffix_text
        assert len(p.descriptions) == len(p.images)


def test_open_ended_layout_order_and_task_induction():
    images = coloured(6)
    names = ["dax", "blicket", "blicket", "dax"]
    prompts = open_ended_prompts(
        images[:4], names, images[4:], task_induction=True, targets=["dax", "blicket"],
        support_descriptions=[f"d{i}" for i in range(4)], query_descriptions=["q0", "q1"],
    )
    check_counts(prompts)
    assert len(prompts) == 2 and prompts[0].prefix is prompts[1].prefix
    expected_prefix = (
        "Answer with dax or blicket.\n"
        "<image> This is a dax.\n<image> This is a blicket.\n<image> This is a blicket.\n<image> This is a dax.\n"
    )
    assert prompts[0].prefix.text == expected_prefix
    assert prompts[0].suffix_text == f"<image> {OPEN_ENDED_QUERY}"
    assert prompts[0].images == images[:4] + [images[4]]
    assert prompts[1].images == images[:4] + [images[5]]
    assert prompts[0].candidates == ("dax", "blicket")
    assert [p.target for p in prompts] == ["dax", "blicket"]
    assert prompts[0].num_prefix_images == 4


def test_task_induction_text_and_the_shapes_world_column():
    assert task_induction_text(["dax"]) == "Answer with dax."
    assert task_induction_text(["dax", "blicket", "wug"]) == "Answer with dax, blicket or wug."
    episode = shapes.sample_binding_episode(np.random.default_rng(3), ways=3)
    assert episode["task_induction_text"] == task_induction_text(episode["names"])
    with pytest.raises(ValueError, match="at least one name"):
        task_induction_text([])


def test_no_task_induction_and_repeats():
    images = coloured(3)
    prompts = open_ended_prompts(images[:2], ["dax", "wug"], images[2:], repeats=3)
    check_counts(prompts)
    assert not prompts[0].text.startswith("Answer with")
    assert prompts[0].num_prefix_images == 6
    assert prompts[0].images[:6] == images[:2] * 3
    assert prompts[0].prefix.text.count("This is a dax.") == 3


def test_explicit_induction_names_order():
    prompts = open_ended_prompts(coloured(2), ["dax", "wug"], coloured(1), task_induction=True, names=["wug", "dax"])
    assert prompts[0].text.startswith("Answer with wug or dax.\n")
    assert prompts[0].candidates == ("wug", "dax")


def test_vqa_prompts_zero_and_few_shot():
    images = coloured(4)
    zero = vqa_prompts(images[:2], ["What colour is it?", "How many?"])
    check_counts(zero)
    assert zero[0].prefix.text == "" and zero[0].text == "<image> Question: What colour is it? Answer:"
    few = vqa_prompts(images[2:], ["Q1?", "Q2?"], shots=[(images[0], "S1?", "red"), (images[1], "S2?", "2")])
    check_counts(few)
    assert few[0].prefix is few[1].prefix
    assert few[0].text == (
        "<image> Question: S1? Answer: red\n<image> Question: S2? Answer: 2\n<image> Question: Q1? Answer:"
    )


def test_fast_vqa_prompts():
    images = coloured(5)
    prompts = fast_vqa_prompts(images[:4], ["dax", "wug"] * 2, images[4:], ["What colour is the dax?"])
    check_counts(prompts)
    assert prompts[0].suffix_text == "<image> Q: What colour is the dax? A:"
    assert "This is a wug." in prompts[0].prefix.text


def test_caption_prompts_have_no_prefix():
    prompts = caption_prompts(coloured(2))
    check_counts(prompts)
    assert prompts[0].text == IMAGE_MARKER and prompts[0].prefix.text == ""
    assert caption_prompts(coloured(1), text="A picture of")[0].text == "<image> A picture of"


def test_blind_replaces_every_image_with_black_and_keeps_sharing():
    images = coloured(4)
    array = np.full((8, 9, 3), 200, np.uint8)
    tensor = torch.ones(3, 8, 8)
    prompts = open_ended_prompts(images[:2] + [array], ["a", "b", "a"], [images[3], tensor])
    blind = to_blind(prompts)
    check_counts(blind)
    assert blind[0].prefix is blind[1].prefix
    assert blind[0].text == prompts[0].text
    for original, black in zip(prompts[1].images, blind[1].images):
        if isinstance(original, Image.Image):
            assert black.size == original.size and black.getextrema() == ((0, 0),) * 3
        else:
            assert black.shape == original.shape and float(abs(black).max()) == 0.0
    # The originals are untouched.
    assert prompts[0].images[0].getextrema() != ((0, 0),) * 3


def test_text_oracle_replaces_each_image_by_its_description():
    images = coloured(3)
    prompts = open_ended_prompts(
        images[:2], ["dax", "wug"], images[2:], task_induction=True,
        support_descriptions=["a large red star on the left.", "a small blue moon at the top."],
        query_descriptions=["a small green star in the center."],
    )
    oracle = to_text_oracle(prompts)
    check_counts(oracle)
    assert oracle[0].images == []
    assert oracle[0].text == (
        "Answer with dax or wug.\n"
        "a large red star on the left. This is a dax.\n"
        "a small blue moon at the top. This is a wug.\n"
        f"a small green star in the center. {OPEN_ENDED_QUERY}"
    )
    assert oracle[0].prefix.text.endswith("\n")
    # Caption prompts: the description alone, no dangling space.
    assert to_text_oracle(caption_prompts(images[:1], descriptions=["a red circle."]))[0].text == "a red circle."


def test_text_oracle_shares_prefix_across_queries():
    images = coloured(4)
    prompts = open_ended_prompts(
        images[:2], ["dax", "wug"], images[2:], support_descriptions=["x", "y"], query_descriptions=["q", "r"]
    )
    oracle = to_text_oracle(prompts)
    assert oracle[0].prefix is oracle[1].prefix


def test_text_oracle_needs_descriptions():
    prompts = open_ended_prompts(coloured(2), ["dax", "wug"], coloured(1))
    with pytest.raises(ValueError, match="true description"):
        to_text_oracle(prompts)


def test_bad_inputs():
    images = coloured(3)
    with pytest.raises(ValueError, match="Got 2 support images but 1 support names"):
        open_ended_prompts(images[:2], ["dax"], images[2:])
    with pytest.raises(ValueError, match="Got 2 support images but 3 support names"):
        fast_vqa_prompts(images[:2], ["dax", "wug", "fep"], images[2:], ["What colour is the dax?"])
    with pytest.raises(ValueError, match="support set"):
        open_ended_prompts([], [], images[2:])
    with pytest.raises(ValueError, match="support set"):
        fast_vqa_prompts([], [], images[2:], ["What colour is the dax?"])
    with pytest.raises(ValueError, match="repeats"):
        open_ended_prompts(images[:2], ["a", "b"], images[2:], repeats=0)
    with pytest.raises(ValueError, match="image marker"):
        build_prompts([Segment("<image> sneaky", images[0])], [Segment("q", images[1])])
    with pytest.raises(ValueError, match="questions"):
        vqa_prompts(images, ["only one?"])
    with pytest.raises(ValueError, match="one per image"):
        open_ended_prompts(images[:2], ["a", "b"], images[2:], support_descriptions=["x"])
    with pytest.raises(ValueError, match="at least one query"):
        build_prompts([], [])


def test_compact_layout_and_both_oracle_strengths():
    images = coloured(3)
    prompts = open_ended_prompts(
        images[:2], ["dax", "blicket"], images[2:], task_induction=True, layout="compact",
        support_descriptions=["a red star on the left.", "a blue heart at the top."],
        query_descriptions=["a green star in the center."],
        support_categories=["a star", "a heart"], query_categories=["a star"], targets=["dax"],
    )
    assert prompts[0].text == "Answer with dax or blicket.\n<image>: dax\n<image>: blicket\n<image>:"
    assert prompts[0].images == images
    full = to_text_oracle(prompts)[0]
    assert full.text == (
        "Answer with dax or blicket.\na red star on the left: dax\na blue heart at the top: blicket\n"
        "a green star in the center:"
    )
    category = to_text_oracle(prompts, strength="category")[0]
    assert category.text == "Answer with dax or blicket.\na star: dax\na heart: blicket\na star:"
    assert full.images == [] and category.images == []
    with pytest.raises(ValueError, match="Unknown text oracle strength"):
        to_text_oracle(prompts, strength="partial")
    with pytest.raises(ValueError, match="Unknown prompt layout 'tight'"):
        open_ended_prompts(images[:1], ["dax"], images[1:], layout="tight")


def test_adjacent_layout_ends_the_query_on_its_image():
    images = coloured(3)
    prompts = open_ended_prompts(
        images[:2], ["dax", "blicket"], images[2:], task_induction=True, layout="adjacent",
        support_categories=["a star", "a heart"], query_categories=["a star"],
    )
    assert prompts[0].text == "Answer with dax or blicket.\n<image> dax\n<image> blicket\n<image>"
    assert to_text_oracle(prompts, strength="category")[0].text == "Answer with dax or blicket.\na star dax\na heart blicket\na star"


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_layout_lines_images_up_with_markers(layout):
    images = coloured(9)
    names = ["dax", "blicket", "wug"]
    binding = open_ended_prompts(
        images[:3], names, images[3:5], task_induction=True, repeats=2, layout=layout,
        support_descriptions=[f"d{i}" for i in range(3)], query_descriptions=["q0", "q1"],
        support_categories=[f"c{i}" for i in range(3)], query_categories=["k0", "k1"],
    )
    fast = fast_vqa_prompts(images[:3], names, images[5:7], ["What colour is the dax?", "Where is the wug?"],
                            layout=layout, support_descriptions=["d0", "d1", "d2"], query_descriptions=["q0", "q1"])
    vqa = vqa_prompts(images[7:9], ["what colour?", "what shape?"], shots=[(images[0], "how many?", "2")],
                      layout=layout)
    for prompts in (binding, fast, vqa):
        check_counts(prompts)
    assert [p.images[-1] for p in binding] == images[3:5]
    assert binding[0].images[:6] == images[:3] * 2
    for strength in ("full", "category"):
        for prompt in to_text_oracle(binding, strength=strength):
            assert IMAGE_MARKER not in prompt.text and prompt.images == []
    oracle = to_text_oracle(binding)
    assert [p.text.count(f"d{i}") for i in range(3) for p in oracle[:1]] == [2, 2, 2]
    assert oracle[1].suffix_text.startswith("q1") and "q0" not in oracle[1].text
