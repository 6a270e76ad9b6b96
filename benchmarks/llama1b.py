"""A short bf16 training of Frozen around a randomly initialised ~1B-parameter Llama-style LM, on random images.

Reports step time, peak memory, tokens/s and images/s, and the same step of the LM alone (the floor: forward +
backward to the input embeddings on the same tokens), so the Frozen/floor ratio holds at 1B scale too. Everything
is built from configs: no downloads, no tokenizer (token ids are random).

    python -m benchmarks.llama1b --device cuda --output llama1b.json
    python -m benchmarks.llama1b --tiny            # the same code path in seconds on a CPU
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

import torch
from transformers import AutoModelForCausalLM, ConvNextConfig, LlamaConfig, ResNetConfig

from frozen_hf import FrozenConfig, FrozenForConditionalGeneration

from .common import (
    held_tensors, interleaved_times, median, paired_ratio, peak_call_bytes, unique_tensor_bytes, write_json,
)


def llama_1b_config(vocab_size: int = 32000) -> LlamaConfig:
    """Llama-3.2-1B's shape (hidden 2048, 16 layers, GQA 32/8 heads, MLP 8192) with a 32k vocabulary: 1.04B."""
    return LlamaConfig(
        vocab_size=vocab_size, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
        num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=2048, tie_word_embeddings=True,
        pad_token_id=0, bos_token_id=1, eos_token_id=2,
    )


def tiny_llama_config() -> LlamaConfig:
    return LlamaConfig(
        vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=True,
        pad_token_id=0, bos_token_id=1, eos_token_id=2,
    )


def build(text_config: LlamaConfig, vision_config, n: int, dtype: torch.dtype, device: str):
    """Frozen with a random LM (in `dtype`, frozen) and a float32 vision encoder + prefix map (trained)."""
    image_token_id = text_config.vocab_size  # outside the vocabulary: needs no embedding row
    config = FrozenConfig(
        vision_config=vision_config, text_config=text_config, visual_prefix_length=n, image_token_id=image_token_id
    )
    torch.manual_seed(0)
    # Initialised on the device: a 1B-parameter random init is slow on a few CPU cores.
    with torch.device(device):
        language_model = AutoModelForCausalLM.from_config(text_config, dtype=dtype)
    with torch.device("meta"):
        model = FrozenForConditionalGeneration(config)
    model.model.language_model = language_model.base_model
    model.lm_head = language_model.get_output_embeddings()
    from transformers import AutoModel

    from frozen_hf import FrozenVisualPrefix

    model.model.vision_model = AutoModel.from_config(config.vision_config)
    model.model.visual_prefix = FrozenVisualPrefix(config.vision_feature_dim, text_config.hidden_size, n)
    model._init_weights(model.model.visual_prefix)
    model.tie_weights()
    model.freeze_language_model()
    return model.to(device), language_model.to(device), image_token_id


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true", help="a 2-layer LM and a small ConvNeXt (for CPU checks)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--caption-tokens", type=int, default=30)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--visual-prefix-length", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20, help="timed rounds (each: one Frozen step, one floor step)")
    parser.add_argument("--output", help="write the results as JSON here")
    args = parser.parse_args(argv)

    device = args.device
    dtype = torch.bfloat16
    if args.tiny:
        text_config = tiny_llama_config()
        vision_config = ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2)
        args.batch_size, args.caption_tokens, args.image_size, args.steps = 4, 8, 32, min(args.steps, 3)
    else:
        text_config = llama_1b_config()
        vision_config = ResNetConfig()  # ResNet-50, the paper's backbone family, from scratch
    model, language_model, image_token_id = build(text_config, vision_config, args.visual_prefix_length, dtype, device)
    model.train()
    n = args.visual_prefix_length

    generator = torch.Generator().manual_seed(0)
    captions = torch.randint(3, text_config.vocab_size, (args.batch_size, args.caption_tokens), generator=generator)
    input_ids = torch.cat([torch.full((args.batch_size, n), image_token_id), captions], dim=1).to(device)
    labels = input_ids.masked_fill(input_ids == image_token_id, -100)
    attention_mask = torch.ones_like(input_ids)
    pixel_values = torch.randn(args.batch_size, 3, args.image_size, args.image_size, generator=generator).to(device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    autocast = torch.autocast(device_type=torch.device(device).type, dtype=dtype)
    losses: list[float] = []

    def frozen_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = model(input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values,
                         labels=labels).loss
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())

    floor_ids = input_ids.masked_fill(input_ids == image_token_id, 0)

    def floor_step() -> None:
        with torch.no_grad():
            embeds = language_model.get_input_embeddings()(floor_ids)
        embeds.requires_grad_(True)
        with autocast:
            loss = language_model(inputs_embeds=embeds, attention_mask=attention_mask, labels=labels).loss
        loss.backward()

    start = time.perf_counter()
    times = interleaved_times({"frozen": frozen_step, "floor": floor_step}, rounds=args.steps, warmup=3,
                              device=device)
    optimizer.zero_grad(set_to_none=True)
    frozen_peak = unique_tensor_bytes(held_tensors(model, optimizer=optimizer)) + peak_call_bytes(frozen_step, device)
    floor_peak = unique_tensor_bytes(held_tensors(language_model)) + peak_call_bytes(floor_step, device)
    tokens = args.batch_size * input_ids.shape[1]
    step = median(times["frozen"])
    result = {
        "device": torch.cuda.get_device_name() if device.startswith("cuda") else device,
        "lm_parameters": sum(p.numel() for p in language_model.parameters()),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "vision": type(vision_config).__name__,
        "batch_size": args.batch_size, "sequence_length": int(input_ids.shape[1]), "image_size": args.image_size,
        "dtype": "bfloat16 (LM weights; trained weights float32 under autocast)",
        "frozen_step_s": step, "floor_step_s": median(times["floor"]),
        "time_ratio_frozen_over_floor": paired_ratio(times["frozen"], times["floor"]),
        "tokens_per_s": tokens / step, "images_per_s": args.batch_size / step,
        "frozen_peak_gib": frozen_peak / 2**30, "floor_peak_gib": floor_peak / 2**30,
        "memory_ratio_frozen_over_floor": frozen_peak / floor_peak,
        "loss_first": float(losses[0]), "loss_last": float(losses[-1]), "steps_run": len(losses),
        "wall_s": time.perf_counter() - start,
    }
    print(json.dumps(result, indent=1))
    write_json(args.output, result, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
