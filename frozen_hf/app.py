"""The library side of the interactive demo (``app/app.py``): everything the page does, as plain functions that take
images and text and return answers, prompts and retrieved examples. The Gradio file only lays out widgets and calls
these, so what the page shows is what these functions give for the same inputs.

- :func:`load_app_model`: a Frozen checkpoint (folder or Hub id); for the missing default, how to make it;
- :func:`answer_binding`: few-shot binding (support images, a name for each, a query image);
- :func:`generate_interleaved`: a free prompt with ``<image>`` markers and its images, with generation settings;
- :func:`answer_vqa` / :func:`caption_image`: VQA and captioning, optionally with k retrieved examples
  (:mod:`frozen_hf.retrieval`) from a support data set (:func:`shapes_support_index` by default);
- :func:`shapes_binding_example`: a Shapes episode to try without uploading anything.

Bad input raises :class:`AppInputError`, whose message is meant for the page as it is.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from frozen_hf.eval.prompting import IMAGE_MARKER, LAYOUTS, Prompt, caption_prompts, open_ended_prompts, vqa_prompts

__all__ = [
    "DEFAULT_MODEL",
    "AppInputError",
    "GenerationSettings",
    "load_app_model",
    "read_image",
    "read_images",
    "parse_names",
    "answer_binding",
    "generate_interleaved",
    "answer_vqa",
    "caption_image",
    "shapes_support_index",
    "shapes_binding_example",
]

DEFAULT_MODEL = "outputs/shapes-smollm2"
# Answer lengths as in the evaluation tasks: names are a word or two, Shapes captions about 15 tokens.
NAME_TOKENS, VQA_TOKENS, CAPTION_TOKENS = 4, 5, 24
SUPPORT_ROWS = 200
# The layout in which the name follows its image: the one under which the small LMs bind names (see the README).
DEFAULT_LAYOUT = "compact"


class AppInputError(ValueError):
    """Input the demo cannot use; the message says what is wrong and what to do, for the page as it is."""


def _layout(name: str) -> str:
    if name not in LAYOUTS:
        raise AppInputError(f"Unknown prompt layout {name!r}; choose from {', '.join(LAYOUTS)}.")
    return name


def load_app_model(name_or_path: str | None = None, device: str | None = None):
    """``(model, processor)`` for a Frozen folder or Hub id (default: the demo's trained output)."""
    from frozen_hf.eval.suites import ModelError, load_frozen

    name = (name_or_path or "").strip() or DEFAULT_MODEL
    if name == DEFAULT_MODEL and not Path(name).exists():
        raise AppInputError(
            f"No model at {DEFAULT_MODEL}: that is where the demo's training writes its model. Make it with "
            "`bash scripts/demo.sh` from the repository root (trains SmolLM2-135M + a small vision encoder on the "
            "Shapes world, about 11 minutes on 2 CPU cores), or give another Frozen checkpoint: a folder written by "
            "frozen-train or a Hub id."
        )
    try:
        return load_frozen(name, device=device)
    except ModelError as err:
        raise AppInputError(str(err)) from err
    except OSError as err:
        raise AppInputError(f"Cannot load a Frozen model from {name!r}: {err}") from err


def read_image(source: Any, what: str = "image"):
    """An RGB PIL image from a file path, bytes, a PIL image or an array; :class:`AppInputError` if it is none."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    if source is None or (isinstance(source, str) and not source.strip()):
        raise AppInputError(f"No {what}: upload one (PNG or JPEG).")
    try:
        if isinstance(source, Image.Image):
            image = source
        elif isinstance(source, np.ndarray):
            image = Image.fromarray(source)
        elif isinstance(source, (bytes, bytearray)):
            image = Image.open(io.BytesIO(source))
        else:
            image = Image.open(os.fspath(getattr(source, "name", source)))
        # Decode now: a truncated file opens fine and fails only when its pixels are read.
        image.load()
        return image.convert("RGB")
    except FileNotFoundError as err:
        raise AppInputError(f"The {what} file is missing ({err.filename}): upload it again.") from err
    except (UnidentifiedImageError, OSError, ValueError, TypeError) as err:
        name = Path(os.fspath(source)).name if isinstance(source, (str, os.PathLike)) else type(source).__name__
        raise AppInputError(
            f"The {what} ({name}) is not a readable image: upload a PNG or JPEG file. ({err})"
        ) from err


def read_images(sources: Sequence[Any] | None, what: str = "image") -> list:
    """Every upload read with :func:`read_image` (numbered in messages)."""
    return [read_image(s, f"{what} {i + 1}") for i, s in enumerate(sources or [])]


def parse_names(text: str | Sequence[str] | None) -> list[str]:
    """Names from ``"dax, blicket"`` (commas or new lines) or a list, stripped, empty ones dropped."""
    if text is None:
        return []
    parts = text.replace("\n", ",").split(",") if isinstance(text, str) else list(text)
    return [p.strip() for p in parts if p and p.strip()]


def _answer(model, processor, prompt: Prompt, max_new_tokens: int) -> str:
    from frozen_hf.eval.engine import generate_answers

    (answer,) = generate_answers(model, processor, [prompt], max_new_tokens=max_new_tokens)
    return answer


def answer_binding(
    model, processor, support_images: Sequence[Any], names: str | Sequence[str], query_image: Any, *,
    task_induction: bool = True, layout: str = DEFAULT_LAYOUT,
) -> tuple[str, Prompt]:
    """Few-shot binding: each support image shown with its name, then the query, in the prompt builder's `layout`;
    returns ``(answer, prompt)``."""
    names = parse_names(names)
    images = read_images(support_images, "support image")
    if not images:
        raise AppInputError("No support images: upload at least one image and give it a name (or load a Shapes example).")
    if len(names) != len(images):
        raise AppInputError(
            f"{len(images)} support images but {len(names)} names: give one name per support image, in upload "
            "order, separated by commas (e.g. dax, blicket)."
        )
    query = read_image(query_image, "query image")
    (prompt,) = open_ended_prompts(images, names, [query], task_induction=task_induction, layout=_layout(layout))
    return _answer(model, processor, prompt, NAME_TOKENS), prompt


@dataclass
class GenerationSettings:
    """Decoding of a free prompt: ``greedy``, ``sample`` (temperature, top_p) or ``beam`` (num_beams)."""

    max_new_tokens: int = 20
    decoding: str = "greedy"
    temperature: float = 1.0
    top_p: float = 1.0
    num_beams: int = 3
    seed: int = 0

    def generate_kwargs(self) -> dict[str, Any]:
        if not 1 <= int(self.max_new_tokens) <= 512:
            raise AppInputError(f"Max new tokens must be between 1 and 512, got {self.max_new_tokens}.")
        kwargs: dict[str, Any] = {"max_new_tokens": int(self.max_new_tokens)}
        if self.decoding == "greedy":
            return {**kwargs, "do_sample": False, "num_beams": 1}
        if self.decoding == "sample":
            if self.temperature <= 0 or not 0 < self.top_p <= 1:
                raise AppInputError("Sampling needs a temperature above 0 and top-p in (0, 1].")
            return {**kwargs, "do_sample": True, "temperature": float(self.temperature), "top_p": float(self.top_p)}
        if self.decoding == "beam":
            if int(self.num_beams) < 1:
                raise AppInputError(f"Beam search needs at least 1 beam, got {self.num_beams}.")
            return {**kwargs, "do_sample": False, "num_beams": int(self.num_beams)}
        raise AppInputError(f"Unknown decoding {self.decoding!r}: choose greedy, sample or beam.")


def generate_interleaved(
    model, processor, text: str, images: Sequence[Any] | None, settings: GenerationSettings | None = None
) -> str:
    """The model's continuation of a free prompt whose ``<image>`` markers take `images` in order."""
    import torch

    from frozen_hf.eval.engine import postprocess_answer

    text = text or ""
    if not text.strip() and not images:
        raise AppInputError(f"Empty prompt: write some text, with an {IMAGE_MARKER} marker where each image goes.")
    images = read_images(images, "image")
    markers = text.count(IMAGE_MARKER)
    if markers != len(images):
        more = "more markers than images" if markers > len(images) else "more images than markers"
        raise AppInputError(
            f"The prompt has {markers} {IMAGE_MARKER} markers but {len(images)} images ({more}): put one "
            f"{IMAGE_MARKER} in the text for each uploaded image, in order."
        )
    kwargs = (settings or GenerationSettings()).generate_kwargs()
    batch = processor(text=[text], images=[images] if images else None, return_tensors="pt")
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in batch.items()}
    torch.manual_seed(int((settings or GenerationSettings()).seed))
    with torch.inference_mode():
        out = model.generate(**batch, **kwargs, pad_token_id=processor.tokenizer.pad_token_id)
    new_tokens = out[0, batch["input_ids"].shape[1] :]
    return postprocess_answer(processor.tokenizer.decode(new_tokens, skip_special_tokens=True), stop_at_newline=False)


def _retrieved_prompt(index, builder, k: int, **kwargs) -> tuple[Prompt, list]:
    from frozen_hf.retrieval import retrieved_caption_prompts, retrieved_vqa_prompts

    if index is None:
        raise AppInputError("Retrieval needs a support data set, and none is loaded.")
    build = retrieved_vqa_prompts if builder == "vqa" else retrieved_caption_prompts
    (prompt,) = build(index, k=k, **kwargs)
    rows = [index.dataset[r["row"]] | {"score": r["score"]} for r in prompt.metadata["retrieved"]]
    return prompt, rows


def _check_k(k: int) -> int:
    if int(k) < 0:
        raise AppInputError(f"The number of retrieved examples must be 0 or more, got {k}.")
    return int(k)


def answer_vqa(
    model, processor, image: Any, question: str, *, index=None, k: int = 0, layout: str = DEFAULT_LAYOUT
) -> tuple[str, Prompt, list]:
    """Answers `question` about `image`, after `k` examples retrieved from `index` (0: none); returns
    ``(answer, prompt, retrieved rows with their "score")``, the rows in prompt order (nearest last)."""
    query = read_image(image, "image")
    question = (question or "").strip()
    if not question:
        raise AppInputError("No question: type one, e.g. What colour is the shape?")
    k = _check_k(k)
    if k == 0:
        (prompt,) = vqa_prompts([query], [question], layout=_layout(layout))
        rows: list = []
    else:
        prompt, rows = _retrieved_prompt(index, "vqa", k, query_images=[query], questions=[question],
                                         layout=_layout(layout))
    return _answer(model, processor, prompt, VQA_TOKENS), prompt, rows


def caption_image(model, processor, image: Any, *, index=None, k: int = 0) -> tuple[str, Prompt, list]:
    """A caption of `image`, after `k` captioned examples retrieved from `index` (0: none)."""
    query = read_image(image, "image")
    k = _check_k(k)
    if k == 0:
        (prompt,) = caption_prompts([query])
        rows: list = []
    else:
        prompt, rows = _retrieved_prompt(index, "caption", k, query_images=[query])
    return _answer(model, processor, prompt, CAPTION_TOKENS), prompt, rows


def _image_size(processor) -> int:
    size = getattr(processor.image_processor, "size", None) or {}
    return int(size.get("height") or size.get("shortest_edge") or 64)


def shapes_support_index(model, processor, task: str = "vqa", *, num_rows: int = SUPPORT_ROWS,
                         index_dir: str | os.PathLike | None = None, support=None):
    """A retrieval index over a support data set: `support` (a ``datasets.Dataset``, e.g. ``load_from_disk``) or
    the Shapes ``task`` (``vqa`` / ``captions``) train split at the model's image size; embedded with the model's
    own vision encoder, stored in `index_dir` (default: beside `support`'s files, or the frozen-hf cache) and
    reused while current."""
    from frozen_hf.bundled import frozen_hf_cache_dir
    from frozen_hf.retrieval import RetrievalIndex, frozen_image_encoder

    if support is None:
        from frozen_hf.data.shapes import load_shapes

        size = _image_size(processor)
        support = load_shapes(task, "train", num_samples=num_rows, image_size=size)
        if index_dir is None:
            index_dir = frozen_hf_cache_dir() / "retrieval" / f"shapes-{task}-{num_rows}-{size}px"
    return RetrievalIndex.build(support, frozen_image_encoder(model, processor), index_dir=index_dir)


def shapes_binding_example(processor=None, *, ways: int = 2, seed: int = 0, nonsense: bool = True) -> dict[str, Any]:
    """A held-out Shapes binding episode (1 image per category): ``support_images``, ``names``, ``query_image``,
    ``answer`` and ``categories``."""
    from frozen_hf.data.shapes import load_shapes

    size = _image_size(processor) if processor is not None else 64
    try:
        (episode,) = load_shapes(
            "open_ended" if nonsense else "real_name", "test", num_samples=int(seed) + 1, image_size=size,
            ways=int(ways), inner_shots=1,
        ).select([int(seed)])
    except ValueError as err:
        raise AppInputError(f"Cannot make that Shapes example: {err}") from err
    return {
        "support_images": list(episode["support_images"]),
        "names": list(episode["support_names"]),
        "categories": list(episode["support_categories"]),
        "query_image": episode["query_image"],
        "answer": episode["answer"],
    }
