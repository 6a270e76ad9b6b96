"""PyTorch Frozen model: a trainable vision encoder that speaks to a frozen causal language model."""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoModel, GenerationMixin, PreTrainedModel
from transformers.cache_utils import Cache
from transformers.modeling_outputs import BaseModelOutputWithPast, BaseModelOutputWithPooling, CausalLMOutputWithPast
from transformers.processing_utils import Unpack
from transformers.utils import TransformersKwargs
from transformers.utils.deprecation import deprecate_kwarg
from transformers.utils.generic import can_return_tuple

from .configuration_frozen import FrozenConfig
from .loading_frozen import FrozenLoadingMixin


try:
    from transformers.modeling_utils import slice_logits_to_keep
except ImportError:  # transformers < 5.21, where causal LMs slice inline

    def slice_logits_to_keep(hidden_states: torch.Tensor, logits_to_keep: int | torch.Tensor) -> torch.Tensor:
        """`hidden_states` at the positions to compute logits for: the last `logits_to_keep` (an int; 0 keeps all),
        the positions of a 1D tensor, per-sample positions of a 2D integer tensor, or the `True` positions of a 2D
        boolean mask (flattened), as transformers' own `slice_logits_to_keep` does."""
        if isinstance(logits_to_keep, torch.Tensor) and logits_to_keep.ndim == 2:
            if logits_to_keep.dtype == torch.bool:
                return hidden_states[logits_to_keep]
            return torch.take_along_dim(hidden_states, logits_to_keep[..., None], dim=1)
        if isinstance(logits_to_keep, int):
            logits_to_keep = slice(-logits_to_keep, None)
        return hidden_states[:, logits_to_keep, :]


# transformers 5.24 renamed the cache argument and output field from `past_key_values` to `cache`; the family speaks
# whichever name the installed release uses, so that `generate()` of every supported release finds its cache.
CACHE_NAME = "cache" if "cache" in BaseModelOutputWithPast.__dataclass_fields__ else "past_key_values"


def accepts_legacy_cache_name(forward):
    """Takes the cache under both names: under `cache` releases the old name is deprecated (as in native models),
    before them it is the name `generate()` passes."""
    if CACHE_NAME == "cache":
        return deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")(forward)

    @functools.wraps(forward)
    def wrapper(self, *args, **kwargs):
        if "past_key_values" in kwargs:
            kwargs["cache"] = kwargs.pop("past_key_values")
        return forward(self, *args, **kwargs)

    # transformers < 5.24 reads the forward's signature for the names it may pass (assisted decoding hands the
    # assistant its cache as `past_key_values=`), so the signature names the cache as those releases do.
    signature = inspect.signature(forward)
    parameters = [p.replace(name="past_key_values") if p.name == "cache" else p for p in signature.parameters.values()]
    wrapper.__signature__ = signature.replace(parameters=parameters)
    return wrapper


@dataclass
class FrozenModelOutputWithPast(BaseModelOutputWithPast):
    """Output of [`FrozenModel`]: the language model's output plus `image_outputs` (`get_image_features`'s output,
    whose `pooler_output` holds the visual prefixes)."""

    image_outputs: BaseModelOutputWithPooling | None = None


@dataclass
class FrozenCausalLMOutputWithPast(CausalLMOutputWithPast):
    """Output of [`FrozenForConditionalGeneration`]: loss, logits, cache and `image_outputs`."""

    image_outputs: BaseModelOutputWithPooling | None = None


class FrozenVisualPrefix(nn.Module):
    """Maps a pooled image feature of width `d_vision` to `n` embeddings of the language model's width `D`.

    This is the paper's single linear map to `D * n` channels, reshaped into `n` prefix embeddings. Two options, off
    by default, shape what the LM reads:
    - `centered`: the mean prefix is subtracted (the batch's while training, a running mean of training batches
      after), so that the prefix holds only what tells images apart. A linear map trained through a frozen LM
      otherwise settles on one shared vector with small image-specific offsets (cosine 0.95 to 0.99 between
      prefixes of different Shapes images), which the LM's in-context matching cannot tell apart.
    - `target_rms`: each prefix embedding is rescaled to that root mean square (no learnt gain), so the LM reads it
      at the scale of its word embeddings whatever scale the linear map drifts to.
    """

    def __init__(
        self,
        vision_feature_dim: int,
        hidden_size: int,
        visual_prefix_length: int,
        target_rms: float | None = None,
        centered: bool = False,
        centering_momentum: float = 0.1,
    ):
        super().__init__()
        self.visual_prefix_length = visual_prefix_length
        self.hidden_size = hidden_size
        self.target_rms = target_rms
        self.centered = centered
        self.centering_momentum = centering_momentum
        self.linear = nn.Linear(vision_feature_dim, visual_prefix_length * hidden_size)
        if centered:
            self.register_buffer("running_mean", torch.zeros(visual_prefix_length * hidden_size))

    @classmethod
    def from_config(cls, config: FrozenConfig) -> FrozenVisualPrefix:
        """The projection a `FrozenConfig` describes (its `vision_feature_dim` already known)."""
        return cls(
            config.vision_feature_dim,
            config.text_config.hidden_size,
            config.visual_prefix_length,
            target_rms=config.visual_prefix_rms,
            centered=config.visual_prefix_centered,
        )

    def forward(self, pooled_features: torch.Tensor) -> torch.Tensor:
        """`(num_images, d_vision)` -> `(num_images, n, D)`."""
        prefix = self.linear(pooled_features)
        if self.centered:
            if self.training and prefix.shape[0] > 1:
                mean = prefix.mean(dim=0)
                with torch.no_grad():
                    self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), self.centering_momentum)
            else:
                mean = self.running_mean.to(prefix.dtype)
            prefix = prefix - mean
        prefix = prefix.view(pooled_features.shape[0], self.visual_prefix_length, self.hidden_size)
        if self.target_rms is not None:
            mean_square = prefix.float().pow(2).mean(dim=-1, keepdim=True)
            prefix = (prefix.float() * torch.rsqrt(mean_square + 1e-6) * self.target_rms).to(prefix.dtype)
        return prefix


class PlaceholderSafeEmbedding(nn.Embedding):
    """The language model's input embedding, looking up the image placeholder id as token 0.

    The placeholder may lie outside the frozen vocabulary (SmolLM2's `<image>` is id 49152 of a 49152-row table), and
    its rows are overwritten by the visual prefix anyway. Code that embeds `input_ids` through `get_input_embeddings()`
    itself, as vLLM's Transformers backend does, then needs no row for it. Other ids are looked up unchanged.
    """

    placeholder_token_id: int | None = None

    def forward(self, input_ids: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if self.placeholder_token_id is not None:
            input_ids = input_ids.masked_fill(input_ids == self.placeholder_token_id, 0)
        return super().forward(input_ids, *args, **kwargs)


@functools.cache
def _placeholder_safe_class(cls: type[nn.Embedding]) -> type[PlaceholderSafeEmbedding]:
    if cls is nn.Embedding:
        return PlaceholderSafeEmbedding
    # An LM's own embedding subclass (e.g. Gemma's scaled one) keeps its forward, after the placeholder lookup.
    return type(cls.__name__, (PlaceholderSafeEmbedding, cls), {})


def make_placeholder_safe(embedding: nn.Module, placeholder_token_id: int) -> None:
    """Makes `embedding` (an `nn.Embedding`, weights untouched) look up `placeholder_token_id` as token 0."""
    if not isinstance(embedding, nn.Embedding):
        return
    if not isinstance(embedding, PlaceholderSafeEmbedding):
        embedding.__class__ = _placeholder_safe_class(type(embedding))
    embedding.placeholder_token_id = placeholder_token_id


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


class FrozenPreTrainedModel(FrozenLoadingMixin, PreTrainedModel):
    """Base class holding the Frozen family's transformers settings, weight init and language-model freezing
    (loading and saving come from [`FrozenLoadingMixin`])."""

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
    _skip_keys_device_placement = [CACHE_NAME]

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

    def _set_gradient_checkpointing(self, enable: bool = True, gradient_checkpointing_func=None, **kwargs):
        # The funnel of `activation_checkpointing_enable` and `gradient_checkpointing_enable` in every supported release.
        # Checkpointing is always non-reentrant: a reentrant checkpoint gives no gradient to the parameters of a layer
        # whose inputs carry none (a trainable layer above frozen ones: a partly frozen backbone, LoRA in a frozen LM).
        if enable:
            gradient_checkpointing_func = non_reentrant_checkpoint(gradient_checkpointing_func)
        super()._set_gradient_checkpointing(enable=enable, gradient_checkpointing_func=gradient_checkpointing_func, **kwargs)

    def _init_weights(self, module: nn.Module) -> None:
        # Only the projection is ours; the backbone and the LM initialise themselves (or are loaded).
        if isinstance(module, FrozenVisualPrefix):
            std = getattr(self.config.text_config, "initializer_range", 0.02)
            nn.init.normal_(module.linear.weight, mean=0.0, std=std)
            nn.init.zeros_(module.linear.bias)
            if module.centered:
                nn.init.zeros_(module.running_mean)
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
        self.visual_prefix = FrozenVisualPrefix.from_config(config)
        self.language_model = AutoModel.from_config(config.text_config)
        make_placeholder_safe(self.language_model.get_input_embeddings(), config.image_token_id)
        self.post_init()
        if config.freeze_language_model:
            self.freeze_language_model()

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    @can_return_tuple
    def get_image_features(
        self, pixel_values: torch.Tensor, **kwargs: Unpack[TransformersKwargs]
    ) -> tuple | BaseModelOutputWithPooling:
        """Encodes images into visual prefixes.

        Args:
            pixel_values (`torch.Tensor` of shape `(num_images, channels, height, width)`):
                All images of the batch, flat, in the order of their placeholders.
            output_hidden_states, output_attentions: passed to the vision encoder (CNN backbones return no attentions).

        Returns:
            `BaseModelOutputWithPooling` (a tuple with `return_dict=False`): `last_hidden_state`, `hidden_states` and
            `attentions` are the vision encoder's; `pooler_output` is the visual prefix,
            `(num_images, visual_prefix_length, hidden_size)`.
        """
        self._check_pixel_values(pixel_values)
        vision_kwargs = {
            name: kwargs[name] for name in ("output_hidden_states", "output_attentions") if kwargs.get(name) is not None
        }
        vision_outputs = self.vision_model(pixel_values=pixel_values, return_dict=True, **vision_kwargs)
        pooled = pool_vision_output(vision_outputs)
        prefix = self.visual_prefix(pooled.to(self.visual_prefix.linear.weight.dtype))
        return BaseModelOutputWithPooling(
            last_hidden_state=vision_outputs.last_hidden_state,
            pooler_output=prefix,
            hidden_states=getattr(vision_outputs, "hidden_states", None),
            attentions=getattr(vision_outputs, "attentions", None),
        )

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

    def get_placeholder_mask(
        self, input_ids: torch.LongTensor | None, num_images: int, inputs_embeds: torch.Tensor | None = None
    ) -> torch.BoolTensor:
        """Boolean mask of the image placeholder positions, checked against the number of images.

        Read from `input_ids`, or, without them, from the rows of `inputs_embeds` that equal the placeholder's
        embedding (what [`embed_tokens`] gives the placeholder id), as llava does.
        """
        if input_ids is None:
            placeholder = self.embed_tokens(
                torch.full((1,), self.config.image_token_id, dtype=torch.long, device=inputs_embeds.device)
            )[0]
            mask = (inputs_embeds == placeholder.to(inputs_embeds.dtype)).all(-1)
        else:
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

    @can_return_tuple
    @accepts_legacy_cache_name
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        mm_encoder_outputs: dict[str, BaseModelOutputWithPooling] | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple | FrozenModelOutputWithPast:
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
            mm_encoder_outputs["image"] = self.get_image_features(pixel_values=pixel_values, return_dict=True)
        image_outputs = mm_encoder_outputs.get("image")

        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        if image_outputs is not None:
            prefix = image_outputs.pooler_output
            if isinstance(prefix, (list, tuple)):
                prefix = torch.stack(list(prefix))
            mask = self.get_placeholder_mask(input_ids, num_images=prefix.shape[0], inputs_embeds=inputs_embeds)
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
            inputs_embeds=inputs_embeds,
            return_dict=True,
            **{CACHE_NAME: cache},
            **kwargs,
        )
        return FrozenModelOutputWithPast(
            last_hidden_state=outputs.last_hidden_state,
            **{CACHE_NAME: getattr(outputs, CACHE_NAME)},
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

    # The language model brings its own plan for its layers (under `model.language_model`); the head is ours to shard,
    # gathered so that logits come out whole, as in native causal LMs.
    _tp_plan = {"lm_head": "colwise_gather_output"}

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

    def get_image_features(
        self, pixel_values: torch.Tensor, **kwargs: Unpack[TransformersKwargs]
    ) -> tuple | BaseModelOutputWithPooling:
        """See [`FrozenModel.get_image_features`]."""
        return self.model.get_image_features(pixel_values=pixel_values, **kwargs)

    def prepare_inputs_for_generation(
        self,
        input_ids: torch.LongTensor,
        next_sequence_length: int | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        is_first_iteration: bool | None = False,
        **kwargs,
    ):
        """transformers' own preparation, except that a call whose cache is still empty counts as the prefill.

        transformers starts an assistant model's generation with `is_first_iteration=False`, which drops the images
        (`pixel_values`, `mm_encoder_outputs`) from its prefill: with assisted decoding, a Frozen assistant would then
        read image placeholders without images.
        """
        cache = kwargs.get(CACHE_NAME)
        if not is_first_iteration and (cache is None or cache.get_seq_length() == 0):
            is_first_iteration = True
        return super().prepare_inputs_for_generation(
            input_ids,
            next_sequence_length=next_sequence_length,
            attention_mask=attention_mask,
            inputs_embeds=inputs_embeds,
            is_first_iteration=is_first_iteration,
            **kwargs,
        )

    @can_return_tuple
    @accepts_legacy_cache_name
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
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple | FrozenCausalLMOutputWithPast:
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
            return_dict=True,
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
            **{CACHE_NAME: getattr(outputs, CACHE_NAME)},
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            image_outputs=outputs.image_outputs,
        )


# Why a reentrant checkpoint is refused, by the model and by the training arguments alike.
REENTRANT_CHECKPOINTING_REFUSAL = (
    "Frozen models use non-reentrant activation checkpointing only: with use_reentrant=True, a trainable layer "
    "whose inputs need no gradient (above a frozen part of the vision backbone, or LoRA adapters in the frozen "
    "LM) silently gets no gradient. Drop use_reentrant from the checkpointing kwargs."
)


def non_reentrant_checkpoint(function=None):
    """`function` (`torch.utils.checkpoint.checkpoint`, or transformers' partial of it) with `use_reentrant=False`.

    Raises:
        ValueError: `use_reentrant=True` was asked for.
    """
    if function is None:
        from torch.utils.checkpoint import checkpoint as function
    if isinstance(function, functools.partial) and function.keywords.get("use_reentrant"):
        raise ValueError(REENTRANT_CHECKPOINTING_REFUSAL)
    return functools.partial(function, use_reentrant=False)


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
    "causal_lm_loss_at_targets",
]
