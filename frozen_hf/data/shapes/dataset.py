"""``load_shapes``: every Shapes task and split as a deterministic ``datasets.Dataset``."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from .episodes import _check_episode_options, sample_binding_episode, sample_fast_vqa_episode
from .language import describe, make_vqa_question, phrase_caption
from .render import scene_to_png
from .world import (
    ATTRIBUTES,
    CAPTION_STYLES,
    CATEGORY_SETS,
    DEFAULT_NUM_EPISODES,
    DEFAULT_NUM_SAMPLES,
    FAST_VQA_QUESTION_TYPES,
    HELD_OUT_COMBINATIONS,
    NONSENSE_NAMES,
    SIDE_POSITIONS,
    SPLITS,
    TASKS,
    VQA_QUESTION_TYPES,
    _NOVEL_STREAM,
    _SPLIT_CODES,
    _TASK_CODES,
    _rng,
    sample_scene,
)


# --------------------------------------------------------------------------- data sets


def _check_task_split(task: str, split: str) -> None:
    if task not in SPLITS:
        raise ValueError(f"Unknown Shapes task {task!r}; valid tasks: {', '.join(TASKS)}.")
    if split not in SPLITS[task]:
        raise ValueError(f"Unknown split {split!r} for Shapes task {task!r}; valid splits: {', '.join(SPLITS[task])}.")


def _features(task: str):
    from datasets import Features, Image, List, Value

    obj = {a: Value("string") for a in ATTRIBUTES}
    if task == "captions":
        return Features(
            {"image": Image(), "caption": Value("string"), "description": Value("string"),
             "objects": List(obj), "scene_id": Value("int64")}
        )
    if task == "vqa":
        return Features(
            {"image": Image(), "question": Value("string"), "answer": Value("string"),
             "answers": List(Value("string")), "question_type": Value("string"),
             "description": Value("string"), "objects": List(obj), "scene_id": Value("int64")}
        )
    episode = {
        "episode_id": Value("int64"),
        "support_images": List(Image()),
        "support_names": List(Value("string")),
        "support_categories": List(Value("string")),
        "support_descriptions": List(Value("string")),
        "query_image": Image(),
        "query_category": Value("string"),
        "query_description": Value("string"),
        "answer": Value("string"),
        "names": List(Value("string")),
        "categories": List(Value("string")),
        "task_induction_text": Value("string"),
        "task_induction": Value("bool"),
        "ways": Value("int64"),
        "inner_shots": Value("int64"),
        "repeats": Value("int64"),
    }
    if task == "fast_vqa":
        episode.update(
            {"question": Value("string"), "answers": List(Value("string")), "question_type": Value("string"),
             "target_name": Value("string"), "query_objects": List(obj)}
        )
    return Features(episode)


def _scene_rows(
    task: str, split: str, num_samples: int, image_size: int, seed: int,
    min_objects: int, max_objects: int, caption_style: str, question_types: Sequence[str],
) -> dict[str, list]:
    if not 1 <= min_objects <= max_objects <= len(SIDE_POSITIONS):
        raise ValueError(
            f"Need 1 <= min_objects <= max_objects <= {len(SIDE_POSITIONS)}, got {min_objects}, {max_objects}."
        )
    novel = split == "test_novel"
    rows: dict[str, list] = {k: [] for k in _features(task)}
    for i in range(num_samples):
        rng = _rng(seed, _TASK_CODES[task], _SPLIT_CODES[split], i)
        n = int(rng.integers(min_objects, max_objects + 1))
        scene = sample_scene(
            rng, n,
            forbidden=() if novel else HELD_OUT_COMBINATIONS,
            required=HELD_OUT_COMBINATIONS if novel else (),
        )
        rows["image"].append({"bytes": scene_to_png(scene, image_size), "path": None})
        rows["description"].append(describe(scene))
        rows["objects"].append(scene.words())
        rows["scene_id"].append(i)
        if task == "captions":
            rows["caption"].append(phrase_caption(scene, rng, caption_style))
        else:
            qa = make_vqa_question(rng, scene, question_types)
            for key in ("question", "answer", "answers", "question_type"):
                rows[key].append(qa[key])
    return rows


def _episode_rows(
    task: str, split: str, num_samples: int, image_size: int, seed: int,
    ways: int, inner_shots: int, repeats: int, task_induction: bool, question_types: Sequence[str],
    categories: str, name_pool: Sequence[str],
) -> dict[str, list]:
    if categories not in CATEGORY_SETS:
        raise ValueError(f"Unknown category set {categories!r}; valid sets: {', '.join(CATEGORY_SETS)}.")
    shapes = CATEGORY_SETS[categories]
    _check_episode_options(ways, inner_shots, repeats, len(shapes))
    # The seen set keeps the streams it always had; the novel set draws from streams of its own.
    stream = () if categories == "seen" else (_NOVEL_STREAM,)
    rows: dict[str, list] = {k: [] for k in _features(task)}
    for i in range(num_samples):
        rng = _rng(seed, _TASK_CODES[task], _SPLIT_CODES[split], i, ways, inner_shots, repeats, *stream)
        if task == "fast_vqa":
            episode = sample_fast_vqa_episode(rng, ways, inner_shots, repeats, image_size, question_types, shapes)
        else:
            names = "real" if task == "real_name" else "nonsense"
            episode = sample_binding_episode(rng, ways, inner_shots, repeats, names, image_size, shapes, name_pool)
        episode["episode_id"] = i
        episode["task_induction"] = bool(task_induction)
        for key in rows:
            rows[key].append(episode[key])
    return rows


def load_shapes(
    task: str,
    split: str = "train",
    num_samples: int | None = None,
    image_size: int = 64,
    seed: int = 0,
    *,
    min_objects: int = 1,
    max_objects: int | None = None,
    caption_style: str = "varied",
    question_types: Sequence[str] | None = None,
    ways: int = 2,
    inner_shots: int = 1,
    repeats: int = 1,
    task_induction: bool = True,
    categories: str = "seen",
    name_pool: Sequence[str] = NONSENSE_NAMES,
):
    """Generate a Shapes data set as a ``datasets.Dataset`` (images as an ``Image`` feature).

    Args:
        task: ``"captions"``, ``"vqa"``, ``"open_ended"``, ``"real_name"`` or ``"fast_vqa"``.
        split: ``"train"``, ``"validation"``, ``"test"``; ``captions`` and ``vqa`` also
            ``"test_novel"`` (scenes with held-out shape+colour pairs, see
            ``HELD_OUT_COMBINATIONS``). Splits come from disjoint random streams.
        num_samples: rows (scenes or episodes); default 10000/500/1000/500 scenes for
            train/validation/test/test_novel, 1000/200/500 episodes. Row ``i`` does not depend on
            ``num_samples``.
        image_size: side of the square images in pixels (64 by default; 224 works).
        seed: the world seed; the same arguments give the same PNG bytes.
        min_objects, max_objects: objects per scene for ``captions`` / ``vqa`` (max 4; default
            1 for captions, which keeps captioning learnable on a CPU, and 4 for vqa).
        caption_style: ``"varied"`` (several phrasings), ``"canonical"`` (``describe()``) or
            ``"shape_first"`` (the shape word first, see ``phrase_caption``).
        question_types: subset of ``("colour", "shape", "position", "count")`` for ``vqa`` or
            ``("colour", "position", "size")`` for ``fast_vqa``.
        ways, inner_shots, repeats: episode settings for ``open_ended`` / ``real_name`` /
            ``fast_vqa`` (ways <= the category set's size, inner_shots >= 1, repeats >= 1).
        task_induction: stored in each episode's ``task_induction`` column, so that the prompt
            builder knows whether to prepend ``task_induction_text``.
        categories: the episodes' category set: ``"seen"`` (``FEW_SHOT_SHAPES``, the caption shapes, as
            in the paper) or ``"novel"`` (``NOVEL_SHAPES``, never drawn in captions or vqa: the harder
            variant).
        name_pool: the nonsense words that ``open_ended`` episodes name their categories with (default
            ``NONSENSE_NAMES``, the evaluated ones; ``TRAINING_NONSENSE_NAMES`` for training episodes).

    Columns:
        captions: image, caption, description, objects (list of {shape, colour, size,
            position}), scene_id.
        vqa: image, question, answer, answers (10 strings), question_type, description,
            objects, scene_id.
        open_ended / real_name: episode_id, support_images (``ways * inner_shots * repeats``
            images in prompt order), support_names, support_categories, support_descriptions,
            query_image, query_category, query_description, answer, names (the ``ways`` names,
            in task-induction order), categories, task_induction_text, task_induction, ways,
            inner_shots, repeats.
        fast_vqa: the episode columns plus question, answers, question_type, target_name,
            query_objects; ``answer`` is the answer to the question.
    """
    from datasets import Dataset, NamedSplit

    _check_task_split(task, split)
    if not isinstance(image_size, (int, np.integer)) or image_size < 16:
        raise ValueError(f"image_size must be an integer >= 16, got {image_size!r}.")
    is_episode = task in ("open_ended", "real_name", "fast_vqa")
    if num_samples is None:
        num_samples = (DEFAULT_NUM_EPISODES if is_episode else DEFAULT_NUM_SAMPLES)[split]
    if num_samples < 0:
        raise ValueError(f"num_samples must be >= 0, got {num_samples}.")
    if is_episode:
        if question_types is None:
            question_types = FAST_VQA_QUESTION_TYPES
        bad = [q for q in question_types if q not in FAST_VQA_QUESTION_TYPES]
        if task == "fast_vqa" and (bad or not question_types):
            raise ValueError(f"Unknown fast_vqa question types {bad}; valid: {', '.join(FAST_VQA_QUESTION_TYPES)}.")
        rows = _episode_rows(task, split, num_samples, image_size, seed, ways, inner_shots, repeats,
                             task_induction, question_types, categories, name_pool)
    else:
        if question_types is None:
            question_types = VQA_QUESTION_TYPES
        bad = [q for q in question_types if q not in VQA_QUESTION_TYPES]
        if bad or not question_types:
            raise ValueError(f"Unknown vqa question types {bad}; valid: {', '.join(VQA_QUESTION_TYPES)}.")
        if max_objects is None:
            max_objects = max(min_objects, 1 if task == "captions" else len(SIDE_POSITIONS))
        if caption_style not in CAPTION_STYLES:
            raise ValueError(f"Unknown caption style {caption_style!r}; valid styles: {', '.join(CAPTION_STYLES)}.")
        rows = _scene_rows(task, split, num_samples, image_size, seed, min_objects, max_objects,
                           caption_style, question_types)
    return Dataset.from_dict(rows, features=_features(task), split=NamedSplit(split))


