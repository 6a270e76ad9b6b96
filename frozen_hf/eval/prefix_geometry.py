"""How the visual prefixes of a trained model sit among themselves and against the LM's word embeddings.

In-context binding asks the frozen LM to match a query image to the support image of the same category. It can only
do that where prefixes of one category are closer to each other than to prefixes of other categories, in a space the
LM reads like words. These statistics show whether they are: the norm of each prefix slot against the word embeddings'
norm, and the cosine between prefixes of the same and of different categories, raw and after the mean prefix is
subtracted (the part that tells images apart).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.nn import functional as F


def _mean_pair_cosine(vectors: torch.Tensor, pairs: torch.Tensor) -> float:
    unit = F.normalize(vectors.float(), dim=-1)
    return (unit @ unit.T)[pairs].mean().item()


def prefix_geometry(prefixes: torch.Tensor, categories: Sequence[str], word_embeddings: torch.Tensor) -> dict[str, Any]:
    """Statistics of `prefixes` `(num_images, n, D)` of images labelled `categories`, against `word_embeddings` `(V, D)`.

    Returns a dict: `images`; `word_embedding_norm` (mean L2 norm of the LM's word embeddings); per slot, `norm`
    (mean L2 norm), `cosine_same_category` / `cosine_other_category` (mean cosine over pairs of distinct images of one
    category / of two categories) and the same two after subtracting the slot's mean prefix (`centred_*`); and
    `nearest_neighbour_category_accuracy`: how often the image whose whole (centred) prefix is nearest, by cosine,
    has the same category.
    """
    if prefixes.ndim != 3 or prefixes.shape[0] != len(categories):
        raise ValueError(
            f"prefixes must be (num_images, n, D) with one category per image; got {tuple(prefixes.shape)} for "
            f"{len(categories)} categories."
        )
    if len(set(categories)) < 2 or len(categories) == len(set(categories)):
        raise ValueError("prefix_geometry needs at least two categories and two images of some category.")
    index = {name: i for i, name in enumerate(dict.fromkeys(categories))}
    labels = torch.tensor([index[c] for c in categories])
    same = labels[:, None] == labels[None, :]
    distinct = ~torch.eye(len(labels), dtype=torch.bool)
    same_pairs, other_pairs = same & distinct, ~same
    prefixes = prefixes.detach().float()
    slots = []
    for slot in prefixes.unbind(dim=1):
        centred = slot - slot.mean(dim=0, keepdim=True)
        slots.append(
            {
                "norm": slot.norm(dim=-1).mean().item(),
                "cosine_same_category": _mean_pair_cosine(slot, same_pairs),
                "cosine_other_category": _mean_pair_cosine(slot, other_pairs),
                "centred_cosine_same_category": _mean_pair_cosine(centred, same_pairs),
                "centred_cosine_other_category": _mean_pair_cosine(centred, other_pairs),
            }
        )
    whole = F.normalize((prefixes - prefixes.mean(dim=0, keepdim=True)).flatten(1), dim=-1)
    similarity = (whole @ whole.T).masked_fill(~distinct, float("-inf"))
    nearest = similarity.argmax(dim=1)
    return {
        "images": len(categories),
        "word_embedding_norm": word_embeddings.detach().float().norm(dim=-1).mean().item(),
        "slots": slots,
        "nearest_neighbour_category_accuracy": (labels[nearest] == labels).float().mean().item(),
    }


def shapes_prefix_geometry(
    model, processor, split: str = "validation", images_per_category: int = 8, seed: int = 0
) -> dict[str, Any]:
    """[`prefix_geometry`] of `model` on `images_per_category` one-object Shapes images of each few-shot category,
    from the caption rows of `split` (rendered at the processor's image size)."""
    from ..data.shapes.dataset import load_shapes
    from ..data.shapes.world import FEW_SHOT_SHAPES

    size = processor.image_processor.size["height"]
    rows = load_shapes("captions", split=split, image_size=size, seed=seed)
    images, categories = [], []
    taken = dict.fromkeys(FEW_SHOT_SHAPES, 0)
    for row in rows:
        shape = row["objects"][0]["shape"]
        if taken.get(shape, images_per_category) < images_per_category:
            taken[shape] += 1
            images.append(row["image"].convert("RGB"))
            categories.append(shape)
        if len(images) == images_per_category * len(taken):
            break
    pixel_values = processor.image_processor(images, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        prefixes = model.get_image_features(pixel_values.to(model.device, model.dtype)).pooler_output
    report = prefix_geometry(prefixes.cpu(), categories, model.get_input_embeddings().weight.cpu())
    report["split"] = split
    return report


def format_prefix_geometry(report: dict[str, Any]) -> str:
    """A markdown table of a [`prefix_geometry`] report."""
    lines = [
        f"{report['images']} images; word embeddings' mean norm {report['word_embedding_norm']:.2f}; nearest (centred) "
        f"prefix of the same category for {100 * report['nearest_neighbour_category_accuracy']:.1f}% of images",
        "",
        "| slot | norm | cosine, same category | cosine, other category | centred, same | centred, other |",
        "|---|---|---|---|---|---|",
    ]
    for i, slot in enumerate(report["slots"]):
        lines.append(
            f"| {i} | {slot['norm']:.2f} | {slot['cosine_same_category']:.3f} | {slot['cosine_other_category']:.3f} | "
            f"{slot['centred_cosine_same_category']:.3f} | {slot['centred_cosine_other_category']:.3f} |"
        )
    return "\n".join(lines)
