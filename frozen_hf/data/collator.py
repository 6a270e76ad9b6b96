"""Batching image-caption rows for Frozen training.

[`FrozenCaptionCollator`] turns rows of any image-caption data set (the Shapes world, Conceptual
Captions, COCO, a local ``imagefolder``) into [`FrozenProcessor`] batches with captioning labels.

Images are decoded here, not by ``datasets``: pass the data set with its image column cast to
``datasets.Image(decode=False)`` (see [`undecoded_images`]) so that a corrupt or missing file
reaches the collator as bytes or a path instead of raising inside the data loader. A row whose
image cannot be decoded, or whose caption is empty, is dropped from the batch and counted; the
counts travel with the batch (``num_skipped_images``, ``num_skipped_captions``) so that they
survive data loader worker processes, and [`FrozenTrainer`](training) logs them.
"""

from __future__ import annotations

import contextlib

import io
import logging
import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from PIL import Image

from ..image_processing_frozen import to_rgb
from ..processing_frozen import IGNORE_INDEX


logger = logging.getLogger(__name__)

# A row with images in this column is a whole training sequence of its own (a fast-binding episode): its caption
# column holds the full text with one image marker per image, and it is not packed with other rows.
EPISODE_IMAGES_COLUMN = "episode_images"
SKIPPED_IMAGES_KEY = "num_skipped_images"
SKIPPED_CAPTIONS_KEY = "num_skipped_captions"
COUNTER_KEYS = (SKIPPED_IMAGES_KEY, SKIPPED_CAPTIONS_KEY)

__all__ = [
    "COUNTER_KEYS",
    "EPISODE_IMAGES_COLUMN",
    "SKIPPED_CAPTIONS_KEY",
    "SKIPPED_IMAGES_KEY",
    "FrozenCaptionCollator",
    "ImageDecodeError",
    "decode_image",
    "pop_counters",
    "undecoded_images",
]


class ImageDecodeError(ValueError):
    """An image could not be read: missing file, corrupt or truncated data, or an absurd size."""


def decode_image(value: Any) -> Image.Image:
    """Decodes one image value as ``datasets`` stores it, fully, into an RGB ``PIL.Image``.

    Accepts a ``PIL.Image``, a ``{"bytes": ..., "path": ...}`` dict (``datasets.Image(decode=False)``),
    raw bytes, a file path, or an ``(H, W[, C])`` uint8 array. The pixels are loaded here so that a
    truncated file fails now rather than later in the image processor.

    Raises:
        ImageDecodeError: the image is missing or cannot be decoded (the message says why).
    """
    try:
        with warnings.catch_warnings():
            # PIL only warns between MAX_IMAGE_PIXELS and twice that; such images are not worth
            # the memory in a training batch either.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = _open(value)
            image.load()
            if image.width == 0 or image.height == 0:
                # Nothing to see, yet the processor would turn it into a black training image.
                raise ImageDecodeError(f"image has no pixels ({image.width} x {image.height})")
            return to_rgb(image)
    except ImageDecodeError:
        raise
    except Exception as err:  # PIL raises many unrelated types for bad files
        raise ImageDecodeError(f"{type(err).__name__}: {err}") from err


def _open(value: Any) -> Image.Image:
    if value is None:
        raise ImageDecodeError("missing image (None)")
    if isinstance(value, Image.Image):
        return value
    if isinstance(value, Mapping):
        data, path = value.get("bytes"), value.get("path")
        if data:
            return Image.open(io.BytesIO(data))
        if path:
            return _open_path(path)
        raise ImageDecodeError("image entry has neither bytes nor a path")
    if isinstance(value, (bytes, bytearray)):
        if not value:
            raise ImageDecodeError("empty image bytes")
        return Image.open(io.BytesIO(value))
    if isinstance(value, (str, os.PathLike)):
        return _open_path(value)
    if isinstance(value, np.ndarray):
        return Image.fromarray(value)
    raise ImageDecodeError(f"unsupported image value of type {type(value).__name__}")


def _open_path(path: str | os.PathLike) -> Image.Image:
    if not os.path.isfile(path):
        raise ImageDecodeError(f"image file not found: {path}")
    if os.path.getsize(path) == 0:
        raise ImageDecodeError(f"empty image file: {path}")
    with open(path, "rb") as handle:
        return Image.open(io.BytesIO(handle.read()))


def _caption_text(value: Any) -> str | None:
    # Data sets such as COCO give several captions per image; the first one is used so that the
    # data order alone decides what is trained on.
    if isinstance(value, (list, tuple)):
        value = next((v for v in value if isinstance(v, str) and v.strip()), None)
    if not isinstance(value, str) or not value.strip():
        return None
    return value.strip()


@dataclass
class FrozenCaptionCollator:
    """Image-caption rows -> a Frozen training batch (``input_ids``, ``attention_mask``,
    ``pixel_values``, ``labels``) plus skip counters.

    Each row becomes ``caption_template.format(caption=...)`` (which must hold exactly one
    ``<image>``), followed by the tokenizer's end-of-sequence token when ``append_eos`` is set,
    so that a trained model stops after one caption. Labels come from
    [`FrozenProcessor.create_labels`]: every text token is learned (the template's own words
    included), image placeholders and padding are ignored.

    Args:
        processor: the [`FrozenProcessor`] of the model being trained.
        image_column: name of the image column.
        caption_column: name of the caption column (a string, or a list of strings of which the
            first non-empty one is used).
        caption_template: how a caption is laid out around its image.
        append_eos: end each caption with the tokenizer's EOS token.
        max_length: truncate each sequence to this many tokens (placeholders included); `None`
            for no limit.
        train_blind: replace every image by a black one (the paper's "train-blind" baseline);
            images are then not decoded at all.
        images_per_sequence: pack this many consecutive rows of a batch into one interleaved sequence,
            ``<image> caption 1\n<image> caption 2 ...`` (the last sequence of a batch may hold fewer). Caption
            training with one image per sequence always shows the image at position 0, right after nothing; a few-shot
            prompt shows images after text and after other images, which the frozen LM then reads differently.

    A row whose ``episode_images`` column holds images is a sequence of its own: its caption is the whole text, one
    image marker per image (a training binding episode, ``shapes_binding_episodes``). It is neither templated nor
    packed; train-blind applies to it, and a row with an unreadable image is dropped whole.
    """

    processor: Any
    image_column: str = "image"
    caption_column: str = "caption"
    caption_template: str = "<image> {caption}"
    append_eos: bool = True
    max_length: int | None = None
    train_blind: bool = False
    images_per_sequence: int = 1
    _warned: set = field(default_factory=set, init=False, repr=False)

    def __post_init__(self) -> None:
        image_token = self.processor.image_token
        if self.caption_template.count(image_token) != 1 or "{caption}" not in self.caption_template:
            raise ValueError(
                f"caption_template must hold exactly one {image_token} and one {{caption}}, got "
                f"{self.caption_template!r}."
            )
        if not isinstance(self.images_per_sequence, int) or self.images_per_sequence < 1:
            raise ValueError(f"images_per_sequence must be an int >= 1, got {self.images_per_sequence!r}.")

    @property
    def blank_image(self) -> Image.Image:
        """The black image that stands in for every image in train-blind mode."""
        size = self.processor.image_processor.size
        return Image.new("RGB", (size.get("width", 224), size.get("height", 224)))

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        images: list[Image.Image] = []
        captions: list[str] = []
        episodes: list[tuple[str, list[Image.Image]]] = []
        skipped_images = skipped_captions = 0
        for row in rows:
            caption = _caption_text(row.get(self.caption_column))
            if caption is None:
                skipped_captions += 1
                self._warn_once("caption", f"Skipping a row with an empty or missing {self.caption_column!r}.")
                continue
            if row.get(EPISODE_IMAGES_COLUMN):
                episode_images = self._episode_images(row[EPISODE_IMAGES_COLUMN], caption)
                if episode_images is None:
                    skipped_images += 1
                else:
                    episodes.append((caption, episode_images))
                continue
            image = self._training_image(row.get(self.image_column))
            if image is None:
                skipped_images += 1
                continue
            images.append(image)
            captions.append(caption)

        if not images and not episodes:
            # Every row was bad. A batch of one black image whose labels are all ignored keeps
            # every process in step (DDP needs each one to run forward and backward); the trainer
            # gives it zero loss.
            batch = self._encode([self.blank_image], ["."])
            batch["labels"].fill_(IGNORE_INDEX)
        else:
            batch = self._encode(images, captions, episodes)
        batch[SKIPPED_IMAGES_KEY] = torch.tensor(skipped_images, dtype=torch.long)
        batch[SKIPPED_CAPTIONS_KEY] = torch.tensor(skipped_captions, dtype=torch.long)
        return batch

    def _episode_images(self, values: Sequence[Any], text: str) -> list[Image.Image] | None:
        image_token = self.processor.image_token
        if text.count(image_token) != len(values):
            raise ValueError(
                f"A training episode's text holds {text.count(image_token)} {image_token} markers for "
                f"{len(values)} images in {EPISODE_IMAGES_COLUMN!r}."
            )
        images = []
        for value in values:
            image = self._training_image(value)
            if image is None:
                return None
            images.append(image)
        return images

    def _training_image(self, value: Any) -> Image.Image | None:
        """The image a training row shows: black in train-blind mode (never decoded), else decoded; `None`, with a
        warning the first time, when it cannot be read."""
        if self.train_blind:
            return self.blank_image
        try:
            return decode_image(value)
        except ImageDecodeError as err:
            self._warn_once("image", f"Skipping an image that cannot be read ({err}); further ones are counted.")
            return None

    def _encode(
        self, images: list[Image.Image], captions: list[str], episodes: Sequence[tuple[str, list[Image.Image]]] = ()
    ) -> dict[str, torch.Tensor]:
        tokenizer = self.processor.tokenizer
        eos = tokenizer.eos_token if self.append_eos and tokenizer.eos_token else ""
        k = self.images_per_sequence
        texts = [
            "\n".join(self.caption_template.format(caption=caption) for caption in captions[i : i + k]) + eos
            for i in range(0, len(captions), k)
        ]
        sequence_images = [images[i : i + k] for i in range(0, len(images), k)]
        for text, episode_images in episodes:
            texts.append(text + eos)
            sequence_images.append(episode_images)
        kwargs: dict[str, Any] = {"padding": True, "return_tensors": "pt"}
        if self.max_length is not None:
            kwargs.update(truncation=True, max_length=self.max_length)
        with _tokenizer_state_kept(tokenizer):
            batch = dict(self.processor(text=texts, images=sequence_images, **kwargs))
        batch["labels"] = self.processor.create_labels(batch["input_ids"], batch["attention_mask"])
        return batch

    def _warn_once(self, kind: str, message: str) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            logger.warning(message)


@contextlib.contextmanager
def _tokenizer_state_kept(tokenizer):
    """Restores a fast tokenizer's truncation and padding after a call that sets them.

    A fast tokenizer called with ``truncation=True, max_length=...`` keeps that setting in its backend, and
    ``save_pretrained`` writes it to ``tokenizer.json``: a trained folder's processor would then truncate every
    prompt at the training length (and refuse a long few-shot prompt). The saved tokenizer must behave like the
    pretrained one it came from.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        yield
        return
    truncation, padding = backend.truncation, backend.padding
    try:
        yield
    finally:
        if truncation is None:
            backend.no_truncation()
        else:
            backend.enable_truncation(**truncation)
        if padding is None:
            backend.no_padding()
        else:
            backend.enable_padding(**{k: v for k, v in padding.items() if k != "pad_type_id" or v is not None})


def undecoded_images(dataset, image_column: str):
    """The data set with ``image_column`` cast to ``datasets.Image(decode=False)`` when it is an image feature,
    so that decoding (and any failure) happens in [`FrozenCaptionCollator`]."""
    from datasets import Image as ImageFeature, List

    features = getattr(dataset, "features", None)
    if features is None:
        return dataset
    feature = features.get(image_column)
    if isinstance(feature, ImageFeature) and feature.decode:
        dataset = dataset.cast_column(image_column, ImageFeature(decode=False))
    episode_feature = getattr(features.get(EPISODE_IMAGES_COLUMN), "feature", None)
    if isinstance(episode_feature, ImageFeature) and episode_feature.decode:
        dataset = dataset.cast_column(EPISODE_IMAGES_COLUMN, List(ImageFeature(decode=False)))
    return dataset


def pop_counters(inputs: dict[str, Any]) -> dict[str, int]:
    """Removes the collator's skip counters from a batch (before it reaches the model) and returns them."""
    counts = {}
    for key in COUNTER_KEYS:
        value = inputs.pop(key, None)
        if value is not None:
            counts[key] = int(value.sum()) if isinstance(value, torch.Tensor) else int(value)
    return counts
