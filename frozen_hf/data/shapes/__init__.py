"""The Shapes world: procedurally generated image data sets that mirror each task of the Frozen paper.

Every image is a dark background with one or more flat-coloured objects. An object has a
``shape``, a ``colour``, a ``size`` (``small`` / ``large``) and a ``position`` (``left``,
``right``, ``top``, ``bottom``, or ``center`` when it is alone). All words are plain single words
that a small LM can say.

Everything is deterministic: sample ``i`` of a given task, split and seed is drawn from its own
random stream ``(seed, task, split, i)``, so the same arguments give the same PNG bytes, a longer
data set starts with the shorter one, and different splits come from disjoint streams.

Tasks (``load_shapes(task, split, ...)``):

- ``captions`` (the Conceptual Captions analog, for training): images of ``CAPTION_SHAPES`` with
  varied natural-language captions.
- ``vqa`` (the VQAv2 analog): questions about colour, shape, position and count with a short
  answer and 10 VQAv2-style reference answers.
- ``open_ended`` / ``real_name`` (the Open-Ended / Real-Name miniImageNet analogs): fast-binding
  episodes over ``FEW_SHOT_SHAPES``, named with nonsense words or with their real names. As in the
  paper, these categories occur in ``captions`` under their real names: an episode teaches a new
  word for a known object. ``categories="novel"`` draws ``NOVEL_SHAPES`` instead, which never occur
  in ``captions`` or ``vqa`` (the harder variant).
- ``fast_vqa`` (the Fast VQA analog): episodes that teach nonsense names, then a question that
  uses one ("What colour is the dax?").

Splits: ``train``, ``validation``, ``test`` for every task; ``captions`` and ``vqa`` also have
``test_novel``, whose every scene contains a shape+colour pair from ``HELD_OUT_COMBINATIONS``;
such pairs never occur in any other split of those tasks.

Run ``python -m frozen_hf.data.shapes --grid docs/shapes_grid.png`` to draw a grid of samples.
"""

from .dataset import load_shapes
from .episodes import sample_binding_episode, sample_fast_vqa_episode
from .grid import make_grid
from .language import (
    caption_is_correct,
    category_phrase,
    describe,
    make_vqa_question,
    parse_caption,
    phrase_caption,
)
from .render import encode_png, render_scene, scene_to_png
from .world import (
    CAPTION_SHAPES,
    CAPTION_STYLES,
    CATEGORY_SETS,
    COLOURS,
    FEW_SHOT_SHAPES,
    HELD_OUT_COMBINATIONS,
    NONSENSE_NAMES,
    TRAINING_NONSENSE_NAMES,
    NOVEL_SHAPES,
    POSITIONS,
    SIZES,
    SPLITS,
    TASKS,
    Scene,
    ShapeObject,
    sample_object,
    sample_scene,
)

__all__ = [
    "CAPTION_SHAPES",
    "FEW_SHOT_SHAPES",
    "NOVEL_SHAPES",
    "CATEGORY_SETS",
    "COLOURS",
    "SIZES",
    "POSITIONS",
    "NONSENSE_NAMES",
    "TRAINING_NONSENSE_NAMES",
    "HELD_OUT_COMBINATIONS",
    "TASKS",
    "SPLITS",
    "ShapeObject",
    "Scene",
    "sample_object",
    "sample_scene",
    "render_scene",
    "scene_to_png",
    "encode_png",
    "describe",
    "category_phrase",
    "phrase_caption",
    "CAPTION_STYLES",
    "caption_is_correct",
    "parse_caption",
    "make_vqa_question",
    "sample_binding_episode",
    "sample_fast_vqa_episode",
    "load_shapes",
    "make_grid",
]

