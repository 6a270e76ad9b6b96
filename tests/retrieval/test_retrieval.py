"""Retrieved in-context examples: exact nearest neighbours, stored indexes reused or rebuilt, prompts built from them."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from datasets import Dataset, Features, Image as ImageFeature, Value, load_from_disk
from PIL import Image

from frozen_hf.data.shapes import load_shapes
from frozen_hf.eval.prompting import IMAGE_MARKER
from frozen_hf.modeling_frozen import pool_vision_output
from frozen_hf.retrieval import (
    CallableImageEncoder,
    RetrievalIndex,
    frozen_image_encoder,
    pretrained_image_encoder,
    retrieved_caption_prompts,
    retrieved_vqa_prompts,
    shapes_task_with_shots,
)
from tests.helpers.tiny import random_images, tiny_model, tiny_processor, tiny_vision_config

# Hand-built world: each image's red channel is an angle in degrees; its embedding points that way, with a length
# that varies (cosine similarity must ignore it).
ANGLES = [0, 30, 60, 90, 180]


def angle_image(degrees: int) -> Image.Image:
    return Image.new("RGB", (8, 8), (degrees, 7, 7))


class AngleEncoder:
    """Embeds an image as (cos, sin) of its angle, scaled by 1 + angle; counts the images it encoded."""

    identity = "angles-v1"

    def __init__(self):
        self.encoded = 0

    def encode(self, images):
        self.encoded += len(images)
        out = []
        for image in images:
            degrees = image.convert("RGB").getpixel((0, 0))[0]
            radians = math.radians(degrees)
            out.append([(1 + degrees) * math.cos(radians), (1 + degrees) * math.sin(radians)])
        return np.array(out)


def angle_dataset(angles=ANGLES) -> Dataset:
    features = Features({"image": ImageFeature(), "question": Value("string"), "answer": Value("string"),
                         "caption": Value("string")})
    return Dataset.from_dict(
        {"image": [angle_image(a) for a in angles], "question": [f"Which angle is {a}?" for a in angles],
         "answer": [str(a) for a in angles], "caption": [f"a line at {a} degrees" for a in angles]},
        features=features,
    )


def test_nearest_neighbours_hand_built(tmp_path):
    index = RetrievalIndex.build(angle_dataset(), AngleEncoder(), index_dir=tmp_path)
    (hits,) = index.search([angle_image(50)], k=4)
    # 50 degrees: 60 is 10 away, 30 is 20, 90 is 40, 0 is 50 (180 is 130 away, and left out at k=4).
    assert [ANGLES[i] for i, _ in hits] == [60, 30, 90, 0]
    assert [s for _, s in hits] == pytest.approx([math.cos(math.radians(d)) for d in (10, 20, 40, 50)], abs=1e-6)
    (hits,) = index.search([angle_image(170)], k=1)
    assert ANGLES[hits[0][0]] == 180
    rows = index.nearest([angle_image(95)], k=2)[0]
    assert [r.row["answer"] for r in rows] == ["90", "60"]


def test_frozen_encoder_neighbours_equal_brute_force(tmp_path):
    processor = tiny_processor()
    model = tiny_model(processor)
    pool = random_images(12, seed=1)
    dataset = Dataset.from_dict({"image": pool}, features=Features({"image": ImageFeature()}))
    index = RetrievalIndex.build(dataset, frozen_image_encoder(model, processor), index_dir=tmp_path)
    queries = random_images(3, seed=2) + [pool[7]]
    with torch.no_grad():
        def features(images):
            pixels = processor.image_processor(images, return_tensors="pt")["pixel_values"]
            f = pool_vision_output(model.model.vision_model(pixel_values=pixels, return_dict=True)).numpy()
            return f / np.linalg.norm(f, axis=1, keepdims=True)

        expected = np.argsort(-(features(queries) @ features(pool).T), axis=1)[:, :5]
    hits = index.search(queries, k=5)
    assert [[i for i, _ in h] for h in hits] == expected.tolist()
    assert hits[-1][0][0] == 7 and hits[-1][0][1] == pytest.approx(1.0, abs=1e-5)


def test_prefix_features_and_named_encoder(tmp_path):
    from transformers import ResNetModel, ViTImageProcessor

    processor = tiny_processor()
    model = tiny_model(processor)
    images = random_images(4, seed=3)
    prefix = frozen_image_encoder(model, processor, feature="prefix").encode(images)
    assert prefix.shape == (4, processor.visual_prefix_length * model.config.text_config.hidden_size)
    with pytest.raises(ValueError, match="pooled' or 'prefix"):
        frozen_image_encoder(model, processor, feature="logits")
    folder = tmp_path / "encoder"
    torch.manual_seed(0)
    ResNetModel(tiny_vision_config("resnet")).save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    named = pretrained_image_encoder(str(folder))
    assert named.encode(images).shape == (4, 16)
    # Same weights from another folder: same identity, so an index built with one is current for the other.
    moved = tmp_path / "moved"
    folder.rename(moved)
    assert pretrained_image_encoder(str(moved)).identity == named.identity


def test_index_saves_and_reloads(tmp_path):
    encoder = AngleEncoder()
    first = RetrievalIndex.build(angle_dataset(), encoder, index_dir=tmp_path / "idx")
    assert first.status == "built"
    assert sorted(p.name for p in (tmp_path / "idx").iterdir()) == ["images.faiss", "images.json"]
    again = AngleEncoder()
    second = RetrievalIndex.build(angle_dataset(), again, index_dir=tmp_path / "idx")
    assert second.status == "loaded"
    # Reloaded: the support images were not encoded again, only the query is.
    assert again.encoded == 0
    queries = [angle_image(a) for a in (5, 50, 140)]
    assert second.search(queries, k=3) == first.search(queries, k=3)
    assert again.encoded == 3


def test_stale_index_detected_and_rebuilt(tmp_path):
    RetrievalIndex.build(angle_dataset(), AngleEncoder(), index_dir=tmp_path)
    # The data set changed (a row at 120 degrees added): its fingerprint differs, the index is rebuilt.
    changed = angle_dataset(ANGLES + [120])
    rebuilt = RetrievalIndex.build(changed, AngleEncoder(), index_dir=tmp_path)
    assert rebuilt.status == "rebuilt" and "fingerprint" in rebuilt.stale_reason
    (hits,) = rebuilt.search([angle_image(118)], k=1)
    assert changed[hits[0][0]]["answer"] == "120"
    # The rebuilt index was saved: the next build with the changed data reuses it.
    assert RetrievalIndex.build(changed, AngleEncoder(), index_dir=tmp_path).status == "loaded"
    # Same data, another encoder: stale too.
    other = CallableImageEncoder(lambda images: np.ones((len(images), 2)), identity="constant")
    assert "encoder" in RetrievalIndex.build(changed, other, index_dir=tmp_path).stale_reason
    # Metadata that cannot be read means rebuild, not crash.
    (tmp_path / "images.json").write_text("{not json")
    assert "unreadable" in RetrievalIndex.build(changed, other, index_dir=tmp_path).stale_reason


def test_retrained_model_makes_its_index_stale(tmp_path):
    processor = tiny_processor()
    dataset = Dataset.from_dict({"image": random_images(4)}, features=Features({"image": ImageFeature()}))
    RetrievalIndex.build(dataset, frozen_image_encoder(tiny_model(processor, seed=0), processor), index_dir=tmp_path)
    again = RetrievalIndex.build(dataset, frozen_image_encoder(tiny_model(processor, seed=0), processor),
                                 index_dir=tmp_path)
    assert again.status == "loaded"
    retrained = RetrievalIndex.build(dataset, frozen_image_encoder(tiny_model(processor, seed=1), processor),
                                     index_dir=tmp_path)
    assert retrained.status == "rebuilt" and "encoder" in retrained.stale_reason


def test_index_stored_beside_the_dataset(tmp_path):
    angle_dataset().save_to_disk(tmp_path / "support")
    dataset = load_from_disk(str(tmp_path / "support"))
    index = RetrievalIndex.build(dataset, AngleEncoder())
    assert index.path == tmp_path / "support" / "retrieval_index"
    assert (index.path / "images.faiss").is_file()
    assert RetrievalIndex.build(load_from_disk(str(tmp_path / "support")), AngleEncoder()).status == "loaded"
    with pytest.raises(ValueError, match="in memory only"):
        RetrievalIndex.build(angle_dataset(), AngleEncoder())


def test_bad_requests_are_clear(tmp_path):
    index = RetrievalIndex.build(angle_dataset(), AngleEncoder(), index_dir=tmp_path)
    with pytest.raises(ValueError, match="support data set has 5 rows"):
        index.search([angle_image(1)], k=6)
    with pytest.raises(ValueError, match="k must be"):
        index.search([angle_image(1)], k=0)
    with pytest.raises(ValueError, match="no column 'picture'"):
        RetrievalIndex.build(angle_dataset(), AngleEncoder(), index_dir=tmp_path, image_column="picture")
    with pytest.raises(ValueError, match="Unknown shot selection"):
        retrieved_vqa_prompts(index, [angle_image(1)], ["q?"], k=1, selection="best")


def test_retrieved_prompts_go_through_the_prompt_builder(tmp_path):
    dataset = angle_dataset()
    index = RetrievalIndex.build(dataset, AngleEncoder(), index_dir=tmp_path)
    query = angle_image(50)
    (prompt,) = retrieved_vqa_prompts(index, [query], ["Which angle is this?"], k=3, targets=["50"])
    # Nearest last: 90, 30, 60, then the query.
    assert [r["row"] for r in prompt.metadata["retrieved"]] == [3, 1, 2]
    assert prompt.text == (
        f"{IMAGE_MARKER} Question: Which angle is 90? Answer: 90\n{IMAGE_MARKER} Question: Which angle is 30? Answer: 30\n"
        f"{IMAGE_MARKER} Question: Which angle is 60? Answer: 60\n{IMAGE_MARKER} Question: Which angle is this? Answer:"
    )
    assert [im.getpixel((0, 0))[0] for im in prompt.images] == [90, 30, 60, 50]
    assert prompt.target == "50" and prompt.prefix_length == prompt.text.index(f"{IMAGE_MARKER} Question: Which angle is this")
    (caption,) = retrieved_caption_prompts(index, [angle_image(175)], k=2)
    assert caption.text == f"{IMAGE_MARKER} a line at 90 degrees\n{IMAGE_MARKER} a line at 180 degrees\n{IMAGE_MARKER}"
    assert caption.text.count(IMAGE_MARKER) == len(caption.images) == 3


def test_random_shots_are_reproducible_and_distinct(tmp_path):
    index = RetrievalIndex.build(angle_dataset(), AngleEncoder(), index_dir=tmp_path)
    queries = [angle_image(a) for a in (10, 20, 30, 40)]
    first = retrieved_vqa_prompts(index, queries, ["q?"] * 4, k=3, selection="random", seed=5)
    again = retrieved_vqa_prompts(index, queries, ["q?"] * 4, k=3, selection="random", seed=5)
    rows = [[r["row"] for r in p.metadata["retrieved"]] for p in first]
    assert rows == [[r["row"] for r in p.metadata["retrieved"]] for p in again]
    assert all(len(set(r)) == 3 for r in rows) and len({tuple(r) for r in rows}) > 1
    assert all(r["score"] is None for p in first for r in p.metadata["retrieved"])


@pytest.mark.parametrize("task", ["shapes_vqa", "shapes_captions"])
def test_evaluation_task_with_random_or_retrieved_shots(task, tmp_path):
    from frozen_hf.eval.suites import evaluate_task
    from frozen_hf.eval.tasks import ProtocolError, TaskSettings, build_task

    processor = tiny_processor()
    model = tiny_model(processor)
    settings = TaskSettings(shots=2, num_episodes=3, image_size=32, layout="compact")
    plain = build_task(task, TaskSettings(num_episodes=3, image_size=32, layout="compact"))
    retrieved = shapes_task_with_shots(task, settings, model, processor, selection="retrieved", index_dir=tmp_path)
    random = shapes_task_with_shots(task, settings, model, processor, selection="random", index_dir=tmp_path)
    assert retrieved.setting_label == "2-shot retrieved" and random.setting_label == "2-shot random"
    index = RetrievalIndex.build(load_shapes("vqa" if task == "shapes_vqa" else "captions", "train", num_samples=200,
                                             image_size=32), frozen_image_encoder(model, processor), index_dir=tmp_path)
    assert index.status == "loaded"
    for data in (retrieved, random):
        # Same queries and references as the task without shots; each query now follows its 2 shots.
        assert data.references == plain.references and len(data.prompts) == len(plain.prompts)
        for prompt, query in zip(data.prompts, plain.prompts):
            assert prompt.text.endswith(query.text) and prompt.text.count(IMAGE_MARKER) == len(prompt.images) == 3
            assert prompt.images[-1].tobytes() == query.images[0].tobytes()
    queries = [p.images[0] for p in plain.prompts]
    nearest = [[i for i, _ in reversed(hits)] for hits in index.search(queries, 2)]
    assert [[r["row"] for r in p.metadata["retrieved"]] for p in retrieved.prompts] == nearest
    record = evaluate_task(model, processor, retrieved)
    assert record.setting == "2-shot retrieved" and record.n == 3 and record.shots == 2
    with pytest.raises(ProtocolError, match="--shots >= 1"):
        shapes_task_with_shots(task, TaskSettings(num_episodes=2), model, processor)
    with pytest.raises(ProtocolError, match="applies to"):
        shapes_task_with_shots("shapes_open_ended", settings, model, processor)


def test_caption_shots_are_worded_as_the_model_was_trained(tmp_path):
    from frozen_hf.eval.tasks import TaskSettings

    processor = tiny_processor()
    model = tiny_model(processor)
    settings = TaskSettings(shots=2, num_episodes=3, image_size=32)

    def shot_captions(data) -> list[list[str]]:
        # Each prompt: "<image> caption" per shot, then the query's "<image>".
        return [[line.removeprefix(IMAGE_MARKER).strip() for line in p.text.split("\n")[:-1]] for p in data.prompts]

    def pool_captions(data, style: str) -> list[list[str]]:
        pool = load_shapes("captions", "train", num_samples=200, image_size=32, caption_style=style)
        return [[pool[r["row"]]["caption"] for r in p.metadata["retrieved"]] for p in data.prompts]

    untrained = shapes_task_with_shots("shapes_captions", settings, model, processor, index_dir=tmp_path / "varied")
    assert shot_captions(untrained) == pool_captions(untrained, "varied")
    model.config.frozen_training = {"shapes_caption_style": "shape_first"}
    trained = shapes_task_with_shots("shapes_captions", settings, model, processor, index_dir=tmp_path / "trained")
    assert shot_captions(trained) == pool_captions(trained, "shape_first") != pool_captions(trained, "varied")
    chosen = shapes_task_with_shots("shapes_captions", settings, model, processor, index_dir=tmp_path / "canonical",
                                    caption_style="canonical")
    assert shot_captions(chosen) == pool_captions(chosen, "canonical")


def test_evaluation_program_shot_selection(tmp_path, monkeypatch, capsys):
    from frozen_hf.eval.record import load_records
    from frozen_hf.programs.evaluate import main

    monkeypatch.setenv("FROZEN_HF_CACHE", str(tmp_path / "cache"))
    processor = tiny_processor()
    tiny_model(processor).save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    base = ["--model", str(tmp_path / "model"), "--task", "shapes_vqa", "--shots", "2", "--num-episodes", "3",
            "--output", str(tmp_path / "eval")]
    for selection in ("random", "retrieved"):
        assert main(base + ["--shot-selection", selection]) == 0
    assert sorted(r.setting for r in load_records(tmp_path / "eval")) == ["2-shot random", "2-shot retrieved"]
    report = (tmp_path / "eval" / "report.md").read_text()
    assert "2-shot random" in report and "2-shot retrieved" in report
    assert main(base[:4] + ["--task", "shapes_open_ended", "--shot-selection", "retrieved"]) == 2
    assert "applies to" in capsys.readouterr().err
    assert main(base + ["--caption-style", "canonical"]) == 2
    assert "--caption-style words the shots of --task shapes_captions" in capsys.readouterr().err
