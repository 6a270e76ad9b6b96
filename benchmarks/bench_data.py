"""Data pipeline speed: how many Shapes images per second the generator produces.

Training consumes a batch of 16 images per ~1 s step on 2 CPU cores, so the generator has to
stay far above ~16 images/s to never be the bottleneck.

Run ``python -m benchmarks.bench_data`` (prints ``shapes generator: N images/s at 64px``).
"""

from __future__ import annotations

import time


def shapes_images_per_second(
    num_images: int = 2000,
    image_size: int = 64,
    task: str = "captions",
    repeats: int = 3,
    seed: int = 0,
) -> dict[str, float]:
    """Time Shapes generation end to end and the rendering alone.

    Args:
        num_images: images (scenes) per timed run.
        image_size: image side in pixels.
        task: ``"captions"`` or ``"vqa"`` (scene tasks; one image per row).
        repeats: timed runs; the best one is reported (the machine may be shared).
        seed: world seed; each run uses a different seed so nothing is cached between runs.

    Returns:
        ``{"dataset_images_per_s", "render_images_per_s", "num_images", "image_size"}``:
        the first through ``load_shapes`` (sampling, captions, PNG encoding, building the
        ``datasets.Dataset``), the second for sampling + rendering + PNG encoding only.
    """
    import numpy as np

    from frozen_hf.data.shapes import load_shapes, sample_scene, scene_to_png

    load_shapes(task, "train", 8, image_size, seed)  # warm-up: imports, stencil caches
    best_dataset = 0.0
    best_render = 0.0
    for run in range(repeats):
        start = time.perf_counter()
        dataset = load_shapes(task, "train", num_images, image_size, seed + 1 + run)
        elapsed = time.perf_counter() - start
        assert len(dataset) == num_images
        best_dataset = max(best_dataset, num_images / elapsed)

        rng = np.random.default_rng(seed + 1000 + run)
        start = time.perf_counter()
        for _ in range(num_images):
            scene_to_png(sample_scene(rng, 1), image_size)
        best_render = max(best_render, num_images / (time.perf_counter() - start))
    return {
        "dataset_images_per_s": best_dataset,
        "render_images_per_s": best_render,
        "num_images": float(num_images),
        "image_size": float(image_size),
    }


def main() -> None:
    """Print the generator's speed at 64px and 224px."""
    for size, count in ((64, 2000), (224, 300)):
        result = shapes_images_per_second(num_images=count, image_size=size)
        print(
            f"shapes generator: {result['dataset_images_per_s']:.0f} images/s at {size}px "
            f"(render + PNG only: {result['render_images_per_s']:.0f} images/s)"
        )


if __name__ == "__main__":
    main()
