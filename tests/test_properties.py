"""Property-based tests of the processor and model: random interleavings of images and text, image counts, sizes
and modes, padding sides, truncation lengths and batch compositions.

Properties:
- the processor emits exactly the expected token sequence (each `<image>` -> n placeholders, text tokens intact,
  padding only on the chosen side) and one `pixel_values` row per image, in marker order;
- every image's n prefix embeddings land exactly at its n placeholders in the LM's `inputs_embeds`, and every other
  position holds the frozen token embedding;
- a sample's logits on its real tokens, and its greedy continuation, do not depend on what else is in the batch
  (nor on the padding side, for the logits);
- truncation never splits an image's placeholders: it either keeps every placeholder or raises the documented
  `ValueError`.

`HYPOTHESIS_PROFILE=thorough` runs 300 examples per test instead of 20 than the default (kept small for shared CPUs).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from frozen_hf import FrozenForConditionalGeneration, FrozenProcessor
from tests.helpers.tiny import WORDS, tiny_model, tiny_processor


# Per-test settings rather than a global profile, so that other modules' hypothesis tests keep theirs.
EXAMPLES = 300 if os.environ.get("HYPOTHESIS_PROFILE") == "thorough" else 20
SETTINGS = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)

MARKER = "<image>"
MODES = ("RGB", "L", "RGBA", "P", "1", "LA", "CMYK", "I;16", "I", "F", "La", "RGBa")
# (text family, vision family): an absolute-position LM (GPT-2) is the one where batch composition could leak
# into a sample's positions; ResNet has BatchNorm, ViT attends over patches.
FAMILIES = (("llama", "resnet"), ("gpt2", "vit"))
NEW_TOKENS = 3


# ---------------------------------------------------------------------------------------------------------------
# Strategies


@dataclass
class Sample:
    """One prompt: text segments (words or markers) and its images, plus whether markers are left out (the processor
    then prepends one per image)."""

    segments: list[str]
    images: list = field(default_factory=list)
    omit_markers: bool = False

    @property
    def text(self) -> str:
        segments = [s for s in self.segments if not (self.omit_markers and s == MARKER)]
        return " ".join(segments)


@st.composite
def images(draw) -> Image.Image | np.ndarray | torch.Tensor:
    """An image of random size (1 to 48 px a side, any aspect), kind and PIL mode, including wide-range modes."""
    height = draw(st.integers(1, 48))
    width = draw(st.integers(1, 48))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from(("pil", "pil", "pil", "numpy_hwc", "numpy_grey", "tensor_chw")))
    rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    if kind == "numpy_hwc":
        # A leading 1 or 3 makes the channel axis ambiguous to transformers; that guess is not what is tested here.
        assume(height not in (1, 3))
        return rgb
    if kind == "numpy_grey":
        return rgb[..., 0]
    if kind == "tensor_chw":
        return torch.from_numpy(rgb).permute(2, 0, 1).float() / 255.0
    mode = draw(st.sampled_from(MODES))
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65536, (height, width), dtype=np.uint16))
    if mode == "F":
        return Image.fromarray(rng.normal(size=(height, width)).astype(np.float32))
    image = Image.fromarray(rgb)
    if mode in ("LA", "La"):
        return Image.fromarray(rng.integers(0, 256, (height, width, 2), dtype=np.uint8), mode="LA").convert(mode)
    if mode in ("RGBA", "RGBa"):
        return Image.fromarray(rng.integers(0, 256, (height, width, 4), dtype=np.uint8), mode="RGBA").convert(mode)
    return image.convert(mode)


@st.composite
def samples(draw, max_images: int = 3) -> Sample:
    """Words and markers in random order; at least one token so that a prompt is never empty."""
    words = st.lists(st.sampled_from(WORDS), min_size=1, max_size=4).map(" ".join)
    segments = draw(st.lists(st.one_of(st.just(MARKER), words), min_size=1, max_size=6))
    num_images = segments.count(MARKER)
    assume(num_images <= max_images)
    sample_images = [draw(images()) for _ in range(num_images)]
    omit_markers = num_images > 0 and draw(st.booleans())
    return Sample(segments, sample_images, omit_markers)


batches = st.lists(samples(), min_size=1, max_size=4)


# ---------------------------------------------------------------------------------------------------------------
# Helpers


@functools.lru_cache(maxsize=None)
def processor_for(n: int) -> FrozenProcessor:
    return tiny_processor(visual_prefix_length=n)


@functools.lru_cache(maxsize=None)
def model_for(n: int, text: str, vision: str) -> FrozenForConditionalGeneration:
    model = tiny_model(processor_for(n), text=text, vision=vision)
    # No EOS: every continuation has NEW_TOKENS tokens, so batched and single runs compare step by step.
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = processor_for(n).tokenizer.pad_token_id
    return model


def expected_ids(processor: FrozenProcessor, sample: Sample) -> list[int]:
    """The token ids a sample must become, built segment by segment (markers first when they were left out)."""
    n = processor.visual_prefix_length
    placeholder = [processor.image_token_id] * n
    ids: list[int] = placeholder * len(sample.images) if sample.omit_markers else []
    for segment in sample.segments:
        if segment == MARKER:
            if not sample.omit_markers:
                ids += placeholder
        else:
            ids += processor.tokenizer(segment, add_special_tokens=False)["input_ids"]
    return ids


def run_processor(processor: FrozenProcessor, batch: list[Sample], padding_side: str = "left", **kwargs):
    """Calls the processor with nested images (one list per sample) and the given padding side."""
    tokenizer = processor.tokenizer
    saved = tokenizer.padding_side, tokenizer.truncation_side
    tokenizer.padding_side = padding_side
    tokenizer.truncation_side = kwargs.pop("truncation_side", "right")
    try:
        return processor(
            text=[sample.text for sample in batch],
            images=[list(sample.images) for sample in batch],
            return_tensors="pt",
            padding=True,
            **kwargs,
        )
    finally:
        tokenizer.padding_side, tokenizer.truncation_side = saved


def real_positions(inputs, row: int) -> torch.Tensor:
    return inputs["attention_mask"][row].nonzero().flatten()


def model_inputs(inputs) -> dict:
    return {key: value for key, value in inputs.items() if key in ("input_ids", "attention_mask", "pixel_values")}


# ---------------------------------------------------------------------------------------------------------------
# Processor properties


@SETTINGS
@given(batch=batches, n=st.sampled_from((1, 2, 3)), padding_side=st.sampled_from(("left", "right")))
def test_processor_expands_each_marker_and_keeps_images_in_order(batch, n, padding_side):
    processor = processor_for(n)
    inputs = run_processor(processor, batch, padding_side)
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    width = ids.shape[1]
    for row, sample in enumerate(batch):
        expected = expected_ids(processor, sample)
        real = mask[row].bool()
        assert ids[row][real].tolist() == expected
        pad = width - len(expected)
        assert mask[row].tolist() == ([0] * pad + [1] * len(expected) if padding_side == "left"
                                      else [1] * len(expected) + [0] * pad)
        assert (ids[row][~real] == processor.tokenizer.pad_token_id).all()

    flat_images = [image for sample in batch for image in sample.images]
    if not flat_images:
        assert "pixel_values" not in inputs or inputs["pixel_values"].numel() == 0
        return
    pixels = inputs["pixel_values"]
    assert pixels.shape == (len(flat_images), 3, 32, 32)
    assert torch.isfinite(pixels).all()
    for index, image in enumerate(flat_images):
        alone = processor(text=MARKER, images=[image], return_tensors="pt")["pixel_values"][0]
        assert torch.equal(pixels[index], alone), f"image {index} is out of order or processed differently in a batch"


@SETTINGS
@given(
    batch=st.lists(samples(), min_size=1, max_size=3),
    n=st.sampled_from((1, 2, 4)),
    cut=st.integers(0, 12),
    truncation_side=st.sampled_from(("left", "right")),
)
def test_truncation_keeps_every_placeholder_or_raises(batch, n, cut, truncation_side):
    processor = processor_for(n)
    expected = [expected_ids(processor, sample) for sample in batch]
    max_length = max(1, max(len(ids) for ids in expected) - cut)
    kept = [ids[:max_length] if truncation_side == "right" else ids[-max_length:] for ids in expected]
    placeholder = processor.image_token_id
    broken = [row for row, (ids, cut_ids) in enumerate(zip(expected, kept)) if cut_ids.count(placeholder) != ids.count(placeholder)]
    if broken:
        with pytest.raises(ValueError, match=rf"Truncation would cut image placeholders in sample {broken[0]}\b"):
            run_processor(processor, batch, truncation=True, max_length=max_length, truncation_side=truncation_side)
        return
    inputs = run_processor(processor, batch, truncation=True, max_length=max_length, truncation_side=truncation_side)
    for row, cut_ids in enumerate(kept):
        assert inputs["input_ids"][row][inputs["attention_mask"][row].bool()].tolist() == cut_ids
        # Whole runs of n: no image lost part of its prefix.
        assert cut_ids.count(placeholder) == n * len(batch[row].images)


# ---------------------------------------------------------------------------------------------------------------
# Model properties


@pytest.mark.parametrize("text_family,vision_family", FAMILIES)
@SETTINGS
@given(batch=batches, n=st.sampled_from((1, 2, 3)), padding_side=st.sampled_from(("left", "right")))
def test_each_prefix_lands_exactly_at_its_placeholders(text_family, vision_family, batch, n, padding_side):
    processor = processor_for(n)
    model = model_for(n, text_family, vision_family)
    inputs = run_processor(processor, batch, padding_side)
    captured = {}

    def capture(module, args, kwargs):
        captured["inputs_embeds"] = kwargs["inputs_embeds"].detach().clone()

    handle = model.model.language_model.register_forward_pre_hook(capture, with_kwargs=True)
    try:
        with torch.no_grad():
            model(**model_inputs(inputs))
    finally:
        handle.remove()
    embeds = captured["inputs_embeds"]
    ids = inputs["input_ids"]
    token_embeddings = model.get_input_embeddings().weight
    placeholder = processor.image_token_id

    with torch.no_grad():
        prefixes = (
            model.get_image_features(pixel_values=inputs["pixel_values"]).pooler_output
            if "pixel_values" in inputs else None
        )
    image_index = 0
    for row, sample in enumerate(batch):
        positions = (ids[row] == placeholder).nonzero().flatten()
        assert len(positions) == n * len(sample.images)
        for k in range(len(sample.images)):
            run = positions[k * n:(k + 1) * n]
            assert torch.equal(embeds[row, run], prefixes[image_index]), (
                f"sample {row}: image {k}'s prefix is not at its placeholders {run.tolist()}"
            )
            image_index += 1
        others = (ids[row] != placeholder).nonzero().flatten()
        assert torch.equal(embeds[row, others], token_embeddings[ids[row, others]])
    assert image_index == (0 if prefixes is None else prefixes.shape[0])


@pytest.mark.parametrize("text_family,vision_family", FAMILIES)
@SETTINGS
@given(batch=batches, n=st.sampled_from((1, 2)), padding_side=st.sampled_from(("left", "right")))
def test_logits_of_a_sample_do_not_depend_on_its_batch(text_family, vision_family, batch, n, padding_side):
    processor = processor_for(n)
    model = model_for(n, text_family, vision_family)
    inputs = run_processor(processor, batch, padding_side)
    with torch.no_grad():
        logits = model(**model_inputs(inputs)).logits
        for row, sample in enumerate(batch):
            alone = run_processor(processor, [sample], padding_side)
            alone_logits = model(**model_inputs(alone)).logits[0]
            batched = logits[row, real_positions(inputs, row)]
            torch.testing.assert_close(batched, alone_logits, atol=1e-4, rtol=1e-4,
                                       msg=lambda m: f"sample {row} of {len(batch)} ({padding_side} padding): {m}")


@pytest.mark.parametrize("text_family,vision_family", FAMILIES)
@settings(SETTINGS, max_examples=max(5, EXAMPLES // 2))
@given(batch=st.lists(samples(), min_size=2, max_size=3), n=st.sampled_from((1, 2)))
def test_greedy_generation_of_a_sample_does_not_depend_on_its_batch(text_family, vision_family, batch, n):
    processor = processor_for(n)
    model = model_for(n, text_family, vision_family)
    inputs = run_processor(processor, batch, "left")
    options = dict(max_new_tokens=NEW_TOKENS, do_sample=False, output_scores=True, return_dict_in_generate=True)
    batched = model.generate(**model_inputs(inputs), **options)
    width = inputs["input_ids"].shape[1]
    for row, sample in enumerate(batch):
        alone_inputs = run_processor(processor, [sample], "left")
        alone = model.generate(**model_inputs(alone_inputs), **options)
        ours = batched.sequences[row, width:].tolist()
        theirs = alone.sequences[0, alone_inputs["input_ids"].shape[1]:].tolist()
        for step in range(NEW_TOKENS):
            torch.testing.assert_close(batched.scores[step][row], alone.scores[step][0], atol=1e-4, rtol=1e-4)
            if ours[step] != theirs[step]:
                # Only a float-level tie between the two best tokens may pick differently.
                top = alone.scores[step][0].topk(2).values
                assert float(top[0] - top[1]) < 1e-4, f"sample {row}: step {step} picked {ours[step]} vs {theirs[step]}"
                break
