"""A trained folder's processor behaves like the pretrained tokenizer it came from: training truncates captions at
``max_length``, and that setting must not travel into the saved ``tokenizer.json``."""

from __future__ import annotations

import json
from pathlib import Path

from frozen_hf import FrozenProcessor
from frozen_hf.programs.train import run_training
from frozen_hf.train.arguments import parse_arguments
from tests.helpers.tiny import random_images
from tests.helpers.tiny_training import (
    tiny_config_values,
    write_caption_imagefolder,
    write_tiny_language_model,
    write_yaml,
)


def test_trained_folder_processes_a_long_few_shot_prompt(tmp_path: Path) -> None:
    lm = write_tiny_language_model(tmp_path / "lm")
    data = write_caption_imagefolder(tmp_path / "data", num_images=8)
    out = tmp_path / "out"
    values = tiny_config_values(lm, data, str(out), max_steps=2, save_steps=2, max_length=12)
    run_training(*parse_arguments(write_yaml(tmp_path / "c.yaml", values)))

    saved = json.loads((out / "tokenizer.json").read_text())
    pretrained = json.loads((Path(lm) / "tokenizer.json").read_text())
    assert saved["truncation"] == pretrained["truncation"] and saved["padding"] == pretrained["padding"]

    processor = FrozenProcessor.from_pretrained(out)
    # Six images x 2 placeholders plus the names: far longer than the training max_length of 12.
    text = "".join(f"<image>: name{i}\n" for i in range(5)) + "<image>:"
    batch = processor(text=[text], images=[random_images(6, 32)], return_tensors="pt")
    assert int((batch["input_ids"] == processor.image_token_id).sum()) == 6 * processor.visual_prefix_length
    assert batch["input_ids"].shape[1] > 12
