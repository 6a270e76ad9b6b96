"""Loading and saving Frozen checkpoints: trained-parts-only folders, building around a pretrained LM, and the checks
that the language model is the revision the vision encoder was trained with.

Shipped as remote code with the model files: it imports only transformers, huggingface_hub and, by flat relative
import, `constants`.
"""

from __future__ import annotations

import os
import re

import torch
from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer, GenerationConfig, PreTrainedConfig
from transformers.modeling_utils import load_state_dict
from transformers.utils import SAFE_WEIGHTS_NAME, cached_file, logging

from .constants import AUTO_MAP, IMAGE_TOKEN, TRAINED_PARTS


logger = logging.get_logger(__name__)

# `from_pretrained` arguments that say where and how to fetch files, as opposed to how to build the model.
_HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "proxies", "revision", "subfolder", "token")

_COMMIT_HASH = re.compile(r"[0-9a-f]{40}")


class LanguageModelRevisionError(ValueError):
    """The language model a trained-parts-only checkpoint references is not available at the recorded revision."""


class FrozenLoadingMixin:
    """The loading and saving side of `FrozenPreTrainedModel`, kept apart from the model's computation.

    A checkpoint saved with `config.trained_parts_only` holds only the vision encoder and the projection; the language
    model is referenced by Hub id and revision in its config and loaded from there.
    """

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """Loads like any transformers model (`output_loading_info=True` included), then re-freezes the language model.

        Loading re-creates parameters with `requires_grad=True`, which would silently undo the freezing done in
        `__init__`.

        A checkpoint saved with `config.trained_parts_only` holds only the vision encoder and the projection: the language
        model is then loaded from `config.language_model_name_or_path` at `config.language_model_revision`
        (see [`load_frozen_language_model`]) and the trained weights are laid over it.
        """
        config = kwargs.get("config")
        if not isinstance(config, PreTrainedConfig):
            hub_kwargs = {name: kwargs[name] for name in _HUB_KWARGS if name in kwargs}
            config = cls.config_class.from_pretrained(config or pretrained_model_name_or_path, **hub_kwargs)
        if getattr(config, "trained_parts_only", False):
            kwargs["config"] = config
            return cls._from_trained_parts(pretrained_model_name_or_path, **kwargs)
        loaded = super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        # With `output_loading_info=True` transformers returns `(model, loading_info)`.
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        if model.config.freeze_language_model:
            model.freeze_language_model()
        return loaded

    @classmethod
    def _from_trained_parts(cls, pretrained_model_name_or_path: str | os.PathLike, config: PreTrainedConfig, **kwargs):
        hub_kwargs = {name: kwargs.pop(name) for name in _HUB_KWARGS if name in kwargs}
        language_model_kwargs = {name: kwargs.pop(name) for name in ("dtype", "attn_implementation") if name in kwargs}
        # The LM is loaded as it was trained against (quantized or not), unless the caller asks otherwise.
        quantization_config = kwargs.pop("quantization_config", language_model_quantization_config(config))
        if quantization_config is not None:
            language_model_kwargs["quantization_config"] = quantization_config
        if "torch_dtype" in kwargs:
            language_model_kwargs.setdefault("dtype", kwargs.pop("torch_dtype"))
        # Credentials and cache settings apply to the language model's repo too; the revision is its own.
        for name in ("cache_dir", "force_download", "local_files_only", "proxies", "token"):
            if name in hub_kwargs:
                language_model_kwargs[name] = hub_kwargs[name]
        output_loading_info = kwargs.pop("output_loading_info", False)
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
        if output_loading_info:
            # `load_trained_state_dict` refuses any missing or foreign weight, so there is nothing to report.
            info = {"missing_keys": set(), "unexpected_keys": set(), "mismatched_keys": set(), "error_msgs": []}
            return model, info
        return model

    @classmethod
    def _wrap_language_model(cls, config: PreTrainedConfig, language_model):
        """A model of this class around a loaded causal LM, with a freshly initialised vision encoder and projection."""
        # Build the LM skeleton on the meta device: its weights are about to be replaced by the pretrained ones.
        with torch.device("meta"):
            model = cls(config)
        base = model.base_model
        has_head = base is not model
        base.language_model = language_model.base_model
        if has_head:
            model.lm_head = language_model.get_output_embeddings()
        base.vision_model = AutoModel.from_config(config.vision_config)
        base.visual_prefix = type(base.visual_prefix).from_config(config)
        model._init_weights(base.visual_prefix)
        if getattr(language_model, "is_quantized", False):
            keep_quantized_weights_as_loaded(language_model)
        else:
            # Beside a quantized LM the projection keeps full precision, like the vision encoder.
            base.visual_prefix.to(language_model.dtype)
        if has_head:
            model.tie_weights()
        model.generation_config = language_model.generation_config
        model.freeze_language_model()
        return model

    @classmethod
    def from_language_model(
        cls,
        language_model_name_or_path: str | os.PathLike,
        vision_config: dict | PreTrainedConfig | None = None,
        visual_prefix_length: int = 2,
        image_token_id: int | None = None,
        revision: str | None = None,
        quantization_config=None,
        visual_prefix_rms: float | str | None = None,
        visual_prefix_centered: bool = False,
        **kwargs,
    ):
        """Builds a Frozen model around a pretrained causal LM (Hub id or local folder) with a fresh vision encoder.

        The language model's weights are used exactly as loaded and frozen. Extra `kwargs` (`dtype`,
        `attn_implementation`, `trust_remote_code`, `token`, ...) go to `AutoModelForCausalLM.from_pretrained`.

        With `quantization_config` (any transformers quantization config, e.g. `BitsAndBytesConfig(load_in_8bit=True)`,
        `BitsAndBytesConfig(load_in_4bit=True)` or a `TorchAoConfig`) the LM is loaded quantized; the vision encoder and
        the projection stay in full precision and train through it. Such a model saves trained-parts-only: its folder
        holds the vision encoder and projection, and its config references the base LM and the quantization, so that
        `from_pretrained` quantizes the same base weights the same way again.

        Args:
            language_model_name_or_path: Hub id or folder of any `AutoModelForCausalLM` checkpoint.
            vision_config: config (or dict with `model_type`) of the vision backbone, trained from scratch.
                Defaults to `default_vision_config()`, a small ResNet.
            visual_prefix_length: number of prefix embeddings per image.
            image_token_id: placeholder id; by default the id the LM's tokenizer gives `<image>` once
                [`FrozenProcessor.from_language_model`] adds it.
            revision: Hub revision of the language model.
            visual_prefix_rms: rescale each prefix embedding to this root mean square; `"match"` takes the mean root
                mean square of the LM's word embeddings. `None` (default) leaves the projection's output unscaled.
            visual_prefix_centered: subtract the mean prefix of training images (see `FrozenConfig`).
        """
        from transformers import AutoConfig
        from transformers.utils.hub import resolve_revision

        from .configuration_frozen import default_vision_config

        # Pin the commit once, so that the config records exactly which LM the vision encoder is trained against.
        revision = resolve_revision(str(language_model_name_or_path), revision, token=kwargs.get("token"))
        if quantization_config is not None:
            kwargs["quantization_config"] = quantization_config
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
        if visual_prefix_rms == "match":
            visual_prefix_rms = word_embedding_rms(language_model)
        config = cls.config_class(
            vision_config=vision_config,
            text_config=language_model.config,
            visual_prefix_length=visual_prefix_length,
            visual_prefix_rms=visual_prefix_rms,
            visual_prefix_centered=visual_prefix_centered,
            image_token_id=image_token_id,
            language_model_name_or_path=str(language_model_name_or_path),
            language_model_revision=getattr(revision, "resolved", None) or revision,
            # A quantized LM is never written out: the folder references the base LM and its quantization instead.
            trained_parts_only=quantization_config is not None,
        )
        return cls._wrap_language_model(config, language_model)

    def _trained_prefixes(self) -> tuple[str, ...]:
        base = "" if self.base_model is self else f"{self.base_model_prefix}."
        return tuple(base + name for name in TRAINED_PARTS)

    def trained_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights that training changes (vision encoder and visual prefix projection, buffers included), keyed
        as in `state_dict()`: what a trained-parts-only checkpoint holds."""
        return {k: v for k, v in self.state_dict().items() if k.startswith(self._trained_prefixes())}

    def load_trained_state_dict(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Loads a trained-parts-only state dict (from either head class) over this model's vision encoder and
        projection, refusing any weight outside them and any missing one."""
        base = "" if self.base_model is self else f"{self.base_model_prefix}."
        renamed = {base + key.removeprefix(f"{self.base_model_prefix}."): value for key, value in state_dict.items()}
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

    def save_pretrained(self, save_directory: str | os.PathLike, *args, **kwargs):
        """Saves like any transformers model. With remote code enabled (`register_for_auto_class`), the saved
        `auto_map` names `AutoModel` too, which transformers' single `_auto_class` per class cannot express.
        With `config.trained_parts_only`, only [`trained_state_dict`] is written (unless `state_dict` is given)."""
        if language_model_quantization_config(self.config) is not None and not self.config.trained_parts_only:
            raise ValueError(
                "This model's language model is quantized, and a quantized LM is not saved: set "
                "config.trained_parts_only = True (as from_language_model(..., quantization_config=...) does), so that "
                "the folder references the base LM and its quantization."
            )
        if self.config.trained_parts_only and kwargs.get("state_dict") is None:
            # The language model is referenced by Hub id and revision in the config, not stored.
            kwargs["state_dict"] = self.trained_state_dict()
        super().save_pretrained(save_directory, *args, **kwargs)
        if self._auto_class is not None and getattr(self.config, "auto_map", None):
            auto_map = dict(self.config.auto_map)
            for auto_class, reference in AUTO_MAP["config.json"].items():
                auto_map.setdefault(auto_class, reference)
            if auto_map != self.config.auto_map:
                self.config.auto_map = auto_map
                self.config.save_pretrained(save_directory)


def language_model_quantization_config(config: PreTrainedConfig):
    """The transformers quantization config the frozen LM is loaded with (recorded on `config.text_config` as
    transformers records it on a quantized model's config), or `None` for a full-precision LM."""
    value = getattr(config.text_config, "quantization_config", None)
    if value is None or not isinstance(value, dict):
        return value
    from transformers.quantizers import AutoQuantizationConfig

    return AutoQuantizationConfig.from_dict(dict(value))


def keep_quantized_weights_as_loaded(language_model) -> None:
    """Stops bitsandbytes from repacking 4-bit weights in place for CPU inference.

    On CPUs with AVX512-BF16, a `Linear4bit` rewrites its stored weight into a CPU-packed layout on its first call
    without gradients (and fails for widths that its block size does not divide): the frozen LM's stored weights must
    stay exactly the ones loaded, in training and in `generate()` alike.
    """
    for module in language_model.modules():
        if getattr(module, "support_avx512bf16_for_cpu", False):
            module.support_avx512bf16_for_cpu = False


def word_embedding_rms(language_model) -> float:
    """The root mean square of the LM's input embedding rows, averaged over the vocabulary: the scale at which the
    LM reads a word."""
    embeddings = language_model.get_input_embeddings()
    weight = embeddings.weight.detach().float()
    # What the LM reads is the embedding module's output: some LMs (Gemma) scale the rows in its forward.
    sample = torch.arange(min(8, weight.shape[0]), device=weight.device)
    with torch.no_grad():
        scale = embeddings(sample).float().norm() / weight[sample].norm().clamp_min(1e-12)
    # Six significant digits keep config.json readable.
    return float(f"{(weight.pow(2).mean(dim=-1).sqrt().mean() * scale).item():.6g}")


def placeholder_token_id(tokenizer) -> int:
    """The id `<image>` has in `tokenizer`, or the id it gets when added as a new special token."""
    vocab = tokenizer.get_vocab()
    return vocab[IMAGE_TOKEN] if IMAGE_TOKEN in vocab else len(tokenizer)


def load_frozen_language_model(config: PreTrainedConfig, **kwargs):
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


__all__ = [
    "FrozenLoadingMixin",
    "LanguageModelRevisionError",
    "language_model_quantization_config",
    "load_frozen_language_model",
    "placeholder_token_id",
]
