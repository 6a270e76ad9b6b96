"""The words of the Shapes world: descriptions, caption phrasings, the caption checker and VQA questions."""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

import numpy as np
from .world import (
    ANSWER_VARIANTS,
    ATTRIBUTES,
    CAPTION_STYLES,
    POSITION_PHRASES,
    Scene,
    ShapeObject,
    VQA_QUESTION_TYPES,
    _SYNONYMS,
    _pick,
)


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


def _either_phrasing(rng: np.random.Generator, short_is_unambiguous: bool, short: str, long: str) -> str:
    """``short`` half the time where it names the object unambiguously, else ``long``, so that both phrasings
    occur. A random number is drawn only where ``short`` may be asked, which keeps the question streams fixed."""
    return short if short_is_unambiguous and rng.random() < 0.5 else long


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
            question = _either_phrasing(
                rng, shape_unique, f"What colour is the {target.shape}?", f"What colour is the {target.shape} {where}?"
            )
            answer = target.colour
        elif qtype == "shape":
            question = _either_phrasing(
                rng, colour_unique, f"What shape is the {target.colour} object?", f"What shape is {where}?"
            )
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


