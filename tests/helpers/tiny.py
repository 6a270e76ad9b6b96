"""Tiny random Frozen models, processors and images for fast tests (import as `from tests.helpers.tiny import ...`)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    CLIPVisionConfig,
    ConvNextConfig,
    Gemma3TextConfig,
    GPT2Config,
    LlamaConfig,
    PreTrainedConfig,
    PreTrainedTokenizerFast,
    ResNetConfig,
    ViTConfig,
)

from frozen_hf import FrozenConfig, FrozenForConditionalGeneration, FrozenImageProcessor, FrozenProcessor


WORDS = (
    "this is a an the dax blicket wug zup red blue green yellow circle square triangle star large small "
    "left right top bottom what colour shape question answer : . , ? there in on of and"
).split()
SPECIAL = ["<unk>", "<pad>", "</s>"]
IMAGE_SIZE = 32


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer over a few dozen words (left padding, `</s>` as EOS)."""
    vocab = {word: index for index, word in enumerate(dict.fromkeys(SPECIAL + WORDS))}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>", eos_token="</s>", padding_side="left"
    )


def tiny_text_config(family: str = "llama", vocab_size: int | None = None, sliding_window: int = 16) -> PreTrainedConfig:
    vocab_size = vocab_size or len(SPECIAL) + len(WORDS)
    if family == "llama":
        return LlamaConfig(
            vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=True,
            pad_token_id=1, bos_token_id=2, eos_token_id=2,
        )
    if family == "gpt2":
        return GPT2Config(
            vocab_size=vocab_size, n_embd=32, n_layer=2, n_head=4, n_positions=256,
            pad_token_id=1, bos_token_id=2, eos_token_id=2,
        )
    if family == "gemma3":  # sliding-window layers beside full-attention ones, like Gemma 3 270M
        return Gemma3TextConfig(
            vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, head_dim=8, max_position_embeddings=256, sliding_window=sliding_window,
            layer_types=["sliding_attention", "full_attention"], pad_token_id=1, bos_token_id=2, eos_token_id=2,
        )
    raise ValueError(family)


def tiny_vision_config(family: str = "resnet") -> PreTrainedConfig:
    if family == "resnet":
        return ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")
    if family == "convnext":
        return ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2, image_size=IMAGE_SIZE)
    if family == "vit":
        return ViTConfig(
            hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
            image_size=IMAGE_SIZE, patch_size=8,
        )
    if family == "clip":
        return CLIPVisionConfig(
            hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
            image_size=IMAGE_SIZE, patch_size=8,
        )
    raise ValueError(family)


def tiny_processor(visual_prefix_length: int = 2) -> FrozenProcessor:
    image_processor = FrozenImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    return FrozenProcessor(
        image_processor=image_processor, tokenizer=tiny_tokenizer(), visual_prefix_length=visual_prefix_length
    )


def tiny_config(
    processor: FrozenProcessor, vision: str = "resnet", text: str = "llama", visual_prefix_length: int = 2, **kwargs
) -> FrozenConfig:
    return FrozenConfig(
        vision_config=tiny_vision_config(vision),
        text_config=tiny_text_config(text),
        visual_prefix_length=visual_prefix_length,
        image_token_id=processor.image_token_id,
        **kwargs,
    )


def tiny_model(
    processor: FrozenProcessor, vision: str = "resnet", text: str = "llama", seed: int = 0, **kwargs
) -> FrozenForConditionalGeneration:
    torch.manual_seed(seed)
    model = FrozenForConditionalGeneration(
        tiny_config(processor, vision=vision, text=text, visual_prefix_length=processor.visual_prefix_length, **kwargs)
    )
    return model.eval()


def random_images(count: int, seed: int = 0, size: tuple[int, int] = (24, 40)) -> list[Image.Image]:
    """Random RGB images (non-square, so zero-padding to square is exercised)."""
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)) for _ in range(count)]
