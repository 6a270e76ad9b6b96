"""FrozenProcessor and FrozenImageProcessor: expansion, batching, labels, saving, image modes and bad input."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from frozen_hf import FrozenImageProcessor, FrozenProcessor
from frozen_hf.image_processing_frozen import pad_to_square
from tests.helpers.tiny import IMAGE_SIZE, random_images, tiny_processor, tiny_tokenizer


@pytest.fixture
def processor():
    return tiny_processor()


def test_image_token_added_as_special_token_outside_vocabulary():
    tokenizer = tiny_tokenizer()
    vocabulary_size = len(tokenizer)
    processor = FrozenProcessor(image_processor=FrozenImageProcessor(), tokenizer=tokenizer)
    assert processor.image_token_id == vocabulary_size
    assert tokenizer.added_tokens_decoder[processor.image_token_id].special
    assert tokenizer.decode([processor.image_token_id, 3], skip_special_tokens=True).strip() == "this"


def test_each_image_expands_to_n_placeholders_in_order(processor):
    images = random_images(3)
    batch = processor(text=["<image> this is a dax . <image> this is a", "a red <image>"],
                      images=[images[:2], images[2:]], return_tensors="pt", padding=True)
    ids = batch["input_ids"]
    placeholder = processor.image_token_id
    assert (ids == placeholder).sum(1).tolist() == [4, 2]
    assert batch["pixel_values"].shape == (3, 3, IMAGE_SIZE, IMAGE_SIZE)
    first = ids[0].tolist()
    assert first[:2] == [placeholder, placeholder]
    assert batch["attention_mask"][1].tolist()[0] == 0  # left padding
    second = [t for t, m in zip(ids[1].tolist(), batch["attention_mask"][1].tolist()) if m]
    assert second[-2:] == [placeholder, placeholder]


@pytest.mark.parametrize("n", [1, 2, 4])
def test_prefix_length_controls_expansion(n):
    processor = tiny_processor(visual_prefix_length=n)
    batch = processor(text="<image> a red", images=random_images(1), return_tensors="pt")
    assert int((batch["input_ids"] == processor.image_token_id).sum()) == n


def test_missing_markers_are_prepended_and_empty_text_captions(processor):
    batch = processor(text="", images=random_images(1), return_tensors="pt")
    assert batch["input_ids"][0].tolist() == [processor.image_token_id] * 2
    batch = processor(text=["a red", "blue"], images=[random_images(2), random_images(1)], return_tensors="pt",
                      padding=True)
    assert (batch["input_ids"] == processor.image_token_id).sum(1).tolist() == [4, 2]


def test_create_labels_masks_placeholders_and_padding(processor):
    batch = processor(text=["<image> a red circle", "<image> a"], images=[random_images(1), random_images(1)],
                      return_tensors="pt", padding=True)
    labels = processor.create_labels(batch["input_ids"], batch["attention_mask"])
    keep = (batch["input_ids"] != processor.image_token_id) & (batch["attention_mask"] == 1)
    assert torch.equal(labels[keep], batch["input_ids"][keep])
    assert (labels[~keep] == -100).all()


def test_chat_template_renders_images_and_text(processor):
    image = random_images(1)[0]
    messages = [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": " a red"}]}]
    assert processor.apply_chat_template(messages, tokenize=False) == "<image> a red"
    only_image = [{"role": "user", "content": [{"type": "image", "image": image}]}]
    inputs = processor.apply_chat_template(only_image, tokenize=True, return_dict=True, return_tensors="pt")
    assert inputs["input_ids"][0].tolist() == [processor.image_token_id] * 2
    assert inputs["pixel_values"].shape[0] == 1


def test_processor_save_load_round_trip(processor, tmp_path):
    processor.save_pretrained(tmp_path)
    loaded = FrozenProcessor.from_pretrained(tmp_path)
    assert loaded.visual_prefix_length == processor.visual_prefix_length
    assert loaded.image_token_id == processor.image_token_id
    assert loaded.chat_template == processor.chat_template
    assert loaded.tokenizer.padding_side == "left"
    assert loaded.image_processor.to_dict() == processor.image_processor.to_dict()
    images = random_images(2)
    a = processor(text=["<image> a <image> b"], images=[images], return_tensors="pt")
    b = loaded(text=["<image> a <image> b"], images=[images], return_tensors="pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_pad_to_square_centres_with_zeros():
    image = np.ones((3, 2, 6), dtype=np.float32)
    padded = pad_to_square(image)
    assert padded.shape == (3, 6, 6)
    assert padded[:, 2:4, :].min() == 1 and padded[:, :2].max() == 0 and padded[:, 4:].max() == 0


def rgb_equivalent(mode: str) -> Image.Image:
    rng = np.random.default_rng(0)
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65535, (20, 30), dtype=np.uint16))
    if mode == "F":
        return Image.fromarray(rng.random((20, 30), dtype=np.float32))
    base = Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8))
    return base.convert(mode)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "LA", "L", "1", "P", "CMYK", "I;16", "F", "I"])
def test_any_pil_mode_becomes_rgb(mode):
    processor = FrozenImageProcessor(size={"height": 16, "width": 16})
    image = rgb_equivalent(mode) if mode != "I" else rgb_equivalent("L").convert("I")
    pixels = processor(image, return_tensors="pt")["pixel_values"]
    assert pixels.shape == (1, 3, 16, 16)
    assert torch.isfinite(pixels).all()


def test_sixteen_bit_images_are_rescaled_not_clipped():
    processor = FrozenImageProcessor(size={"height": 8, "width": 8}, do_normalize=False, do_pad_to_square=False)
    dark = Image.fromarray(np.full((8, 8), 1000, dtype=np.uint16))
    bright = Image.fromarray(np.tile(np.arange(0, 64000, 1000, dtype=np.uint16)[:8], (8, 1)))
    values = processor(bright, return_tensors="pt")["pixel_values"]
    assert values.min() == 0 and values.max() == 1  # full range, not all-white
    assert processor(dark, return_tensors="pt")["pixel_values"].max() == 0


@pytest.mark.parametrize("size", [(1, 1), (3, 500), (700, 2)])
def test_tiny_and_extreme_aspect_images(size):
    processor = FrozenImageProcessor(size={"height": 16, "width": 16})
    image = Image.new("RGB", (size[1], size[0]), (255, 0, 0))
    assert processor(image, return_tensors="pt")["pixel_values"].shape == (1, 3, 16, 16)


# --- bad input ---------------------------------------------------------------------------------------------------


def test_marker_and_image_counts_differ_in_total(processor):
    with pytest.raises(ValueError, match="Sample 0 has 2 <image> markers but 1 images"):
        processor(text="<image> a <image> b", images=random_images(1))


def test_marker_and_image_counts_differ_per_sample(processor):
    images = random_images(3)
    with pytest.raises(ValueError, match="Sample 1 has 1 <image> markers but 2 images"):
        processor(text=["<image> a", "<image> b"], images=[images[:1], images[1:]])


def test_image_lists_for_wrong_number_of_samples(processor):
    with pytest.raises(ValueError, match="image lists for 1 samples but 2 texts"):
        processor(text=["<image> a", "<image> b"], images=[random_images(2)])


def test_truncation_that_would_cut_placeholders(processor):
    with pytest.raises(ValueError, match="Truncation would cut image placeholders in sample 0"):
        processor(text="this is a dax . <image> a", images=random_images(1), truncation=True, max_length=6,
                  return_tensors="pt")


def test_non_image_objects(processor):
    with pytest.raises(ValueError, match="Image 0 is a dict, not an image"):
        processor(text="<image> a", images=[{"path": "x.png"}])
    with pytest.raises(ValueError, match=r"array of shape \(2, 3, 4, 5\)"):
        processor(text="<image> a", images=[np.zeros((2, 3, 4, 5))])


def test_empty_text_without_images(processor):
    with pytest.raises(ValueError, match="Got empty text and no images"):
        processor(text="")


def test_wrong_text_type(processor):
    with pytest.raises(ValueError, match="text must be a string or a list of strings"):
        processor(text=[1, 2])


def test_invalid_prefix_length():
    with pytest.raises(ValueError, match="visual_prefix_length must be an int >= 1"):
        FrozenProcessor(image_processor=FrozenImageProcessor(), tokenizer=tiny_tokenizer(), visual_prefix_length=0)


def test_image_paths_are_loaded(processor, tmp_path):
    path = tmp_path / "red.png"
    Image.new("RGB", (10, 10), (255, 0, 0)).save(path)
    batch = processor(text="<image> a", images=[str(path)], return_tensors="pt")
    buffer = io.BytesIO()
    Image.new("RGB", (10, 10), (255, 0, 0)).save(buffer, format="PNG")
    same = processor(text="<image> a", images=[Image.open(io.BytesIO(buffer.getvalue()))], return_tensors="pt")
    assert torch.equal(batch["pixel_values"], same["pixel_values"])
