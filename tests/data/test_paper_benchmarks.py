"""Loader tests on tiny files written at test time in each benchmark's released format."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import datasets
import pytest

from frozen_hf.data.paper_benchmarks import (
    FEWSHOT_SETTINGS,
    FEWSHOT_TASKS,
    fewshot_json_name,
    load_fewshot_benchmark,
    load_vqa,
    load_vqa_benchmark,
    load_vqa_with_support,
    vqa_file_names,
)

from tests.helpers import make_fixtures


def _dominant_channel(img) -> int:
    r, g, b = img.convert("RGB").getpixel((4, 4))
    return max(range(3), key=lambda i: (r, g, b)[i])


def _paths(ds: datasets.Dataset, column: str) -> list:
    """The stored file paths of an Image (or list-of-Image) column, without decoding."""
    feature = ds.features[column]
    undecoded = (
        datasets.List(datasets.Image(decode=False))
        if isinstance(feature, datasets.List)
        else datasets.Image(decode=False)
    )
    return ds.cast_column(column, undecoded)[column]


# ------------------------------------------------------------------ VQAv2 / OKVQA
def test_vqav2_loader(tmp_path: Path) -> None:
    files = make_fixtures.make_vqa_fixture(tmp_path, "vqav2", "val2014")
    ds = load_vqa(files["questions"], files["annotations"], files["images_dir"])
    assert ds.num_rows == 3
    assert set(ds.column_names) == {
        "question_id", "image_id", "question", "answers", "multiple_choice_answer",
        "question_type", "answer_type", "image",
    }
    assert isinstance(ds.features["image"], datasets.Image)
    assert ds["question_id"] == [420, 421, 70]
    assert ds["image_id"] == [42, 42, 7]
    assert ds[0]["question"] == "What color is the square?"
    assert all(len(a) == 10 for a in ds["answers"])
    assert ds[1]["answers"][6] == "two"
    assert ds[2]["answer_type"] == "yes/no"
    # Images are stored as paths (lazy) with the official COCO names, and decode to the file.
    assert [Path(p["path"]).name for p in _paths(ds, "image")] == [
        "COCO_val2014_000000000042.jpg", "COCO_val2014_000000000042.jpg", "COCO_val2014_000000000007.jpg",
    ]
    img = ds[0]["image"]
    assert img.size == (8, 8)
    assert _dominant_channel(img) == _dominant_channel(
        make_fixtures.Image.new("RGB", (8, 8), make_fixtures.PALETTE[42 % 12])
    )


def test_okvqa_benchmark_by_name(tmp_path: Path) -> None:
    make_fixtures.make_vqa_fixture(tmp_path, "okvqa", "val2014")
    assert vqa_file_names("okvqa", "val2014") == (
        "OpenEnded_mscoco_val2014_questions.json", "mscoco_val2014_annotations.json",
    )
    ds = load_vqa_benchmark("okvqa", tmp_path, "val2014")
    assert ds.num_rows == 3 and ds[2]["answers"] == ["yes"] * 10


def test_vqa_with_support_pool(tmp_path: Path) -> None:
    make_fixtures.make_vqa_fixture(tmp_path, "vqav2", "val2014")
    train_rows = [dict(r, question_id=r["question_id"] + 10_000, image_id=r["image_id"] + 1)
                  for r in make_fixtures.VQA_ROWS]
    make_fixtures.make_vqa_fixture(tmp_path, "vqav2", "train2014", rows=train_rows)
    dd = load_vqa_with_support("vqav2", tmp_path)
    assert set(dd) == {"query", "support"}
    assert set(dd["query"]["question_id"]).isdisjoint(dd["support"]["question_id"])
    assert all(Path(p["path"]).name.startswith("COCO_train2014_") for p in _paths(dd["support"], "image"))
    assert all(Path(p["path"]).name.startswith("COCO_val2014_") for p in _paths(dd["query"], "image"))


def test_vqa_coco2017_style_names_and_max_questions(tmp_path: Path) -> None:
    files = make_fixtures.make_vqa_fixture(tmp_path, "vqav2", "val2014", write_images=False)
    for image_id in (42, 7):
        make_fixtures.write_jpeg(files["images_dir"] / f"{image_id:012d}.jpg", (0, 0, 255))
    ds = load_vqa(files["questions"], files["annotations"], files["images_dir"], max_questions=2)
    assert ds.num_rows == 2
    assert Path(_paths(ds, "image")[0]["path"]).name == "000000000042.jpg"


def test_vqa_missing_images_are_skipped_and_counted(tmp_path: Path, caplog) -> None:
    files = make_fixtures.make_vqa_fixture(tmp_path, "vqav2", "val2014")
    (files["images_dir"] / "COCO_val2014_000000000007.jpg").unlink()
    with caplog.at_level(logging.WARNING):
        ds = load_vqa(files["questions"], files["annotations"], files["images_dir"])
    assert ds["question_id"] == [420, 421]
    assert "skipped 1 of 3" in caplog.text
    with pytest.raises(FileNotFoundError, match="COCO_val2014_000000000007.jpg"):
        load_vqa(files["questions"], files["annotations"], files["images_dir"], missing_images="error")


def test_vqa_no_images_at_all_is_an_error(tmp_path: Path) -> None:
    files = make_fixtures.make_vqa_fixture(tmp_path, "vqav2", "val2014", write_images=False)
    with pytest.raises(FileNotFoundError, match="3 of 3 questions"):
        load_vqa(files["questions"], files["annotations"], files["images_dir"])


def test_vqa_missing_files_name_the_fix(tmp_path: Path) -> None:
    files = make_fixtures.make_vqa_fixture(tmp_path, "vqav2", "val2014")
    with pytest.raises(FileNotFoundError, match=r"(?s)questions file.*visualqa\.org"):
        load_vqa(tmp_path / "nope.json", files["annotations"], files["images_dir"])
    with pytest.raises(FileNotFoundError, match=r"(?s)annotations file.*okvqa"):
        load_vqa(files["questions"], tmp_path / "nope.json", files["images_dir"])
    with pytest.raises(FileNotFoundError, match=r"(?s)COCO images folder.*cocodataset"):
        load_vqa(files["questions"], files["annotations"], tmp_path / "val2014_missing")
    with pytest.raises(FileNotFoundError, match="v2_OpenEnded_mscoco_test2015_questions.json"):
        load_vqa_benchmark("vqav2", tmp_path, "test2015")
    with pytest.raises(ValueError, match="unknown VQA benchmark"):
        load_vqa_benchmark("gqa", tmp_path)


def test_vqa_wrong_json_shapes(tmp_path: Path) -> None:
    files = make_fixtures.make_vqa_fixture(tmp_path, "vqav2", "val2014")
    # Questions and annotations swapped: a clear message, not a KeyError.
    with pytest.raises(ValueError, match="no top-level 'questions'"):
        load_vqa(files["annotations"], files["annotations"], files["images_dir"])
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_vqa(bad, files["annotations"], files["images_dir"])
    # A question without an annotation means the files are from different splits.
    other = tmp_path / "other"
    other_files = make_fixtures.make_vqa_fixture(
        other, "vqav2", "val2014", rows=[dict(make_fixtures.VQA_ROWS[0], question_id=999)]
    )
    with pytest.raises(ValueError, match="no annotation"):
        load_vqa(other_files["questions"], files["annotations"], files["images_dir"])


# ------------------------------------------------------------------ Frozen's few-shot benchmarks
@pytest.mark.parametrize(
    "task, shots, ways",
    [("open_ended_mi", 1, 2), ("open_ended_mi", 3, 5), ("real_name_mi", 5, 2),
     ("fast_vqa", 1, 2), ("guided_vqa", 3, 2)],
)
def test_fewshot_loader(tmp_path: Path, task: str, shots: int, ways: int) -> None:
    folder = make_fixtures.make_fewshot_fixture(tmp_path, task, shots, ways, n_questions=3)
    assert (folder / fewshot_json_name(task, shots, ways)).is_file()
    # Root may be the extracted task folder or the folder it was extracted into.
    for root in (tmp_path, folder):
        ds = load_fewshot_benchmark(task, root, shots=shots, ways=ways)
        assert ds.num_rows == 3
    assert ds["question_id"] == ["0", "1", "2"]
    assert set(ds["task"]) == {task} and set(ds["shots"]) == {shots} and set(ds["ways"]) == {ways}
    row = ds[1]
    assert len(row["support_images"]) == len(row["support_captions"]) == shots * ways
    names = make_fixtures.REAL if task in ("real_name_mi", "guided_vqa") else make_fixtures.NONSENSE
    assert row["support_captions"][:ways] == [f"This is a {n}." for n in names[:ways]]
    # Support images keep the file's order image_1, image_2, ...
    support_paths = [Path(p["path"]).name for p in _paths(ds, "support_images")[1]]
    assert support_paths == [f"{task}_shots_{shots}_ways_{ways}_id_1_image_{k}.jpg" for k in range(1, shots * ways + 1)]
    assert Path(_paths(ds, "question_image")[1]["path"]).name == f"{task}_shots_{shots}_ways_{ways}_id_1_question.jpg"
    # The decoded query image is the colour of its category's support images.
    assert _dominant_channel(row["question_image"]) == _dominant_channel(row["support_images"][1 % ways])
    if task in ("fast_vqa", "guided_vqa"):
        assert row["question"] == f"What color is the {names[1]}?"
        assert row["answer"] == "green"
    else:
        assert row["answer"] == names[1]
    assert json.loads(row["extra"]) == {}


def test_fewshot_settings_table() -> None:
    assert set(FEWSHOT_TASKS) == set(FEWSHOT_SETTINGS)
    assert (5, 5) in FEWSHOT_SETTINGS["open_ended_mi"]
    assert all(w == 2 for _, w in FEWSHOT_SETTINGS["fast_vqa"])


def test_fewshot_tolerates_optional_fields(tmp_path: Path) -> None:
    folder = make_fixtures.make_fewshot_fixture(tmp_path, "open_ended_mi", 1, 2, n_questions=2)
    path = folder / fewshot_json_name("open_ended_mi", 1, 2)
    records = json.loads(path.read_text())
    del records[0]["question"]
    records[0]["caption_2"] = None
    records[1]["split"] = "test"
    path.write_text(json.dumps(records))
    ds = load_fewshot_benchmark("open_ended_mi", tmp_path, shots=1, ways=2)
    assert ds[0]["question"] == ""
    assert ds[0]["support_captions"] == ["This is a dax.", ""]
    assert json.loads(ds[1]["extra"]) == {"split": "test"}


def test_fewshot_bad_input(tmp_path: Path, caplog) -> None:
    with pytest.raises(ValueError, match="unknown few-shot benchmark"):
        load_fewshot_benchmark("mini_imagenet", tmp_path, shots=1, ways=2)
    with pytest.raises(ValueError, match="released for"):
        load_fewshot_benchmark("fast_vqa", tmp_path, shots=1, ways=5)
    with pytest.raises(FileNotFoundError, match=r"(?s)open_ended_mi_shots_1_ways_2_all_questions\.json.*open_ended_mi\.tar\.gz"):
        load_fewshot_benchmark("open_ended_mi", tmp_path, shots=1, ways=2)

    folder = make_fixtures.make_fewshot_fixture(tmp_path, "real_name_mi", 1, 2, n_questions=2)
    (folder / "real_name_mi_shots_1_ways_2_id_0_image_2.jpg").unlink()
    with caplog.at_level(logging.WARNING):
        ds = load_fewshot_benchmark("real_name_mi", tmp_path, shots=1, ways=2)
    assert ds["question_id"] == ["1"] and "skipped 1 of 2" in caplog.text
    with pytest.raises(FileNotFoundError, match="id_0_image_2.jpg"):
        load_fewshot_benchmark("real_name_mi", tmp_path, shots=1, ways=2, missing_images="error")

    path = folder / fewshot_json_name("real_name_mi", 1, 2)
    records = json.loads(path.read_text())
    del records[1]["answer"]
    path.write_text(json.dumps(records))
    with pytest.raises(ValueError, match="no 'answer' field"):
        load_fewshot_benchmark("real_name_mi", tmp_path, shots=1, ways=2)


def test_fewshot_json_kept_beside_the_image_folder(tmp_path: Path) -> None:
    # Some users move the JSON out of the extracted folder: root/<json> + root/<task>/<images>.
    folder = make_fixtures.make_fewshot_fixture(tmp_path, "fast_vqa", 1, 2, n_questions=2)
    name = fewshot_json_name("fast_vqa", 1, 2)
    (folder / name).rename(tmp_path / name)
    ds = load_fewshot_benchmark("fast_vqa", tmp_path, shots=1, ways=2)
    assert ds.num_rows == 2
    assert Path(_paths(ds, "question_image")[0]["path"]).parent == folder
