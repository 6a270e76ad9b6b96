"""The image-caption data sets a training run trains on, loaded and checked before any training.

[`load_caption_datasets`] loads what a training config's data arguments name: the Shapes world (captions,
optionally with VQA pairs mixed in), any ``datasets`` image-caption set (streaming where it is large), a local
``imagefolder`` or a ``save_to_disk`` folder. [`check_caption_dataset`] refuses a data set without an image
column or a text caption column, naming the columns it has.
"""

from __future__ import annotations

import json
import logging
import os
from typing import TYPE_CHECKING

from ..train.errors import TrainingConfigError
from .collator import EPISODE_IMAGES_COLUMN, undecoded_images

if TYPE_CHECKING:
    from ..train.arguments import FrozenDataArguments

logger = logging.getLogger(__name__)

__all__ = ["check_caption_dataset", "load_caption_datasets"]


def _load_shapes(data_args, image_size: int):
    from datasets import concatenate_datasets

    from ..eval.prompting import vqa_segment_text
    from .shapes import load_shapes

    common = dict(
        image_size=data_args.shapes_image_size or image_size,
        seed=data_args.shapes_seed,
        min_objects=data_args.shapes_min_objects,
        max_objects=data_args.shapes_max_objects,
        caption_style=data_args.shapes_caption_style,
    )
    num_vqa = round(data_args.shapes_num_train * data_args.shapes_vqa_fraction)
    train = load_shapes("captions", data_args.train_split, num_samples=data_args.shapes_num_train - num_vqa, **common)
    if num_vqa:
        # The VQA rows are laid out exactly as the evaluation's VQA prompts, answer included.
        vqa = load_shapes(
            "vqa", data_args.train_split, num_samples=num_vqa, image_size=common["image_size"], seed=data_args.shapes_seed
        )
        vqa = vqa.map(
            lambda row: {"caption": vqa_segment_text(row["question"], row["answer"])},
            remove_columns=[c for c in vqa.column_names if c != "image"],
        )
        train = concatenate_datasets([train.select_columns(["image", "caption"]), vqa])
        train = train.shuffle(seed=data_args.shapes_seed)
    if data_args.shapes_binding_episodes:
        episodes = _binding_training_episodes(data_args, common["image_size"])
        train = concatenate_datasets([_with_episode_images_column(train.select_columns(["image", "caption"])), episodes])
        train = train.shuffle(seed=data_args.shapes_seed)
    evaluation = None
    if data_args.eval_split:
        evaluation = load_shapes("captions", data_args.eval_split, num_samples=data_args.shapes_num_eval, **common)
    return train, evaluation


def _with_episode_images_column(dataset):
    from datasets import Image, List

    return dataset.add_column(EPISODE_IMAGES_COLUMN, [[] for _ in range(len(dataset))], feature=List(Image()))


def _binding_training_episodes(data_args, image_size: int):
    """Fast-binding episodes of the training split as training rows: the whole prompt, answer included, in
    ``caption`` (one image marker per image) and its images in ``episode_images``.

    Episodes cycle through 2 .. ``shapes_binding_max_ways`` ways and 1 .. ``shapes_binding_max_shots`` inner shots,
    with task induction, and are laid out by the one prompt builder in ``shapes_binding_layout``. Their names come
    from ``TRAINING_NONSENSE_NAMES``, which no evaluation uses.
    """
    from datasets import Features, Image, List, Value, concatenate_datasets

    from ..eval.prompting import open_ended_prompts
    from .shapes import TRAINING_NONSENSE_NAMES, load_shapes

    settings = [
        (ways, shots)
        for ways in range(2, data_args.shapes_binding_max_ways + 1)
        for shots in range(1, data_args.shapes_binding_max_shots + 1)
    ]
    parts = []
    for index, (ways, shots) in enumerate(settings):
        count = data_args.shapes_binding_episodes // len(settings) + (index < data_args.shapes_binding_episodes % len(settings))
        if count:
            parts.append(
                load_shapes(
                    "open_ended", data_args.train_split, num_samples=count, image_size=image_size,
                    seed=data_args.shapes_seed, ways=ways, inner_shots=shots, name_pool=TRAINING_NONSENSE_NAMES,
                )
            )

    def as_training_row(episode):
        (prompt,) = open_ended_prompts(
            episode["support_images"], episode["support_names"], [episode["query_image"]],
            task_induction=True, names=episode["names"], layout=data_args.shapes_binding_layout,
        )
        return {"image": None, "caption": f"{prompt.text} {episode['answer']}", EPISODE_IMAGES_COLUMN: prompt.images}

    # PNG bytes pass through as they are, not decoded and encoded again.
    episodes = concatenate_datasets(parts).cast_column("support_images", List(Image(decode=False)))
    episodes = episodes.cast_column("query_image", Image(decode=False))
    features = Features({"image": Image(), "caption": Value("string"), EPISODE_IMAGES_COLUMN: List(Image())})
    return episodes.map(as_training_row, remove_columns=episodes.column_names, features=features)


def _load_split(data_args, split: str):
    from datasets import load_dataset, load_from_disk

    source = data_args.dataset
    if os.path.isdir(source) and (
        os.path.isfile(os.path.join(source, "dataset_dict.json")) or os.path.isfile(os.path.join(source, "state.json"))
    ):
        loaded = load_from_disk(source)
        if hasattr(loaded, "keys"):
            if split not in loaded:
                raise KeyError(split)
            loaded = loaded[split]
        elif split != data_args.train_split:
            raise KeyError(split)
        return loaded.to_iterable_dataset() if data_args.streaming else loaded
    data_files = data_args.data_files
    if isinstance(data_files, str) and data_files.strip().startswith("{"):
        data_files = json.loads(data_files)
    return load_dataset(
        source,
        data_args.dataset_config,
        data_dir=data_args.data_dir,
        data_files=data_files,
        split=split,
        streaming=data_args.streaming,
        revision=data_args.revision,
    )


def _is_missing_split(err: Exception) -> bool:
    return isinstance(err, KeyError) or (isinstance(err, ValueError) and "split" in str(err).lower())


def load_caption_datasets(data_args: FrozenDataArguments, image_size: int = 224, seed: int = 42):
    """The training and (optional) validation image-caption data sets named by ``data_args``, checked.

    Image columns come back undecoded (``datasets.Image(decode=False)``) so that bad files are skipped by
    the collator instead of failing inside the data loader.

    Returns:
        ``(train_dataset, eval_dataset_or_None)``.

    Raises:
        TrainingConfigError: a split is missing, or a data set lacks the image or caption column, or the
            caption column holds something other than text.
    """
    if data_args.dataset == "shapes":
        train, evaluation = _load_shapes(data_args, image_size)
    else:
        try:
            train = _load_split(data_args, data_args.train_split)
        except Exception as err:
            if _is_missing_split(err):
                raise TrainingConfigError(
                    f"Data set {data_args.dataset!r} has no split {data_args.train_split!r} (train_split)."
                ) from err
            raise
        evaluation = None
        if data_args.eval_split:
            try:
                evaluation = _load_split(data_args, data_args.eval_split)
            except Exception as err:
                if not _is_missing_split(err):
                    raise
                if data_args.eval_split_size:
                    train, evaluation = _carve_eval(train, data_args.eval_split_size, seed)
                else:
                    logger.warning(
                        "Data set %r has no split %r: training without validation data (set eval_split_size to carve "
                        "one out of the training split).",
                        data_args.dataset,
                        data_args.eval_split,
                    )
    check_caption_dataset(train, data_args.image_column, data_args.caption_column, "training")
    if evaluation is not None:
        check_caption_dataset(evaluation, data_args.image_column, data_args.caption_column, "validation")

    train = _limit(train, data_args.max_train_samples)
    evaluation = _limit(evaluation, data_args.max_eval_samples)
    train = undecoded_images(train, data_args.image_column)
    if evaluation is not None:
        evaluation = undecoded_images(evaluation, data_args.image_column)
    if data_args.streaming and hasattr(train, "shuffle") and not hasattr(train, "__len__"):
        train = train.shuffle(seed=seed, buffer_size=data_args.shuffle_buffer_size)
    return train, evaluation


def _carve_eval(train, size: float, seed: int):
    if not hasattr(train, "__len__"):
        raise TrainingConfigError("eval_split_size needs a non-streaming training split.")
    count = int(size) if size >= 1 else max(1, int(round(len(train) * size)))
    split = train.train_test_split(test_size=count, seed=seed, shuffle=True)
    return split["train"], split["test"]


def _limit(dataset, count: int | None):
    if dataset is None or count is None:
        return dataset
    if hasattr(dataset, "__len__"):
        return dataset.select(range(min(count, len(dataset))))
    return dataset.take(count)


def check_caption_dataset(dataset, image_column: str, caption_column: str, name: str = "training") -> None:
    """Checks that ``dataset`` has an image column and a text caption column.

    Raises:
        TrainingConfigError: naming the missing column (and the columns there are) or the caption
            column's actual type.
    """
    from datasets import Image as ImageFeature
    from datasets import LargeList, List, Sequence as SequenceFeature, Value

    features = getattr(dataset, "features", None)
    if features is None:
        # Streaming data sets without declared features: look at the first row.
        first = next(iter(dataset), None)
        if first is None:
            raise TrainingConfigError(f"The {name} data set is empty.")
        columns = list(first)
    else:
        columns = list(features)
    for column, option, what in (
        (image_column, "image_column", "images"),
        (caption_column, "caption_column", "captions"),
    ):
        if column not in columns:
            raise TrainingConfigError(
                f"The {name} data set has no column {column!r} for {what}; its columns are {columns}. "
                f"Set {option} to the right one."
            )
    if features is None:
        value = first[caption_column]
        if not (isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))):
            raise TrainingConfigError(
                f"The {name} data set's caption column {caption_column!r} holds {type(value).__name__}, not text."
            )
        return
    caption = features[caption_column]
    is_text = isinstance(caption, Value) and caption.dtype in ("string", "large_string")
    if isinstance(caption, (List, LargeList, SequenceFeature)):
        inner = getattr(caption, "feature", None)
        is_text = isinstance(inner, Value) and inner.dtype in ("string", "large_string")
    if not is_text:
        raise TrainingConfigError(
            f"The {name} data set's caption column {caption_column!r} has type {caption}, but captions must be "
            "strings (or lists of strings). Set caption_column to the text column."
        )
    image = features[image_column]
    if not isinstance(image, ImageFeature) and not (isinstance(image, Value) and image.dtype in ("string", "binary")):
        raise TrainingConfigError(
            f"The {name} data set's image column {image_column!r} has type {image}; expected an Image feature, "
            "file paths or image bytes."
        )
