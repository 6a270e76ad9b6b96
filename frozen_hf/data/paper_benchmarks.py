"""Loaders for the paper's real benchmarks, from their released files on local disk.

Every loader returns a :class:`datasets.Dataset` whose image columns are ``datasets.Image``
features holding file *paths*: images are decoded lazily, when a row is read.

VQAv2 and OKVQA (official release layout)
-----------------------------------------
* questions JSON: ``{"questions": [{"image_id", "question", "question_id"}, ...], ...}``
  (VQAv2: ``v2_OpenEnded_mscoco_<split>_questions.json``;
  OKVQA: ``OpenEnded_mscoco_<split>_questions.json``);
* annotations JSON: ``{"annotations": [{"question_id", "image_id", "answers": [{"answer",
  "answer_confidence", "answer_id"}, ...], "multiple_choice_answer", "question_type",
  "answer_type"}, ...], ...}`` (VQAv2: ``v2_mscoco_<split>_annotations.json``;
  OKVQA: ``mscoco_<split>_annotations.json``);
* COCO 2014 images: ``<split>/COCO_<split>_<image_id:012d>.jpg`` (OKVQA also uses COCO val2014 /
  train2014). COCO 2017-style names (``<image_id:012d>.jpg``) are accepted too.

Few-shot VQA takes its support examples from another pool than the queries (the paper took them
from the training set): :func:`load_vqa_with_support` returns both.

Frozen's few-shot benchmarks: ``open_ended_mi``, ``real_name_mi``, ``fast_vqa``, ``guided_vqa``
-------------------------------------------------------------------------------------------
Released by the paper's authors as ``<task>.tar.gz`` archives (DeepMind's
"dm-few-shot-learning-benchmarks"); their README describes the layout, which
:func:`load_fewshot_benchmark` reads:

* each archive extracts to a folder ``<task>/`` holding JPEG images named
  ``<task>_shots_<n>_ways_<m>_id_<x>_image_<i>.jpg`` (support image ``i`` of question ``x``) and
  ``<task>_shots_<n>_ways_<m>_id_<x>_question.jpg`` (the query image);
* and one JSON file per setting, ``<task>_shots_<n>_ways_<m>_all_questions.json``: a list of
  dicts, one per question, with ``image_1``..``image_K`` (support image file names, relative to
  the folder), ``caption_1``..``caption_K`` (the text that goes with each support image),
  ``question_image``, ``question``, ``answer`` and ``question_id``. (Images are also found when
  the JSON has been moved one level up, beside the ``<task>/`` image folder.)

Certainty: the file names, the folder layout and the keys ``image_<i>``, ``caption_<i>``,
``question_image``, ``question``, ``answer`` and ``question_id`` are those of the release README
and of public code that reads the released files. Not confirmed from the files themselves: the
exact wording of the captions, whether ``question`` is empty for the miniImageNet tasks, and the
JSON type of ``question_id``. The reader therefore derives K from the keys present, accepts a
missing or null ``question`` (as ""), stores ``question_id`` as a string, and keeps any other
scalar fields in an ``extra`` JSON column instead of failing.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Sequence, Tuple, Union

import datasets

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

__all__ = [
    "VQA_BENCHMARKS",
    "FEWSHOT_TASKS",
    "FEWSHOT_SETTINGS",
    "vqa_features",
    "fewshot_features",
    "load_vqa",
    "vqa_file_names",
    "load_vqa_benchmark",
    "load_vqa_with_support",
    "fewshot_json_name",
    "load_fewshot_benchmark",
]

VQA_BENCHMARKS: Dict[str, Dict[str, str]] = {
    "vqav2": {
        "questions": "v2_OpenEnded_mscoco_{split}_questions.json",
        "annotations": "v2_mscoco_{split}_annotations.json",
        "url": "https://visualqa.org/download.html",
    },
    "okvqa": {
        "questions": "OpenEnded_mscoco_{split}_questions.json",
        "annotations": "mscoco_{split}_annotations.json",
        "url": "https://okvqa.allenai.org/download.html",
    },
}
_COCO_URL = "https://cocodataset.org/#download"

FEWSHOT_TASKS: Tuple[str, ...] = ("open_ended_mi", "real_name_mi", "fast_vqa", "guided_vqa")
# The (shots, ways) settings released for each task.
FEWSHOT_SETTINGS: Dict[str, Tuple[Tuple[int, int], ...]] = {
    "open_ended_mi": tuple((s, w) for w in (2, 5) for s in (1, 3, 5)),
    "real_name_mi": tuple((s, w) for w in (2, 5) for s in (1, 3, 5)),
    "fast_vqa": tuple((s, 2) for s in (1, 3, 5)),
    "guided_vqa": tuple((s, 2) for s in (1, 3, 5)),
}
_FEWSHOT_URL = "https://storage.googleapis.com/dm-few-shot-learning-benchmarks/{task}.tar.gz"


def vqa_features() -> datasets.Features:
    """The columns of a VQA data set from :func:`load_vqa`."""
    return datasets.Features(
        {
            "question_id": datasets.Value("int64"),
            "image_id": datasets.Value("int64"),
            "question": datasets.Value("string"),
            "answers": datasets.List(datasets.Value("string")),
            "multiple_choice_answer": datasets.Value("string"),
            "question_type": datasets.Value("string"),
            "answer_type": datasets.Value("string"),
            "image": datasets.Image(),
        }
    )


def fewshot_features() -> datasets.Features:
    """The columns of a few-shot benchmark from :func:`load_fewshot_benchmark`."""
    return datasets.Features(
        {
            "question_id": datasets.Value("string"),
            "task": datasets.Value("string"),
            "shots": datasets.Value("int32"),
            "ways": datasets.Value("int32"),
            "support_images": datasets.List(datasets.Image()),
            "support_captions": datasets.List(datasets.Value("string")),
            "question_image": datasets.Image(),
            "question": datasets.Value("string"),
            "answer": datasets.Value("string"),
            "extra": datasets.Value("string"),
        }
    )


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _read_json(path: Path, what: str, fix: str) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: expected the file {path}. {fix}")
    try:
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{what} at {path} is not valid JSON ({e}); re-download or re-extract it. {fix}") from e


def _require_dir(path: Path, what: str, fix: str) -> None:
    if not path.is_dir():
        raise FileNotFoundError(f"{what} not found: expected the folder {path}. {fix}")


def _resolve_missing(
    missing_files: List[str], skipped: int, total: int, policy: str, what: str, where: Path, fix: str
) -> None:
    if not skipped:
        return
    if policy == "error" or skipped == total:
        shown = ", ".join(missing_files[:3]) + (" ..." if len(missing_files) > 3 else "")
        raise FileNotFoundError(
            f"{skipped} of {total} {what} have missing image files under {where} (e.g. {shown}). {fix}"
        )
    # A long evaluation should not die for a few absent files: skip them, and say how many.
    logger.warning("skipped %d of %d %s whose image files are missing under %s", skipped, total, what, where)


# --------------------------------------------------------------------------------------------
# VQAv2 / OKVQA
# --------------------------------------------------------------------------------------------


def _coco_image_path(images_dir: Path, image_id: int, subtype: Optional[str]) -> Optional[Path]:
    candidates = []
    if subtype:
        candidates.append(images_dir / f"COCO_{subtype}_{image_id:012d}.jpg")
    candidates.append(images_dir / f"{image_id:012d}.jpg")
    for c in candidates:
        if c.is_file():
            return c
    return None


def _guess_subtype(questions: Dict[str, Any], images_dir: Path) -> Optional[str]:
    subtype = questions.get("data_subtype")
    if isinstance(subtype, str) and subtype:
        return subtype
    # Without the field, take it from any COCO_<subtype>_<id>.jpg in the folder.
    for name in os.listdir(images_dir):
        m = re.match(r"COCO_([A-Za-z]+\d+)_\d{12}\.jpg$", name)
        if m:
            return m.group(1)
    return None


def load_vqa(
    questions_file: PathLike,
    annotations_file: PathLike,
    images_dir: PathLike,
    *,
    image_subtype: Optional[str] = None,
    missing_images: Literal["skip", "error"] = "skip",
    max_questions: Optional[int] = None,
) -> datasets.Dataset:
    """Load a VQAv2 or OKVQA split from its official questions + annotations JSON and COCO images.

    Args:
        questions_file: the questions JSON (``{"questions": [...]}``).
        annotations_file: the annotations JSON (``{"annotations": [...]}``).
        images_dir: the folder of COCO images (e.g. ``.../val2014``).
        image_subtype: the COCO split in the file names (``"val2014"`` for
            ``COCO_val2014_<id>.jpg``); by default the questions file's ``data_subtype``.
        missing_images: ``"skip"`` (default) drops questions whose image file is absent and logs
            how many; ``"error"`` raises. Raises anyway when no image at all is found.
        max_questions: keep only the first N questions (in file order), e.g. for a quick run.

    Returns:
        A Dataset with columns ``question_id`` (int64), ``image_id`` (int64), ``question`` (str),
        ``answers`` (list of str: the human answers, 10 in VQAv2/OKVQA), ``multiple_choice_answer``,
        ``question_type``, ``answer_type`` (str) and ``image`` (``datasets.Image``, lazily decoded).
    """
    qpath, apath, idir = Path(questions_file), Path(annotations_file), Path(images_dir)
    fix = (
        "Download the VQAv2 questions/annotations from https://visualqa.org/download.html or the "
        "OKVQA ones from https://okvqa.allenai.org/download.html, and the COCO 2014 images from "
        f"{_COCO_URL}, then pass their local paths."
    )
    questions = _read_json(qpath, "VQA questions file", fix)
    annotations = _read_json(apath, "VQA annotations file", fix)
    _require_dir(idir, "COCO images folder", fix)
    if not isinstance(questions, dict) or "questions" not in questions:
        raise ValueError(f"{qpath} is not a VQA questions file: it has no top-level 'questions' list. {fix}")
    if not isinstance(annotations, dict) or "annotations" not in annotations:
        raise ValueError(f"{apath} is not a VQA annotations file: it has no top-level 'annotations' list. {fix}")

    by_qid = {int(a["question_id"]): a for a in annotations["annotations"]}
    subtype = image_subtype or _guess_subtype(questions, idir)
    qs = questions["questions"]
    if max_questions is not None:
        qs = qs[:max_questions]

    columns: Dict[str, List[Any]] = {k: [] for k in vqa_features()}
    missing: List[str] = []
    for q in qs:
        qid, image_id = int(q["question_id"]), int(q["image_id"])
        ann = by_qid.get(qid)
        if ann is None:
            raise ValueError(
                f"question {qid} of {qpath} has no annotation in {apath}; the two files must be "
                "the same split of the same benchmark"
            )
        path = _coco_image_path(idir, image_id, subtype)
        if path is None:
            missing.append(f"COCO_{subtype}_{image_id:012d}.jpg" if subtype else f"{image_id:012d}.jpg")
            continue
        columns["question_id"].append(qid)
        columns["image_id"].append(image_id)
        columns["question"].append(q["question"])
        columns["answers"].append([a["answer"] for a in ann["answers"]])
        columns["multiple_choice_answer"].append(ann.get("multiple_choice_answer", ""))
        columns["question_type"].append(ann.get("question_type", ""))
        columns["answer_type"].append(ann.get("answer_type", ""))
        columns["image"].append(str(path))
    _resolve_missing(missing, len(missing), len(qs), missing_images, "questions", idir, fix)
    return datasets.Dataset.from_dict(columns, features=vqa_features())


def vqa_file_names(benchmark: str, split: str) -> Tuple[str, str]:
    """The official (questions, annotations) file names of ``benchmark`` ("vqav2" or "okvqa")
    for a COCO split such as ``"val2014"`` or ``"train2014"``."""
    if benchmark not in VQA_BENCHMARKS:
        raise ValueError(f"unknown VQA benchmark {benchmark!r}; choose from {sorted(VQA_BENCHMARKS)}")
    spec = VQA_BENCHMARKS[benchmark]
    return spec["questions"].format(split=split), spec["annotations"].format(split=split)


def load_vqa_benchmark(
    benchmark: str,
    root: PathLike,
    split: str = "val2014",
    *,
    images_dir: Optional[PathLike] = None,
    **kwargs: Any,
) -> datasets.Dataset:
    """Load VQAv2 or OKVQA from a folder laid out as released.

    ``root`` holds the official JSON files (see :func:`vqa_file_names`) and, unless
    ``images_dir`` is given, the COCO images in ``root/<split>/``. Other keyword arguments go to
    :func:`load_vqa`.
    """
    qname, aname = vqa_file_names(benchmark, split)
    root = Path(root)
    return load_vqa(
        root / qname,
        root / aname,
        Path(images_dir) if images_dir is not None else root / split,
        image_subtype=split,
        **kwargs,
    )


def load_vqa_with_support(
    benchmark: str,
    root: PathLike,
    *,
    query_split: str = "val2014",
    support_split: str = "train2014",
    query_images_dir: Optional[PathLike] = None,
    support_images_dir: Optional[PathLike] = None,
    **kwargs: Any,
) -> datasets.DatasetDict:
    """Queries and a disjoint pool of few-shot support examples, as the paper did (queries from
    the validation set, shots from the training set).

    Returns a DatasetDict ``{"query": ..., "support": ...}`` with the columns of :func:`load_vqa`.
    """
    query = load_vqa_benchmark(benchmark, root, query_split, images_dir=query_images_dir, **kwargs)
    support = load_vqa_benchmark(benchmark, root, support_split, images_dir=support_images_dir, **kwargs)
    return datasets.DatasetDict({"query": query, "support": support})


# --------------------------------------------------------------------------------------------
# open_ended_mi, real_name_mi, fast_vqa, guided_vqa
# --------------------------------------------------------------------------------------------

_KEY_RE = re.compile(r"^(image|caption)_(\d+)$")
_KNOWN_KEYS = {"question_image", "question", "answer", "question_id"}


def fewshot_json_name(task: str, shots: int, ways: int) -> str:
    """File name of a released setting, e.g. ``open_ended_mi_shots_1_ways_2_all_questions.json``."""
    return f"{task}_shots_{shots}_ways_{ways}_all_questions.json"


def _fewshot_dir(task: str, root: Path, json_name: str) -> Path:
    # Accept the extracted task folder itself or the folder the archive was extracted into.
    for cand in (root, root / task):
        if (cand / json_name).is_file():
            return cand
    raise FileNotFoundError(
        f"{task} benchmark file {json_name} not found: looked in {root} and {root / task}. Download "
        f"{_FEWSHOT_URL.format(task=task)} (the Frozen paper's released benchmark), extract it with "
        f"`tar -xzf {task}.tar.gz`, and pass the extracted '{task}' folder (or its parent) as root."
    )


def _support_index(record: Dict[str, Any]) -> List[int]:
    idx = sorted({int(m.group(2)) for k in record if (m := _KEY_RE.match(k)) and m.group(1) == "image"})
    return idx


def _fewshot_image_base(task: str, folder: Path, records: Sequence[Dict[str, Any]]) -> Path:
    # The images sit beside the JSON in the released archive; some users keep the JSON one level
    # up from the image folder, so look there too before declaring images missing.
    for rec in records:
        name = rec.get("question_image") if isinstance(rec, dict) else None
        if isinstance(name, str):
            for base in (folder, folder / task):
                if (base / name).is_file():
                    return base
            break
    return folder


def load_fewshot_benchmark(
    task: str,
    root: PathLike,
    *,
    shots: int,
    ways: int,
    missing_images: Literal["skip", "error"] = "skip",
    max_questions: Optional[int] = None,
) -> datasets.Dataset:
    """Load one setting of Frozen's released few-shot benchmarks.

    Args:
        task: one of :data:`FEWSHOT_TASKS`.
        root: the extracted ``<task>`` folder, or the folder that holds it.
        shots: inner-shots per category (1, 3 or 5).
        ways: number of categories (2 or 5 for the miniImageNet tasks, 2 for the VQA tasks).
        missing_images: ``"skip"`` (default) drops questions with an absent image file and logs
            how many; ``"error"`` raises. Raises anyway when every question lacks an image.
        max_questions: keep only the first N questions (in file order).

    Returns:
        A Dataset with one row per question and columns ``question_id`` (str), ``task``,
        ``shots``, ``ways``, ``support_images`` (list of ``datasets.Image``, in the file's
        order ``image_1``, ``image_2``, ...), ``support_captions`` (list of str, aligned with
        ``support_images``; "" where a caption is absent), ``question_image`` (Image),
        ``question`` (str; "" where the file has none), ``answer`` (str), and ``extra`` (JSON
        text of any other fields in the record).
    """
    if task not in FEWSHOT_TASKS:
        raise ValueError(f"unknown few-shot benchmark {task!r}; choose from {list(FEWSHOT_TASKS)}")
    if (shots, ways) not in FEWSHOT_SETTINGS[task]:
        released = ", ".join(f"shots={s} ways={w}" for s, w in FEWSHOT_SETTINGS[task])
        raise ValueError(f"{task} was released for {released}; got shots={shots} ways={ways}")
    json_name = fewshot_json_name(task, shots, ways)
    folder = _fewshot_dir(task, Path(root), json_name)
    fix = f"Re-extract {task}.tar.gz from {_FEWSHOT_URL.format(task=task)}."
    records = _read_json(folder / json_name, f"{task} questions file", fix)
    if isinstance(records, dict):
        # Tolerate a {"questions": [...]}-style wrapper around the list of question dicts.
        lists = [v for v in records.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise ValueError(f"{folder / json_name}: expected a JSON list of question records")
        records = lists[0]
    if max_questions is not None:
        records = records[:max_questions]

    image_base = _fewshot_image_base(task, folder, records)
    columns: Dict[str, List[Any]] = {k: [] for k in fewshot_features()}
    missing: List[str] = []
    skipped = 0
    for n, rec in enumerate(records):
        for key in ("question_image", "answer"):
            if key not in rec:
                raise ValueError(
                    f"{folder / json_name}: record {n} has no {key!r} field (fields: {sorted(rec)}); "
                    f"this is not a {task} questions file. {fix}"
                )
        idx = _support_index(rec)
        files = [rec[f"image_{i}"] for i in idx] + [rec["question_image"]]
        paths = [image_base / f for f in files]
        absent = [f for f, p in zip(files, paths) if not p.is_file()]
        if absent:
            missing.extend(absent)
            skipped += 1
            continue
        captions = [rec.get(f"caption_{i}") or "" for i in idx]
        extra = {k: v for k, v in rec.items() if k not in _KNOWN_KEYS and not _KEY_RE.match(k)}
        columns["question_id"].append(str(rec.get("question_id", n)))
        columns["task"].append(task)
        columns["shots"].append(shots)
        columns["ways"].append(ways)
        columns["support_images"].append([str(p) for p in paths[:-1]])
        columns["support_captions"].append([str(c) for c in captions])
        columns["question_image"].append(str(paths[-1]))
        columns["question"].append(str(rec.get("question") or ""))
        answer = rec["answer"]
        columns["answer"].append(answer if isinstance(answer, str) else json.dumps(answer))
        columns["extra"].append(json.dumps(extra, sort_keys=True, default=str))
    _resolve_missing(missing, skipped, len(records), missing_images, f"{task} questions", image_base, fix)
    return datasets.Dataset.from_dict(columns, features=fewshot_features())
