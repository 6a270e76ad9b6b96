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

from __future__ import annotations

import io
import re
import struct
import zlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from PIL import Image as PILImage

from ..eval.prompting import task_induction_text

__all__ = [
    "CAPTION_SHAPES",
    "FEW_SHOT_SHAPES",
    "NOVEL_SHAPES",
    "CATEGORY_SETS",
    "COLOURS",
    "SIZES",
    "POSITIONS",
    "NONSENSE_NAMES",
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

# --------------------------------------------------------------------------- vocabulary

CAPTION_SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "heart", "cross", "moon", "arrow")
# Fast-binding categories, as in the paper: objects that caption training covers under their real names, so
# that what a binding episode teaches is a new *word*, not a new object.
FEW_SHOT_SHAPES: tuple[str, ...] = CAPTION_SHAPES
# The harder variant's categories: never drawn in captions or vqa, all visually distinct from the caption shapes
# and from each other.
NOVEL_SHAPES: tuple[str, ...] = ("ring", "diamond", "house", "hexagon", "bolt")
ALL_SHAPES: tuple[str, ...] = CAPTION_SHAPES + NOVEL_SHAPES
# Binding episodes draw from one of these category sets (``load_shapes(..., categories=...)``).
CATEGORY_SETS: dict[str, tuple[str, ...]] = {"seen": FEW_SHOT_SHAPES, "novel": NOVEL_SHAPES}
# A rotated square reads as a diamond and a rotated triangle points elsewhere: these barely rotate.
_UPRIGHT_SHAPES = frozenset({"circle", "square", "triangle"})

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (50, 100, 235),
    "yellow": (235, 215, 40),
    "purple": (150, 60, 205),
    "orange": (245, 140, 30),
}
SIZES: dict[str, float] = {"small": 0.10, "large": 0.16}  # radius as a fraction of the side
POSITIONS: dict[str, tuple[float, float]] = {
    "left": (0.22, 0.5),
    "right": (0.78, 0.5),
    "top": (0.5, 0.22),
    "bottom": (0.5, 0.78),
    "center": (0.5, 0.5),
}
# Objects sharing a scene sit on distinct sides; "center" would overlap a large neighbour.
SIDE_POSITIONS: tuple[str, ...] = ("left", "right", "top", "bottom")
POSITION_PHRASES: dict[str, str] = {
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
    "center": "in the center",
}

NONSENSE_NAMES: tuple[str, ...] = ("dax", "blicket", "wug", "zup", "fep", "tove", "gorp", "mib", "kiki", "toma")

HELD_OUT_COMBINATIONS: frozenset[tuple[str, str]] = frozenset(
    {("circle", "green"), ("square", "yellow"), ("triangle", "purple")}
)

TASKS: tuple[str, ...] = ("captions", "vqa", "open_ended", "real_name", "fast_vqa")
SPLITS: dict[str, tuple[str, ...]] = {
    "captions": ("train", "validation", "test", "test_novel"),
    "vqa": ("train", "validation", "test", "test_novel"),
    "open_ended": ("train", "validation", "test"),
    "real_name": ("train", "validation", "test"),
    "fast_vqa": ("train", "validation", "test"),
}
DEFAULT_NUM_SAMPLES: dict[str, int] = {"train": 10_000, "validation": 500, "test": 1_000, "test_novel": 500}
DEFAULT_NUM_EPISODES: dict[str, int] = {"train": 1_000, "validation": 200, "test": 500}
CAPTION_STYLES: tuple[str, ...] = ("varied", "canonical", "shape_first")
VQA_QUESTION_TYPES: tuple[str, ...] = ("colour", "shape", "position", "count")
FAST_VQA_QUESTION_TYPES: tuple[str, ...] = ("colour", "position", "size")

# Stable codes so that streams never depend on tuple order edits elsewhere.
_TASK_CODES = {"captions": 1, "vqa": 2, "open_ended": 3, "real_name": 4, "fast_vqa": 5}
_SPLIT_CODES = {"train": 11, "validation": 12, "test": 13, "test_novel": 14}
_NOVEL_STREAM = 21

# Variants a human annotator might give; they make the VQAv2 min(#matches / 3, 1) formula
# meaningful (an answer matching only a minority variant gets partial credit).
ANSWER_VARIANTS: dict[str, tuple[str, ...]] = {
    "red": ("dark red", "crimson"),
    "green": ("dark green", "lime"),
    "blue": ("light blue", "navy"),
    "yellow": ("gold", "light yellow"),
    "purple": ("violet", "magenta"),
    "orange": ("dark orange", "amber"),
    "circle": ("round", "dot", "disc"),
    "square": ("box", "rectangle"),
    "triangle": ("triangular", "pyramid"),
    "left": ("left side", "on left"),
    "right": ("right side", "on right"),
    "top": ("up", "top side"),
    "bottom": ("down", "bottom side"),
    "center": ("middle", "centre"),
    "small": ("tiny", "little"),
    "large": ("big", "huge"),
    "1": ("one",),
    "2": ("two",),
    "3": ("three",),
    "4": ("four",),
    "5": ("five",),
}

# Words caption_is_correct accepts for each attribute value.
_SYNONYMS: dict[str, dict[str, str]] = {
    "shape": {**{s: s for s in ALL_SHAPES}, **{s + "s": s for s in ALL_SHAPES}},
    "colour": {c: c for c in COLOURS},
    "size": {"small": "small", "large": "large", "big": "large", "little": "small", "tiny": "small"},
    "position": {
        "left": "left",
        "right": "right",
        "top": "top",
        "bottom": "bottom",
        "center": "center",
        "centre": "center",
        "middle": "center",
    },
}
ATTRIBUTES: tuple[str, ...] = ("shape", "colour", "size", "position")


# --------------------------------------------------------------------------- scenes


@dataclass
class ShapeObject:
    """One object of a scene: its words, plus the continuous values that make it look unique."""

    shape: str
    colour: str
    size: str
    position: str
    x: float = 0.5  # centre, fraction of the image side
    y: float = 0.5
    radius: float = 0.1  # fraction of the image side
    angle: float = 0.0  # radians
    rgb: tuple[int, int, int] = (255, 255, 255)

    def words(self) -> dict[str, str]:
        """The four attribute words, as stored in data set rows."""
        return {"shape": self.shape, "colour": self.colour, "size": self.size, "position": self.position}


@dataclass
class Scene:
    """A list of objects on a plain background."""

    objects: list[ShapeObject]
    background: tuple[int, int, int] = (40, 40, 40)

    def words(self) -> list[dict[str, str]]:
        """Attribute words of every object."""
        return [o.words() for o in self.objects]


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, *stream])


def _pick(rng: np.random.Generator, options: Sequence[Any]) -> Any:
    # rng.choice converts its argument to an array on every call, which dominates small draws.
    return options[int(rng.integers(len(options)))]


def sample_object(
    rng: np.random.Generator,
    shape: str | None = None,
    colour: str | None = None,
    size: str | None = None,
    position: str = "center",
    shapes: Sequence[str] = CAPTION_SHAPES,
    colours: Sequence[str] | None = None,
) -> ShapeObject:
    """Sample one object; unspecified words are drawn uniformly, then jittered continuously.

    Circles, squares and triangles barely rotate (a rotated square would look like a diamond); the
    other shapes rotate more so that their instances differ.
    """
    shape = shape if shape is not None else _pick(rng, tuple(shapes))
    colour = colour if colour is not None else _pick(rng, tuple(colours or COLOURS))
    size = size if size is not None else _pick(rng, tuple(SIZES))
    cx, cy = POSITIONS[position]
    # One draw for all continuous jitter: dx, dy, radius scale, angle, r, g, b.
    u = rng.random(7)
    max_angle = 0.14 if shape in _UPRIGHT_SHAPES else 0.35
    base = COLOURS[colour]
    rgb = tuple(min(max(base[k] + int(u[4 + k] * 37) - 18, 0), 255) for k in range(3))
    return ShapeObject(
        shape, colour, size, position,
        x=cx + (u[0] - 0.5) * 0.06,
        y=cy + (u[1] - 0.5) * 0.06,
        radius=SIZES[size] * (0.92 + 0.16 * u[2]),
        angle=(u[3] * 2 - 1) * max_angle,
        rgb=rgb,
    )


def _background(rng: np.random.Generator) -> tuple[int, int, int]:
    u = rng.random(4)
    level = 28 + int(u[0] * 28)
    return tuple(level + int(t * 9) - 4 for t in u[1:])


def sample_scene(
    rng: np.random.Generator,
    num_objects: int = 1,
    shapes: Sequence[str] = CAPTION_SHAPES,
    forbidden: Iterable[tuple[str, str]] = (),
    required: Iterable[tuple[str, str]] = (),
    distinct_colours: bool = False,
) -> Scene:
    """Sample a scene of ``num_objects`` (1-4) objects on distinct sides (or one in the center).

    Args:
        rng: the random generator; the scene depends on nothing else.
        num_objects: how many objects.
        shapes: shapes to draw from.
        forbidden: (shape, colour) pairs that must not occur.
        required: (shape, colour) pairs of which one object must be (used for ``test_novel``).
        distinct_colours: give every object a different colour.
    """
    if not 1 <= num_objects <= len(SIDE_POSITIONS):
        raise ValueError(f"num_objects must be between 1 and {len(SIDE_POSITIONS)}, got {num_objects}.")
    forbidden = set(forbidden)
    required = sorted(set(required))
    if num_objects == 1:
        positions = [_pick(rng, tuple(POSITIONS))]
    else:
        positions = [SIDE_POSITIONS[i] for i in rng.permutation(len(SIDE_POSITIONS))[:num_objects]]
    objects: list[ShapeObject] = []
    used_colours: set[str] = set()
    required_slot = int(rng.integers(num_objects)) if required else -1
    for slot, position in enumerate(positions):
        if slot == required_slot:
            shape, colour = required[int(rng.integers(len(required)))]
            objects.append(sample_object(rng, shape=shape, colour=colour, position=position))
            used_colours.add(colour)
            continue
        shape = _pick(rng, tuple(shapes))
        allowed = [c for c in COLOURS if (shape, c) not in forbidden and not (distinct_colours and c in used_colours)]
        if not allowed:
            raise ValueError(f"No colour left for a {shape} under the given constraints.")
        colour = _pick(rng, allowed)
        used_colours.add(colour)
        objects.append(sample_object(rng, shape=shape, colour=colour, position=position))
    return Scene(objects, _background(rng))


# --------------------------------------------------------------------------- rendering


def _regular_polygon(n: int, r: float = 1.0, phase: float = 0.0) -> np.ndarray:
    t = phase + 2 * np.pi * np.arange(n) / n
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


def _star(points: int = 5, outer: float = 1.0, inner: float = 0.45) -> np.ndarray:
    t = -np.pi / 2 + np.pi * np.arange(2 * points) / points
    r = np.where(np.arange(2 * points) % 2 == 0, outer, inner)
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


# Outlines in unit coordinates, y pointing down (image convention).
_POLYGONS: dict[str, np.ndarray] = {
    "square": np.array([[-0.82, -0.82], [0.82, -0.82], [0.82, 0.82], [-0.82, 0.82]]),
    "triangle": np.array([[0.0, -1.0], [0.95, 0.72], [-0.95, 0.72]]) * 1.05,
    "star": _star(),
    "cross": np.array(
        [[-0.3, -1], [0.3, -1], [0.3, -0.3], [1, -0.3], [1, 0.3], [0.3, 0.3], [0.3, 1], [-0.3, 1],
         [-0.3, 0.3], [-1, 0.3], [-1, -0.3], [-0.3, -0.3]]
    ),
    "arrow": np.array([[-1, -0.28], [0.15, -0.28], [0.15, -0.75], [1, 0], [0.15, 0.75], [0.15, 0.28], [-1, 0.28]]),
    "diamond": np.array([[0, -1.05], [0.6, 0], [0, 1.05], [-0.6, 0]]),
    "house": np.array([[0, -1], [0.9, -0.2], [0.7, -0.2], [0.7, 0.9], [-0.7, 0.9], [-0.7, -0.2], [-0.9, -0.2]]),
    "hexagon": _regular_polygon(6, 0.95),
    "bolt": np.array([[0.25, -1.05], [-0.55, 0.12], [-0.02, 0.12], [-0.3, 1.05], [0.6, -0.22], [0.06, -0.22]]),
}


def _inside_polygon(u: np.ndarray, v: np.ndarray, poly: np.ndarray) -> np.ndarray:
    # Even-odd crossing test, vectorised over pixels; loops only over the few vertices.
    inside = np.zeros(u.shape, dtype=bool)
    xs, ys = poly[:, 0], poly[:, 1]
    j = len(poly) - 1
    for i in range(len(poly)):
        xi, yi, xj, yj = xs[i], ys[i], xs[j], ys[j]
        if yi != yj:
            crosses = (yi > v) != (yj > v)
            x_at = (xj - xi) * (v - yi) / (yj - yi) + xi
            inside ^= crosses & (u < x_at)
        j = i
    return inside


def _inside(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    if shape in _POLYGONS:
        return _inside_polygon(u, v, _POLYGONS[shape])
    rr = u * u + v * v
    if shape == "circle":
        return rr <= 0.92
    if shape == "ring":
        return (rr <= 1.0) & (rr >= 0.36)
    if shape == "moon":
        return (rr <= 1.0) & ((u - 0.45) ** 2 + (v + 0.2) ** 2 >= 0.62)
    if shape == "heart":
        x, y = u * 1.25, -v * 1.25 + 0.25  # the classic quartic heart, y up
        return (x * x + y * y - 1) ** 3 - x * x * y ** 3 <= 0
    raise ValueError(f"Unknown shape {shape!r}; valid shapes: {', '.join(ALL_SHAPES)}.")


_SUPERSAMPLE = 2  # anti-aliasing: sub-pixels per pixel side (render_scene assumes 2)
# Shapes are drawn by looking sub-pixels up in a precomputed high-resolution stencil, which costs
# the same few array operations for every shape (exact polygon tests cost ~10x more for a star).
_STENCIL_RES = 512
_STENCIL_HALF = 2.2  # half-width in object radii; covers the rotated bounding box (1.5 * sqrt 2)


@lru_cache(maxsize=None)
def _stencil(shape: str) -> np.ndarray:
    centres = (np.arange(_STENCIL_RES) + 0.5) / _STENCIL_RES * 2 * _STENCIL_HALF - _STENCIL_HALF
    u, v = np.meshgrid(centres, centres)
    stencil = _inside(shape, u, v)
    # render_scene relies on an empty border (see there); every outline stays within 1.3 radii.
    assert not stencil[[0, -1], :].any() and not stencil[:, [0, -1]].any()
    return stencil.reshape(-1)


@lru_cache(maxsize=8)
def _subpixel_offsets(ss: int) -> np.ndarray:
    return ((np.arange(ss) + 0.5) / ss).astype(np.float32)


def render_scene(scene: Scene, image_size: int = 64) -> np.ndarray:
    """Draw a scene into an ``(image_size, image_size, 3)`` uint8 array (anti-aliased)."""
    size = int(image_size)
    canvas = np.empty((size, size, 3), dtype=np.uint8)
    canvas[:] = scene.background
    ss = _SUPERSAMPLE
    offsets = _subpixel_offsets(ss)
    for obj in scene.objects:
        r_px = obj.radius * size
        extent = r_px * 1.5  # covers any rotation of the outlines above
        x0 = max(int(np.floor(obj.x * size - extent)), 0)
        x1 = min(int(np.ceil(obj.x * size + extent)), size)
        y0 = max(int(np.floor(obj.y * size - extent)), 0)
        y1 = min(int(np.ceil(obj.y * size + extent)), size)
        if x1 <= x0 or y1 <= y0:
            continue
        # Sub-pixel centre coordinates of the bounding box, in object radii.
        xs = (np.arange(x0, x1, dtype=np.float32)[:, None] + offsets[None, :]).reshape(-1)
        ys = (np.arange(y0, y1, dtype=np.float32)[:, None] + offsets[None, :]).reshape(-1)
        dx = (xs[None, :] - np.float32(obj.x * size)) * np.float32(1 / r_px)
        dy = (ys[:, None] - np.float32(obj.y * size)) * np.float32(1 / r_px)
        # Rotate into the object's frame and scale straight to stencil cells in one go.
        scale = _STENCIL_RES / (2 * _STENCIL_HALF)
        cos, sin = np.float32(np.cos(obj.angle) * scale), np.float32(np.sin(obj.angle) * scale)
        offset = np.float32(_STENCIL_HALF * scale)
        iu = (cos * dx + sin * dy + offset).astype(np.intp)
        iv = (cos * dy - sin * dx + offset).astype(np.intp)
        # The stencil's outer rows and columns are empty, so a slightly out-of-range column reads
        # an empty cell of a neighbouring row and mode="clip" handles rows: no per-axis clipping.
        iv *= _STENCIL_RES
        iv += iu
        inside = np.take(_stencil(obj.shape), iv, mode="clip").view(np.uint8)
        # Coverage of each pixel = the mean of its 2 x 2 sub-pixels (strided adds beat reshape+sum).
        counts = inside[0::2, 0::2] + inside[1::2, 0::2]
        counts += inside[0::2, 1::2]
        counts += inside[1::2, 1::2]
        alpha = counts.astype(np.float32) * np.float32(0.25)
        region = canvas[y0:y1, x0:x1].astype(np.float32)
        region += alpha[..., None] * (np.asarray(obj.rgb, dtype=np.float32) - region)
        canvas[y0:y1, x0:x1] = (region + np.float32(0.5)).astype(np.uint8)
    return canvas


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(pixels: np.ndarray) -> bytes:
    """Encode an ``(H, W, 3)`` uint8 array as a PNG file.

    A minimal encoder (no row filters, zlib level 1): about three times faster than going through
    Pillow for small images, and its bytes depend only on the pixels and zlib.
    """
    height, width, _ = pixels.shape
    rows = np.empty((height, 1 + width * 3), dtype=np.uint8)
    rows[:, 0] = 0  # filter type "None" for every row
    rows[:, 1:] = pixels.reshape(height, width * 3)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(rows.tobytes(), 1))
        + _png_chunk(b"IEND", b"")
    )


def scene_to_png(scene: Scene, image_size: int = 64) -> bytes:
    """Render a scene and encode it as PNG bytes (the same scene always gives the same bytes)."""
    return encode_png(render_scene(scene, image_size))


# --------------------------------------------------------------------------- words


def _objects_words(scene_or_objects: Scene | Sequence[ShapeObject | Mapping[str, str]]) -> list[dict[str, str]]:
    objects = scene_or_objects.objects if isinstance(scene_or_objects, Scene) else scene_or_objects
    out = []
    for obj in objects:
        out.append(obj.words() if isinstance(obj, ShapeObject) else {k: str(obj[k]) for k in ATTRIBUTES})
    return out


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def category_phrase(shape: str) -> str:
    """A shape's category in words, with its article: ``"a star"``, ``"an arrow"`` (the category-only oracle)."""
    return f"{_article(shape)} {shape}"


def _object_phrase(o: Mapping[str, str], style: int) -> str:
    noun = f"{o['size']} {o['colour']} {o['shape']}"
    where = POSITION_PHRASES[o["position"]]
    if style == 0:
        return f"a {noun} {where}"
    if style == 1:
        return f"{where} there is a {noun}"
    if style == 2:
        return f"a {o['size']} {o['shape']} that is {o['colour']} {where}"
    return f"{_article(o['colour'])} {o['colour']} {o['shape']} {where} that is {o['size']}"


def _join(parts: Sequence[str]) -> str:
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def describe(scene_or_objects: Scene | Sequence[ShapeObject | Mapping[str, str]]) -> str:
    """The true description of an image in words, in one fixed phrasing.

    ``"a large red circle on the left."``; several objects are joined with commas and "and",
    left to right, top to bottom. The text-oracle evaluation uses this in place of the image.
    """
    words = _objects_words(scene_or_objects)
    order = {p: i for i, p in enumerate(("left", "top", "center", "bottom", "right"))}
    words = sorted(words, key=lambda o: order[o["position"]])
    return _join([_object_phrase(o, 0) for o in words]) + "."


def phrase_caption(
    scene_or_objects: Scene | Sequence[ShapeObject | Mapping[str, str]],
    rng: np.random.Generator | None = None,
    style: str = "varied",
) -> str:
    """A caption naming every attribute of every object.

    ``style="canonical"`` gives ``describe()``'s phrasing; ``"shape_first"`` names each object's
    shape first ("star, large, red, on the left."), so the first word after an image is its
    category; ``"varied"`` draws one of several phrasings and a random object order from ``rng``,
    e.g. "there is a large red circle on the left." or "a large circle that is red on the left.".
    """
    if style not in CAPTION_STYLES:
        raise ValueError(f"Unknown caption style {style!r}; valid styles: {', '.join(CAPTION_STYLES)}.")
    if style == "shape_first":
        return _join([
            f"{o['shape']}, {o['size']}, {o['colour']}, {POSITION_PHRASES[o['position']]}"
            for o in _objects_words(scene_or_objects)
        ]) + "."
    if style == "canonical" or rng is None:
        return describe(scene_or_objects)
    words = _objects_words(scene_or_objects)
    words = [words[i] for i in rng.permutation(len(words))]
    choice = int(rng.integers(5))
    if choice == 4:
        # "there is a ... and a ..." reads better than repeating "there is".
        parts = [f"a {o['size']} {o['colour']} {o['shape']} {POSITION_PHRASES[o['position']]}" for o in words]
        return "there is " + _join(parts) + "."
    return _join([_object_phrase(o, choice) for o in words]) + "."


_CLAUSE_SPLIT = re.compile(r"[.;:!?\n]+|\band\b")
_WORD = re.compile(r"[a-z]+")


def _clause_attributes(clause: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {a: set() for a in ATTRIBUTES}
    for word in _WORD.findall(clause):
        for attribute in ATTRIBUTES:
            if word in _SYNONYMS[attribute]:
                found[attribute].add(_SYNONYMS[attribute][word])
    return found


def _shape_mentions(clause: str) -> int:
    return sum(word in _SYNONYMS["shape"] for word in _WORD.findall(clause))


def _clauses(text: str) -> list[str]:
    # Sentences and "and" separate objects; commas do only where a clause names several shapes
    # ("a red circle on the left, a blue square at the top"), since a comma may also just pause
    # inside one object's description ("a big red circle, on the left").
    clauses = []
    for clause in _CLAUSE_SPLIT.split(text.lower()):
        if "," not in clause or _shape_mentions(clause) <= 1:
            clauses.append(clause)
            continue
        pieces: list[str] = []
        for piece in clause.split(","):
            if pieces and not _shape_mentions(piece):
                pieces[-1] += " " + piece  # a trailing fragment belongs to the object before it
            elif pieces and not _shape_mentions(pieces[-1]):
                pieces[-1] += " " + piece  # a leading fragment belongs to the object after it
            else:
                pieces.append(piece)
        clauses.extend(pieces)
    return clauses


def parse_caption(text: str) -> list[dict[str, str]] | None:
    """Read objects back from a caption in any of the phrasings (and close paraphrases).

    The text is cut into one clause per object (at sentence punctuation, "and", and commas that
    separate objects); every clause that names any attribute must name exactly one value of each
    of shape, colour, size and position. Returns the objects, or ``None`` if a clause is
    incomplete or ambiguous.
    """
    objects: list[dict[str, str]] = []
    for clause in _clauses(text):
        found = _clause_attributes(clause)
        if not any(found.values()):
            continue
        if any(len(values) != 1 for values in found.values()):
            return None
        objects.append({a: next(iter(found[a])) for a in ATTRIBUTES})
    return objects


def caption_is_correct(text: str, objects: Sequence[ShapeObject | Mapping[str, str]] | Scene) -> bool:
    """Whether ``text`` names every attribute of every object correctly, in any phrasing or order.

    Extra objects, missing objects, a wrong word or a clause that leaves an attribute out all make
    the caption incorrect. Synonyms such as "big" / "middle" are accepted.
    """
    parsed = parse_caption(text)
    if not parsed:
        return False
    key = lambda o: tuple(o[a] for a in ATTRIBUTES)  # noqa: E731
    return sorted(map(key, parsed)) == sorted(map(key, _objects_words(objects)))


# --------------------------------------------------------------------------- vqa


def _reference_answers(rng: np.random.Generator, answer: str) -> list[str]:
    variants = ANSWER_VARIANTS.get(answer, ())
    n_true = 10 if not variants else int(rng.integers(7, 11))
    answers = [answer] * n_true + [_pick(rng, variants) for _ in range(10 - n_true)]
    return [answers[i] for i in rng.permutation(10)]


_NUMBER_WORDS = {1: "1", 2: "2", 3: "3", 4: "4"}


def make_vqa_question(
    rng: np.random.Generator, scene: Scene, question_types: Sequence[str] = VQA_QUESTION_TYPES
) -> dict[str, Any]:
    """A question about a scene: ``{"question", "answer", "answers" (10), "question_type"}``.

    Objects are referred to by a property that is unique in the scene (shape, colour or position).
    Count answers are digits, as VQAv2 normalization produces.
    """
    objs = scene.objects
    for _ in range(50):
        qtype = _pick(rng, tuple(question_types))
        target = objs[int(rng.integers(len(objs)))]
        shape_unique = sum(o.shape == target.shape for o in objs) == 1
        colour_unique = sum(o.colour == target.colour for o in objs) == 1
        where = POSITION_PHRASES[target.position]
        if qtype == "colour":
            if shape_unique and rng.random() < 0.5:
                question = f"What colour is the {target.shape}?"
            else:
                question = f"What colour is the {target.shape} {where}?"
            answer = target.colour
        elif qtype == "shape":
            if colour_unique and rng.random() < 0.5:
                question = f"What shape is the {target.colour} object?"
            else:
                question = f"What shape is {where}?"
            answer = target.shape
        elif qtype == "position":
            same = [o for o in objs if o.shape == target.shape and o.colour == target.colour]
            if len(same) != 1:
                continue
            question = f"Where is the {target.colour} {target.shape}?"
            answer = target.position
        elif qtype == "count":
            if rng.random() < 0.5:
                question = "How many objects are there?"
                answer = _NUMBER_WORDS[len(objs)]
            else:
                question = f"How many {target.shape}s are there?"
                answer = _NUMBER_WORDS[sum(o.shape == target.shape for o in objs)]
        else:
            raise ValueError(f"Unknown question type {qtype!r}; valid types: {', '.join(VQA_QUESTION_TYPES)}.")
        return {"question": question, "answer": answer, "answers": _reference_answers(rng, answer), "question_type": qtype}
    raise ValueError("Could not find a well-posed question for this scene.")  # pragma: no cover


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
) -> dict[str, Any]:
    """One fast-binding episode (open-ended / real-name), as a data set row (PNG bytes for images).

    ``ways`` categories are drawn from ``categories``; each gets ``inner_shots`` distinct support
    images (random colour, size, position, rotation) and a name (a nonsense word, or the real
    category name with ``names="real"``). The support set is shuffled, then shown ``repeats``
    times in the same order. The query is a fresh image of one of the categories.
    """
    _check_episode_options(ways, inner_shots, repeats, len(categories))
    if names not in ("nonsense", "real"):
        raise ValueError(f"names must be 'nonsense' or 'real', got {names!r}.")
    chosen = [str(c) for c in rng.permutation(list(categories))[:ways]]
    if names == "real":
        labels = list(chosen)
    else:
        labels = [str(n) for n in rng.permutation(list(NONSENSE_NAMES))[:ways]]
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
    categories: str,
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
            episode = sample_binding_episode(rng, ways, inner_shots, repeats, names, image_size, shapes)
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
                             task_induction, question_types, categories)
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


# --------------------------------------------------------------------------- picture


def make_grid(path: str, image_size: int = 96, seed: int = 0) -> None:
    """Write a PNG grid with samples of every task (one row of panels per task)."""
    from PIL import ImageDraw, ImageFont

    try:
        font = ImageFont.load_default(size=11)
    except TypeError:  # Pillow < 10.1 has one fixed bitmap font
        font = ImageFont.load_default()
    cell, text_h, pad, label_w = image_size, 54, 6, 110
    columns = 7
    width = label_w + columns * (cell + pad) + pad
    rows_spec: list[tuple[str, list[tuple[bytes, list[str]]]]] = []

    caps = load_shapes("captions", "train", columns - 2, image_size, seed, caption_style="varied")
    multi = load_shapes("captions", "train", 2, image_size, seed + 1, min_objects=2, max_objects=3)
    rows_spec.append(("captions", [(_to_png(r["image"]), _wrap(r["caption"])) for r in list(caps) + list(multi)]))
    novel = load_shapes("captions", "test_novel", 2, image_size, seed)
    vqa = load_shapes("vqa", "test", columns - 2, image_size, seed)
    rows_spec.append(
        ("vqa / test_novel",
         [(_to_png(r["image"]), _wrap(f"Q: {r['question']} A: {r['answer']}")) for r in vqa]
         + [(_to_png(r["image"]), _wrap("novel: " + r["caption"])) for r in novel])
    )
    for task, label in (("open_ended", "open_ended\n2-way 2-shot"), ("real_name", "real_name\n3-way 1-shot")):
        ways, shots = (2, 2) if task == "open_ended" else (3, 1)
        ep = load_shapes(task, "test", 1, image_size, seed, ways=ways, inner_shots=shots)[0]
        items = [(_to_png(img), [f"this is a {name}."]) for img, name in zip(ep["support_images"], ep["support_names"])]
        items.append((_to_png(ep["query_image"]), ["query ->", ep["answer"]]))
        rows_spec.append((label + "\n" + ep["task_induction_text"], items))
    ep = load_shapes("fast_vqa", "test", 1, image_size, seed, ways=2, inner_shots=2)[0]
    items = [(_to_png(img), [f"this is a {name}."]) for img, name in zip(ep["support_images"], ep["support_names"])]
    items.append((_to_png(ep["query_image"]), _wrap(f"Q: {ep['question']} A: {ep['answer']}")))
    rows_spec.append(("fast_vqa\n2-way 2-shot", items))

    height = pad + len(rows_spec) * (cell + text_h + pad)
    canvas = PILImage.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for r, (label, items) in enumerate(rows_spec):
        top = pad + r * (cell + text_h + pad)
        draw.multiline_text((pad, top + 4), _wrap_label(label), fill=(0, 0, 0), font=font, spacing=2)
        for c, (data, lines) in enumerate(items[:columns]):
            left = label_w + pad + c * (cell + pad)
            canvas.paste(PILImage.open(io.BytesIO(data)).convert("RGB").resize((cell, cell), PILImage.NEAREST), (left, top))
            draw.multiline_text((left, top + cell + 2), "\n".join(lines[:4]), fill=(0, 0, 0), font=font, spacing=1)
    canvas.save(path)


def _to_png(image: Any) -> bytes:
    if isinstance(image, dict):
        return image["bytes"]
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _wrap(text: str, width: int = 17) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return lines + ([line] if line else [])


def _wrap_label(label: str) -> str:
    return "\n".join(line for part in label.split("\n") for line in _wrap(part, 18))


def _main(argv: Sequence[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Shapes world utilities.")
    parser.add_argument("--grid", metavar="PNG", help="write a grid of samples of every task to this file")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not args.grid:
        parser.error("nothing to do; pass --grid PATH")
    make_grid(args.grid, args.image_size, args.seed)
    print(f"wrote {args.grid}")


if __name__ == "__main__":
    _main()
