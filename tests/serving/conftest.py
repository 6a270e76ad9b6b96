"""A tiny random Frozen checkpoint for the vLLM serving tests (run in .venv-vllm by scripts/test.sh).

Its language model is a Llama with head_dim 64 (vLLM's CPU attention rejects smaller heads). Its tokenizer is byte-level
BPE over printable ASCII, so every generated token decodes to exact text, the same in vLLM's incremental detokenizer and
in `tokenizer.decode`. The vocabulary has 128 rows (a multiple of vLLM's embedding padding of 64) and `<image>` gets id
128: out of the vocabulary, as with the bundled SmolLM2 (49152 of 49152).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

# The main environment has no vLLM: these tests run in .venv-vllm (scripts/setup_vllm.sh, scripts/test.sh).
if importlib.util.find_spec("vllm") is None:
    collect_ignore_glob = ["test_*.py"]

IMAGE_SIZE = 32
VOCAB_SIZE = 128
MAX_MODEL_LEN = 256
MAX_IMAGES = 4


def _byte_level_chars() -> dict[int, str]:
    """GPT-2's byte -> printable character table (what the ByteLevel pre-tokenizer emits)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    table, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            table[byte] = chr(byte)
        else:
            table[byte] = chr(256 + extra)
            extra += 1
    return table


def ascii_tokenizer():
    """Byte-level BPE (no merges) over "\\n" and printable ASCII, `</s>` as EOS, `<pad>`, filler special tokens up to
    VOCAB_SIZE, left padding."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = _byte_level_chars()
    vocab = {chars[byte]: index for index, byte in enumerate([10, *range(32, 127)])}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    specials = ["<pad>", "</s>"] + [f"<extra_{i}>" for i in range(VOCAB_SIZE - len(vocab) - 2)]
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", eos_token="</s>", padding_side="left",
        additional_special_tokens=specials[2:],
    )
    assert len(tokenizer) == VOCAB_SIZE, len(tokenizer)
    return tokenizer


def build_servable_model(folder: Path):
    """Saves a tiny random Frozen model and its processor to `folder` with `save_pretrained`; returns both."""
    from transformers import LlamaConfig

    from frozen_hf import FrozenConfig, FrozenForConditionalGeneration, FrozenImageProcessor, FrozenProcessor
    from tests.helpers.tiny import tiny_vision_config

    processor = FrozenProcessor(
        image_processor=FrozenImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}),
        tokenizer=ascii_tokenizer(),
        visual_prefix_length=2,
    )
    tokenizer = processor.tokenizer
    text_config = LlamaConfig(
        vocab_size=VOCAB_SIZE, hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=64, max_position_embeddings=MAX_MODEL_LEN, tie_word_embeddings=True,
        # A wide init, so that greedy continuations vary from step to step and with the images.
        initializer_range=0.2,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    config = FrozenConfig(
        vision_config=tiny_vision_config(), text_config=text_config, visual_prefix_length=2,
        image_token_id=processor.image_token_id,
    )
    torch.manual_seed(0)
    model = FrozenForConditionalGeneration(config).eval()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return model, processor


def scene_images(count: int, seed: int) -> list[Image.Image]:
    """Images of a coloured rectangle on a coloured background, of varied non-square sizes (the tiny random vision
    encoder tells these apart; uniform noise images all pool to nearly the same feature)."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        height, width = (int(v) for v in rng.integers(20, 48, 2))
        array = np.empty((height, width, 3), dtype=np.uint8)
        array[:] = rng.integers(0, 256, 3)
        top, left = int(rng.integers(0, height // 2)), int(rng.integers(0, width // 2))
        array[top : top + height // 2, left : left + width // 2] = rng.integers(0, 256, 3)
        images.append(Image.fromarray(array))
    return images


class HFReference:
    """Greedy `generate()` of the saved checkpoint, loaded back with `from_pretrained` as vLLM loads it."""

    def __init__(self, folder: Path):
        from frozen_hf import FrozenForConditionalGeneration, FrozenProcessor

        self.model = FrozenForConditionalGeneration.from_pretrained(folder).eval()
        self.processor = FrozenProcessor.from_pretrained(folder)

    def token_ids(self, text: str, images: list, max_new_tokens: int) -> list[int]:
        batch = self.processor(text=[text], images=[images] if images else None, return_tensors="pt")
        with torch.no_grad():
            out = self.model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False)
        return out[0, batch["input_ids"].shape[1]:].tolist()

    def text(self, text: str, images: list, max_new_tokens: int) -> str:
        ids = self.token_ids(text, images, max_new_tokens)
        return self.processor.tokenizer.decode(ids, skip_special_tokens=True)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("frozen_tiny_servable")
    build_servable_model(folder)
    return folder


@pytest.fixture(scope="session")
def hf(model_dir) -> HFReference:
    return HFReference(model_dir)


def engine_kwargs() -> dict:
    """The vLLM settings both the offline engine and the server use (fp32 and eager, as HF runs; a small KV cache)."""
    return dict(
        dtype="float32", enforce_eager=True, max_model_len=MAX_MODEL_LEN, limit_mm_per_prompt={"image": MAX_IMAGES},
        kv_cache_memory_bytes=64 * 2**20,
    )
