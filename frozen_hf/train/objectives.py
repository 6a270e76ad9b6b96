"""Training objectives on top of the captioning loss.

The word anchor ties the last embedding of each visual prefix to the frozen LM's input embedding of the word that
follows the image in its training text. With captions that lead with the object's name (the Shapes world's
shape-first captions: ``"<image> star, large, red, on the left."``) that word is the object's name, so the last
prefix slot comes to read like the name while the earlier slots carry the rest of the caption. A frozen LM binds a
new name to a repeated word in context (``"star: dax ... star:"``); it does not bind it to a captioning prefix,
whose embeddings for different images differ only by small offsets of one shared vector.

`FrozenTrainer` adds ``word_anchor_weight`` times this loss to the captioning loss; ``word_anchor_encoder_scale`` sets
the share of its gradient that reaches the vision encoder (the projection always gets all of it).
"""

from __future__ import annotations

import torch

from ..processing_frozen import IGNORE_INDEX

__all__ = ["next_word_anchor_loss", "next_word_anchor_targets"]


def next_word_anchor_targets(
    input_ids: torch.LongTensor, labels: torch.LongTensor, image_token_id: int, visual_prefix_length: int
) -> tuple[torch.BoolTensor, torch.LongTensor]:
    """For each image of the batch, in the order of its placeholders: whether the token right after its last
    placeholder is a training target (not padding, not another image, not cut off at the row's end), and that
    token's id (0 where it is not)."""
    if input_ids.shape != labels.shape:
        raise ValueError(f"input_ids {tuple(input_ids.shape)} and labels {tuple(labels.shape)} differ in shape.")
    flat_ids, flat_labels = input_ids.reshape(-1), labels.reshape(-1)
    placeholders = (flat_ids == image_token_id).nonzero().squeeze(-1)
    if placeholders.numel() % visual_prefix_length:
        raise ValueError(
            f"{placeholders.numel()} image placeholders are not a whole number of images of {visual_prefix_length}."
        )
    following = placeholders[visual_prefix_length - 1 :: visual_prefix_length] + 1
    row_length = input_ids.shape[-1]
    # An image at the end of its row is followed by the next row's first token, which is not its word.
    in_row = (following % row_length) != 0
    following = following.clamp(max=flat_ids.numel() - 1)
    valid = in_row & (flat_labels[following] != IGNORE_INDEX) & (flat_ids[following] != image_token_id)
    return valid, torch.where(valid, flat_ids[following], torch.zeros_like(following))


def next_word_anchor_loss(
    visual_prefixes: torch.Tensor,
    input_ids: torch.LongTensor,
    labels: torch.LongTensor,
    image_token_id: int,
    input_embeddings: torch.nn.Module,
) -> torch.Tensor:
    """Mean over the batch's images of ``|p - e|^2 / |e|^2``, where ``p`` is the image's last prefix embedding and
    ``e`` the LM's input embedding of the word after the image (`next_word_anchor_targets`). Zero (with the
    prefixes' graph) when no image is followed by a target.

    Args:
        visual_prefixes: `(num_images, visual_prefix_length, hidden_size)`, the model's `image_outputs.pooler_output`.
        input_ids, labels: the batch's token ids and next-token targets (`-100` where there is none).
        input_embeddings: the LM's input embedding module, called as the LM calls it (scaled embeddings included).
    """
    valid, target_ids = next_word_anchor_targets(input_ids, labels, image_token_id, visual_prefixes.shape[1])
    if valid.shape[0] != visual_prefixes.shape[0]:
        raise ValueError(f"{valid.shape[0]} images in input_ids but {visual_prefixes.shape[0]} visual prefixes.")
    if not bool(valid.any()):
        return visual_prefixes.sum() * 0.0
    last_slot = visual_prefixes[valid, -1].float()
    with torch.no_grad():
        targets = input_embeddings(target_ids[valid]).float()
    error = (last_slot - targets).pow(2).sum(-1) / targets.pow(2).sum(-1).clamp_min(1e-12)
    return error.mean()
