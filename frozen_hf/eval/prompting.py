"""Few-shot prompts for Frozen: the one place where interleaved image + text prompts are built.

A prompt is a sequence of *segments*, each ``<image>`` followed by some text (or text alone). How
the segments read is a :class:`PromptLayout` (``LAYOUTS``), an option of every few-shot builder. The
paper's layout (``"paper"``, the default):

- open-ended fast binding (Open-Ended / Real-Name miniImageNet and their Shapes analogs)::

      Answer with dax or blicket.                      <- task induction (optional)
      <image> This is a dax.                           <- support set (ways x inner-shots, x repeats)
      <image> This is a blicket.
      <image> Q: What is this? A: This is a            <- query; the model completes the name

- VQA with shots: ``<image> Question: What colour is the circle? Answer: red`` per shot, then
  ``<image> Question: ... Answer:`` for the query;
- Fast VQA: the binding support set, then ``<image> Q: What colour is the dax? A:``;
- captioning: ``<image>`` and an optional text prompt.

The compact layout (``"compact"``) puts the name right after its image, so that the frozen LM can copy
the name that followed the matching support image::

      Answer with dax or blicket.
      <image>: dax
      <image>: blicket
      <image>:

and asks VQA questions with an instruction to answer in one word (``Question: q Answer in one
word.`` then ``Answer:`` on a new line), a format under which the small bundled LM answers at all.

Segments are joined with new lines; the image marker is followed by one space. Every prompt is a
:class:`Prompt`: its :attr:`Prompt.text` (with ``<image>`` markers) and :attr:`Prompt.images`
(in marker order) go straight into :class:`~frozen_hf.FrozenProcessor`. A prompt is split into a
:class:`PromptPrefix` (task induction + support set), which prompts of the same episode share *as
one object*, and a per-query suffix; the split point (:attr:`Prompt.prefix_length`,
:attr:`Prompt.num_prefix_images`) lets the evaluation engine encode a shared prefix once and reuse
its KV cache (``frozen_hf.eval.engine``). The prefix always ends right before an ``<image>`` marker or
at a new line, so tokenizing prefix and suffix separately gives the tokens of the whole.

Variants of the same prompts (they keep prefix sharing):

- :func:`to_blind`: every image replaced by a black image of the same size (the blind baseline);
- :func:`to_text_oracle`: every image replaced by words, no images left: its full true description
  (``strength="full"``: what the frozen LM can do with perfect vision) or its category only
  (``strength="category"``, e.g. "a star": the ceiling of name binding, free of nuisance attributes).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Sequence

import numpy as np

from ..constants import IMAGE_TOKEN

__all__ = [
    "IMAGE_MARKER",
    "LAYOUTS",
    "ORACLE_STRENGTHS",
    "PromptLayout",
    "get_layout",
    "SEGMENT_SEPARATOR",
    "OPEN_ENDED_QUERY",
    "Segment",
    "PromptPrefix",
    "Prompt",
    "task_induction_text",
    "binding_support_text",
    "vqa_segment_text",
    "build_prompts",
    "open_ended_prompts",
    "vqa_prompts",
    "fast_vqa_prompts",
    "caption_prompts",
    "black_image",
    "to_blind",
    "to_text_oracle",
]

IMAGE_MARKER = IMAGE_TOKEN
SEGMENT_SEPARATOR = "\n"
# The paper's query: the model answers by completing the support captions' pattern.
OPEN_ENDED_QUERY = "Q: What is this? A: This is a"
ORACLE_STRENGTHS = ("full", "category")
# The VQA wording that the compact and adjacent layouts share: asked for one word, with "Answer:" on a line of its
# own, the small bundled LM answers at all.
_ONE_WORD_VQA_QUERY = "Question: {question} Answer in one word.\nAnswer:"
_ONE_WORD_VQA_SHOT = _ONE_WORD_VQA_QUERY + " {answer}"


@dataclass(frozen=True)
class PromptLayout:
    """How the segments of a few-shot prompt read.

    Each template is the text that follows an image; ``joiner`` goes between the ``<image>`` marker and it.
    ``{name}``, ``{question}`` and ``{answer}`` are filled in by the builders.
    """

    name: str
    joiner: str
    binding_support: str
    binding_query: str
    fast_vqa_query: str
    vqa_shot: str
    vqa_query: str


LAYOUTS: dict[str, PromptLayout] = {
    # "a" before every name, also vowel-initial real names: the support captions then read exactly like the
    # query's unfinished "This is a", so the name is the only thing left to copy.
    "paper": PromptLayout(
        name="paper",
        joiner=" ",
        binding_support="This is a {name}.",
        binding_query=OPEN_ENDED_QUERY,
        fast_vqa_query="Q: {question} A:",
        vqa_shot="Question: {question} Answer: {answer}",
        vqa_query="Question: {question} Answer:",
    ),
    # The name follows its image directly; in words the LM binds far better this way (see the README).
    "compact": PromptLayout(
        name="compact",
        joiner="",
        binding_support=": {name}",
        binding_query=":",
        # With no joiner, the text brings its own space after the image marker.
        fast_vqa_query=" " + _ONE_WORD_VQA_QUERY,
        vqa_shot=" " + _ONE_WORD_VQA_SHOT,
        vqa_query=" " + _ONE_WORD_VQA_QUERY,
    ),
    # Nothing between an image and its name: the name stands where caption training put the image's first word,
    # and the query ends on its image, as a caption prompt does.
    "adjacent": PromptLayout(
        name="adjacent",
        joiner=" ",
        binding_support="{name}",
        binding_query="",
        fast_vqa_query=_ONE_WORD_VQA_QUERY,
        vqa_shot=_ONE_WORD_VQA_SHOT,
        vqa_query=_ONE_WORD_VQA_QUERY,
    ),
}


def get_layout(layout: str | PromptLayout) -> PromptLayout:
    """A layout by name (``LAYOUTS``), or the layout itself."""
    if isinstance(layout, PromptLayout):
        return layout
    if layout not in LAYOUTS:
        raise ValueError(f"Unknown prompt layout {layout!r}; choose from {', '.join(LAYOUTS)}.")
    return LAYOUTS[layout]


@dataclass(frozen=True)
class Segment:
    """One ``<image> text`` unit of a prompt (``image=None``: text only).

    ``description`` is the image's true content in words and ``category`` its category in words ("a star"),
    used by :func:`to_text_oracle`. ``joiner`` goes between the image marker and ``text``.
    """

    text: str
    image: Any = None
    description: str | None = None
    category: str | None = None
    joiner: str = " "


@dataclass(frozen=True, eq=False)
class PromptPrefix:
    """The shared start of an episode's prompts: task induction + support set.

    Prompts that share a prefix hold the *same* object; the evaluation engine groups by identity.
    ``text`` is empty or ends with the segment separator, so a query segment can follow directly.
    """

    text: str = ""
    images: tuple[Any, ...] = ()
    descriptions: tuple[str | None, ...] = ()
    categories: tuple[str | None, ...] = ()


EMPTY_PREFIX = PromptPrefix()


@dataclass(frozen=True, eq=False)
class Prompt:
    """A complete few-shot prompt: ``prefix`` (shared) + this query's ``suffix_text`` / ``suffix_images``.

    ``target`` is the reference answer (a string, or a list of human answers for VQA) and
    ``candidates`` the names a closed-ended evaluation ranks; both are carried for the caller only.
    """

    prefix: PromptPrefix
    suffix_text: str
    suffix_images: tuple[Any, ...] = ()
    suffix_descriptions: tuple[str | None, ...] = ()
    suffix_categories: tuple[str | None, ...] = ()
    target: Any = None
    candidates: tuple[str, ...] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """The whole prompt, with one ``<image>`` marker per image."""
        return self.prefix.text + self.suffix_text

    @property
    def images(self) -> list[Any]:
        """All images, in marker order (prefix images first)."""
        return list(self.prefix.images) + list(self.suffix_images)

    @property
    def descriptions(self) -> list[str | None]:
        """The true description of each image, aligned with :attr:`images`."""
        return list(self.prefix.descriptions) + list(self.suffix_descriptions)

    @property
    def categories(self) -> list[str | None]:
        """The category in words of each image, aligned with :attr:`images`."""
        return list(self.prefix.categories) + list(self.suffix_categories)

    @property
    def prefix_length(self) -> int:
        """Split point in :attr:`text`: characters of the shared prefix."""
        return len(self.prefix.text)

    @property
    def num_prefix_images(self) -> int:
        """Images inside the shared prefix (the first ones of :attr:`images`)."""
        return len(self.prefix.images)


# --------------------------------------------------------------------------- text pieces


def task_induction_text(names: Sequence[str]) -> str:
    """The task-induction preamble, e.g. ``"Answer with dax or blicket."``."""
    names = [str(n) for n in names]
    if not names:
        raise ValueError("Task induction needs at least one name to list.")
    if len(names) == 1:
        return f"Answer with {names[0]}."
    return "Answer with " + ", ".join(names[:-1]) + " or " + names[-1] + "."


def binding_support_text(name: str, layout: str | PromptLayout = "paper") -> str:
    """The text after a support image in a fast-binding episode: ``"This is a dax."`` (paper layout)."""
    return get_layout(layout).binding_support.format(name=name)


def vqa_segment_text(question: str, answer: str | None = None, layout: str | PromptLayout = "paper") -> str:
    """``"Question: <q> Answer: <a>"`` for a shot, ``"Question: <q> Answer:"`` for the query (paper layout)."""
    layout = get_layout(layout)
    if answer is None:
        return layout.vqa_query.format(question=question.strip())
    return layout.vqa_shot.format(question=question.strip(), answer=answer)


def _segment_text(segment: Segment) -> str:
    if segment.image is None:
        return segment.text
    return f"{IMAGE_MARKER}{segment.joiner}{segment.text}" if segment.text else IMAGE_MARKER


def _check_no_marker(text: str, where: str) -> None:
    if IMAGE_MARKER in text:
        raise ValueError(
            f"{where} contains the image marker {IMAGE_MARKER!r} in its text: give images as Segment.image, "
            "not as markers in text, so that images and markers cannot get out of step."
        )


# --------------------------------------------------------------------------- builders


def build_prompts(
    support: Sequence[Segment],
    queries: Sequence[Segment],
    *,
    preamble: str | None = None,
    repeats: int = 1,
    targets: Sequence[Any] | None = None,
    candidates: Sequence[str] | None = None,
    metadata: Sequence[dict[str, Any]] | None = None,
) -> list[Prompt]:
    """The generic builder: ``preamble``, then ``support`` shown ``repeats`` times, then each query.

    All returned prompts share one :class:`PromptPrefix` object (empty when there is neither
    preamble nor support), so their prefix can be encoded once.
    """
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be an int >= 1 (1 shows the support set once), got {repeats!r}.")
    if not queries:
        raise ValueError("Give at least one query segment.")
    if targets is not None and len(targets) != len(queries):
        raise ValueError(f"Got {len(targets)} targets for {len(queries)} queries.")
    if metadata is not None and len(metadata) != len(queries):
        raise ValueError(f"Got {len(metadata)} metadata dicts for {len(queries)} queries.")
    parts: list[str] = []
    images: list[Any] = []
    descriptions: list[str | None] = []
    categories: list[str | None] = []
    if preamble:
        _check_no_marker(preamble, "The task induction preamble")
        parts.append(preamble.strip() + SEGMENT_SEPARATOR)
    for segment in list(support) * repeats:
        _check_no_marker(segment.text, "A support segment")
        parts.append(_segment_text(segment) + SEGMENT_SEPARATOR)
        if segment.image is not None:
            images.append(segment.image)
            descriptions.append(segment.description)
            categories.append(segment.category)
    prefix = (
        PromptPrefix("".join(parts), tuple(images), tuple(descriptions), tuple(categories)) if parts else EMPTY_PREFIX
    )
    prompts = []
    for index, query in enumerate(queries):
        _check_no_marker(query.text, "A query segment")
        has_image = query.image is not None
        prompts.append(
            Prompt(
                prefix=prefix,
                suffix_text=_segment_text(query),
                suffix_images=(query.image,) if has_image else (),
                suffix_descriptions=(query.description,) if has_image else (),
                suffix_categories=(query.category,) if has_image else (),
                target=None if targets is None else targets[index],
                candidates=None if candidates is None else tuple(candidates),
                metadata={} if metadata is None else dict(metadata[index]),
            )
        )
    return prompts


def open_ended_prompts(
    support_images: Sequence[Any],
    support_names: Sequence[str],
    query_images: Sequence[Any],
    *,
    task_induction: bool = False,
    names: Sequence[str] | None = None,
    repeats: int = 1,
    support_descriptions: Sequence[str | None] | None = None,
    query_descriptions: Sequence[str | None] | None = None,
    support_categories: Sequence[str | None] | None = None,
    query_categories: Sequence[str | None] | None = None,
    targets: Sequence[str] | None = None,
    layout: str | PromptLayout = "paper",
    query_text: str | None = None,
) -> list[Prompt]:
    """Prompts of one fast-binding episode: a named segment per support image, then each query.

    Args:
        support_images, support_names: the support set in prompt order (ways x inner-shots images).
        query_images: one prompt is built per query; all share the prefix.
        task_induction: start with ``"Answer with dax or blicket."``.
        names: the names listed by task induction, in order (default: the support names in order of
            first appearance). They are also the closed-ended candidates.
        repeats: how many times the support set is shown.
        support_descriptions, query_descriptions: true descriptions (for the full text oracle).
        support_categories, query_categories: categories in words, e.g. "a star" (for the category oracle).
        targets: the right name of each query.
        layout: a :class:`PromptLayout` or its name in ``LAYOUTS``.
        query_text: the query's text after its image (default: the layout's).
    """
    layout = get_layout(layout)
    if names is None:
        names = list(dict.fromkeys(support_names))
    support = _binding_support(support_names, support_images, support_descriptions, support_categories, layout)
    queries = _image_segments(
        [layout.binding_query if query_text is None else query_text] * len(query_images), query_images,
        query_descriptions, query_categories, layout, "query",
    )
    return build_prompts(
        support,
        queries,
        preamble=task_induction_text(names) if task_induction else None,
        repeats=repeats,
        targets=targets,
        candidates=names,
    )


def _binding_support(
    names: Sequence[str], images: Sequence[Any], descriptions: Sequence[str | None] | None,
    categories: Sequence[str | None] | None, layout: PromptLayout,
) -> list[Segment]:
    """A fast-binding support set: each image followed by its name (``<image> This is a dax.``, paper layout)."""
    if len(images) != len(names):
        raise ValueError(f"Got {len(images)} support images but {len(names)} support names.")
    if not images:
        raise ValueError("A fast-binding episode needs a support set (inner_shots >= 1).")
    texts = [binding_support_text(name, layout) for name in names]
    return _image_segments(texts, images, descriptions, categories, layout, "support")


def _image_segments(
    texts: Sequence[str],
    images: Sequence[Any],
    descriptions: Sequence[str | None] | None,
    categories: Sequence[str | None] | None,
    layout: PromptLayout,
    what: str,
) -> list[Segment]:
    descriptions = _aligned(descriptions, len(images), f"{what}_descriptions")
    categories = _aligned(categories, len(images), f"{what}_categories")
    return [
        Segment(text, image, description, category, layout.joiner)
        for text, image, description, category in zip(texts, images, descriptions, categories)
    ]


def vqa_prompts(
    query_images: Sequence[Any],
    questions: Sequence[str],
    *,
    shots: Sequence[tuple[Any, str, str]] = (),
    shot_descriptions: Sequence[str | None] | None = None,
    query_descriptions: Sequence[str | None] | None = None,
    targets: Sequence[Any] | None = None,
    layout: str | PromptLayout = "paper",
) -> list[Prompt]:
    """VQA prompts: each shot ``(image, question, answer)`` as ``<image> Question: q Answer: a``, then each
    query as ``<image> Question: q Answer:`` (paper layout). All queries share the shots (0 shots: no prefix)."""
    if len(query_images) != len(questions):
        raise ValueError(f"Got {len(query_images)} query images but {len(questions)} questions.")
    layout = get_layout(layout)
    support = _image_segments(
        [vqa_segment_text(question, answer, layout) for _, question, answer in shots], [image for image, _, _ in shots],
        shot_descriptions, None, layout, "shot",
    )
    queries = _image_segments(
        [vqa_segment_text(question, None, layout) for question in questions], query_images,
        query_descriptions, None, layout, "query",
    )
    return build_prompts(support, queries, targets=targets)


def fast_vqa_prompts(
    support_images: Sequence[Any],
    support_names: Sequence[str],
    query_images: Sequence[Any],
    questions: Sequence[str],
    *,
    task_induction: bool = False,
    names: Sequence[str] | None = None,
    repeats: int = 1,
    support_descriptions: Sequence[str | None] | None = None,
    query_descriptions: Sequence[str | None] | None = None,
    support_categories: Sequence[str | None] | None = None,
    targets: Sequence[Any] | None = None,
    layout: str | PromptLayout = "paper",
) -> list[Prompt]:
    """Fast VQA: the binding support set (``<image> This is a dax.``), then ``<image> Q: <question> A:``
    where the question uses a name just taught (paper layout)."""
    if len(query_images) != len(questions):
        raise ValueError(f"Got {len(query_images)} query images but {len(questions)} questions.")
    layout = get_layout(layout)
    texts = [layout.fast_vqa_query.format(question=question.strip()) for question in questions]
    queries = _image_segments(texts, query_images, query_descriptions, None, layout, "query")
    support = _binding_support(support_names, support_images, support_descriptions, support_categories, layout)
    if names is None:
        names = list(dict.fromkeys(support_names))
    return build_prompts(
        support, queries, preamble=task_induction_text(names) if task_induction else None, repeats=repeats,
        targets=targets,
    )


def caption_prompts(
    images: Sequence[Any],
    *,
    text: str = "",
    descriptions: Sequence[str | None] | None = None,
    targets: Sequence[Any] | None = None,
) -> list[Prompt]:
    """Captioning prompts: ``<image>`` (plus an optional text prompt), as in captioning training."""
    descriptions = _aligned(descriptions, len(images), "descriptions")
    queries = [Segment(text, image, description) for image, description in zip(images, descriptions)]
    return build_prompts([], queries, targets=targets)


def _aligned(values: Sequence[Any] | None, length: int, name: str) -> list[Any]:
    if values is None:
        return [None] * length
    if len(values) != length:
        raise ValueError(f"{name} has {len(values)} entries; expected {length}, one per image.")
    return list(values)


# --------------------------------------------------------------------------- variants


def black_image(image: Any) -> Any:
    """A black image of the same size and kind (PIL image, NumPy array or torch tensor)."""
    from PIL import Image

    if isinstance(image, Image.Image):
        return Image.new("RGB", image.size, (0, 0, 0))
    if isinstance(image, np.ndarray):
        return np.zeros_like(image)
    try:
        import torch

        if isinstance(image, torch.Tensor):
            return torch.zeros_like(image)
    except ImportError:  # pragma: no cover
        pass
    raise ValueError(f"Cannot black out an image of type {type(image).__name__}: pass PIL images, arrays or tensors.")


def _map_prefixes(prompts: Iterable[Prompt], convert_prefix, convert_prompt) -> list[Prompt]:
    # Shared prefixes stay shared: each distinct prefix object is converted once.
    converted: dict[int, PromptPrefix] = {}
    out = []
    for prompt in prompts:
        key = id(prompt.prefix)
        if key not in converted:
            converted[key] = convert_prefix(prompt.prefix)
        out.append(convert_prompt(prompt, converted[key]))
    return out


def to_blind(prompts: Sequence[Prompt]) -> list[Prompt]:
    """The blind baseline: the same prompts with every image replaced by a black image of its size."""

    def prefix(p: PromptPrefix) -> PromptPrefix:
        return p if not p.images else replace(p, images=tuple(black_image(i) for i in p.images))

    def prompt(p: Prompt, new_prefix: PromptPrefix) -> Prompt:
        return replace(p, prefix=new_prefix, suffix_images=tuple(black_image(i) for i in p.suffix_images))

    return _map_prefixes(prompts, prefix, prompt)


def _describe_markers(text: str, words: Sequence[str | None], template: str) -> str:
    pieces = text.split(IMAGE_MARKER)
    if len(pieces) - 1 != len(words):
        raise ValueError(f"{len(pieces) - 1} image markers but {len(words)} descriptions.")
    out = [pieces[0]]
    for description, piece in zip(words, pieces[1:]):
        if description is None:
            raise ValueError(
                "The text oracle needs the true description (or category) of every image; this prompt has an image "
                "without one. Build prompts with the *_descriptions / *_categories arguments (Shapes tasks provide "
                "them)."
            )
        described = template.format(description=description.strip())
        if piece[:1] in (":", ",", ";"):
            # The compact layout's "<image>: dax" reads "a red star: dax", not "a red star.: dax".
            described = described.rstrip(".")
        # A marker alone in its segment (captioning) leaves nothing after it; don't add a dangling space.
        out.append(described + piece if piece else described)
    return "".join(out)


def to_text_oracle(prompts: Sequence[Prompt], template: str = "{description}", strength: str = "full") -> list[Prompt]:
    """The text oracle: every ``<image>`` replaced by ``template`` filled with words for that image.

    ``strength="full"`` uses the image's true description, ``"category"`` its category only. The result holds no
    images, so any causal LM (the Frozen model's own frozen LM) reads it. With Shapes,
    ``"<image> This is a dax."`` becomes ``"a large red star on the left. This is a dax."`` (full) or
    ``"a star. This is a dax."`` (category); the compact ``"<image>: dax"`` becomes ``"a star: dax"``.
    """
    if strength not in ORACLE_STRENGTHS:
        raise ValueError(f"Unknown text oracle strength {strength!r}; choose from {', '.join(ORACLE_STRENGTHS)}.")
    full = strength == "full"

    def prefix(p: PromptPrefix) -> PromptPrefix:
        if not p.images:
            return p
        return PromptPrefix(_describe_markers(p.text, p.descriptions if full else p.categories, template))

    def prompt(p: Prompt, new_prefix: PromptPrefix) -> Prompt:
        return replace(
            p,
            prefix=new_prefix,
            suffix_text=_describe_markers(p.suffix_text, p.suffix_descriptions if full else p.suffix_categories, template),
            suffix_images=(),
            suffix_descriptions=(),
            suffix_categories=(),
        )

    return _map_prefixes(prompts, prefix, prompt)
