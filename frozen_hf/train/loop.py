"""The steps of a training run around `Trainer.train`, which the program (`frozen_hf.programs.train`) strings
together: check the validation data against the config, make the trainer, train while recording how the run ends,
then save the trained model with its provenance, ``training_log.json`` and ``loss_curve.png``."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from typing import Any, Sequence

from transformers import EarlyStoppingCallback, TrainerCallback

from ..data.collator import FrozenCaptionCollator
from ..utils.io import write_json_atomic
from .checkpoints import TRAINING_LOG, run_arguments
from .errors import NonFiniteLossError, TrainingConfigError
from .trainer import FrozenTrainer

__all__ = [
    "LOSS_CURVE",
    "TrainingResult",
    "caption_collator",
    "check_validation_data",
    "gathered_state_dict",
    "make_trainer",
    "model_construction",
    "plot_loss_curve",
    "save_trained_model",
    "train_recording_status",
    "write_training_log",
]

LOSS_CURVE = "loss_curve.png"


@dataclass
class TrainingResult:
    """What a training run produced."""

    output_dir: str
    global_step: int
    train_loss: float | None
    metrics: dict[str, Any]
    counters: dict[str, int]
    language_model_modification: str | None
    seconds: float


def check_validation_data(training_args, eval_dataset) -> None:
    """Refuses evaluation options that need validation data when there is none (before the model is built)."""
    if training_args.early_stopping_patience is not None and eval_dataset is None:
        raise TrainingConfigError("early_stopping_patience needs validation data (eval_split or eval_split_size).")
    if eval_dataset is None and training_args.eval_strategy != "no":
        raise TrainingConfigError(f"eval_strategy={training_args.eval_strategy} needs validation data.")


@contextlib.contextmanager
def model_construction(training_args):
    """The context the training model is built in: with DeepSpeed ZeRO-3, outside ``deepspeed.zero.Init``.

    accelerate registers the DeepSpeed config with transformers as soon as the training arguments exist, and
    transformers then builds every model under ZeRO-3's partitioning ``zero.Init`` whatever the accelerate config's
    ``zero3_init_flag`` says. A Frozen model puts a loaded LM into a skeleton built on the meta device, which
    ``zero.Init`` cannot initialise ("Cannot copy out of meta tensor"). So the model is built whole (on every
    process) with the registration lifted, and the DeepSpeed engine partitions it when the trainer prepares it;
    ``zero3_init_flag: true`` is refused before the model is built.
    """
    plugin = getattr(training_args, "deepspeed_plugin", None)
    zero3 = plugin is not None and plugin.hf_ds_config.is_zero3()
    if not zero3:
        yield
        return
    if plugin.is_zero3_init_enabled():
        raise TrainingConfigError(
            "DeepSpeed zero3_init_flag: true is not supported: a Frozen model is assembled around an LM loaded "
            "whole, and DeepSpeed partitions it when training starts. Set zero3_init_flag: false in the accelerate "
            "config (as frozen_hf/configs/accelerate/deepspeed-zero3.yaml does)."
        )
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()
    try:
        yield
    finally:
        # Saving and the trainer's DeepSpeed set-up read the registration again.
        plugin.set_deepspeed_weakref()


def caption_collator(processor, data_args) -> FrozenCaptionCollator:
    """The training collator that the data arguments describe (caption template, EOS, length, blind, packing)."""
    return FrozenCaptionCollator(
        processor,
        image_column=data_args.image_column,
        caption_column=data_args.caption_column,
        caption_template=data_args.caption_template,
        append_eos=data_args.append_eos,
        max_length=data_args.max_length,
        train_blind=data_args.train_blind,
        images_per_sequence=data_args.images_per_sequence,
    )


def make_trainer(
    model, processor, data_args, training_args, train_dataset, eval_dataset, callbacks: Sequence[TrainerCallback] = ()
) -> FrozenTrainer:
    """A [`FrozenTrainer`] over the caption data, with the collator the data arguments describe."""
    collator = caption_collator(processor, data_args)
    callbacks = list(callbacks)
    if training_args.early_stopping_patience is not None:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=training_args.early_stopping_patience))
    return FrozenTrainer(
        model=model,
        args=training_args,
        data_collator=collator,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=processor,
        callbacks=callbacks,
    )


def train_recording_status(trainer: FrozenTrainer, resume: str | None, model_args, data_args, start: float):
    """``trainer.train(resume)``; a run that stops (non-finite loss, interrupt, error) still leaves its
    ``training_log.json`` saying how it ended."""
    args = trainer.args
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
        if status != "complete" and args.should_save:
            write_training_log(trainer, model_args, data_args, args, status, time.time() - start, {})
    return output


def save_trained_model(
    trainer: FrozenTrainer, lora, model_args, data_args, output, eval_dataset, start: float
) -> TrainingResult:
    """Writes the output folder of a finished run: the model (LoRA merged, LM included, provenance on its
    config), the processor, ``training_log.json`` and ``loss_curve.png``."""
    args = trainer.args
    counters = trainer.sync_counters()
    metrics = dict(output.metrics)
    if eval_dataset is not None:
        metrics.update(trainer.evaluate())
    final_model = trainer.accelerator.unwrap_model(trainer.model)
    if lora is not None:
        lora.merge_and_unload()  # in place: the LM's layers get their merged weights back, adapters removed
    final_model.config.language_model_modification = model_args.language_model_modification
    final_model.config.frozen_training = {
        "train_blind": data_args.train_blind,
        "freeze_vision_backbone": model_args.freeze_vision_backbone,
        "vision_model_name_or_path": model_args.vision_model_name_or_path,
        "language_model_modification": model_args.language_model_modification,
        "caption_template": data_args.caption_template,
        "append_eos": data_args.append_eos,
        "dataset": data_args.dataset,
        "shapes_caption_style": data_args.shapes_caption_style if data_args.dataset == "shapes" else None,
        "global_step": trainer.state.global_step,
    }
    state_dict = gathered_state_dict(trainer)
    trainer.accelerator.wait_for_everyone()
    if args.should_save:
        final_model.save_pretrained(args.output_dir, state_dict=state_dict)
        trainer.processing_class.save_pretrained(args.output_dir)
        write_training_log(trainer, model_args, data_args, args, "complete", time.time() - start, metrics)
        plot_loss_curve(
            trainer.state.log_history,
            os.path.join(args.output_dir, LOSS_CURVE),
            title=f"Frozen: {model_args.language_model} on {data_args.dataset}",
        )
    trainer.accelerator.wait_for_everyone()
    return TrainingResult(
        output_dir=args.output_dir,
        global_step=trainer.state.global_step,
        train_loss=output.training_loss,
        metrics=metrics,
        counters=counters,
        language_model_modification=model_args.language_model_modification,
        seconds=time.time() - start,
    )


def gathered_state_dict(trainer: FrozenTrainer) -> dict[str, Any] | None:
    """The full weights of a model that a sharding engine trained, on the main process; ``None`` without one.

    FSDP and DeepSpeed ZeRO-3 leave each process only a shard of every parameter (frozen LM included), so the main
    process's ``save_pretrained`` alone would write shards or empty tensors that ``from_pretrained`` cannot load.
    Every process must call this: gathering is a collective. ZeRO-3 gathers through
    ``stage3_gather_16bit_weights_on_model_save`` (``zero3_save_16bit_model`` in the accelerate config), which keeps
    the parameters' own dtype, float32 without mixed precision.
    """
    if trainer.is_fsdp_enabled:
        return trainer.accelerator.get_state_dict(trainer.model)
    if trainer.is_deepspeed_enabled:
        return trainer.accelerator.get_state_dict(trainer.model_wrapped)
    return None


def write_training_log(trainer, model_args, data_args, training_args, status, seconds, metrics) -> None:
    """``training_log.json``: how the run ended, its counters, metrics, defining arguments and every log entry."""
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
    write_json_atomic(os.path.join(training_args.output_dir, TRAINING_LOG), log)


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
