"""Few-shot episodes over the Shapes world: fast-binding (open-ended, real-name) and Fast VQA episodes."""

from __future__ import annotations

import zlib
from typing import Any, Sequence

import numpy as np

from ...eval.prompting import task_induction_text
from .language import _reference_answers, describe
from .render import scene_to_png
from .world import (
    COLOURS,
    FAST_VQA_QUESTION_TYPES,
    FEW_SHOT_SHAPES,
    NONSENSE_NAMES,
    POSITIONS,
    SIDE_POSITIONS,
    Scene,
    _background,
    _pick,
    sample_object,
)

# --------------------------------------------------------------------------- episodes


def _check_episode_options(ways: int, inner_shots: int, repeats: int, num_categories: int) -> None:
    if not isinstance(ways, (int, np.integer)) or ways < 1:
        raise ValueError(f"ways must be a positive integer, got {ways!r}.")
    if ways > num_categories:
        raise ValueError(
            f"ways={ways} is more than the {num_categories} few-shot categories available; "
            f"use ways <= {num_categories}."
        )
    if not isinstance(inner_shots, (int, np.integer)) or inner_shots < 1:
        raise ValueError(
            f"inner_shots must be >= 1 (each category needs at least one support image to be named), got {inner_shots!r}."
        )
    if not isinstance(repeats, (int, np.integer)) or repeats < 1:
        raise ValueError(f"repeats must be >= 1 (1 shows the support set once), got {repeats!r}.")


def _single_object_scene(rng: np.random.Generator, shape: str) -> Scene:
    obj = sample_object(rng, shape=shape, position=_pick(rng, tuple(POSITIONS)))
    return Scene([obj], _background(rng))


def _distinct_png(rng: np.random.Generator, shape: str, image_size: int, seen: set[int]) -> tuple[Scene, bytes]:
    # Continuous jitter makes collisions vanishingly rare; the check turns "rare" into "never".
    while True:
        scene = _single_object_scene(rng, shape)
        png = scene_to_png(scene, image_size)
        digest = zlib.crc32(png) ^ (len(png) << 32)
        if digest not in seen:
            seen.add(digest)
            return scene, png


def sample_binding_episode(
    rng: np.random.Generator,
    ways: int = 2,
    inner_shots: int = 1,
    repeats: int = 1,
    names: str = "nonsense",
    image_size: int = 64,
    categories: Sequence[str] = FEW_SHOT_SHAPES,
    name_pool: Sequence[str] = NONSENSE_NAMES,
) -> dict[str, Any]:
    """One fast-binding episode (open-ended / real-name), as a data set row (PNG bytes for images).

    ``ways`` categories are drawn from ``categories``; each gets ``inner_shots`` distinct support
    images (random colour, size, position, rotation) and a name (a nonsense word drawn from
    ``name_pool``, or the real category name with ``names="real"``). The support set is shuffled,
    then shown ``repeats`` times in the same order. The query is a fresh image of one of the categories.
    """
    _check_episode_options(ways, inner_shots, repeats, len(categories))
    if names not in ("nonsense", "real"):
        raise ValueError(f"names must be 'nonsense' or 'real', got {names!r}.")
    if names == "nonsense" and len(set(name_pool)) < ways:
        raise ValueError(f"ways={ways} needs at least {ways} distinct names, but name_pool has {len(set(name_pool))}.")
    chosen = [str(c) for c in rng.permutation(list(categories))[:ways]]
    if names == "real":
        labels = list(chosen)
    else:
        labels = [str(n) for n in rng.permutation(list(dict.fromkeys(name_pool)))[:ways]]
    name_of = dict(zip(chosen, labels))
    seen: set[int] = set()
    support = []
    for category in chosen:
        for _ in range(inner_shots):
            scene, png = _distinct_png(rng, category, image_size, seen)
            support.append((category, scene, png))
    support = [support[i] for i in rng.permutation(len(support))] * repeats
    query_category = chosen[int(rng.integers(ways))]
    query_scene, query_png = _distinct_png(rng, query_category, image_size, seen)
    return {
        "support_images": [{"bytes": png, "path": None} for _, _, png in support],
        "support_names": [name_of[c] for c, _, _ in support],
        "support_categories": [c for c, _, _ in support],
        "support_descriptions": [describe(s) for _, s, _ in support],
        "query_image": {"bytes": query_png, "path": None},
        "query_category": query_category,
        "query_description": describe(query_scene),
        "answer": name_of[query_category],
        "names": labels,
        "categories": chosen,
        "task_induction_text": task_induction_text(labels),
        "ways": int(ways),
        "inner_shots": int(inner_shots),
        "repeats": int(repeats),
    }


def sample_fast_vqa_episode(
    rng: np.random.Generator,
    ways: int = 2,
    inner_shots: int = 1,
    repeats: int = 1,
    image_size: int = 64,
    question_types: Sequence[str] = FAST_VQA_QUESTION_TYPES,
    categories: Sequence[str] = FEW_SHOT_SHAPES,
) -> dict[str, Any]:
    """One Fast VQA episode: support images teach nonsense names, the question uses one.

    The query image holds one object of each of ``min(ways, 4)`` taught categories (the asked one
    among them), on distinct sides with distinct colours, so "What colour is the dax?" has one
    answer only if the name was bound to the right shape.
    """
    episode = sample_binding_episode(rng, ways, inner_shots, repeats, "nonsense", image_size, categories)
    chosen, labels = episode["categories"], episode["names"]
    target = int(rng.integers(ways))
    others = [i for i in rng.permutation(ways) if i != target][: min(ways, len(SIDE_POSITIONS)) - 1]
    in_scene = [target] + [int(i) for i in others]
    positions = [str(p) for p in rng.permutation(list(SIDE_POSITIONS))[: len(in_scene)]]
    colours = [str(c) for c in rng.permutation(list(COLOURS))[: len(in_scene)]]
    objects = [
        sample_object(rng, shape=chosen[i], colour=c, position=p) for i, c, p in zip(in_scene, colours, positions)
    ]
    scene = Scene(objects, _background(rng))
    qtype = _pick(rng, tuple(question_types))
    name = labels[target]
    obj = objects[0]
    if qtype == "colour":
        question, answer = f"What colour is the {name}?", obj.colour
    elif qtype == "position":
        question, answer = f"Where is the {name}?", obj.position
    elif qtype == "size":
        question, answer = f"Is the {name} small or large?", obj.size
    else:
        raise ValueError(f"Unknown question type {qtype!r}; valid types: {', '.join(FAST_VQA_QUESTION_TYPES)}.")
    episode.update(
        {
            "query_image": {"bytes": scene_to_png(scene, image_size), "path": None},
            "query_category": chosen[target],
            "query_description": describe(scene),
            "question": question,
            "answer": answer,
            "answers": _reference_answers(rng, answer),
            "question_type": qtype,
            "target_name": name,
            "query_objects": scene.words(),
        }
    )
    return episode


