"""Tests for the Shapes world data sets."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from frozen_hf.data import shapes
from frozen_hf.data.shapes import (
    CAPTION_SHAPES,
    FEW_SHOT_SHAPES,
    NOVEL_SHAPES,
    HELD_OUT_COMBINATIONS,
    NONSENSE_NAMES,
    SPLITS,
    TASKS,
    caption_is_correct,
    describe,
    load_shapes,
    make_vqa_question,
    phrase_caption,
    render_scene,
    sample_scene,
    scene_to_png,
)


def _raw_images(dataset, column: str = "image") -> list[bytes]:
    # Reading the Arrow table directly avoids decoding and re-encoding (exact stored bytes).
    return [cell["bytes"] for cell in dataset.data.column(column).to_pylist()]


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ----------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("task", TASKS)
def test_same_seed_same_bytes(task: str) -> None:
    column = "image" if task in ("captions", "vqa") else "query_image"
    a = load_shapes(task, "validation", 12, seed=3)
    b = load_shapes(task, "validation", 12, seed=3)
    assert _raw_images(a, column) == _raw_images(b, column)
    assert a.to_dict()[column if column == "image" else "answer"] == b.to_dict()[column if column == "image" else "answer"]
    c = load_shapes(task, "validation", 12, seed=4)
    assert _raw_images(a, column) != _raw_images(c, column)


def test_rows_do_not_depend_on_num_samples() -> None:
    short = load_shapes("captions", "train", 5, seed=1)
    long = load_shapes("captions", "train", 20, seed=1)
    assert _raw_images(short) == _raw_images(long)[:5]
    assert short["caption"] == long["caption"][:5]


def test_images_are_valid_pngs_of_requested_size() -> None:
    for size in (64, 224, 33):
        ds = load_shapes("captions", "train", 3, image_size=size)
        image = ds[0]["image"]
        assert image.size == (size, size) and image.mode == "RGB"
        raw = _raw_images(ds)[0]
        assert raw.startswith(b"\x89PNG")
        decoded = np.asarray(Image.open(io.BytesIO(raw)))
        assert decoded.shape == (size, size, 3)


def test_png_matches_rendering() -> None:
    scene = sample_scene(np.random.default_rng(0), 3)
    pixels = render_scene(scene, 64)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(scene_to_png(scene, 64)))), pixels)
    # The object's colour is really drawn where the object is.
    obj = scene.objects[0]
    centre = pixels[int(obj.y * 64), int(obj.x * 64)]
    if obj.shape != "ring":
        assert np.abs(centre.astype(int) - np.array(obj.rgb)).max() <= 2


# ----------------------------------------------------------------------------- splits


@pytest.mark.parametrize("task", ["captions", "vqa", "open_ended"])
def test_splits_share_no_image(task: str) -> None:
    hashes = {}
    for split in SPLITS[task]:
        ds = load_shapes(task, split, 150)
        if task in ("captions", "vqa"):
            images = _raw_images(ds)
        else:
            images = _raw_images(ds, "query_image") + [
                cell["bytes"] for row in ds.data.column("support_images").to_pylist() for cell in row
            ]
        hashes[split] = {_digest(b) for b in images}
    splits = list(hashes)
    for i, a in enumerate(splits):
        for b in splits[i + 1 :]:
            assert not hashes[a] & hashes[b], (a, b)


@pytest.mark.parametrize("task", ["captions", "vqa"])
def test_held_out_combinations(task: str) -> None:
    for split in ("train", "validation", "test"):
        ds = load_shapes(task, split, 400, max_objects=3)
        pairs = {(o["shape"], o["colour"]) for objects in ds["objects"] for o in objects}
        assert not pairs & HELD_OUT_COMBINATIONS, split
    novel = load_shapes(task, "test_novel", 100, max_objects=3)
    for objects in novel["objects"]:
        assert {(o["shape"], o["colour"]) for o in objects} & HELD_OUT_COMBINATIONS
    seen = {(o["shape"], o["colour"]) for objects in novel["objects"] for o in objects}
    assert HELD_OUT_COMBINATIONS <= seen


def test_binding_categories_are_captioned_and_novel_ones_never_are() -> None:
    # As in the paper, binding teaches new words for objects caption training covers under their real names;
    # the harder variant's categories never occur in captions or vqa.
    assert set(FEW_SHOT_SHAPES) <= set(CAPTION_SHAPES)
    assert not set(NOVEL_SHAPES) & set(CAPTION_SHAPES)
    for task in ("captions", "vqa"):
        ds = load_shapes(task, "train", 300)
        drawn = {o["shape"] for objects in ds["objects"] for o in objects}
        assert drawn <= set(CAPTION_SHAPES) and set(FEW_SHOT_SHAPES) <= drawn


def test_novel_category_episodes() -> None:
    seen = load_shapes("open_ended", "test", 6, ways=5)
    novel = load_shapes("open_ended", "test", 6, ways=5, categories="novel")
    assert all(set(row["categories"]) <= set(FEW_SHOT_SHAPES) for row in seen)
    assert all(sorted(row["categories"]) == sorted(NOVEL_SHAPES) for row in novel)
    # Distinct streams: no image is shared between the two variants.
    seen_images = {_digest(b.tobytes()) for row in seen for b in row["support_images"]}
    assert not seen_images & {_digest(b.tobytes()) for row in novel for b in row["support_images"]}
    with pytest.raises(ValueError, match="Unknown category set 'unseen'"):
        load_shapes("open_ended", "test", 1, categories="unseen")
    with pytest.raises(ValueError, match="ways=6 is more than the 5 few-shot categories"):
        load_shapes("real_name", "test", 1, ways=6, categories="novel")


# ----------------------------------------------------------------------------- captions


def test_captions_columns_and_vocabulary() -> None:
    ds = load_shapes("captions", "train", 300)
    assert set(ds.column_names) >= {"image", "caption", "objects", "description", "scene_id"}
    assert type(ds.features["image"]).__name__ == "Image"
    phrasings = set()
    for caption, objects, description in zip(ds["caption"], ds["objects"], ds["description"]):
        assert len(objects) == 1
        assert caption_is_correct(caption, objects), caption
        assert caption_is_correct(description, objects), description
        o = objects[0]
        phrasings.add(caption.replace(o["size"], "S").replace(o["colour"], "C").replace(o["shape"], "H"))
    assert len(phrasings) >= 10  # several phrasings x positions
    words = {w for caption in ds["caption"] for w in caption.replace(".", "").split()}
    assert all(w.isalpha() for w in words)


def test_multi_object_captions() -> None:
    ds = load_shapes("captions", "train", 100, min_objects=2, max_objects=4)
    for caption, objects in zip(ds["caption"], ds["objects"]):
        assert 2 <= len(objects) <= 4
        assert len({o["position"] for o in objects}) == len(objects)
        assert caption_is_correct(caption, objects), caption


OBJ = {"shape": "circle", "colour": "red", "size": "large", "position": "left"}
OBJ2 = {"shape": "square", "colour": "blue", "size": "small", "position": "top"}


@pytest.mark.parametrize(
    "text",
    [
        "a large red circle on the left.",
        "there is a large red circle at the left.",
        "on the left there is a large red circle.",
        "a large circle that is red on the left.",
        "A big red circle, on the left side",
        "a red circle on the left that is large.",
        "  A LARGE RED CIRCLE ON THE LEFT  ",
    ],
)
def test_caption_is_correct_accepts_paraphrases(text: str) -> None:
    assert caption_is_correct(text, [OBJ])


@pytest.mark.parametrize(
    "text",
    [
        "a small red circle on the left.",
        "a large blue circle on the left.",
        "a large red square on the left.",
        "a large red circle on the right.",
        "a large red circle.",
        "a red circle on the left.",
        "a large red circle on the left and a small blue square at the top.",
        "a large red circle on the left. a large red circle on the left.",
        "a large red blue circle on the left.",
        "",
        "hello",
    ],
)
def test_caption_is_correct_rejects_wrong_captions(text: str) -> None:
    assert not caption_is_correct(text, [OBJ])


def test_caption_is_correct_two_objects_any_order() -> None:
    objects = [OBJ, OBJ2]
    assert caption_is_correct("a small blue square at the top and a large red circle on the left.", objects)
    assert caption_is_correct("there is a large red circle on the left and a small blue square at the top", objects)
    assert not caption_is_correct("a large red circle on the left.", objects)
    same_shape = [OBJ, dict(OBJ2, shape="circle")]
    assert caption_is_correct("a large red circle on the left, a small blue circle at the top.", same_shape)
    assert not caption_is_correct("a large red circle on the left, a small blue circle.", same_shape)
    assert not caption_is_correct("a small red square at the top and a large blue circle on the left.", objects)


def test_phrase_caption_styles() -> None:
    rng = np.random.default_rng(0)
    scene = sample_scene(rng, 2)
    assert phrase_caption(scene, rng, "canonical") == describe(scene)
    for _ in range(20):
        assert caption_is_correct(phrase_caption(scene, rng), scene)
    with pytest.raises(ValueError, match="canonical"):
        phrase_caption(scene, rng, "poetic")


# ----------------------------------------------------------------------------- vqa


def test_vqa_rows() -> None:
    ds = load_shapes("vqa", "test", 400)
    assert set(ds.column_names) >= {"image", "question", "answer", "answers", "question_type", "objects"}
    assert set(ds["question_type"]) == {"colour", "shape", "position", "count"}
    for row in ds.select_columns(["question", "answer", "answers", "question_type", "objects"]):
        answers = row["answers"]
        assert len(answers) == 10
        assert answers.count(row["answer"]) >= 7  # the true answer gets full VQA credit
        objects = row["objects"]
        qtype, answer = row["question_type"], row["answer"]
        if qtype == "count":
            assert 1 <= int(answer) <= len(objects)
            if row["question"] == "How many objects are there?":
                assert int(answer) == len(objects)
        elif qtype == "colour":
            assert answer in {o["colour"] for o in objects}
        elif qtype == "shape":
            assert answer in {o["shape"] for o in objects}
        elif qtype == "position":
            assert answer in {o["position"] for o in objects}
    # Some rows carry variants, so partial credit exists.
    assert any(len(set(a)) > 1 for a in ds["answers"])


def test_vqa_questions_are_unambiguous() -> None:
    rng = np.random.default_rng(5)
    for _ in range(300):
        scene = sample_scene(rng, int(rng.integers(1, 5)))
        qa = make_vqa_question(rng, scene)
        if qa["question_type"] == "position":
            colour, shape = qa["question"][len("Where is the ") : -1].split()
            matches = [o for o in scene.objects if o.colour == colour and o.shape == shape]
            assert len(matches) == 1 and matches[0].position == qa["answer"]


def test_vqa_question_types_option() -> None:
    ds = load_shapes("vqa", "train", 50, question_types=["count"])
    assert set(ds["question_type"]) == {"count"}
    with pytest.raises(ValueError, match="colour"):
        load_shapes("vqa", "train", 5, question_types=["smell"])


# ----------------------------------------------------------------------------- episodes


@pytest.mark.parametrize("task", ["open_ended", "real_name"])
@pytest.mark.parametrize("ways,inner_shots,repeats", [(2, 1, 1), (2, 3, 1), (5, 1, 1), (5, 5, 1), (2, 1, 3), (5, 3, 2)])
def test_episode_invariants(task: str, ways: int, inner_shots: int, repeats: int) -> None:
    ds = load_shapes(task, "test", 8, ways=ways, inner_shots=inner_shots, repeats=repeats)
    table = ds.data.to_pylist()
    for row in table:
        support = [cell["bytes"] for cell in row["support_images"]]
        n_unique = ways * inner_shots
        assert len(support) == n_unique * repeats
        assert len(row["support_names"]) == len(support) == len(row["support_categories"])
        # Repeats show the same support set in the same order.
        for r in range(1, repeats):
            assert support[r * n_unique : (r + 1) * n_unique] == support[:n_unique]
        unique = support[:n_unique]
        assert len({_digest(b) for b in unique}) == n_unique
        categories = row["support_categories"][:n_unique]
        assert len(set(categories)) == ways == len(row["names"]) == len(set(row["names"]))
        assert all(categories.count(c) == inner_shots for c in set(categories))
        assert set(categories) <= set(FEW_SHOT_SHAPES)
        # Names are bound consistently to categories.
        binding = dict(zip(row["support_categories"], row["support_names"]))
        assert len(set(binding.values())) == ways
        assert all(binding[c] == n for c, n in zip(row["support_categories"], row["support_names"]))
        assert row["query_category"] in categories
        assert row["answer"] == binding[row["query_category"]]
        assert _digest(row["query_image"]["bytes"]) not in {_digest(b) for b in unique}
        if task == "real_name":
            assert row["names"] == row["categories"]
        else:
            assert set(row["names"]) <= set(NONSENSE_NAMES)
        assert row["task_induction_text"].startswith("Answer with ")
        assert all(name in row["task_induction_text"] for name in row["names"])
        assert (row["ways"], row["inner_shots"], row["repeats"]) == (ways, inner_shots, repeats)
        assert row["query_description"].endswith(".") and row["query_category"] in row["query_description"]


def test_task_induction_column() -> None:
    ds = load_shapes("open_ended", "test", 2, task_induction=False)
    assert ds["task_induction"] == [False, False]


def test_query_category_is_balanced() -> None:
    ds = load_shapes("open_ended", "test", 200, ways=2)
    first = sum(row["answer"] == row["names"][0] for row in ds.select_columns(["answer", "names"]))
    assert 60 < first < 140


def test_fast_vqa_episodes() -> None:
    ds = load_shapes("fast_vqa", "test", 60, ways=2, inner_shots=2)
    for row in ds.data.to_pylist():
        assert row["target_name"] in row["names"]
        assert row["target_name"] in row["question"]
        assert len(row["answers"]) == 10 and row["answers"].count(row["answer"]) >= 7
        binding = dict(zip(row["support_names"], row["support_categories"]))
        target = [o for o in row["query_objects"] if o["shape"] == binding[row["target_name"]]]
        assert len(target) == 1
        expected = {"colour": target[0]["colour"], "position": target[0]["position"], "size": target[0]["size"]}
        assert row["answer"] == expected[row["question_type"]]
        # The other taught category is in the picture with another colour: binding matters.
        assert len(row["query_objects"]) == 2
        assert len({o["colour"] for o in row["query_objects"]}) == 2
    assert set(ds["question_type"]) == {"colour", "position", "size"}


# ----------------------------------------------------------------------------- bad input


def test_unknown_task_and_split() -> None:
    with pytest.raises(ValueError, match="captions.*vqa.*open_ended.*real_name.*fast_vqa"):
        load_shapes("segmentation")
    with pytest.raises(ValueError, match="train, validation, test, test_novel"):
        load_shapes("captions", "dev")
    with pytest.raises(ValueError, match="train, validation, test"):
        load_shapes("open_ended", "test_novel")


@pytest.mark.parametrize(
    "options,match",
    [
        ({"ways": 9}, "more than the 8 few-shot categories"),
        ({"ways": 0}, "ways must be a positive integer"),
        ({"inner_shots": 0}, "inner_shots must be >= 1"),
        ({"repeats": 0}, "repeats must be >= 1"),
    ],
)
@pytest.mark.parametrize("task", ["open_ended", "real_name", "fast_vqa"])
def test_impossible_episode_settings(task: str, options: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        load_shapes(task, "test", 2, **options)


def test_other_bad_options() -> None:
    with pytest.raises(ValueError, match="image_size"):
        load_shapes("captions", "train", 2, image_size=4)
    with pytest.raises(ValueError, match="max_objects"):
        load_shapes("captions", "train", 2, max_objects=5)
    with pytest.raises(ValueError, match="caption style"):
        load_shapes("captions", "train", 2, caption_style="fancy")


# ----------------------------------------------------------------------------- the picture


def test_grid_command(tmp_path: Path) -> None:
    out = tmp_path / "grid.png"
    result = subprocess.run(
        [sys.executable, "-m", "frozen_hf.data.shapes", "--grid", str(out), "--image-size", "48"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    image = Image.open(out)
    assert image.width > 300 and image.height > 200
