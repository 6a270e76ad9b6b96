"""PyTorch Frozen model: a trainable vision encoder that speaks to a frozen causal language model."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import torch
from torch import nn
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    GenerationMixin,
    PreTrainedConfig,
    PreTrainedModel,
)
from transformers.cache_utils import Cache
from transformers.modeling_outputs import (
    BaseModelOutputWithPooling,
    MultimodalBaseModelOutputWithPast,
    MultimodalCausalLMOutputWithPast,
)
from transformers.modeling_utils import load_state_dict, slice_logits_to_keep
from transformers.utils import SAFE_WEIGHTS_NAME, cached_file, logging

from .configuration_frozen import FrozenConfig


logger = logging.get_logger(__name__)

IMAGE_TOKEN = "<image>"

# What training changes, relative to `FrozenModel`: a trained-parts-only checkpoint holds exactly these.
TRAINED_PARTS = ("vision_model.", "visual_prefix.")

_HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "proxies", "revision", "subfolder", "token")

_COMMIT_HASH = re.compile(r"[0-9a-f]{40}")


class LanguageModelRevisionError(ValueError):
    """The language model a trained-parts-only checkpoint references is not available at the recorded revision."""


@dataclass
class FrozenModelOutputWithPast(MultimodalBaseModelOutputWithPast):
    """Output of [`FrozenModel`]: the language model's output plus `image_outputs` (the visual prefixes)."""


@dataclass
class FrozenCausalLMOutputWithPast(MultimodalCausalLMOutputWithPast):
    """Output of [`FrozenForConditionalGeneration`]: loss, logits, cache and `image_outputs`."""


class FrozenVisualPrefix(nn.Module):
    """Maps a pooled image feature of width `d_vision` to `n` embeddings of the language model's width `D`.

    This is the paper's single linear map to `D * n` channels, reshaped into `n` prefix embeddings.
    """

    def __init__(self, vision_feature_dim: int, hidden_size: int, visual_prefix_length: int):
        super().__init__()
        self.visual_prefix_length = visual_prefix_length
        self.hidden_size = hidden_size
        self.linear = nn.Linear(vision_feature_dim, visual_prefix_length * hidden_size)

    def forward(self, pooled_features: torch.Tensor) -> torch.Tensor:
        """`(num_images, d_vision)` -> `(num_images, n, D)`."""
        prefix = self.linear(pooled_features)
        return prefix.view(pooled_features.shape[0], self.visual_prefix_length, self.hidden_size)


def pool_vision_output(vision_outputs) -> torch.Tensor:
    """The backbone's pooled vector per image, `(num_images, d_vision)`, whatever the backbone family returns.

    ResNet pools to `(B, C, 1, 1)`, ConvNeXt/ViT/CLIP/Dinov2/timm to `(B, C)`; backbones without a pooler are
    mean-pooled over space (`(B, C, H, W)`) or tokens (`(B, L, C)`).
    """
    pooled = getattr(vision_outputs, "pooler_output", None)
    if pooled is None:
        hidden = vision_outputs.last_hidden_state
        pooled = hidden.mean(dim=(2, 3)) if hidden.ndim == 4 else hidden.mean(dim=1)
    return pooled.flatten(1)


class FrozenPreTrainedModel(PreTrainedModel):
    """Base class holding the Frozen family's transformers settings, weight init and language-model freezing."""

    config: FrozenConfig
    config_class = FrozenConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _skip_keys_device_placement = ["cache"]

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """Loads like any transformers model, then re-freezes the language model.

        Loading re-creates parameters with `requires_grad=True`, which would silently undo the freezing done in
        `__init__`.

        A checkpoint saved with `config.trained_parts_only` holds only the vision encoder and the projection: the
        language model is then loaded from `config.language_model_name_or_path` at `config.language_model_revision`
        (see [`load_frozen_language_model`]) and the trained weights are laid over it.
        """
        config = kwargs.get("config")
        if not isinstance(config, PreTrainedConfig):
            hub_kwargs = {name: kwargs[name] for name in _HUB_KWARGS if name in kwargs}
            config = cls.config_class.from_pretrained(config or pretrained_model_name_or_path, **hub_kwargs)
        if getattr(config, "trained_parts_only", False):
            kwargs["config"] = config
            return cls._from_trained_parts(pretrained_model_name_or_path, **kwargs)
        model = super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        if model.config.freeze_language_model:
            model.freeze_language_model()
        return model

    @classmethod
    def _from_trained_parts(
        cls, pretrained_model_name_or_path: str | os.PathLike, config: FrozenConfig, **kwargs
    ) -> "FrozenPreTrainedModel":
        hub_kwargs = {name: kwargs.pop(name) for name in _HUB_KWARGS if name in kwargs}
        language_model_kwargs = {name: kwargs.pop(name) for name in ("dtype", "attn_implementation") if name in kwargs}
        if "torch_dtype" in kwargs:
            language_model_kwargs.setdefault("dtype", kwargs.pop("torch_dtype"))
        # Credentials and cache settings apply to the language model's repo too; the revision is its own.
        for name in ("cache_dir", "force_download", "local_files_only", "proxies", "token"):
            if name in hub_kwargs:
                language_model_kwargs[name] = hub_kwargs[name]
        ignored = sorted(name for name in kwargs if not name.startswith("_") and name != "trust_remote_code")
        if ignored:
            logger.warning(f"Ignoring {ignored} when loading a trained-parts-only Frozen checkpoint.")

        language_model = load_frozen_language_model(config, **language_model_kwargs)
        model = cls._wrap_language_model(config, language_model)
        weights = cached_file(pretrained_model_name_or_path, SAFE_WEIGHTS_NAME, **hub_kwargs)
        model.load_trained_state_dict(load_state_dict(weights))
        try:
            model.generation_config = GenerationConfig.from_pretrained(pretrained_model_name_or_path, **hub_kwargs)
        except OSError:
            pass  # no generation_config.json: keep the language model's
        model.eval()
        if config.freeze_language_model:
            model.freeze_language_model()
        return model

    @classmethod
    def _wrap_language_model(cls, config: FrozenConfig, language_model: PreTrainedModel) -> "FrozenPreTrainedModel":
        """A model of this class around a loaded causal LM, with a freshly initialised vision encoder and projection."""
        # Build the LM skeleton on the meta device: its weights are about to be replaced by the pretrained ones.
        with torch.device("meta"):
            model = cls(config)
        base = model if isinstance(model, FrozenModel) else model.model
        base.language_model = language_model.base_model
        if isinstance(model, FrozenForConditionalGeneration):
            model.lm_head = language_model.get_output_embeddings()
        base.vision_model = AutoModel.from_config(config.vision_config)
        base.visual_prefix = FrozenVisualPrefix(
            config.vision_feature_dim, config.text_config.hidden_size, config.visual_prefix_length
        )
        model._init_weights(base.visual_prefix)
        base.visual_prefix.to(language_model.dtype)
        if isinstance(model, FrozenForConditionalGeneration):
            model.tie_weights()
        model.generation_config = language_model.generation_config
        model.freeze_language_model()
        return model

    def _trained_prefixes(self) -> tuple[str, ...]:
        base = "" if isinstance(self, FrozenModel) else "model."
        return tuple(base + name for name in TRAINED_PARTS)

    def trained_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights that training changes (vision encoder and visual prefix projection, buffers included), keyed
        as in `state_dict()`: what a trained-parts-only checkpoint holds."""
        return {k: v for k, v in self.state_dict().items() if k.startswith(self._trained_prefixes())}

    def load_trained_state_dict(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Loads a trained-parts-only state dict (from either head class) over this model's vision encoder and
        projection, refusing any weight outside them and any missing one."""
        base = "" if isinstance(self, FrozenModel) else "model."
        renamed = {}
        for key, value in state_dict.items():
            key = key.removeprefix("model.")
            renamed[base + key] = value
        prefixes = self._trained_prefixes()
        foreign = sorted(k for k in renamed if not k.startswith(prefixes))
        if foreign:
            raise ValueError(
                f"This trained-parts-only checkpoint holds weights outside the vision encoder and projection "
                f"({foreign[:5]}{' ...' if len(foreign) > 5 else ''}). Either its config.json wrongly sets "
                "trained_parts_only=true, or it was saved by hand: re-save it with save_pretrained."
            )
        missing = sorted(set(self.trained_state_dict()) - set(renamed))
        if missing:
            raise ValueError(
                f"This trained-parts-only checkpoint lacks trained weights: {missing[:5]}"
                f"{' ...' if len(missing) > 5 else ''}. It does not match its config's vision encoder."
            )
        self.load_state_dict(renamed, strict=False)

    def _language_model_modules(self) -> list[nn.Module]:
        base = self.model if isinstance(self, FrozenForConditionalGeneration) else self
        modules = [base.language_model]
        if isinstance(self, FrozenForConditionalGeneration):
            modules.append(self.lm_head)
        return modules

    def freeze_language_model(self) -> None:
        """Turns off gradients for every language model parameter (embeddings and head included) and puts the
        language model in eval mode, so that dropout cannot make a frozen LM stochastic during training."""
        for module in self._language_model_modules():
            module.requires_grad_(False)
            module.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.config.freeze_language_model:
            for module in self._language_model_modules():
                module.eval()
        return self

    def save_pretrained(self, save_directory: str | os.PathLike, *args, **kwargs):
        """Saves like any transformers model. With remote code enabled (`register_for_auto_class`), the saved
        `auto_map` names `AutoModel` too, which transformers' single `_auto_class` per class cannot express.
        With `config.trained_parts_only`, only [`trained_state_dict`] is written (unless `state_dict` is given)."""
        if self.config.trained_parts_only and kwargs.get("state_dict") is None:
            # The language model is referenced by Hub id and revision in the config, not stored.
            kwargs["state_dict"] = self.trained_state_dict()
        super().save_pretrained(save_directory, *args, **kwargs)
        if self._auto_class is not None and getattr(self.config, "auto_map", None):
            auto_map = dict(self.config.auto_map)
            auto_map.setdefault("AutoModel", "modeling_frozen.FrozenModel")
            auto_map.setdefault("AutoModelForImageTextToText", "modeling_frozen.FrozenForConditionalGeneration")
            if auto_map != self.config.auto_map:
                self.config.auto_map = auto_map
                self.config.save_pretrained(save_directory)

    def _init_weights(self, module: nn.Module) -> None:
        # Only the projection is ours; the backbone and the LM initialise themselves (or are loaded).
        if isinstance(module, FrozenVisualPrefix):
            std = getattr(self.config.text_config, "initializer_range", 0.02)
            nn.init.normal_(module.linear.weight, mean=0.0, std=std)
            nn.init.zeros_(module.linear.bias)
        else:
            super()._init_weights(module)


class FrozenModel(FrozenPreTrainedModel):
    """Vision backbone + visual prefix projection + the language model's base (no LM head).

    Each image becomes `config.visual_prefix_length` embeddings that replace the placeholder tokens of that image in
    `input_ids`; the language model then reads the sequence as if those were token embeddings.
    """

    def __init__(self, config: FrozenConfig):
        super().__init__(config)
        self.vision_model = AutoModel.from_config(config.vision_config)
        vision_feature_dim = config.vision_feature_dim or _read_vision_feature_dim(self.vision_model)
        config.vision_feature_dim = vision_feature_dim
        self.visual_prefix = FrozenVisualPrefix(
            vision_feature_dim, config.text_config.hidden_size, config.visual_prefix_length
        )
        self.language_model = AutoModel.from_config(config.text_config)
        self.post_init()
        if config.freeze_language_model:
            self.freeze_language_model()

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def get_image_features(self, pixel_values: torch.Tensor, **kwargs) -> BaseModelOutputWithPooling:
        """Encodes images into visual prefixes.

        Args:
            pixel_values (`torch.Tensor` of shape `(num_images, channels, height, width)`):
                All images of the batch, flat, in the order of their placeholders.

        Returns:
            `BaseModelOutputWithPooling` whose `pooler_output` is `(num_images, visual_prefix_length, hidden_size)`.
        """
        self._check_pixel_values(pixel_values)
        vision_outputs = self.vision_model(pixel_values=pixel_values, return_dict=True)
        pooled = pool_vision_output(vision_outputs)
        prefix = self.visual_prefix(pooled.to(self.visual_prefix.linear.weight.dtype))
        return BaseModelOutputWithPooling(last_hidden_state=prefix, pooler_output=prefix)

    def _check_pixel_values(self, pixel_values: torch.Tensor) -> None:
        if not isinstance(pixel_values, torch.Tensor):
            raise ValueError(
                f"pixel_values must be a torch.Tensor of shape (num_images, channels, height, width), got "
                f"{type(pixel_values).__name__}. Build it with FrozenProcessor(..., return_tensors='pt')."
            )
        channels = getattr(self.config.vision_config, "num_channels", 3)
        if pixel_values.ndim != 4 or pixel_values.shape[1] != channels:
            raise ValueError(
                f"pixel_values must have shape (num_images, {channels}, height, width), got "
                f"{tuple(pixel_values.shape)}. Pass all images of the batch flat (one row per <image>), "
                "as FrozenProcessor returns them."
            )

    def get_placeholder_mask(self, input_ids: torch.LongTensor, num_images: int) -> torch.BoolTensor:
        """Boolean mask of the image placeholder positions in `input_ids`, checked against the number of images."""
        mask = input_ids == self.config.image_token_id
        num_placeholders = int(mask.sum())
        n = self.config.visual_prefix_length
        if num_placeholders != num_images * n:
            raise ValueError(
                f"Found {num_placeholders} image placeholder tokens for {num_images} images, but each image needs "
                f"visual_prefix_length={n} placeholders ({num_images * n} in all). Either the number of images "
                "differs from the number of <image> markers, or the processor's visual_prefix_length differs from "
                "the model config's: build both with the same value (FrozenProcessor.from_pretrained on the model's "
                "folder does)."
            )
        return mask

    def embed_tokens(self, input_ids: torch.LongTensor) -> torch.Tensor:
        """Token embeddings with placeholder positions looked up as token 0: the placeholder id may lie outside the
        frozen vocabulary, and those rows are overwritten by the visual prefix anyway."""
        safe_ids = input_ids.masked_fill(input_ids == self.config.image_token_id, 0)
        return self.get_input_embeddings()(safe_ids)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        mm_encoder_outputs: dict[str, BaseModelOutputWithPooling] | None = None,
        **kwargs,
    ) -> FrozenModelOutputWithPast:
        r"""
        Args:
            input_ids: token ids where each image is a run of `visual_prefix_length` placeholder tokens.
            pixel_values: `(num_images, C, H, W)`, all images of the batch in placeholder order.
            mm_encoder_outputs: `{"image": get_image_features(...)}` computed once, e.g. by `generate()`.
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of input_ids or inputs_embeds.")
        if pixel_values is not None and mm_encoder_outputs:
            raise ValueError("Pass either pixel_values or mm_encoder_outputs, not both.")

        mm_encoder_outputs = dict(mm_encoder_outputs) if mm_encoder_outputs else {}
        if mm_encoder_outputs.get("image") is None and pixel_values is not None:
            mm_encoder_outputs["image"] = self.get_image_features(pixel_values=pixel_values)
        image_outputs = mm_encoder_outputs.get("image")

        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        if image_outputs is not None:
            if input_ids is None:
                raise ValueError(
                    "Images need input_ids to locate their placeholders: pass input_ids instead of inputs_embeds."
                )
            prefix = image_outputs.pooler_output
            if isinstance(prefix, (list, tuple)):
                prefix = torch.stack(list(prefix))
            mask = self.get_placeholder_mask(input_ids, num_images=prefix.shape[0])
            prefix = prefix.reshape(-1, prefix.shape[-1]).to(inputs_embeds.device, inputs_embeds.dtype)
            inputs_embeds = inputs_embeds.masked_scatter(mask.unsqueeze(-1), prefix)
        elif input_ids is not None and bool((input_ids == self.config.image_token_id).any()):
            raise ValueError(
                "input_ids hold image placeholder tokens but no pixel_values were given: pass the images too."
            )

        if position_ids is None:
            position_ids = positions_from_attention_mask(attention_mask, cache, inputs_embeds.shape[1])
        outputs = self.language_model(
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            **kwargs,
        )
        return FrozenModelOutputWithPast(
            last_hidden_state=outputs.last_hidden_state,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            image_outputs=image_outputs,
        )


class FrozenForConditionalGeneration(FrozenPreTrainedModel, GenerationMixin):
    """[`FrozenModel`] with the language model's head: captioning loss, few-shot prompting and `generate()`.

    Example:

    ```python
    >>> from frozen_hf import FrozenForConditionalGeneration, FrozenProcessor, default_language_model_path
    >>> lm = default_language_model_path()
    >>> model = FrozenForConditionalGeneration.from_language_model(lm)
    >>> processor = FrozenProcessor.from_language_model(lm)
    >>> batch = processor(text=["<image> This is a dax.\\n<image> This is a"], images=[[img1, img2]],
    ...                   return_tensors="pt")
    >>> ids = model.generate(**batch, max_new_tokens=5)
    ```
    """

    def __init__(self, config: FrozenConfig):
        super().__init__(config)
        self.model = FrozenModel(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        # Tie to wherever this LM family keeps its embeddings (`embed_tokens` for Llama, `wte` for GPT-2, ...).
        embedding_name = _module_name(self.model.language_model, self.model.language_model.get_input_embeddings())
        self._tied_weights_keys = {"lm_head.weight": f"model.language_model.{embedding_name}.weight"}
        self.post_init()
        if config.freeze_language_model:
            self.freeze_language_model()

    def get_input_embeddings(self) -> nn.Module:
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Module) -> None:
        self.lm_head = value

    @property
    def language_model(self) -> nn.Module:
        return self.model.language_model

    @property
    def vision_model(self) -> nn.Module:
        return self.model.vision_model

    def get_image_features(self, pixel_values: torch.Tensor, **kwargs) -> BaseModelOutputWithPooling:
        """See [`FrozenModel.get_image_features`]."""
        return self.model.get_image_features(pixel_values=pixel_values, **kwargs)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        mm_encoder_outputs: dict[str, BaseModelOutputWithPooling] | None = None,
        return_logits: bool = True,
        **kwargs,
    ) -> FrozenCausalLMOutputWithPast:
        r"""
        Args:
            labels (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
                Next-token targets, *not* shifted: `input_ids` with `-100` at placeholders and padding
                (`FrozenProcessor.create_labels` builds them). The loss is the mean NLL of the caption tokens.
            logits_to_keep: compute logits for the last `logits_to_keep` positions only (0 = all).
            return_logits: with `labels`, `False` skips the logits (`logits` is `None`) and runs the LM head only
                at the positions that have a target, for the same loss: image placeholders, prompt and padding
                cost no head and no softmax. The training program uses it for its training steps.
        """
        outputs = self.model(
            input_ids=input_ids,
            pixel_values=pixel_values,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            mm_encoder_outputs=mm_encoder_outputs,
            **{k: v for k, v in kwargs.items() if k != "num_items_in_batch"},
        )
        if labels is not None:
            # Placeholders are never targets; masking them here also keeps an out-of-vocabulary id out of the loss.
            labels = labels.masked_fill(labels == self.config.image_token_id, -100)
        if labels is not None and not return_logits:
            logits = None
            loss = causal_lm_loss_at_targets(
                self.lm_head, outputs.last_hidden_state, labels, kwargs.get("num_items_in_batch")
            )
        else:
            # A slice such as the last position is a strided view; made contiguous, the head is one matrix product
            # instead of a batched one that reads the (vocab x hidden) weight once per row.
            hidden_states = slice_logits_to_keep(outputs.last_hidden_state, logits_to_keep).contiguous()
            logits = self.lm_head(hidden_states)
            loss = None
            if labels is not None:
                loss = self.loss_function(
                    logits=logits, labels=labels, vocab_size=self.config.text_config.vocab_size, **kwargs
                )
        return FrozenCausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            image_outputs=outputs.image_outputs,
        )

    @classmethod
    def from_language_model(
        cls,
        language_model_name_or_path: str | os.PathLike,
        vision_config: dict | object | None = None,
        visual_prefix_length: int = 2,
        image_token_id: int | None = None,
        revision: str | None = None,
        **kwargs,
    ) -> "FrozenForConditionalGeneration":
        """Builds a Frozen model around a pretrained causal LM (Hub id or local folder) with a fresh vision encoder.

        The language model's weights are used exactly as loaded and frozen. Extra `kwargs` (`dtype`,
        `attn_implementation`, `trust_remote_code`, `token`, ...) go to `AutoModelForCausalLM.from_pretrained`.

        Args:
            language_model_name_or_path: Hub id or folder of any `AutoModelForCausalLM` checkpoint.
            vision_config: config (or dict with `model_type`) of the vision backbone, trained from scratch.
                Defaults to `default_vision_config()`, a small ResNet.
            visual_prefix_length: number of prefix embeddings per image.
            image_token_id: placeholder id; by default the id the LM's tokenizer gives `<image>` once
                [`FrozenProcessor.from_language_model`] adds it.
            revision: Hub revision of the language model.
        """
        from transformers import AutoConfig, PreTrainedConfig
        from transformers.utils.hub import resolve_revision

        # Pin the commit once, so that the config records exactly which LM the vision encoder is trained against.
        revision = resolve_revision(str(language_model_name_or_path), revision, token=kwargs.get("token"))
        language_model = AutoModelForCausalLM.from_pretrained(language_model_name_or_path, revision=revision, **kwargs)
        if image_token_id is None:
            tokenizer = AutoTokenizer.from_pretrained(language_model_name_or_path, revision=revision)
            image_token_id = placeholder_token_id(tokenizer)
        if vision_config is None:
            vision_config = default_vision_config()
        elif isinstance(vision_config, dict):
            vision_config = dict(vision_config)
            vision_config = AutoConfig.for_model(vision_config.pop("model_type"), **vision_config)
        if not isinstance(vision_config, PreTrainedConfig):
            raise ValueError(f"vision_config must be a transformers config or a dict, got {type(vision_config)}.")
        config = cls.config_class(
            vision_config=vision_config,
            text_config=language_model.config,
            visual_prefix_length=visual_prefix_length,
            image_token_id=image_token_id,
            language_model_name_or_path=str(language_model_name_or_path),
            language_model_revision=getattr(revision, "resolved", None) or revision,
        )
        return cls._wrap_language_model(config, language_model)


def positions_from_attention_mask(
    attention_mask: torch.Tensor | None, cache: Cache | None, num_new_tokens: int
) -> torch.LongTensor | None:
    """Position ids that count only attended tokens, as `generate()` derives them; `None` where the mask cannot say.

    Without them a left-padded sample's real tokens start at the pad count instead of 0, so an absolute-position LM
    (GPT-2, OPT, ...) would give a sample different logits depending on what else is in its batch.
    """
    if attention_mask is None or attention_mask.ndim != 2:
        return None
    past = cache.get_seq_length() if cache is not None else 0
    if attention_mask.shape[1] != past + num_new_tokens:
        return None
    position_ids = (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)
    return position_ids[:, past:]


def load_frozen_language_model(config: FrozenConfig, **kwargs) -> PreTrainedModel:
    """Loads the causal LM a trained-parts-only checkpoint references, at the revision it was trained with.

    `config.language_model_name_or_path` is a Hub id (or a local folder, where revisions do not apply) and
    `config.language_model_revision` the commit it was trained with. The revision is checked twice: the Hub must still
    resolve it to that same commit (a deleted or rewritten history does not), and the loaded files must come from it.
    `kwargs` go to `AutoModelForCausalLM.from_pretrained` (`dtype`, `token`, `cache_dir`, ...); the LM repo's own
    remote code is never trusted implicitly.

    Raises:
        LanguageModelRevisionError: the LM is not available at the recorded revision; the message names both the
            recorded revision and the one the Hub has now.
    """
    name = config.language_model_name_or_path
    revision = config.language_model_revision
    if not name:
        raise ValueError(
            "This checkpoint holds only the trained vision weights (trained_parts_only=true) but its config does not "
            "say which language model they belong to (language_model_name_or_path is empty)."
        )
    if os.path.isdir(name):
        return AutoModelForCausalLM.from_pretrained(name, **kwargs)
    if not revision:
        raise ValueError(
            f"This trained-parts-only checkpoint references the language model {name!r} without a revision, so it "
            "cannot tell whether the LM on the Hub is the one it was trained with. Set language_model_revision to the "
            "commit it was trained with in config.json."
        )
    recorded = _check_language_model_revision(name, revision, kwargs.get("token"), kwargs.get("local_files_only"))
    language_model = AutoModelForCausalLM.from_pretrained(name, revision=revision, **kwargs)
    loaded = getattr(language_model.config, "_commit_hash", None)
    if recorded and loaded and loaded != recorded:
        raise LanguageModelRevisionError(
            f"The language model {name!r} was loaded at revision {loaded}, but this checkpoint was trained with "
            f"revision {recorded}. Its vision weights only fit the language model they were trained with."
        )
    return language_model


def _check_language_model_revision(
    name: str, revision: str, token: str | bool | None, local_files_only: bool | None
) -> str | None:
    """The commit the recorded revision names (checked against the Hub when online), or `None` if unknown offline."""
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import RevisionNotFoundError

    if local_files_only or constants.HF_HUB_OFFLINE:
        # The cache is keyed by commit, so a recorded commit hash is still checked after loading.
        return revision if _COMMIT_HASH.fullmatch(revision) else None
    api = HfApi()
    try:
        resolved = api.model_info(name, revision=revision, token=token).sha
    except RevisionNotFoundError as err:
        try:
            current = api.model_info(name, token=token).sha
        except Exception:  # the repo may be gone altogether; the message above still holds
            current = "unknown (the repository could not be read)"
        raise LanguageModelRevisionError(
            f"This checkpoint was trained with the language model {name!r} at revision {revision}, but the Hub no "
            f"longer has that revision (the repository's main branch is now at revision {current}). Its vision weights "
            "only fit the language model they were trained with: restore that revision of the LM, or retrain against "
            "the current one."
        ) from err
    if _COMMIT_HASH.fullmatch(revision) and resolved != revision:
        raise LanguageModelRevisionError(
            f"This checkpoint was trained with the language model {name!r} at revision {revision}, but the Hub "
            f"resolves that revision to {resolved}. Its vision weights only fit the language model they were trained "
            "with."
        )
    if not _COMMIT_HASH.fullmatch(revision):
        logger.warning(
            f"This checkpoint references {name!r} at {revision!r}, a branch or tag that can move; loading commit "
            f"{resolved}. Pin language_model_revision to a commit hash to make sure the LM is the one it was trained with."
        )
    return resolved


def causal_lm_loss_at_targets(
    lm_head: nn.Module,
    hidden_states: torch.Tensor,
    labels: torch.Tensor,
    num_items_in_batch: torch.Tensor | int | None = None,
) -> torch.Tensor:
    """The causal-LM loss of transformers' `ForCausalLMLoss` (labels unshifted, -100 ignored; mean over targets, or
    sum / `num_items_in_batch` when given), with `lm_head` run only at the positions that have a target."""
    targets = nn.functional.pad(labels, (0, 1), value=-100)[..., 1:].to(hidden_states.device)
    keep = targets != -100
    logits = lm_head(hidden_states[keep]).float()
    if num_items_in_batch is None:
        return nn.functional.cross_entropy(logits, targets[keep], reduction="mean")
    loss = nn.functional.cross_entropy(logits, targets[keep], reduction="sum")
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(loss.device)
    return loss / num_items_in_batch


def default_vision_config():
    """The default vision encoder, trained from scratch: a small ResNet (1.2M parameters, BatchNorm, ReLU), sized
    for CPU.

    Through a frozen LM it learns to name colour, shape, size and position of Shapes objects within a few hundred
    steps. A ConvNeXt of similar size learns far more slowly from scratch there: its blocks start scaled by 1e-6
    (layer scale), and after 100 steps it still gave one caption for every image.
    """
    from transformers import ResNetConfig

    return ResNetConfig(embedding_size=32, hidden_sizes=[32, 64, 128, 256], depths=[1, 1, 1, 1], layer_type="basic")


def placeholder_token_id(tokenizer) -> int:
    """The id `<image>` has in `tokenizer`, or the id it gets when added as a new special token."""
    vocab = tokenizer.get_vocab()
    return vocab[IMAGE_TOKEN] if IMAGE_TOKEN in vocab else len(tokenizer)


def _module_name(root: nn.Module, target: nn.Module) -> str:
    for name, module in root.named_modules():
        if module is target:
            return name
    raise ValueError("The language model's input embeddings are not one of its submodules.")


def _read_vision_feature_dim(vision_model: nn.Module) -> int:
    for owner in (vision_model, getattr(vision_model, "timm_model", None)):
        value = getattr(owner, "num_features", None)
        if isinstance(value, int):
            return value
    raise ValueError(
        "Cannot tell the width of this vision backbone's pooled output: set FrozenConfig(vision_feature_dim=...)."
    )


__all__ = [
    "FrozenForConditionalGeneration",
    "FrozenModel",
    "FrozenPreTrainedModel",
    "FrozenVisualPrefix",
    "LanguageModelRevisionError",
    "causal_lm_loss_at_targets",
    "load_frozen_language_model",
]
