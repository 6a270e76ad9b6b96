"""Training step: Frozen vs the floor (the frozen LM alone) vs transformers' LLaVA, time and peak memory.

One step = zero gradients, forward with labels, backward, AdamW step on the trainable parameters.

- floor: the frozen LM alone on the same token batch: its input embeddings are made a leaf that requires grad, so
  backward runs through the whole LM down to the embeddings (what training any input prefix must at least pay),
  with no LM weight gradients and no optimizer. Image placeholders are looked up as token 0, as Frozen does. The
  LM head and softmax run only at positions that have a target.
- Frozen: vision backbone -> linear map -> n prefix embeddings per image -> the frozen LM; backbone and map trained.
  Called with `return_logits=False`, as the training program's steps call it (head at target positions only).
- LLaVA: `LlavaForConditionalGeneration` from the same pretrained LM (frozen) and a CLIP vision tower; every patch
  token of the tower goes through the 2-layer projector into the LM; tower and projector trained. Its forward
  computes logits at every position, as transformers ships it.

Settings:
- ``equal tokens``: every image is P tokens for all three (P = LLaVA's patch count); Frozen uses the same CLIP
  tower as LLaVA, with n = P. This isolates the implementation cost.
- ``standard``: Frozen as shipped (default ResNet, n = 2) against its floor (2 tokens per image) and against LLaVA
  with P patch tokens per image at the same image size: the cost users pay.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch

from frozen_hf.modeling_frozen import causal_lm_loss_at_targets

from .common import (
    Results,
    Row,
    held_tensors,
    interleaved_times,
    mb,
    median,
    paired_ratio,
    peak_call_bytes,
    unique_tensor_bytes,
)
from .models import (
    BenchSize,
    clip_vision_config,
    load_frozen,
    load_language_model,
    load_llava,
    load_processor,
    vision_config,
)

TIME_TARGET_FLOOR = 1.10
MEMORY_TARGET_FLOOR = 1.20
TARGET_LLAVA = 1.0


def caption_batch(size: BenchSize, visual_prefix_length: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A captioning batch from the Shapes world: one image then its caption per sample, left padded, with labels."""
    from frozen_hf.data.shapes import load_shapes

    rows = load_shapes("captions", split="train", num_samples=size.batch_size, image_size=size.image_size, seed=seed)
    processor = load_processor(size, visual_prefix_length)
    eos = processor.tokenizer.eos_token or ""
    batch = processor(
        text=[f"<image>{row['caption']}{eos}" for row in rows],
        images=[[row["image"]] for row in rows],
        return_tensors="pt",
        padding=True,
    )
    batch = dict(batch)
    batch["labels"] = processor.create_labels(batch["input_ids"], batch["attention_mask"])
    batch["image_token_id"] = torch.tensor(processor.image_token_id)
    return batch


def _unused_token_id(input_ids: torch.Tensor, vocab_size: int) -> int:
    """The largest vocabulary id the batch does not use (LLaVA's placeholder must be embeddable)."""
    used = set(input_ids.flatten().tolist())
    for token_id in range(vocab_size - 1, -1, -1):
        if token_id not in used:
            return token_id
    raise ValueError("The batch uses every token of the vocabulary.")


def _autocast(device: str, dtype: torch.dtype):
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def floor_step(language_model, batch: dict[str, torch.Tensor], image_token_id: int, device: str, dtype: torch.dtype):
    """The frozen LM alone: forward + backward to its input embeddings on `batch`'s tokens."""
    input_ids = batch["input_ids"].masked_fill(batch["input_ids"] == image_token_id, 0)
    embeddings = language_model.get_input_embeddings()

    def step() -> None:
        with torch.no_grad():
            inputs_embeds = embeddings(input_ids)
        inputs_embeds.requires_grad_(True)
        with _autocast(device, dtype):
            # The least the LM must do: its body on every token, its head only where there is a target.
            hidden = language_model.model(inputs_embeds=inputs_embeds, attention_mask=batch["attention_mask"])[0]
            loss = causal_lm_loss_at_targets(language_model.lm_head, hidden, batch["labels"])
        loss.backward()

    return step


def model_step(model, inputs: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer, device: str, dtype):
    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with _autocast(device, dtype):
            loss = model(**inputs).loss
        loss.backward()
        optimizer.step()

    return step


def _optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)


def _to(batch: dict[str, torch.Tensor], device: str) -> dict[str, torch.Tensor]:
    return {key: value.to(device) for key, value in batch.items()}


def run_setting(
    results: Results,
    size: BenchSize,
    setting: str,
    frozen_vision,
    frozen_n: int,
    device: str,
    dtype: torch.dtype,
) -> dict[str, float]:
    """Builds the three contenders of one setting, times them interleaved, measures their memory, adds rows.

    Returns seconds per step of each contender (used to compute the training consumption rate).
    """
    batch = _to(caption_batch(size, frozen_n), device)
    image_token_id = int(batch.pop("image_token_id"))
    frozen_inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "pixel_values", "labels")}
    frozen_inputs["return_logits"] = False  # as the training program's steps run it (head at caption tokens only)

    language_model = load_language_model(size, dtype=dtype, device=device)
    frozen = load_frozen(size, frozen_vision, frozen_n, dtype=dtype, device=device)
    frozen.train()
    frozen_optimizer = _optimizer(frozen)

    # LLaVA reads P tokens per image; in the equal-token setting the batch is the same token for token.
    llava_batch = batch if frozen_n == size.patch_tokens else _to(caption_batch(size, size.patch_tokens), device)
    llava_batch.pop("image_token_id", None)
    llava_token = _unused_token_id(llava_batch["input_ids"], language_model.config.vocab_size)
    llava = load_llava(size, llava_token, dtype=dtype, device=device)
    llava_inputs = dict(llava_batch)
    llava_inputs["input_ids"] = llava_batch["input_ids"].masked_fill(
        llava_batch["input_ids"] == image_token_id, llava_token
    )
    llava_inputs = {k: llava_inputs[k] for k in ("input_ids", "attention_mask", "pixel_values", "labels")}
    llava_optimizer = _optimizer(llava)

    floor_name = "floor: LM alone"
    frozen_name = f"Frozen ({_family(frozen_vision)}, n={frozen_n})"
    llava_name = f"LLaVA (CLIP, {size.patch_tokens} patch tok)"
    contenders: dict[str, tuple[Callable[[], None], torch.nn.Module, torch.optim.Optimizer | None]] = {
        floor_name: (floor_step(language_model, batch, image_token_id, device, dtype), language_model, None),
        frozen_name: (model_step(frozen, frozen_inputs, frozen_optimizer, device, dtype), frozen, frozen_optimizer),
        llava_name: (model_step(llava, llava_inputs, llava_optimizer, device, dtype), llava, llava_optimizer),
    }
    times = interleaved_times(
        {name: value[0] for name, value in contenders.items()}, rounds=size.train_rounds, warmup=1, device=device
    )
    peaks: dict[str, int] = {}
    for name, (step, module, optimizer) in contenders.items():
        # A step starts with gradients dropped (zero_grad(set_to_none=True)) and optimizer state allocated.
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)
        peaks[name] = unique_tensor_bytes(held_tensors(module, optimizer=optimizer)) + peak_call_bytes(step, device)

    tokens = int(batch["attention_mask"].sum())
    label = f"{setting} ({frozen_n} vs {size.patch_tokens} tok/img)" if frozen_n != size.patch_tokens else (
        f"{setting} ({frozen_n} tok/img)")
    standard = setting == "standard"
    floor_ratio = paired_ratio(times[frozen_name], times[floor_name])
    floor_memory_ratio = peaks[frozen_name] / peaks[floor_name]
    llava_ratio = paired_ratio(times[frozen_name], times[llava_name])
    llava_memory_ratio = peaks[frozen_name] / peaks[llava_name]
    results.add(Row("train step", label, floor_name, median(times[floor_name]), "s", peak_mb=mb(peaks[floor_name]),
                    note=f"{tokens} tokens"))
    results.add(Row("train step", label, llava_name, median(times[llava_name]), "s", peak_mb=mb(peaks[llava_name]),
                    note=f"{int(llava_inputs['attention_mask'].sum())} tokens"))
    results.add(Row(
        "train step", label, frozen_name, median(times[frozen_name]), "s",
        ratio=floor_ratio, baseline="floor",
        target=f"<= {TIME_TARGET_FLOOR}x" if standard else "", met=floor_ratio <= TIME_TARGET_FLOOR if standard else None,
        peak_mb=mb(peaks[frozen_name]), memory_ratio=floor_memory_ratio,
        memory_target=f"<= {MEMORY_TARGET_FLOOR}x" if standard else "",
        memory_met=floor_memory_ratio <= MEMORY_TARGET_FLOOR if standard else None,
    ))
    results.add(Row(
        "train step", label, "Frozen / LLaVA", None, "s", ratio=llava_ratio, baseline="LLaVA",
        target="" if standard else f"<= {TARGET_LLAVA}x", met=None if standard else llava_ratio <= TARGET_LLAVA,
        memory_ratio=llava_memory_ratio, memory_target="" if standard else f"<= {TARGET_LLAVA}x",
        memory_met=None if standard else llava_memory_ratio <= TARGET_LLAVA,
    ))
    seconds = {"floor": median(times[floor_name]), "frozen": median(times[frozen_name]),
               "llava": median(times[llava_name]), "batch_size": size.batch_size}
    del contenders, frozen, llava, language_model
    return seconds


def _family(config) -> str:
    return type(config).__name__.replace("VisionConfig", "").replace("Config", "")


def run(results: Results, size: BenchSize, device: str = "cpu", dtype: torch.dtype = torch.float32) -> dict:
    """Both settings; returns {setting: {contender: seconds/step}} and the standard batch size."""
    equal = run_setting(results, size, "equal tokens", clip_vision_config(size), size.patch_tokens, device, dtype)
    standard = run_setting(results, size, "standard", vision_config(size), 2, device, dtype)
    return {"equal tokens": equal, "standard": standard}
