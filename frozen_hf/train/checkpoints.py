"""The output folder of a training run and the checkpoints in it: what belongs there, and what is complete.

- [`prepare_output_dir`] claims an output folder for a run (``frozen_run.json``) or refuses it, and picks the
  checkpoint to resume from. Whether a folder holds "the same run" is decided by [`run_arguments`]: every model
  and data argument plus a whitelist of the `TrainingArguments` fields that change what is computed
  ([`RUN_DEFINING_TRAINING_FIELDS`]); logging, saving and hardware options may differ on resume.
- A checkpoint counts as complete only once [`mark_checkpoint_complete`] has written
  ``frozen_checkpoint_complete.json`` into it, after every other file of it is on disk;
  [`last_complete_checkpoint`] never returns one without it, so a run killed while writing a checkpoint, or while
  deleting an old one, resumes from the last checkpoint that was whole.
- [`checkpoint_keys`] and [`check_checkpoint_weights`]: a checkpoint holds only the weights training changes, and
  resuming refuses one whose language-model weights differ from the frozen LM in memory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from ..constants import TRAINED_PARTS
from ..utils.io import fsync_dir, fsync_tree, write_json_atomic
from .errors import OutputDirError

logger = logging.getLogger(__name__)

__all__ = [
    "CHECKPOINT_COMPLETE_MARKER",
    "COUNTERS_FILE",
    "RUN_DEFINING_TRAINING_FIELDS",
    "RUN_RECORD",
    "TRAINED_PREFIXES",
    "TRAINING_LOG",
    "check_checkpoint_weights",
    "checkpoint_step",
    "claim_output_dir",
    "checkpoint_keys",
    "discard_checkpoints_after",
    "last_complete_checkpoint",
    "mark_checkpoint_complete",
    "prepare_output_dir",
    "read_counters",
    "rotate_complete_checkpoints",
    "run_arguments",
    "write_counters",
]

# Written last into a checkpoint folder: the checkpoint is complete (every other file of it is on disk).
CHECKPOINT_COMPLETE_MARKER = "frozen_checkpoint_complete.json"
# Written into the output folder before training: what run the folder belongs to.
RUN_RECORD = "frozen_run.json"
# Written when a run ends (complete, stopped or interrupted): its logs, counters and arguments.
TRAINING_LOG = "training_log.json"
# The skip counters at a checkpoint's step, restored on resume.
COUNTERS_FILE = "frozen_counters.json"

# State-dict prefixes of the trained parts of a FrozenForConditionalGeneration.
TRAINED_PREFIXES = tuple(f"model.{part}" for part in TRAINED_PARTS)

# The TrainingArguments fields that change what a run computes (with every model and data argument): a folder
# holds "the same run" when these agree. Everything else (output, logging, saving, hub, dataloader workers,
# distributed plumbing, and fields future transformers releases add) may differ between a run and its resumption.
RUN_DEFINING_TRAINING_FIELDS = (
    # what is optimized, in what order, for how long
    "seed", "data_seed", "full_determinism", "num_train_epochs", "max_steps", "per_device_train_batch_size",
    "gradient_accumulation_steps", "dataloader_drop_last", "train_sampling_strategy", "length_column_name",
    "ignore_data_skip",
    # the optimizer and its schedule
    "learning_rate", "lr_scheduler_type", "lr_scheduler_kwargs", "warmup_steps", "optim", "optim_args",
    "optim_target_modules", "weight_decay", "adam_beta1", "adam_beta2", "adam_epsilon", "max_grad_norm",
    # the loss and the numbers it is computed in
    "label_smoothing_factor", "average_tokens_across_devices", "neftune_noise_alpha", "label_names", "bf16", "fp16",
    "tf32", "word_anchor_weight", "word_anchor_encoder_scale",
    # evaluation that decides which weights are kept
    "eval_strategy", "eval_steps", "eval_delay", "load_best_model_at_end", "metric_for_best_model",
    "greater_is_better",
    # Frozen's own
    "nonfinite_loss", "max_skipped_steps", "early_stopping_patience",
)


# --------------------------------------------------------------------------- the run's arguments


def run_arguments(model_args, data_args, training_args) -> dict[str, Any]:
    """The arguments that define a run, JSON-ready: all model and data arguments, and the training arguments
    named in [`RUN_DEFINING_TRAINING_FIELDS`]."""
    values: dict[str, Any] = {}
    for args in (model_args, data_args):
        values.update(dataclasses.asdict(args))
    training = training_args.to_dict()
    values.update({name: training.get(name) for name in RUN_DEFINING_TRAINING_FIELDS})
    return json.loads(json.dumps(values, default=str, sort_keys=True))


def _fingerprint(arguments: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(arguments, sort_keys=True).encode()).hexdigest()[:16]


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    # Compared over this version's defining arguments only: a record that holds more (an older version's) still
    # matches when these agree.
    return [f"{key}: {old.get(key)!r} -> {new[key]!r}" for key in sorted(new) if old.get(key) != new[key]]


def _describe(differences: list[str]) -> str:
    more = f"; and {len(differences) - 8} more" if len(differences) > 8 else ""
    return "; ".join(differences[:8]) + more


# --------------------------------------------------------------------------- the output folder


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
    record_path = output_dir / RUN_RECORD
    resume = training_args.resume_from_checkpoint
    resume_mode = resume.lower() if isinstance(resume, str) and resume.lower() in ("last", "auto", "true") else None

    if output_dir.is_dir() and any(output_dir.iterdir()):
        if not record_path.is_file():
            raise OutputDirError(
                f"Output folder {output_dir} is not empty and does not hold a Frozen training run "
                f"({RUN_RECORD} is missing). Choose a new or empty output_dir."
            )
        differing = _differences(json.loads(record_path.read_text()).get("arguments", {}), arguments)
        if differing:
            if training_args.overwrite_output_dir:
                logger.warning("Overwriting the earlier run in %s (overwrite_output_dir).", output_dir)
                shutil.rmtree(output_dir)
            else:
                raise OutputDirError(
                    f"Output folder {output_dir} already holds a different training run; differing arguments: "
                    f"{_describe(differing)}. Choose a new output_dir, or pass --overwrite_output_dir to replace "
                    "that run."
                )
        elif training_args.overwrite_output_dir and resume is None:
            shutil.rmtree(output_dir)
        else:
            last = last_complete_checkpoint(output_dir)
            if resume_mode is not None:
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
    write_json_atomic(
        record_path,
        {
            "fingerprint": _fingerprint(arguments),
            "arguments": arguments,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        },
    )
    return _explicit_checkpoint(resume) if resume is not None else None


def claim_output_dir(model_args, data_args, training_args) -> str | None:
    """[`prepare_output_dir`] on the main process, then the same checkpoint for every other process."""
    with training_args.main_process_first(desc="claiming the output folder"):
        if training_args.should_save:
            return prepare_output_dir(model_args, data_args, training_args)
        return _resume_for_replica(training_args)


def _resume_for_replica(training_args) -> str | None:
    # The main process's choice, which is on disk by now.
    resume = training_args.resume_from_checkpoint
    if isinstance(resume, str) and resume.lower() in ("last", "auto", "true"):
        return last_complete_checkpoint(training_args.output_dir)
    return resume


def _explicit_checkpoint(path: str) -> str:
    if not os.path.isfile(os.path.join(path, CHECKPOINT_COMPLETE_MARKER)):
        raise OutputDirError(f"{path} is not a complete Frozen checkpoint (no {CHECKPOINT_COMPLETE_MARKER}).")
    return path


# --------------------------------------------------------------------------- complete checkpoints


def _checkpoints(output_dir: str | os.PathLike) -> list[tuple[int, str]]:
    """Every ``checkpoint-N`` folder in ``output_dir``, complete or not, by step."""
    if not os.path.isdir(output_dir):
        return []
    found = []
    for entry in os.listdir(output_dir):
        path = os.path.join(output_dir, entry)
        if entry.startswith(PREFIX_CHECKPOINT_DIR + "-") and os.path.isdir(path):
            try:
                found.append((int(entry.rsplit("-", 1)[1]), path))
            except ValueError:
                continue
    return sorted(found)


def _is_complete(checkpoint: str) -> bool:
    return os.path.isfile(os.path.join(checkpoint, CHECKPOINT_COMPLETE_MARKER))


def last_complete_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The complete checkpoint (``checkpoint-N`` with its completion marker) of highest step N, or ``None``."""
    complete = [path for _, path in _checkpoints(output_dir) if _is_complete(path)]
    return complete[-1] if complete else None


def mark_checkpoint_complete(checkpoint: str, global_step: int) -> None:
    """Declares ``checkpoint`` complete: flushes all its files to disk, then writes the completion marker."""
    fsync_tree(checkpoint)
    write_json_atomic(
        os.path.join(checkpoint, CHECKPOINT_COMPLETE_MARKER), {"global_step": global_step, "time": time.time()}
    )


def _discard(checkpoint: str) -> None:
    # The marker goes first, so a deletion cut short leaves an incomplete checkpoint, never a "complete" one with
    # files missing.
    marker = os.path.join(checkpoint, CHECKPOINT_COMPLETE_MARKER)
    if os.path.isfile(marker):
        os.unlink(marker)
        fsync_dir(checkpoint)
    shutil.rmtree(checkpoint, ignore_errors=True)


def discard_checkpoints_after(output_dir: str | os.PathLike, step: int) -> None:
    """Deletes the checkpoints past ``step``: a run resumed from ``step`` rewrites them in place, and one of them
    must never look complete while it is being overwritten."""
    for checkpoint_step, path in _checkpoints(output_dir):
        if checkpoint_step > step:
            _discard(path)


def rotate_complete_checkpoints(output_dir: str | os.PathLike, limit: int | None, keep: str | None = None) -> None:
    """Keeps the ``limit`` newest complete checkpoints (and ``keep``, the best one) and deletes the others,
    incomplete leftovers included; called after the newest is marked complete, so one always stays whole."""
    if not limit or limit <= 0:
        return
    checkpoints = _checkpoints(output_dir)
    complete = [path for _, path in checkpoints if _is_complete(path)]
    kept = set(complete[-limit:]) | ({str(Path(keep))} if keep else set())
    newest = checkpoints[-1][1] if checkpoints else None
    for _, path in checkpoints:
        if path not in kept and path != newest:
            _discard(path)


def write_counters(checkpoint: str, counters: dict[str, int]) -> None:
    """Saves the skip counters at ``checkpoint``'s step with it (before it is marked complete)."""
    write_json_atomic(os.path.join(checkpoint, COUNTERS_FILE), counters)


def checkpoint_step(checkpoint: str) -> int:
    """The optimizer step ``checkpoint`` was written at (its trainer state's, else its name's)."""
    state = Path(checkpoint) / "trainer_state.json"
    if state.is_file():
        return int(json.loads(state.read_text())["global_step"])
    return int(Path(checkpoint).name.rsplit("-", 1)[1])


def read_counters(checkpoint: str) -> dict[str, int]:
    """The skip counters saved with ``checkpoint`` (empty for checkpoints without them)."""
    path = os.path.join(checkpoint, COUNTERS_FILE)
    return json.loads(Path(path).read_text()) if os.path.isfile(path) else {}


# --------------------------------------------------------------------------- what a checkpoint holds


def checkpoint_keys(model) -> set[str]:
    """State-dict keys a checkpoint must hold to resume: everything outside the frozen LM, plus trainable
    LM parameters (LoRA adapters, or the whole LM under 'scratch')."""
    keys = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    keys.update(key for key in model.state_dict() if key.startswith(TRAINED_PREFIXES))
    return keys


def check_checkpoint_weights(model, checkpoint: str) -> None:
    """Refuses a checkpoint whose weights would silently change the frozen LM, or that lacks trained weights.

    Raises:
        ValueError: naming the weights that are missing or that differ, and what to do.
    """
    from safetensors.torch import load_file

    path = os.path.join(checkpoint, "model.safetensors")
    if not os.path.isfile(path):
        return  # sharded (FSDP, DeepSpeed) checkpoints: their engines check their own states
    state_dict = load_file(path, device="cpu")
    expected = checkpoint_keys(model)
    missing = sorted(expected - set(state_dict))
    if missing:
        raise ValueError(
            f"Checkpoint {checkpoint} lacks {len(missing)} weights this model trains (e.g. {missing[:3]}): it was "
            "written by a different model or ablation; resume with the config that wrote it."
        )
    current = model.state_dict()
    changed = []
    for key, value in state_dict.items():
        if key in expected:
            continue
        if key not in current:
            raise ValueError(f"Checkpoint {checkpoint} holds weight {key!r}, which this model does not have.")
        if current[key].shape != value.shape or not torch.equal(current[key].cpu(), value.to(current[key].dtype)):
            changed.append(key)
    if changed:
        raise ValueError(
            f"Checkpoint {checkpoint} holds language-model weights that differ from the frozen LM this run loaded "
            f"({len(changed)} tensors, e.g. {changed[:3]}): it belongs to another LM or an ablation that trains the "
            "LM. Resume with the config that wrote it."
        )
