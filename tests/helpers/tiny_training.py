"""Tiny language-model folders and caption data sets on disk, for training tests.

Builds on `tests/helpers/tiny.py` (tokenizer and configs): `write_tiny_language_model` saves a tiny random
Llama and its tokenizer as a folder that `FrozenForConditionalGeneration.from_language_model`
loads like any pretrained LM; `write_caption_imagefolder` writes a local `imagefolder` with
captions in `metadata.jsonl`, optionally with corrupt files among the images.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from transformers import LlamaForCausalLM

from tests.helpers.tiny import tiny_text_config, tiny_tokenizer


COLOURS = {"red": (220, 40, 40), "blue": (50, 100, 235), "green": (40, 180, 60), "yellow": (235, 215, 40)}
SHAPES = ("circle", "square")
POSITIONS = ("left", "right")

# A vision backbone small enough for many short CPU runs; LayerNorm only, so that data-parallel
# runs match single-process ones (BatchNorm statistics would differ per process).
TINY_CONVNEXT = {"model_type": "convnext", "hidden_sizes": [8, 16], "depths": [1, 1], "num_stages": 2, "image_size": 32}
# With BatchNorm buffers, to check that checkpoints carry them.
TINY_RESNET = {"model_type": "resnet", "embedding_size": 8, "hidden_sizes": [8, 16], "depths": [1, 1], "layer_type": "basic"}


def write_tiny_language_model(folder: str | os.PathLike, seed: int = 0) -> str:
    """Saves a tiny random Llama causal LM and its word-level tokenizer to ``folder``; returns the path."""
    folder = Path(folder)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(tiny_text_config("llama"))
    model.save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return str(folder)


def caption_for(index: int) -> tuple[str, tuple[int, int, int]]:
    """The caption and colour of synthetic image ``index`` (words from the tiny tokenizer's vocabulary)."""
    colour = list(COLOURS)[index % len(COLOURS)]
    shape = SHAPES[(index // len(COLOURS)) % len(SHAPES)]
    position = POSITIONS[(index // (len(COLOURS) * len(SHAPES))) % len(POSITIONS)]
    return f"a {colour} {shape} on the {position} .", COLOURS[colour]


def synthetic_image(index: int, size: int = 24) -> Image.Image:
    """A small image: a coloured square on the left or right of a dark background, with noise."""
    _, rgb = caption_for(index)
    rng = np.random.default_rng(index)
    pixels = rng.integers(0, 40, (size, size, 3), dtype=np.uint8)
    left = (index // (len(COLOURS) * len(SHAPES))) % 2 == 0
    x0 = 2 if left else size // 2 + 2
    pixels[size // 4 : size // 4 + size // 2, x0 : x0 + size // 3] = rgb
    return Image.fromarray(pixels)


def write_caption_imagefolder(
    folder: str | os.PathLike,
    num_images: int = 32,
    corrupt: Sequence[int] = (),
    validation: int = 0,
) -> str:
    """Writes an ``imagefolder`` data set: PNG images plus ``metadata.jsonl`` with a ``caption`` per file.

    Args:
        folder: where to write (created).
        num_images: training images.
        corrupt: indices of training images written as garbage bytes (they still have captions).
        validation: images in a ``validation/`` split (none when 0; then the folder has one split).
    """
    folder = Path(folder)
    splits = {"train": num_images} if not validation else {"train": num_images, "validation": validation}
    for split, count in splits.items():
        split_dir = folder / split if validation else folder
        split_dir.mkdir(parents=True, exist_ok=True)
        offset = 0 if split == "train" else 10_000
        with open(split_dir / "metadata.jsonl", "w") as handle:
            for index in range(count):
                name = f"{index:04d}.png"
                if split == "train" and index in corrupt:
                    (split_dir / name).write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
                else:
                    synthetic_image(index + offset).save(split_dir / name)
                caption, _ = caption_for(index + offset)
                handle.write(json.dumps({"file_name": name, "caption": caption}) + "\n")
    return str(folder)


def tiny_config_values(lm_path: str, data_dir: str, output_dir: str, **extra) -> dict:
    """Training config values for a run of a few seconds on the tiny LM and an imagefolder."""
    values = {
        "language_model": lm_path,
        "vision_config": TINY_CONVNEXT,
        "image_size": 32,
        "visual_prefix_length": 2,
        "attn_implementation": "sdpa",
        "dataset": "imagefolder",
        "data_dir": data_dir,
        "eval_split": "none",
        "max_length": 24,
        "output_dir": output_dir,
        "seed": 0,
        "max_steps": 6,
        "per_device_train_batch_size": 4,
        "learning_rate": 1e-3,
        "lr_scheduler_type": "constant",
        "optim": "adamw_torch",
        "logging_steps": 1,
        "save_steps": 3,
        "save_total_limit": 2,
        "report_to": "none",
        "disable_tqdm": True,
        "use_cpu": True,
        "dataloader_num_workers": 0,
    }
    values.update(extra)
    return values


def write_yaml(path: str | os.PathLike, values: dict) -> str:
    """Writes a training config YAML file."""
    import yaml

    Path(path).write_text(yaml.safe_dump(values, sort_keys=False))
    return str(path)

