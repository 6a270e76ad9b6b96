"""`FrozenTrainer`: the Hugging Face `Trainer`, with Frozen's checkpoints, non-finite loss policy and skip counters.

It changes `Trainer` through public hooks only (`compute_loss`, `training_step`, `log`, `evaluation_loop`,
`train`, callbacks) plus `_save`, which decides what a checkpoint's weights file holds.
"""

from __future__ import annotations

import copy
import logging
import math
import os

import torch
from transformers import Trainer, TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from ..data.collator import COUNTER_KEYS, pop_counters
from ..processing_frozen import IGNORE_INDEX
from .objectives import next_word_anchor_loss
from .checkpoints import (
    TRAINED_PREFIXES,
    check_checkpoint_weights,
    checkpoint_step,
    checkpoint_keys,
    discard_checkpoints_after,
    last_complete_checkpoint,
    mark_checkpoint_complete,
    read_counters,
    rotate_complete_checkpoints,
    write_counters,
)
from .errors import NonFiniteLossError, OutputDirError, TrainingConfigError

logger = logging.getLogger(__name__)

__all__ = ["FrozenTrainer"]


class _NonFiniteGuard(TrainerCallback):
    """Checks the loss and gradients between backward and the optimizer step."""

    def __init__(self, trainer: "FrozenTrainer"):
        self.trainer = trainer

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self.trainer._guard_optimizer_step()


class _CheckpointCompletion(TrainerCallback):
    """Runs once `Trainer` has written checkpoint-N: saves the skip counters into it, marks it complete, and only
    then deletes old checkpoints beyond ``save_total_limit``."""

    def __init__(self, trainer: "FrozenTrainer"):
        self.trainer = trainer

    def on_save(self, args, state, control, **kwargs):
        trainer = self.trainer
        counters = trainer.sync_counters()  # a collective: every process gets here
        # Every process has written its part (its RNG state, at least) before the checkpoint is declared complete.
        trainer.accelerator.wait_for_everyone()
        checkpoint = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
        if args.should_save and os.path.isdir(checkpoint):
            write_counters(checkpoint, counters)
            mark_checkpoint_complete(checkpoint, state.global_step)
            rotate_complete_checkpoints(args.output_dir, trainer.checkpoint_limit, state.best_model_checkpoint)
        trainer.accelerator.wait_for_everyone()


class _ExpectedMissingKeys(logging.Filter):
    """Drops `Trainer`'s warning that a loaded checkpoint lacks keys: a Frozen checkpoint leaves out the frozen LM
    by design, and `FrozenTrainer.train` has refused any checkpoint that lacks a trained weight."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("There were missing keys in the checkpoint model loaded")


_EXPECTED_MISSING_KEYS = _ExpectedMissingKeys()


class FrozenTrainer(Trainer):
    """`Trainer` for Frozen models.

    On top of `Trainer`:

    - checkpoints hold only the weights training changes ([`checkpoint_keys`]); each is marked complete
      (``frozen_checkpoint_complete.json``) once all its files are on disk, and old checkpoints are deleted only
      after that, so resuming never picks a half-written one; on resume, checkpoint weights that belong to the
      frozen LM are refused unless they equal the LM in memory;
    - ``nonfinite_loss`` policy: a non-finite loss or gradient either stops training with
      [`NonFiniteLossError`] before the optimizer step (weights and checkpoints untouched) or drops
      that optimizer step and counts it (``skipped_steps`` in the logs); decisions agree across processes;
    - the collator's skip counters (``num_skipped_images``, ``num_skipped_captions``) are summed
      over processes and logged as ``skipped_images`` / ``skipped_captions``;
    - evaluation logs ``eval_perplexity`` too.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _check_requested_engine(self.accelerator)
        # Trainer deletes old checkpoints while writing a new one, before `on_save`, that is before the new one is
        # marked complete; a kill there could leave no complete checkpoint. This trainer keeps `save_total_limit`
        # checkpoints itself, after marking (`_CheckpointCompletion`), on its own copy of the arguments.
        self.args = copy.copy(self.args)
        self.checkpoint_limit, self.args.save_total_limit = self.args.save_total_limit, None
        self.add_callback(_NonFiniteGuard(self))
        self.add_callback(_CheckpointCompletion(self))
        logging.getLogger("transformers.trainer").addFilter(_EXPECTED_MISSING_KEYS)
        self._nonfinite_loss_seen = False
        self._buffers_before_step = None
        self._pending_counts = {key: 0 for key in COUNTER_KEYS}
        self._anchor_losses: list[float] = []
        self._prefix_features = None
        if self.args.word_anchor_weight > 0:
            prefix = self.accelerator.unwrap_model(self.model).model.visual_prefix
            if getattr(prefix, "centered", False):
                raise TrainingConfigError(
                    "word_anchor_weight needs visual_prefix_centered off: the anchor projects the features a second "
                    "time, which would move the running mean of a centred prefix twice a step."
                )
            prefix.register_forward_hook(self._keep_prefix_features)
        self.counters = {"skipped_images": 0, "skipped_captions": 0, "skipped_steps": 0}

    def train(self, resume_from_checkpoint=None, *args, **kwargs):
        """`Trainer.train`; a checkpoint to resume from must be complete and hold this model's trained weights.

        ``resume_from_checkpoint=True`` means the last complete checkpoint of ``output_dir``. Checkpoint folders
        past the step training starts from are deleted first: this run rewrites them in place, and none of them may
        look complete meanwhile. Starting afresh in a folder that holds complete checkpoints is refused.
        """
        output_dir = self.args.output_dir
        if resume_from_checkpoint is True:
            resume_from_checkpoint = last_complete_checkpoint(output_dir)
            if resume_from_checkpoint is None:
                raise OutputDirError(f"No complete checkpoint to resume from in {output_dir}.")
        start_step = 0
        if isinstance(resume_from_checkpoint, str):
            check_checkpoint_weights(self.accelerator.unwrap_model(self.model), resume_from_checkpoint)
            self.counters.update(read_counters(resume_from_checkpoint))
            start_step = checkpoint_step(resume_from_checkpoint)
        elif last_complete_checkpoint(output_dir) is not None:
            raise OutputDirError(
                f"{output_dir} holds checkpoints of an earlier run: resume from one (resume_from_checkpoint) or "
                "train into an empty output_dir."
            )
        if self.args.should_save:
            discard_checkpoints_after(output_dir, start_step)
        return super().train(resume_from_checkpoint, *args, **kwargs)

    # -- counters

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

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        # Training-loss entries are logged on every process, so the counters' collective can run here.
        if "loss" in logs or "train_loss" in logs:
            logs = {**logs, **self.sync_counters()}
        if "loss" in logs and self._anchor_losses:
            # This process's mean over the logging window: the anchor is a diagnostic, not what the steps minimise.
            logs["word_anchor_loss"] = sum(self._anchor_losses) / len(self._anchor_losses)
            self._anchor_losses.clear()
        super().log(logs, *args, **kwargs)

    # -- steps

    def training_step(self, model, inputs, num_items_in_batch=None):
        if self.args.nonfinite_loss == "skip" and self._buffers_before_step is None:
            # The forward pass updates buffers (BatchNorm running statistics) before the loss can be checked; a
            # skipped step must not keep what a NaN forward wrote there, or the next checkpoint save refuses.
            self._buffers_before_step = _trained_buffers(self.accelerator.unwrap_model(model), clone=True)
        loss = super().training_step(model, inputs, num_items_in_batch)
        if not bool(torch.isfinite(loss).all()):
            self._nonfinite_loss_seen = True
        return loss

    def _keep_prefix_features(self, module, args, output) -> None:
        self._prefix_features = args[0]

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        # Training and evaluation batches both pass here: the collator's counters leave the batch before the model.
        for key, value in pop_counters(inputs).items():
            self._pending_counts[key] += value
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
        anchored = (
            model.training and labels is not None and self.args.word_anchor_weight > 0
            and inputs.get("pixel_values") is not None
        )
        if not anchored:
            return super().compute_loss(
                model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
            )
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        unwrapped = self.accelerator.unwrap_model(model)
        # The projection gets the anchor's whole gradient, the encoder `word_anchor_encoder_scale` of it: pulled
        # hard, the encoder keeps what names the object and drops the rest (colour fell to chance in a linear probe of
        # its features at weight 3); cut off entirely, neither the anchor nor the captions were learnt.
        features = self._prefix_features
        features = features.detach().lerp(features, self.args.word_anchor_encoder_scale)
        anchor = next_word_anchor_loss(
            unwrapped.model.visual_prefix(features),
            inputs["input_ids"],
            labels,
            unwrapped.config.image_token_id,
            unwrapped.get_input_embeddings(),
        )
        self._anchor_losses.append(float(anchor.detach()))
        loss = loss + self.args.word_anchor_weight * anchor.to(loss.dtype)
        return (loss, outputs) if return_outputs else loss

    def evaluation_loop(
        self, dataloader, description, prediction_loss_only=None, ignore_keys=None, metric_key_prefix="eval"
    ):
        output = super().evaluation_loop(
            dataloader, description, prediction_loss_only, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix
        )
        loss = output.metrics.get(f"{metric_key_prefix}_loss")
        if loss is not None:
            output.metrics[f"{metric_key_prefix}_perplexity"] = math.exp(min(loss, 50.0))
        return output

    def _guard_optimizer_step(self) -> None:
        model = self.accelerator.unwrap_model(self.model)
        parameters = [p for p in model.parameters() if p.requires_grad]
        bad = self._nonfinite_loss_seen or any(
            p.grad is not None and not bool(torch.isfinite(p.grad).all()) for p in parameters
        )
        self._nonfinite_loss_seen = False
        buffers_before_step, self._buffers_before_step = self._buffers_before_step, None
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
        # What a checkpoint's weights file holds: the trained weights only, and never a non-finite one.
        model = self.accelerator.unwrap_model(self.model)
        if state_dict is None:
            state_dict = model.state_dict()
        keys = checkpoint_keys(model)
        state_dict = {key: value for key, value in state_dict.items() if key in keys}
        for key, value in state_dict.items():
            if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                raise NonFiniteLossError(f"Refusing to save a checkpoint: weight {key} holds NaN or inf.")
        super()._save(output_dir, state_dict=state_dict)


def _check_requested_engine(accelerator) -> None:
    """Refuses a run whose accelerate config asks for FSDP when accelerate set up another engine.

    accelerate (1.15) sets FSDP up on accelerators only; on CPU processes it keeps plain data parallelism
    (``MULTI_CPU``) without a word, which holds the whole model on every process and would train as DDP under an FSDP
    config. Stopping here tells the user before the first step that this config needs GPUs (or other accelerators).
    """
    from accelerate.utils import DistributedType

    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() != "true":
        return
    if accelerator.distributed_type != DistributedType.FSDP:
        raise TrainingConfigError(
            f"The accelerate config asks for FSDP, but accelerate set up {accelerator.distributed_type.value} "
            "instead: accelerate runs FSDP on accelerators only (CUDA, XPU, NPU, MLU, MUSA, HPU), not on CPU "
            "processes. Launch on GPUs, or use the ddp or DeepSpeed configs on CPUs."
        )


def _trained_buffers(model, clone: bool = False) -> dict[str, torch.Tensor]:
    """The buffers of the trained parts (vision encoder and projection), cloned or live."""
    return {
        name: buffer.detach().clone() if clone else buffer
        for name, buffer in model.named_buffers()
        if name.startswith(TRAINED_PREFIXES)
    }
