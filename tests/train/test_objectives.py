"""The word anchor (frozen_hf.train.objectives) on hand cases, and in a training run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from frozen_hf.train.objectives import next_word_anchor_loss, next_word_anchor_targets

IMAGE = 9
PAD = -100


def _batch():
    # n = 2. Row 0: an image followed by word 5, then an image that ends the row (no word after it).
    # Row 1: an image followed by word 7, then padding.
    input_ids = torch.tensor([[IMAGE, IMAGE, 5, 6, IMAGE, IMAGE], [1, IMAGE, IMAGE, 7, 0, 0]])
    labels = input_ids.masked_fill(input_ids == IMAGE, PAD)
    labels[1, 4:] = PAD
    return input_ids, labels


def test_targets_are_the_words_after_each_image():
    input_ids, labels = _batch()
    valid, target_ids = next_word_anchor_targets(input_ids, labels, IMAGE, 2)
    assert valid.tolist() == [True, False, True]
    assert target_ids.tolist() == [5, 0, 7]


def test_a_word_that_is_not_a_target_is_not_an_anchor():
    input_ids, labels = _batch()
    labels[0, 2] = PAD  # a prompt word, not trained on
    valid, _ = next_word_anchor_targets(input_ids, labels, IMAGE, 2)
    assert valid.tolist() == [False, False, True]


def test_images_back_to_back_are_told_apart():
    input_ids = torch.tensor([[IMAGE, IMAGE, IMAGE, IMAGE, 4, 3]])
    labels = input_ids.masked_fill(input_ids == IMAGE, PAD)
    valid, target_ids = next_word_anchor_targets(input_ids, labels, IMAGE, 2)
    assert valid.tolist() == [False, True] and target_ids.tolist() == [0, 4]


def test_placeholders_that_are_not_whole_images():
    input_ids = torch.tensor([[IMAGE, IMAGE, IMAGE, 4]])
    with pytest.raises(ValueError, match="3 image placeholders are not a whole number of images of 2"):
        next_word_anchor_targets(input_ids, input_ids, IMAGE, 2)


def test_loss_on_hand_cases():
    input_ids, labels = _batch()
    embeddings = torch.nn.Embedding(10, 4)
    with torch.no_grad():
        embeddings.weight.copy_(torch.arange(40, dtype=torch.float32).view(10, 4) + 1)
    prefixes = torch.zeros(3, 2, 4, requires_grad=True)
    with torch.no_grad():
        prefixes[0, -1] = embeddings.weight[5]  # exact: error 0
        prefixes[1, -1] = 100.0  # not anchored (no word after it): ignored
        prefixes[2, -1] = 2 * embeddings.weight[7]  # twice the target: |e|^2 / |e|^2 = 1
    loss = next_word_anchor_loss(prefixes, input_ids, labels, IMAGE, embeddings)
    assert loss.item() == pytest.approx(0.5)
    loss.backward()
    assert prefixes.grad[1].abs().sum() == 0 and prefixes.grad[:, 0].abs().sum() == 0
    assert prefixes.grad[2, -1].abs().sum() > 0


def test_loss_without_anchors_is_zero_with_a_graph():
    input_ids = torch.tensor([[1, IMAGE, IMAGE]])
    prefixes = torch.ones(1, 2, 4, requires_grad=True)
    loss = next_word_anchor_loss(prefixes, input_ids, input_ids, IMAGE, torch.nn.Embedding(10, 4))
    assert loss.item() == 0.0
    loss.backward()
    assert prefixes.grad is not None


def test_prefix_count_must_match_the_placeholders():
    input_ids, labels = _batch()
    with pytest.raises(ValueError, match="3 images in input_ids but 2 visual prefixes"):
        next_word_anchor_loss(torch.zeros(2, 2, 4), input_ids, labels, IMAGE, torch.nn.Embedding(10, 4))
