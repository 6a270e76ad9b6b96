"""Write tiny benchmark files in the official release formats (see frozen_hf.data.paper_benchmarks).

Tests call these functions at test time to build fixtures under a temporary folder, so no binary
files live in the repository. Run as a script to write them somewhere for a look:

    python tests/helpers/make_fixtures.py /tmp/frozen_fixtures
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from PIL import Image

# Distinct colours so a test can tell which file an Image column decoded.
PALETTE: List[Tuple[int, int, int]] = [
    (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255),
    (128, 0, 0), (0, 128, 0), (0, 0, 128), (128, 128, 0), (0, 128, 128), (128, 0, 128),
]

VQA_ROWS: List[Dict] = [
    # (image_id, question, 10 answers, multiple_choice_answer, question_type, answer_type)
    {"image_id": 42, "question_id": 420, "question": "What color is the square?",
     "answers": ["red"] * 7 + ["dark red", "maroon", "red"], "mc": "red",
     "qtype": "what color is the", "atype": "other"},
    {"image_id": 42, "question_id": 421, "question": "How many squares are there?",
     "answers": ["2"] * 6 + ["two", "2", "3", "2"], "mc": "2", "qtype": "how many",
     "atype": "number"},
    {"image_id": 7, "question_id": 70, "question": "Is it sunny?",
     "answers": ["yes"] * 10, "mc": "yes", "qtype": "is it", "atype": "yes/no"},
]


def write_jpeg(path: Path, color: Tuple[int, int, int], size: int = 8) -> Path:
    """Write a tiny solid-colour JPEG (quality high enough that the colour survives)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), color).save(path, format="JPEG", quality=95)
    return path


def make_vqa_fixture(
    root: Path,
    benchmark: str = "vqav2",
    split: str = "val2014",
    rows: Sequence[Dict] = VQA_ROWS,
    write_images: bool = True,
) -> Dict[str, Path]:
    """Write a VQAv2- or OKVQA-style split under ``root``: the official questions and annotations
    JSON names, and ``root/<split>/COCO_<split>_<id:012d>.jpg`` images.

    Returns the paths: ``{"questions", "annotations", "images_dir"}``.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    prefix = "v2_" if benchmark == "vqav2" else ""
    qfile = root / f"{prefix}OpenEnded_mscoco_{split}_questions.json"
    afile = root / f"{prefix}mscoco_{split}_annotations.json"
    questions = {
        "info": {"description": "fixture"}, "task_type": "Open-Ended", "data_type": "mscoco",
        "license": {}, "data_subtype": split,
        "questions": [
            {"image_id": r["image_id"], "question": r["question"], "question_id": r["question_id"]}
            for r in rows
        ],
    }
    annotations = {
        "info": {"description": "fixture"}, "license": {}, "data_subtype": split,
        "annotations": [
            {
                "question_id": r["question_id"], "image_id": r["image_id"],
                "question_type": r["qtype"], "answer_type": r["atype"],
                "multiple_choice_answer": r["mc"],
                "answers": [
                    {"answer": a, "answer_confidence": "yes", "answer_id": i + 1}
                    for i, a in enumerate(r["answers"])
                ],
            }
            for r in rows
        ],
    }
    qfile.write_text(json.dumps(questions))
    afile.write_text(json.dumps(annotations))
    images_dir = root / split
    images_dir.mkdir(parents=True, exist_ok=True)
    if write_images:
        for r in rows:
            write_jpeg(images_dir / f"COCO_{split}_{r['image_id']:012d}.jpg", PALETTE[r["image_id"] % len(PALETTE)])
    return {"questions": qfile, "annotations": afile, "images_dir": images_dir}


NONSENSE = ["dax", "blicket", "wug", "zup", "fep"]
REAL = ["eagle", "golden retriever", "mushroom", "tank", "lion"]


def make_fewshot_fixture(
    root: Path, task: str, shots: int, ways: int, n_questions: int = 2
) -> Path:
    """Write one setting of a Frozen few-shot benchmark under ``root/<task>/``, as the released
    archive extracts: JPEGs ``<task>_shots_<n>_ways_<m>_id_<x>_image_<i>.jpg`` and
    ``..._question.jpg``, and ``<task>_shots_<n>_ways_<m>_all_questions.json`` (a list of dicts
    with image_i / caption_i / question_image / question / answer / question_id).

    Returns the task folder.
    """
    folder = Path(root) / task
    names = REAL if task in ("real_name_mi", "guided_vqa") else NONSENSE
    records = []
    for q in range(n_questions):
        stem = f"{task}_shots_{shots}_ways_{ways}_id_{q}"
        rec: Dict = {}
        # Support images are interleaved by shot: category 0, 1, ..., then again.
        k = 0
        for s in range(shots):
            for w in range(ways):
                k += 1
                fname = f"{stem}_image_{k}.jpg"
                write_jpeg(folder / fname, PALETTE[w])
                rec[f"image_{k}"] = fname
                rec[f"caption_{k}"] = f"This is a {names[w]}."
        answer_way = q % ways
        write_jpeg(folder / f"{stem}_question.jpg", PALETTE[answer_way])
        rec["question_image"] = f"{stem}_question.jpg"
        if task in ("fast_vqa", "guided_vqa"):
            rec["question"] = f"What color is the {names[answer_way]}?"
            rec["answer"] = "red" if answer_way == 0 else "green"
        else:
            rec["question"] = "What is this?"
            rec["answer"] = names[answer_way]
        rec["question_id"] = q
        records.append(rec)
    (folder / f"{task}_shots_{shots}_ways_{ways}_all_questions.json").write_text(json.dumps(records))
    return folder


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "fixtures_out")
    make_vqa_fixture(out / "vqav2", "vqav2", "val2014")
    make_vqa_fixture(out / "vqav2", "vqav2", "train2014")
    make_vqa_fixture(out / "okvqa", "okvqa", "val2014")
    for task, settings in (("open_ended_mi", [(1, 2), (3, 5)]), ("real_name_mi", [(1, 2)]),
                           ("fast_vqa", [(1, 2)]), ("guided_vqa", [(5, 2)])):
        for s, w in settings:
            make_fewshot_fixture(out, task, s, w)
    print(f"wrote fixtures under {out}")
