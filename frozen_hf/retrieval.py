"""Retrieved in-context examples: a FAISS image index over a ``datasets.Dataset``, and few-shot prompts whose shots
are the k examples nearest to each query image (retrieval-based in-context example selection).

    encoder = frozen_image_encoder(model, processor)              # the model's own vision backbone, pooled
    index = RetrievalIndex.build(support, encoder, index_dir="support_index")   # or reused from index_dir
    prompts = retrieved_vqa_prompts(index, query_images, questions, k=4)

Images are embedded by an *encoder*: :func:`frozen_image_encoder` (a Frozen model's vision backbone, or its
visual prefix), :func:`pretrained_image_encoder` (any transformers vision model the user names, by folder or Hub
id), or any :class:`ImageEncoder`. Embeddings are L2-normalised and searched exactly by inner product (cosine
similarity) with ``datasets``' FAISS support (``add_faiss_index_from_external_arrays``, ``save_faiss_index``,
``load_faiss_index``).

The index is stored in ``index_dir`` (by default a ``retrieval_index`` folder beside the data set's Arrow files)
as ``<name>.faiss`` plus ``<name>.json``, which records the data set's fingerprint, its row count and the encoder's
identity (for a model: a hash of its weights). A stored index is reused when all three match; otherwise it is stale
(the data set or the encoder changed) and is rebuilt and saved again.

Prompts come from the one prompt builder (:mod:`frozen_hf.eval.prompting`): every query gets its own shots, so
every prompt has its own prefix; ``Prompt.metadata["retrieved"]`` lists the rows used (row index and similarity),
nearest last, the row nearest to the query sits right before it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from frozen_hf.eval.prompting import Prompt, Segment, build_prompts, vqa_prompts

__all__ = [
    "ImageEncoder",
    "CallableImageEncoder",
    "frozen_image_encoder",
    "pretrained_image_encoder",
    "RetrievalIndex",
    "Retrieved",
    "retrieved_vqa_prompts",
    "retrieved_caption_prompts",
    "random_shot_rows",
    "shot_rows",
    "SHOT_SELECTIONS",
    "SHOT_SELECTION_TASKS",
    "shapes_task_with_shots",
]

INDEX_NAME = "images"
# Bump when the stored layout or the embedding recipe changes: older stored indexes then count as stale.
INDEX_FORMAT = 1
SHOT_SELECTIONS = ("random", "retrieved")
_ENCODE_SLICE = 1024


class ImageEncoder(Protocol):
    """Anything that embeds images: ``encode(images) -> (len(images), dim)`` floats, and an ``identity`` string that
    changes whenever the embeddings would (a stored index built under another identity is stale)."""

    identity: str

    def encode(self, images: Sequence[Any]) -> np.ndarray: ...


@dataclass
class CallableImageEncoder:
    """An :class:`ImageEncoder` from a plain function ``images -> array`` and the identity the caller vouches for."""

    function: Callable[[Sequence[Any]], Any]
    identity: str

    def encode(self, images: Sequence[Any]) -> np.ndarray:
        return np.asarray(self.function(images), dtype=np.float32)


def _weights_hash(module) -> str:
    """A short hash of a module's parameters and buffers: a retrained or different model gets a new one."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().to("cpu").contiguous().view(-1).view(torch.uint8).numpy())
    return digest.hexdigest()[:16]


@dataclass
class _TorchImageEncoder:
    """Batches images through an image processor and a vision function on the model's device, without gradients."""

    preprocess: Callable[[list[Any]], Any]
    embed: Callable[[Any], Any]
    identity: str
    batch_size: int = 32

    def encode(self, images: Sequence[Any]) -> np.ndarray:
        import torch

        chunks = []
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                batch = [_as_rgb(image) for image in images[start : start + self.batch_size]]
                features = self.embed(self.preprocess(batch))
                chunks.append(features.flatten(1).float().cpu().numpy())
        if not chunks:
            raise ValueError("No images to encode.")
        return np.concatenate(chunks)


def _as_rgb(image: Any):
    from PIL import Image

    if isinstance(image, Image.Image):
        return image.convert("RGB") if image.mode != "RGB" else image
    return image


def frozen_image_encoder(model, processor, *, feature: str = "pooled", batch_size: int = 32) -> ImageEncoder:
    """The Frozen model's own image features: ``"pooled"`` (the vision backbone's pooled output, default) or
    ``"prefix"`` (the visual prefix ``get_image_features`` gives the LM, flattened)."""
    from frozen_hf.modeling_frozen import pool_vision_output

    if feature not in ("pooled", "prefix"):
        raise ValueError(f"feature must be 'pooled' or 'prefix', got {feature!r}.")
    vision = getattr(model, "vision_model", None) or model.model.vision_model
    device = next(model.parameters()).device

    def preprocess(images):
        return processor.image_processor(images, return_tensors="pt")["pixel_values"].to(device)

    if feature == "pooled":
        dtype = next(vision.parameters()).dtype

        def embed(pixel_values):
            return pool_vision_output(vision(pixel_values=pixel_values.to(dtype), return_dict=True))

        identity = f"frozen-pooled:{_weights_hash(vision)}"
    else:

        def embed(pixel_values):
            return model.get_image_features(pixel_values=pixel_values).pooler_output

        identity = f"frozen-prefix:{_weights_hash(vision)}:{_weights_hash(model.model.visual_prefix)}"
    model.eval()
    return _TorchImageEncoder(preprocess, embed, identity, batch_size)


def pretrained_image_encoder(name_or_path: str, *, batch_size: int = 32, device: str | None = None) -> ImageEncoder:
    """Any transformers vision model by folder or Hub id (ResNet, ViT, DINOv2, CLIP, SigLIP ...): its pooled
    output, or ``get_image_features`` for dual encoders such as CLIP and SigLIP."""
    import torch
    from transformers import AutoImageProcessor, AutoModel

    from frozen_hf.modeling_frozen import pool_vision_output

    image_processor = AutoImageProcessor.from_pretrained(name_or_path)
    model = AutoModel.from_pretrained(name_or_path).eval()
    if device:
        model.to(device)
    device = next(model.parameters()).device

    def preprocess(images):
        return image_processor(images, return_tensors="pt")["pixel_values"].to(device)

    def embed(pixel_values):
        if hasattr(model, "get_image_features"):
            out = model.get_image_features(pixel_values=pixel_values)
            return out if isinstance(out, torch.Tensor) else out.pooler_output
        return pool_vision_output(model(pixel_values=pixel_values, return_dict=True))

    # The weights, not the path, identify the encoder: a moved folder keeps its index current.
    return _TorchImageEncoder(preprocess, embed, f"{type(model).__name__}:{_weights_hash(model)}", batch_size)


def _normalised(vectors: np.ndarray) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2:
        raise ValueError(f"An encoder must return one vector per image, (num_images, dim); got shape {vectors.shape}.")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    # An all-zero embedding has no direction; leaving it at zero gives it similarity 0 to everything.
    return vectors / np.where(norms > 0, norms, 1.0)


def _write_atomically(path: Path, write: Callable[[str], None]) -> None:
    # Written beside the target, then renamed: a reader never sees half an index.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(str(tmp))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@dataclass
class Retrieved:
    """One retrieved example: its row index in the support data set, its cosine similarity and the row itself."""

    index: int
    score: float
    row: dict[str, Any]


class RetrievalIndex:
    """A FAISS index of a data set's images, attached to that data set (``dataset.get_index(name)``).

    Build (or reuse) one with :meth:`build`; query it with :meth:`search` or :meth:`nearest`. ``status`` says what
    :meth:`build` did: ``"built"`` (no stored index), ``"loaded"`` (reused) or ``"rebuilt"`` (the stored one was
    stale; ``stale_reason`` says why).
    """

    def __init__(self, dataset, encoder: ImageEncoder, *, image_column: str, name: str, path: Path | None,
                 status: str, stale_reason: str | None = None):
        self.dataset = dataset
        self.encoder = encoder
        self.image_column = image_column
        self.name = name
        self.path = path
        self.status = status
        self.stale_reason = stale_reason

    # ----------------------------------------------------------------- building

    @staticmethod
    def default_dir(dataset) -> Path:
        """``retrieval_index/`` beside the data set's Arrow files (a data set loaded from disk or the cache)."""
        files = getattr(dataset, "cache_files", None) or []
        if not files:
            raise ValueError(
                "This data set lives in memory only (no Arrow files), so there is no folder beside it to store the "
                "index in: pass index_dir=..., or save it with dataset.save_to_disk(folder) and reload it with "
                "datasets.load_from_disk(folder)."
            )
        return Path(files[0]["filename"]).parent / "retrieval_index"

    @classmethod
    def build(
        cls,
        dataset,
        encoder: ImageEncoder,
        *,
        index_dir: str | os.PathLike | None = None,
        image_column: str = "image",
        name: str = INDEX_NAME,
        rebuild: bool = False,
        save: bool = True,
    ) -> "RetrievalIndex":
        """The index of `dataset`'s `image_column` under `encoder`: loaded from `index_dir` when the stored one is
        current, else computed (and saved there unless ``save=False``).

        Args:
            dataset: a ``datasets.Dataset`` with an image column (PIL images after decoding).
            encoder: an :class:`ImageEncoder`; its ``identity`` is part of what makes a stored index current.
            index_dir: where ``<name>.faiss`` / ``<name>.json`` live (default: :meth:`default_dir`).
            rebuild: compute it even when a current one is stored.
        """
        if image_column not in dataset.column_names:
            raise ValueError(
                f"The data set has no column {image_column!r} (columns: {', '.join(dataset.column_names)}); "
                "pass image_column=..."
            )
        if len(dataset) == 0:
            raise ValueError("Cannot index an empty data set: retrieval needs at least one support example.")
        folder = Path(index_dir) if index_dir is not None else (cls.default_dir(dataset) if save else None)
        meta = {
            "format": INDEX_FORMAT,
            "dataset_fingerprint": dataset._fingerprint,
            "num_rows": len(dataset),
            "image_column": image_column,
            "encoder": encoder.identity,
            "metric": "cosine",
        }
        status, reason = "built", None
        if folder is not None:
            faiss_file, meta_file = folder / f"{name}.faiss", folder / f"{name}.json"
            if faiss_file.is_file() and meta_file.is_file():
                reason = "rebuild requested" if rebuild else _stale_reason(meta_file, meta)
                if reason is None:
                    dataset.load_faiss_index(name, str(faiss_file))
                    return cls(dataset, encoder, image_column=image_column, name=name, path=folder, status="loaded")
                status = "rebuilt"
        # In slices, so that a large data set never holds all its decoded images at once.
        embeddings = _normalised(np.concatenate([
            encoder.encode(dataset[start : start + _ENCODE_SLICE][image_column])
            for start in range(0, len(dataset), _ENCODE_SLICE)
        ]))
        if len(embeddings) != len(dataset):
            raise ValueError(f"The encoder returned {len(embeddings)} vectors for {len(dataset)} images.")
        try:
            import faiss
        except ImportError as err:
            raise ImportError(
                "Retrieval needs FAISS: pip install 'frozen-hf[retrieval]' (or pip install faiss-cpu)."
            ) from err

        dataset.add_faiss_index_from_external_arrays(
            embeddings, index_name=name, metric_type=faiss.METRIC_INNER_PRODUCT
        )
        if save and folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            meta["dim"] = int(embeddings.shape[1])
            _write_atomically(faiss_file, lambda tmp: dataset.save_faiss_index(name, tmp))
            _write_atomically(meta_file, lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=2) + "\n"))
        return cls(dataset, encoder, image_column=image_column, name=name, path=folder, status=status,
                   stale_reason=reason)

    # ----------------------------------------------------------------- querying

    def search(self, images: Sequence[Any], k: int) -> list[list[tuple[int, float]]]:
        """For each query image, the `k` nearest rows as ``(row index, cosine similarity)``, nearest first."""
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be an int >= 1, got {k!r}.")
        if k > len(self.dataset):
            raise ValueError(f"Asked for {k} examples but the support data set has {len(self.dataset)} rows.")
        if not len(images):
            return []
        queries = _normalised(self.encoder.encode(list(images)))
        result = self.dataset.search_batch(self.name, queries, k=k)
        return [
            [(int(i), float(s)) for i, s in zip(indices, scores)]
            for indices, scores in zip(result.total_indices, result.total_scores)
        ]

    def nearest(self, images: Sequence[Any], k: int) -> list[list[Retrieved]]:
        """Like :meth:`search`, with each retrieved row's content."""
        return [[Retrieved(i, s, self.dataset[i]) for i, s in hits] for hits in self.search(images, k)]


def _stale_reason(meta_file: Path, current: dict[str, Any]) -> str | None:
    try:
        stored = json.loads(meta_file.read_text())
    except (OSError, ValueError) as err:
        return f"unreadable index metadata ({err})"
    labels = {
        "format": "the index format",
        "dataset_fingerprint": "the data set (fingerprint)",
        "num_rows": "the number of rows",
        "image_column": "the image column",
        "encoder": "the image encoder",
        "metric": "the metric",
    }
    for key, label in labels.items():
        if stored.get(key) != current[key]:
            return f"{label} changed: {stored.get(key)!r} -> {current[key]!r}"
    return None


# --------------------------------------------------------------------------- prompts


def shot_rows(
    selection: str, index: RetrievalIndex, query_images: Sequence[Any], k: int, *, seed: int = 0
) -> list[list[tuple[int, float | None]]]:
    """The support rows that serve as each query's shots: ``"retrieved"`` (the k nearest, nearest last) or
    ``"random"`` (k distinct rows drawn per query, no similarity), as ``(row index, similarity)``."""
    if selection == "retrieved":
        # Nearest last: the most similar example sits right before the query, where the LM attends most.
        return [list(reversed(hits)) for hits in index.search(query_images, k)]
    if selection == "random":
        return [[(i, None) for i in rows] for rows in random_shot_rows(len(index.dataset), len(query_images), k, seed)]
    raise ValueError(f"Unknown shot selection {selection!r}; choose from {', '.join(SHOT_SELECTIONS)}.")


def random_shot_rows(pool_size: int, num_queries: int, k: int, seed: int = 0) -> list[list[int]]:
    """`k` distinct random rows of a pool of `pool_size` for each of `num_queries` queries (reproducible)."""
    if k > pool_size:
        raise ValueError(f"Asked for {k} examples but the support data set has {pool_size} rows.")
    rng = np.random.default_rng([seed, 104729, k])
    return [[int(i) for i in rng.choice(pool_size, size=k, replace=False)] for _ in range(num_queries)]


def _retrieved_metadata(rows: list[tuple[int, float | None]], selection: str) -> dict[str, Any]:
    return {"shot_selection": selection, "retrieved": [{"row": i, "score": s} for i, s in rows]}


def _with_columns(dataset, *columns: str):
    """`dataset`, once it is known to have every one of `columns`."""
    for column in columns:
        if column not in dataset.column_names:
            raise ValueError(f"The support data set has no column {column!r}; columns: {', '.join(dataset.column_names)}.")
    return dataset


def _column(row: dict[str, Any], name: str | None) -> Any:
    return None if name is None else row.get(name)


def retrieved_vqa_prompts(
    index: RetrievalIndex,
    query_images: Sequence[Any],
    questions: Sequence[str],
    k: int,
    *,
    selection: str = "retrieved",
    question_column: str = "question",
    answer_column: str = "answer",
    description_column: str | None = None,
    query_descriptions: Sequence[str | None] | None = None,
    targets: Sequence[Any] | None = None,
    seed: int = 0,
    layout: str = "paper",
) -> list[Prompt]:
    """VQA prompts (``<image> Question: q Answer: a`` shots, then the query, in the prompt builder's `layout`) whose
    `k` shots come from the index's data set, chosen by `selection`. Each prompt's ``metadata["retrieved"]`` names
    its shots."""
    if len(query_images) != len(questions):
        raise ValueError(f"Got {len(query_images)} query images but {len(questions)} questions.")
    dataset = _with_columns(index.dataset, question_column, answer_column)
    prompts: list[Prompt] = []
    for q, rows in enumerate(shot_rows(selection, index, query_images, k, seed=seed)):
        examples = [dataset[i] for i, _ in rows]
        shots = [(e[index.image_column], e[question_column], e[answer_column]) for e in examples]
        (prompt,) = vqa_prompts(
            [query_images[q]], [questions[q]], shots=shots,
            shot_descriptions=[_column(e, description_column) for e in examples],
            query_descriptions=None if query_descriptions is None else [query_descriptions[q]],
            targets=None if targets is None else [targets[q]], layout=layout,
        )
        prompts.append(_with_metadata(prompt, _retrieved_metadata(rows, selection)))
    return prompts


def retrieved_caption_prompts(
    index: RetrievalIndex,
    query_images: Sequence[Any],
    k: int,
    *,
    selection: str = "retrieved",
    caption_column: str = "caption",
    text: str = "",
    description_column: str | None = None,
    query_descriptions: Sequence[str | None] | None = None,
    targets: Sequence[Any] | None = None,
    seed: int = 0,
) -> list[Prompt]:
    """Captioning prompts with `k` captioned shots (``<image> caption`` each, then ``<image>`` + `text` for the
    query), the shots chosen from the index's data set by `selection`."""
    dataset = _with_columns(index.dataset, caption_column)
    prompts: list[Prompt] = []
    for q, rows in enumerate(shot_rows(selection, index, query_images, k, seed=seed)):
        examples = [dataset[i] for i, _ in rows]
        support = [
            Segment(e[caption_column].strip(), e[index.image_column], _column(e, description_column)) for e in examples
        ]
        query = Segment(text, query_images[q], None if query_descriptions is None else query_descriptions[q])
        (prompt,) = build_prompts(support, [query], targets=None if targets is None else [targets[q]])
        prompts.append(_with_metadata(prompt, _retrieved_metadata(rows, selection)))
    return prompts


def training_caption_style(model) -> str:
    """The Shapes caption style a model was trained on (its config's training record), ``"varied"`` when unrecorded."""
    record = getattr(model.config, "frozen_training", None) or {}
    return record.get("shapes_caption_style") or "varied"


def _with_metadata(prompt: Prompt, extra: dict[str, Any]) -> Prompt:
    from dataclasses import replace

    return replace(prompt, metadata={**prompt.metadata, **extra})


# --------------------------------------------------------------------------- evaluation tasks

SHOT_SELECTION_TASKS = ("shapes_vqa", "shapes_captions")


def shapes_task_with_shots(task: str, settings, model, processor, *, selection: str = "retrieved",
                           index_dir: str | os.PathLike | None = None, caption_style: str | None = None):
    """A Shapes VQA or captioning task (``frozen_hf.eval.tasks.TaskData``) whose ``settings.shots`` shots per query
    are chosen by `selection` from the Shapes ``train`` pool, so that ``random`` and ``retrieved`` rows of the
    same k differ only in which shots they show. The queries, references and scoring are the task's own
    (``build_task``); the setting label reads e.g. ``"4-shot retrieved"``. The index is built with the model's
    own vision encoder and stored in `index_dir` (default: the frozen-hf cache), reused while current.

    Caption shots are worded in `caption_style` (``frozen_hf.data.shapes.CAPTION_STYLES``); by default in the style
    the model was trained on (``config.frozen_training["shapes_caption_style"]``), else ``"varied"``. A shot in
    another wording than the model's own captions leads it away from them.
    """
    from dataclasses import replace

    from frozen_hf.bundled import frozen_hf_cache_dir
    from frozen_hf.data.shapes import load_shapes
    from frozen_hf.eval.tasks import ProtocolError, build_task

    if task not in SHOT_SELECTION_TASKS:
        raise ProtocolError(f"--shot-selection applies to {', '.join(SHOT_SELECTION_TASKS)}, not {task}.")
    if selection not in SHOT_SELECTIONS:
        raise ProtocolError(f"Unknown shot selection {selection!r}; choose from {', '.join(SHOT_SELECTIONS)}.")
    k = settings.shots
    if k < 1:
        raise ProtocolError("--shot-selection needs --shots >= 1 (the number of examples before each query).")
    # The task's queries and references, as the 0-shot task builds them.
    data = build_task(task, replace(settings, shots=0))
    size = settings.image_size or 64
    kind = "vqa" if task == "shapes_vqa" else "captions"
    # The same pool size as the task's own random shots use.
    pool_rows = max(200, 4 * k)
    style = {}
    if kind == "captions":
        style = {"caption_style": caption_style or training_caption_style(model)}
    pool = load_shapes(kind, "train", num_samples=pool_rows, image_size=size, seed=settings.seed, **style)
    if index_dir is None:
        name = "-".join([f"shapes-{kind}", *style.values(), f"{pool_rows}-{size}px-seed{settings.seed}"])
        index_dir = frozen_hf_cache_dir() / "retrieval" / name
    index = RetrievalIndex.build(pool, frozen_image_encoder(model, processor), index_dir=index_dir)
    queries = [p.suffix_images[0] for p in data.prompts]
    descriptions = [p.suffix_descriptions[0] for p in data.prompts]
    common = dict(selection=selection, description_column="description", query_descriptions=descriptions,
                  seed=settings.seed)
    if kind == "vqa":
        rows = load_shapes("vqa", settings.split, num_samples=settings.num_episodes, image_size=size, seed=settings.seed)
        prompts = retrieved_vqa_prompts(index, queries, list(rows["question"]), k, layout=settings.layout, **common)
    else:
        prompts = retrieved_caption_prompts(index, queries, k, **common)
    return replace(data, prompts=prompts, settings=settings, setting_label=f"{k}-shot {selection}")
