"""Data pipeline samples/s (Shapes generator + processor + collator) vs the training loop's consumption.

The generator's rate comes from `benchmarks.bench_data.shapes_images_per_second` (sampling, rendering, PNG encoding,
building the `datasets.Dataset`); the collator's from timing `FrozenCaptionCollator` (PNG decoding, image processor,
tokenizer, labels) over training-size batches of those rows. Both run in one process, one after the other, so the
pipeline's rate is 1 / (1/generator + 1/collator), the rate with no data loader workers at all. Consumption is the
training batch size divided by the Frozen (standard) step time measured in the same run.
"""

from __future__ import annotations

import time

import torch

from .common import Results, Row
from .models import BenchSize, load_processor

TARGET = 5.0


def collate_samples_per_second(size: BenchSize, num_samples: int, repeats: int = 2) -> float:
    """Rows/s through the training collator; best of `repeats`."""
    from frozen_hf.data.collator import FrozenCaptionCollator, undecoded_images
    from frozen_hf.data.shapes import load_shapes

    processor = load_processor(size, visual_prefix_length=2)
    collate = FrozenCaptionCollator(processor)
    rows = load_shapes("captions", split="train", num_samples=num_samples, image_size=size.image_size, seed=1)
    rows = undecoded_images(rows, "image")
    batches = [rows[i : i + size.batch_size] for i in range(0, num_samples, size.batch_size)]
    # `rows[a:b]` gives columns; the collator takes a list of row dicts.
    batches = [[dict(zip(batch, values)) for values in zip(*batch.values())] for batch in batches]

    collate(batches[0])  # warm-up
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        for batch in batches:
            out = collate(batch)
            assert isinstance(out["pixel_values"], torch.Tensor)
        best = max(best, num_samples / (time.perf_counter() - start))
    return best


def run(results: Results, size: BenchSize, frozen_step_seconds: float) -> float:
    """Adds the data rows; returns pipeline rate / consumption rate."""
    from .bench_data import shapes_images_per_second

    generator = shapes_images_per_second(
        num_images=size.data_samples, image_size=size.image_size, repeats=2
    )["dataset_images_per_s"]
    collate = collate_samples_per_second(size, size.data_samples)
    pipeline = 1.0 / (1.0 / generator + 1.0 / collate)
    consumption = size.batch_size / frozen_step_seconds
    ratio = pipeline / consumption
    setting = f"{size.image_size}px captions, batch {size.batch_size}, one process"
    results.add(Row("data", setting, "Shapes generator", generator, "samples/s"))
    results.add(Row("data", setting, "collator (decode+processor)", collate, "samples/s"))
    results.add(Row("data", setting, "training consumption", consumption, "samples/s",
                    note=f"batch / Frozen step ({frozen_step_seconds:.3f} s)"))
    results.add(Row(
        "data", setting, "pipeline (generator+collator)", pipeline, "samples/s",
        ratio=ratio, baseline="consumption", target=f">= {TARGET}x", met=ratio >= TARGET,
    ))
    return ratio
