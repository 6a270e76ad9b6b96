"""Prefix geometry: the statistics on a hand case, their errors, and the program on a tiny model."""

from __future__ import annotations

import json

import pytest
import torch

from frozen_hf.eval.prefix_geometry import prefix_geometry, shapes_prefix_geometry
from frozen_hf.programs import prefix_geometry as program
from tests.helpers.tiny import tiny_model, tiny_processor


def test_statistics_on_a_hand_case():
    # Two categories along two axes: raw cosines 1 (same) and 0 (other); centred on their mean (1, 0.5), the
    # categories point in opposite directions.
    prefixes = torch.tensor([[[2.0, 0.0]], [[2.0, 0.0]], [[0.0, 1.0]], [[0.0, 1.0]]])
    report = prefix_geometry(prefixes, ["star", "star", "heart", "heart"], torch.tensor([[3.0, 4.0], [0.0, 5.0]]))
    assert report["images"] == 4 and report["word_embedding_norm"] == pytest.approx(5.0)
    (slot,) = report["slots"]
    assert slot["norm"] == pytest.approx(1.5)
    assert slot["cosine_same_category"] == pytest.approx(1.0) and slot["cosine_other_category"] == pytest.approx(0.0)
    assert slot["centred_cosine_same_category"] == pytest.approx(1.0)
    assert slot["centred_cosine_other_category"] == pytest.approx(-1.0)
    assert report["nearest_neighbour_category_accuracy"] == 1.0


def test_nearest_neighbour_counts_a_confused_image():
    prefixes = torch.tensor([[[1.0, 0.0]], [[1.0, 0.1]], [[0.9, 0.0]], [[0.0, 1.0]]])
    report = prefix_geometry(prefixes, ["a", "a", "b", "b"], torch.ones(1, 2))
    # Centred, the third image lies nearest the first two (category a), so three of four neighbours agree.
    assert report["nearest_neighbour_category_accuracy"] == pytest.approx(0.75)


@pytest.mark.parametrize(
    ("shape", "categories", "message"),
    [
        ((4, 2), ["a", "a", "b", "b"], r"prefixes must be \(num_images, n, D\) with one category per image; got \(4, 2\)"),
        ((3, 1, 2), ["a", "a", "b", "b"], r"got \(3, 1, 2\) for 4 categories"),
        ((2, 1, 2), ["a", "a"], "needs at least two categories and two images of some category"),
        ((2, 1, 2), ["a", "b"], "needs at least two categories and two images of some category"),
    ],
)
def test_bad_input(shape, categories, message):
    with pytest.raises(ValueError, match=message):
        prefix_geometry(torch.ones(shape), categories, torch.ones(1, 2))


def test_program_on_a_tiny_model(tmp_path, capsys):
    processor = tiny_processor()
    model = tiny_model(processor)
    report = shapes_prefix_geometry(model, processor, images_per_category=2)
    assert report["images"] == 16 and len(report["slots"]) == processor.visual_prefix_length
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    assert program.main(["--model", str(tmp_path), "--images-per-category", "2", "--json"]) == 0
    out = capsys.readouterr().out
    # DeepSpeed, when installed, announces its accelerator on stdout as transformers imports it.
    assert json.loads(out[out.index("{\n") :]) == report
