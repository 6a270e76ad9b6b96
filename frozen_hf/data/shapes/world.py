"""The Shapes world's vocabulary and its scenes: what an object can be, and how scenes are drawn at random.

Every sample comes from its own random stream ``(seed, task, split, i)`` (``_rng``), so the same arguments give
the same scene, and different tasks and splits come from disjoint streams.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np


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
# Names for binding episodes in training (``shapes_binding_episodes``), disjoint from ``NONSENSE_NAMES``: an evaluated
# name is never one the model was trained to copy. Like those, each is two tokens for the bundled LMs.
TRAINING_NONSENSE_NAMES: tuple[str, ...] = (
    "lorp", "snib", "vek", "quall", "throp", "mep", "zav", "drin", "kell", "woz", "nuf", "jat", "borf", "yem", "sarp",
    "tiv", "glim", "frap", "hux", "plon", "rell", "teb", "yorb", "nim", "spav", "wex", "marb", "jek", "sool", "grun",
    "vop", "lant", "chib",
)

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


