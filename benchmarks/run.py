"""Entry command: every benchmark, at the tiny and/or the default size, printed as one table of ratios.

    python -m benchmarks.run                       # tiny then default, CPU, float32
    python -m benchmarks.run --size tiny           # seconds; what the tests run
    python -m benchmarks.run --device cuda --dtype bfloat16 --output results.md

See BENCHMARKS.md for what each ratio means.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import sys
import time
from collections.abc import Sequence

import torch

from . import data_pipeline, few_shot, generation, training
from .common import Results, format_table, write_json
from .models import LANGUAGE_MODEL_NOTES, SIZES

BENCHMARKS = ("train", "generate", "fewshot", "data")
LANGUAGE_MODELS = {
    "tiny": "random 2-layer Llama, byte-level tokenizer",
    "default": "SmolLM2-135M-Instruct (bundled), default ResNet vision encoder",
}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def machine_description(device: str) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as file:
            names = [line.split(":", 1)[1].strip() for line in file if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    text = f"{cpu}, {os.cpu_count()} logical CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads)"
    if device == "cuda" and torch.cuda.is_available():
        text += f", GPU: {torch.cuda.get_device_name()}"
    try:
        load = os.getloadavg()[0]
        text += f", load average at start {load:.1f}"
    except OSError:
        pass
    return text


def run_size(
    size_name: str, device: str, dtype: torch.dtype, benchmarks: Sequence[str] = BENCHMARKS, log=print
) -> Results:
    """All requested benchmarks at one size, into one `Results`."""
    size = SIZES[size_name]
    results = Results(meta={"size": size_name, "device": device, "dtype": str(dtype).replace("torch.", "")})
    timings: dict[str, float] = {}
    start = time.perf_counter()
    cpu_start = _cpu_seconds()
    if "train" in benchmarks:
        log(f"[{size_name}] training step ...")
        steps = training.run(results, size, device=device, dtype=dtype)
        results.meta["train_seconds"] = steps
        timings["frozen_step"] = steps["standard"]["frozen"]
    if "generate" in benchmarks:
        log(f"[{size_name}] generate ...")
        generation.run(results, size, device=device, dtype=dtype)
    if "fewshot" in benchmarks:
        log(f"[{size_name}] few-shot evaluation ...")
        results.meta["fewshot"] = {
            k: v for k, v in few_shot.run(results, size, device=device, dtype=dtype).items() if k != "plain_answers"
        }
    if "data" in benchmarks:
        log(f"[{size_name}] data pipeline ...")
        if "frozen_step" not in timings:
            raise ValueError("The data benchmark compares against the training step: run it with 'train'.")
        data_pipeline.run(results, size, timings["frozen_step"])
    if size_name == "tiny":
        # A 2-layer LM is all overhead: its ratios check that the code runs, the targets are for real sizes.
        for row in results.rows:
            row.met = row.memory_met = None
            row.target = row.memory_target = ""
    results.meta["wall_seconds"] = time.perf_counter() - start
    results.meta["cpu_seconds"] = _cpu_seconds() - cpu_start
    results.meta["language_model"] = LANGUAGE_MODEL_NOTES.get(size_name, LANGUAGE_MODELS[size_name])
    return results


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=["tiny", "default", "all"], default="all")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--dtype", choices=list(DTYPES), default="float32")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS),
                        help="run only these benchmarks ('data' needs 'train')")
    parser.add_argument("--output", help="also write the tables (Markdown) to this file")
    parser.add_argument("--json", help="also write the raw rows to this JSON file")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but torch sees no CUDA device.")

    sizes = ["tiny", "default"] if args.size == "all" else [args.size]
    started = time.perf_counter()
    header = [
        f"date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"machine: {machine_description(args.device)}",
        f"command: python -m benchmarks.run {' '.join(argv if argv is not None else sys.argv[1:])}".rstrip(),
    ]
    sections = []
    raw = []
    for size_name in sizes:
        results = run_size(size_name, args.device, DTYPES[args.dtype], args.only, log=lambda m: print(m, flush=True))
        section = (f"### size={size_name}, device={args.device}, dtype={args.dtype} "
                   f"({results.meta['wall_seconds']:.0f} s wall, {results.meta['cpu_seconds']:.0f} s CPU)\n\nLM: {results.meta['language_model']}\n\n"
                   f"{format_table(results)}")
        print("\n" + section + "\n", flush=True)
        sections.append(section)
        raw.append({"meta": results.meta, "rows": [row.__dict__ for row in results.rows]})
    cpu_seconds = _cpu_seconds()
    # On a shared machine wall time says little; CPU time over the thread count estimates the wall time alone.
    header.append(
        f"total wall time: {time.perf_counter() - started:.0f} s; CPU time {cpu_seconds:.0f} s "
        f"(about {cpu_seconds / max(torch.get_num_threads(), 1):.0f} s of wall time on {torch.get_num_threads()} "
        "otherwise idle cores)"
    )
    text = "\n".join(header) + "\n\n" + "\n\n".join(sections) + "\n"
    print("\n".join(header[-1:]))
    if args.output:
        with open(args.output, "w") as file:
            file.write(text)
    write_json(args.json, raw, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
