"""Serving throughput: vLLM (Transformers backend) vs HF `generate()` batched, side by side on the same few-shot prompts.

Runs in .venv-vllm (scripts/setup_vllm.sh), from the repository root:

    OMP_NUM_THREADS=2 .venv-vllm/bin/python -m benchmarks.serving [--prompts 32] [--rounds 3]

The model is Frozen around the bundled SmolLM2-135M (head_dim 64) with a fresh default ResNet, saved with
`save_pretrained` and loaded by both engines from that folder; throughput does not depend on training. The prompts are
2-way 1-shot fast-binding episodes from the project's prompt builder (3 images each, paper layout). Both engines decode
greedily exactly `--new-tokens` tokens per prompt (EOS suppressed), fp32. Each round runs both contenders, in an order
that alternates between rounds, after one untimed warm-up each; the ratio is the median of the per-round ratios. The
engine load is not timed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def scene(rng: np.random.Generator, size: int = 64) -> Image.Image:
    array = np.empty((size, size, 3), dtype=np.uint8)
    array[:] = rng.integers(0, 256, 3)
    top, left = (int(v) for v in rng.integers(0, size // 2, 2))
    array[top : top + size // 2, left : left + size // 2] = rng.integers(0, 256, 3)
    return Image.fromarray(array)


def few_shot_prompts(count: int, seed: int = 0):
    from frozen_hf.eval.prompting import open_ended_prompts

    rng = np.random.default_rng(seed)
    prompts = []
    for _ in range(count):
        (prompt,) = open_ended_prompts(
            [scene(rng), scene(rng)], ["dax", "blicket"], [scene(rng)], task_induction=True
        )
        prompts.append(prompt)
    return prompts


def build_model(folder: Path, language_model: str | None) -> None:
    from frozen_hf import FrozenForConditionalGeneration, FrozenProcessor, default_language_model_path

    lm = language_model or str(default_language_model_path())
    torch.manual_seed(0)
    FrozenForConditionalGeneration.from_language_model(lm).save_pretrained(folder)
    FrozenProcessor.from_language_model(lm, image_size=64).save_pretrained(folder)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=8)
    parser.add_argument("--hf-batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--language-model", default=None, help="causal LM folder (default: the bundled SmolLM2)")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)

    from vllm import LLM, SamplingParams

    from frozen_hf import FrozenForConditionalGeneration, FrozenProcessor
    from frozen_hf.serving import vllm_prompt

    folder = Path(tempfile.mkdtemp(prefix="frozen_serving_bench_"))
    build_model(folder, args.language_model)
    prompts = few_shot_prompts(args.prompts)

    model = FrozenForConditionalGeneration.from_pretrained(folder).eval()
    processor = FrozenProcessor.from_pretrained(folder)
    llm = LLM(
        model=str(folder), trust_remote_code=True, model_impl="transformers", dtype="float32", enforce_eager=True,
        max_model_len=256, limit_mm_per_prompt={"image": 3}, kv_cache_memory_bytes=256 * 2**20,
    )
    sampling = SamplingParams(temperature=0.0, max_tokens=args.new_tokens, min_tokens=args.new_tokens)
    requests = [vllm_prompt(prompt) for prompt in prompts]

    def run_vllm(subset=None):
        outputs = llm.generate(requests if subset is None else requests[:subset], sampling, use_tqdm=False)
        return [list(o.outputs[0].token_ids) for o in outputs]

    def run_hf(subset=None):
        chosen = prompts if subset is None else prompts[:subset]
        results = []
        for start in range(0, len(chosen), args.hf_batch_size):
            batch_prompts = chosen[start : start + args.hf_batch_size]
            batch = processor(
                text=[p.text for p in batch_prompts], images=[p.images for p in batch_prompts],
                return_tensors="pt", padding=True,
            )
            with torch.no_grad():
                out = model.generate(
                    **batch, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False
                )
            results.extend(out[:, batch["input_ids"].shape[1] :].tolist())
        return results

    contenders = {"vllm": run_vllm, "hf": run_hf}
    for run in contenders.values():
        run(subset=2)  # warm-up
    seconds = {name: [] for name in contenders}
    tokens = {}
    for round_index in range(args.rounds):
        order = list(contenders) if round_index % 2 == 0 else list(reversed(contenders))
        for name in order:
            start = time.perf_counter()
            tokens[name] = contenders[name]()
            seconds[name].append(time.perf_counter() - start)
    generated = {name: sum(len(ids) for ids in ids_list) for name, ids_list in tokens.items()}
    same = sum(a == b for a, b in zip(tokens["vllm"], tokens["hf"]))
    result = {
        "prompts": args.prompts, "images_per_prompt": 3, "new_tokens": args.new_tokens,
        "hf_batch_size": args.hf_batch_size, "rounds": args.rounds,
        "prompt_tokens": len(processor(text=prompts[0].text, images=prompts[0].images)["input_ids"][0]),
    }
    for name in contenders:
        median = statistics.median(seconds[name])
        result[name] = {
            "seconds": round(median, 3), "prompts_per_s": round(args.prompts / median, 2),
            "tokens_per_s": round(generated[name] / median, 1),
        }
    result["vllm_over_hf"] = round(statistics.median(h / v for v, h in zip(seconds["vllm"], seconds["hf"])), 2)
    result["identical_outputs"] = f"{same}/{args.prompts}"
    llm.llm_engine.engine_core.shutdown()
    print(json.dumps(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
