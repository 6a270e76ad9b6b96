"""`generate()` tokens/s: Frozen (one image + a text prompt) vs the plain LM on a prompt of the same length.

Both decode greedily with the KV cache and are forced to produce exactly `new_tokens` tokens (`min_new_tokens`), so
the two calls do the same amount of LM work; Frozen's extra cost is the image encoding at prefill and its own
forward's bookkeeping at every step.
"""

from __future__ import annotations

import torch

from .common import Results, Row, interleaved_times, median, paired_ratio
from .models import BenchSize, load_frozen, load_language_model, load_processor, vision_config

TARGET = 0.95
PROMPT = " Question: what colour is the large shape on the left? Answer:"


def _prompt_inputs(size: BenchSize, device: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], int]:
    from frozen_hf.data.shapes import load_shapes

    processor = load_processor(size, visual_prefix_length=2)
    image = load_shapes("captions", split="validation", num_samples=1, image_size=size.image_size)[0]["image"]
    frozen_inputs = processor(text=f"<image>{PROMPT}", images=[[image]], return_tensors="pt")
    frozen_inputs = {k: v.to(device) for k, v in frozen_inputs.items()}
    # Same length for the plain LM: the placeholders become ordinary tokens (the prompt's first ones).
    input_ids = frozen_inputs["input_ids"].clone()
    placeholders = input_ids == processor.image_token_id
    text_ids = input_ids[~placeholders]
    input_ids[placeholders] = text_ids[: int(placeholders.sum())]
    plain_inputs = {"input_ids": input_ids, "attention_mask": frozen_inputs["attention_mask"]}
    return frozen_inputs, plain_inputs, processor.tokenizer.eos_token_id


def run(results: Results, size: BenchSize, device: str = "cpu", dtype: torch.dtype = torch.float32) -> float:
    """Adds the generate() row; returns Frozen's tokens/s ratio to the plain LM."""
    frozen_inputs, plain_inputs, eos = _prompt_inputs(size, device)
    frozen = load_frozen(size, vision_config(size), 2, dtype=dtype, device=device).eval()
    plain = load_language_model(size, dtype=dtype, device=device)
    settings = dict(
        max_new_tokens=size.new_tokens, min_new_tokens=size.new_tokens, do_sample=False, pad_token_id=eos,
        num_beams=1,
    )

    def run_frozen() -> None:
        with torch.inference_mode():
            out = frozen.generate(**frozen_inputs, **settings)
        assert out.shape[1] == frozen_inputs["input_ids"].shape[1] + size.new_tokens

    def run_plain() -> None:
        with torch.inference_mode():
            out = plain.generate(**plain_inputs, **settings)
        assert out.shape[1] == plain_inputs["input_ids"].shape[1] + size.new_tokens

    times = interleaved_times({"plain LM": run_plain, "Frozen": run_frozen}, rounds=size.generate_rounds, device=device)
    prompt_length = int(plain_inputs["input_ids"].shape[1])
    ratio = paired_ratio(times["plain LM"], times["Frozen"])  # tokens/s ratio = inverse time ratio
    setting = f"batch 1, prompt {prompt_length} tok, {size.new_tokens} new, greedy"
    results.add(Row("generate", setting, "plain LM", size.new_tokens / median(times["plain LM"]), "tok/s"))
    results.add(Row(
        "generate", setting, "Frozen (1 image)", size.new_tokens / median(times["Frozen"]), "tok/s",
        ratio=ratio, baseline="plain LM", target=f">= {TARGET}x", met=ratio >= TARGET,
    ))
    return ratio
