"""Few-shot evaluation: episodes/s with and without reusing the KV cache of the shared prompt prefix.

Each episode is a 5-way, 5-inner-shot open-ended fast-binding episode from the Shapes world (task induction + 25
support images), asked one query per category (5 queries sharing the episode's prefix), greedy answers. Both runs
go through the evaluation engine, `frozen_hf.eval.engine.generate_answers`, at its default batch size (that of the
evaluation program), with `reuse_prefix_cache` on and off; the answers must be identical.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .common import Results, Row, interleaved_times, median, paired_ratio
from .models import BenchSize, load_frozen, load_processor, vision_config

TARGET = 3.0
WAYS = 5
INNER_SHOTS = 5
MAX_NEW_TOKENS = 4


def episode_prompts(size: BenchSize, num_episodes: int, seed: int = 0) -> list:
    """Prompts of `num_episodes` episodes, one query per category; the prompts of an episode share a prefix."""
    from PIL import Image

    from frozen_hf.eval.prompting import open_ended_prompts
    from frozen_hf.data.shapes import POSITIONS, Scene, load_shapes, render_scene, sample_object

    episodes = load_shapes(
        "open_ended", split="test", num_samples=num_episodes, image_size=size.image_size, seed=seed,
        ways=WAYS, inner_shots=INNER_SHOTS, task_induction=True,
    )
    rng = np.random.default_rng(seed)
    positions = list(POSITIONS)
    prompts = []
    for episode in episodes:
        name_of = dict(zip(episode["support_categories"], episode["support_names"]))
        queries: list[Any] = []
        for category in episode["categories"]:
            obj = sample_object(rng, shape=category, position=positions[int(rng.integers(len(positions)))])
            queries.append(Image.fromarray(render_scene(Scene([obj]), size.image_size)))
        prompts.extend(open_ended_prompts(
            episode["support_images"], episode["support_names"], queries,
            task_induction=True, names=episode["names"],
            targets=[name_of[c] for c in episode["categories"]],
        ))
    return prompts


def answers(model, processor, prompts: list, reuse: bool) -> list[str]:
    """The engine's greedy answers, at the engine's (and the evaluation program's) default batch size."""
    from frozen_hf.eval.engine import generate_answers

    return generate_answers(
        model, processor, prompts, max_new_tokens=MAX_NEW_TOKENS, reuse_prefix_cache=reuse
    )


def run(results: Results, size: BenchSize, device: str = "cpu", dtype: torch.dtype = torch.float32) -> dict:
    """Adds the few-shot rows; returns the ratio and whether the answers were identical."""
    processor = load_processor(size, visual_prefix_length=2)
    model = load_frozen(size, vision_config(size), 2, dtype=dtype, device=device).eval()
    prompts = episode_prompts(size, size.fewshot_episodes)
    outputs: dict[str, list[str]] = {}

    def call(reuse: bool):
        def run_once() -> None:
            outputs["reuse" if reuse else "plain"] = answers(model, processor, prompts, reuse)

        return run_once

    times = interleaved_times(
        {"without reuse": call(False), "with KV reuse": call(True)}, rounds=size.fewshot_rounds, warmup=1,
        device=device,
    )
    same = outputs["reuse"] == outputs["plain"]
    ratio = paired_ratio(times["without reuse"], times["with KV reuse"])
    setting = f"{WAYS}-way {INNER_SHOTS}-shot, {WAYS} queries/episode, {len(prompts) // WAYS} episodes"
    episodes = len(prompts) / WAYS
    results.add(Row("few-shot eval", setting, "without reuse", episodes / median(times["without reuse"]), "ep/s"))
    results.add(Row(
        "few-shot eval", setting, "with KV reuse", episodes / median(times["with KV reuse"]), "ep/s",
        ratio=ratio, baseline="without", target=f">= {TARGET}x", met=ratio >= TARGET and same,
        note="same answers" if same else "ANSWERS DIFFER",
    ))
    return {"ratio": ratio, "same_answers": same, "answers": outputs["reuse"], "plain_answers": outputs["plain"]}
