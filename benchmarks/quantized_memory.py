"""Peak memory of one training step with the frozen LM in fp32, bf16, 8-bit and 4-bit, side by side in one run.

The model, the batch and the step are those of a training config (default: the shipped ``shapes-smollm2``, the
embedded default: bundled SmolLM2-135M, the default ResNet trained from scratch, its batch size, sequence packing and
max_length). Only how the LM is loaded differs between contenders:

- ``fp32``: as stored (``dtype: float32``);
- ``bf16``: ``dtype: bfloat16``;
- ``8-bit``: ``quantization_config: 8bit`` (bitsandbytes LLM.int8);
- ``4-bit nf4``: ``quantization_config: nf4`` (bitsandbytes NF4, fp32 compute).

The vision encoder and the projection stay float32 beside the quantized LMs, as the training program builds them
(``frozen_hf.train.build.build_model_and_processor``). One step = zero gradients, forward with labels (head at caption
tokens only, as the trainer runs it), backward, gradient clipping at the config's ``max_grad_norm``, AdamW step on
the trained parameters. Peak memory is measured as every benchmark here measures it (`benchmarks.common`): the
tensor bytes held before the step (weights, buffers, gradients, optimizer state, and the quantization state
bitsandbytes keeps on its weights: int8 row scales, 4-bit block scales and code books) plus the largest amount
allocated on top of them during the step, from torch.profiler's memory events on CPU. A first, unmeasured step
allocates AdamW's state, so the measured one is a steady-state step. Memory is deterministic, so one measured step
per contender suffices; ``--repeats`` measures more and keeps the largest.

    python -m benchmarks.quantized_memory                         # the table, printed
    python -m benchmarks.quantized_memory --json rows.json        # and its rows as JSON
    python -m benchmarks.quantized_memory --config my.yaml --language_model /path/to/lm   (any config, any LM)
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence

import torch

from .common import held_tensors, mb, peak_call_bytes, unique_tensor_bytes, write_json

# Contender name -> how its LM is loaded (FrozenModelArguments fields).
VARIANTS: dict[str, dict] = {
    "fp32": {"dtype": "float32", "quantization_config": None},
    "bf16": {"dtype": "bfloat16", "quantization_config": None},
    "8-bit (bitsandbytes int8)": {"dtype": None, "quantization_config": "8bit"},
    "4-bit (bitsandbytes nf4)": {"dtype": None, "quantization_config": "nf4"},
}


def quantization_state_tensors(module: torch.nn.Module) -> list[torch.Tensor]:
    """The tensors bitsandbytes keeps beside its quantized weights, outside parameters and buffers: the row scales
    of an 8-bit weight (``SCB``) and the block scales, code book and nested scales of a 4-bit weight
    (``quant_state``)."""
    tensors: list[torch.Tensor] = []
    for parameter in module.parameters():
        scales = getattr(parameter, "SCB", None)
        if isinstance(scales, torch.Tensor):
            tensors.append(scales)
        state = getattr(parameter, "quant_state", None)
        while state is not None:
            tensors.extend(
                value for value in (getattr(state, name, None) for name in ("absmax", "code", "offset"))
                if isinstance(value, torch.Tensor)
            )
            state = getattr(state, "state2", None)
    return tensors


def language_model_bytes(model) -> int:
    """Bytes of the frozen LM's stored weights (quantization state included; tied weights once)."""
    language_model = model.model.language_model
    modules = [language_model, model.lm_head]
    tensors = [t for m in modules for t in list(m.parameters()) + list(m.buffers())]
    return unique_tensor_bytes(tensors + [t for m in modules for t in quantization_state_tensors(m)])


def first_batch(model_args, data_args, training_args, processor) -> dict[str, torch.Tensor]:
    """The first training batch of the config, through its collator (rows packed into sequences as configured)."""
    from frozen_hf.data.captions import load_caption_datasets
    from frozen_hf.data.collator import pop_counters
    from frozen_hf.train.loop import caption_collator

    train, _ = load_caption_datasets(data_args, model_args.image_size, training_args.seed)
    collator = caption_collator(processor, data_args)
    batch = collator([train[index] for index in range(training_args.per_device_train_batch_size)])
    pop_counters(batch)
    return dict(batch)


def training_step(model, inputs: dict, optimizer: torch.optim.Optimizer, max_grad_norm: float):
    trainable = [p for p in model.parameters() if p.requires_grad]

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        loss = model(**inputs, return_logits=False).loss
        loss.backward()
        if max_grad_norm:
            torch.nn.utils.clip_grad_norm_(trainable, max_grad_norm)
        optimizer.step()
        return float(loss)

    return step


def measure(config: str, overrides: Sequence[str] = (), repeats: int = 1, variants: Sequence[str] | None = None) -> dict:
    """Builds each contender's model from ``config`` (plus ``--field value`` overrides), runs a warm-up step and
    ``repeats`` measured steps, and returns the rows and facts of the run."""
    from frozen_hf.train.arguments import parse_arguments
    from frozen_hf.train.build import build_model_and_processor

    output_dir = tempfile.mkdtemp(prefix="quantized-memory-")  # parsing needs one; nothing is written there
    model_args, data_args, training_args = parse_arguments(config, ["--output_dir", output_dir, *overrides])
    if data_args.dataset == "shapes":
        # Only the first batch is used: render no more scenes than that (the first rows do not depend on the total).
        data_args.shapes_num_train = training_args.per_device_train_batch_size
    rows = []
    batch = None
    for name in variants or VARIANTS:
        variant_args = dataclasses.replace(model_args, **VARIANTS[name])
        torch.manual_seed(training_args.seed)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # bitsandbytes' "inputs will be cast to ..."
            model, processor, _ = build_model_and_processor(variant_args)
            if batch is None:
                batch = first_batch(variant_args, data_args, training_args, processor)
            model.train()
            trainable = [p for p in model.parameters() if p.requires_grad]
            optimizer = torch.optim.AdamW(
                trainable, lr=training_args.learning_rate, weight_decay=training_args.weight_decay,
                betas=(training_args.adam_beta1, training_args.adam_beta2), eps=training_args.adam_epsilon,
            )
            step = training_step(model, batch, optimizer, training_args.max_grad_norm)
            warmup_loss = step()  # allocates AdamW's state: the measured steps are steady-state ones
            peaks = []
            for _ in range(repeats):
                optimizer.zero_grad(set_to_none=True)  # a step starts with gradients dropped
                held = unique_tensor_bytes(
                    held_tensors(model, optimizer=optimizer) + quantization_state_tensors(model)
                )
                peaks.append(held + peak_call_bytes(step))
        rows.append({
            "contender": name,
            "peak_mb": mb(max(peaks)),
            "held_mb": mb(held),
            "language_model_mb": mb(language_model_bytes(model)),
            "trained_parameters": sum(p.numel() for p in trainable),
            "trained_dtypes": sorted({str(p.dtype).replace("torch.", "") for p in trainable}),
            "warmup_loss": warmup_loss,
            "seconds": time.perf_counter() - start,
        })
        del model, optimizer, step, trainable
        gc.collect()
    baseline = next((row for row in rows if row["contender"] == "fp32"), rows[0])
    for row in rows:
        row["peak_ratio"] = row["peak_mb"] / baseline["peak_mb"]
        row["language_model_ratio"] = row["language_model_mb"] / baseline["language_model_mb"]
    tokens = int(batch["attention_mask"].sum())
    meta = {
        "config": config,
        "overrides": list(overrides),
        "language_model": model_args.language_model,
        "batch": f"{training_args.per_device_train_batch_size} images in {batch['input_ids'].shape[0]} sequences of "
        f"{batch['input_ids'].shape[1]} tokens ({tokens} non-padding), {model_args.image_size}px",
        "repeats": repeats,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    return {"rows": rows, "meta": meta}


def format_table(result: dict) -> str:
    header = ["LM weights", "peak MB", "peak vs fp32", "LM stored MB", "LM vs fp32", "held before step MB",
              "trained params (dtype)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in result["rows"]:
        lines.append("| " + " | ".join([
            row["contender"], f"{row['peak_mb']:.1f}", f"{row['peak_ratio']:.3f}x", f"{row['language_model_mb']:.1f}",
            f"{row['language_model_ratio']:.3f}x", f"{row['held_mb']:.1f}",
            f"{row['trained_parameters']:,} ({', '.join(row['trained_dtypes'])})",
        ]) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="shapes-smollm2", help="training config (path or shipped name)")
    parser.add_argument("--repeats", type=int, default=1, help="measured steps per contender (the largest is kept)")
    parser.add_argument("--only", nargs="*", choices=list(VARIANTS), help="a subset of the contenders")
    parser.add_argument("--json", help="also write the rows and facts here")
    args, overrides = parser.parse_known_args(argv)
    start = time.perf_counter()
    result = measure(args.config, overrides, repeats=args.repeats, variants=args.only)
    result["meta"]["wall_seconds"] = round(time.perf_counter() - start, 1)
    print(f"config {args.config} {' '.join(overrides)}: {result['meta']['batch']}; LM {result['meta']['language_model']}")
    print(format_table(result))
    print(f"({result['meta']['wall_seconds']} s wall, torch {torch.__version__}, {torch.get_num_threads()} threads)")
    write_json(args.json, result, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
