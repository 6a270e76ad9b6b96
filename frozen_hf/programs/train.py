"""Train a Frozen model: ``frozen-train <config> [--field value ...]`` (or ``python -m training.train``).

``<config>`` is a YAML file, or the bare name of a config shipped in ``frozen_hf/configs/training/`` (for example
``shapes-smollm2``, the offline demo). It sets any field of ``FrozenModelArguments``, ``FrozenDataArguments`` and
``transformers.TrainingArguments`` with Frozen's extras (see ``frozen_hf.train.arguments``); command-line
``--field value`` pairs override it. Unknown fields are an error. Multi-process and multi-GPU runs go through
Accelerate, e.g.::

    accelerate launch --config_file frozen_hf/configs/accelerate/ddp.yaml -m training.train coco

The program, top to bottom: parse the config; claim the output folder (or resume the run in it); load and check
the data; build the model; make the trainer; train; save the model, its log and its loss curve. Every config and
data error comes before the first training step. Exit status: 0 trained, 2 config or data error, 3 non-finite loss.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Sequence

import torch.distributed
from transformers import TrainerCallback, set_seed

from frozen_hf.data.captions import load_caption_datasets
from frozen_hf.train.arguments import parse_arguments, shipped_configs
from frozen_hf.train.build import build_model_and_processor
from frozen_hf.train.checkpoints import claim_output_dir
from frozen_hf.train.errors import NonFiniteLossError, TrainingConfigError
from frozen_hf.train.loop import (
    TrainingResult,
    check_validation_data,
    make_trainer,
    model_construction,
    save_trained_model,
    train_recording_status,
)

USAGE = """usage: frozen-train <config.yaml | shipped config name> [--field value ...]

Trains a Frozen model. Fields: those of FrozenModelArguments, FrozenDataArguments and
transformers.TrainingArguments (see frozen_hf.train.arguments); e.g. --max_steps 100 --output_dir out/.
Shipped configs (frozen_hf/configs/training/): {configs}."""


def run_training(
    model_args, data_args, training_args, callbacks: Sequence[TrainerCallback] = ()
) -> TrainingResult:
    """Trains a Frozen model as the three argument groups say, and writes its output folder.

    The output folder then holds: the model (``config.json`` with ``language_model_modification``,
    ``model.safetensors`` with the LM included), the processor, ``training_log.json`` (every log entry plus a
    summary), ``loss_curve.png``, TensorBoard logs under ``runs/``, and the last checkpoints.
    """
    start = time.time()
    resume = claim_output_dir(model_args, data_args, training_args)

    train_dataset, eval_dataset = load_caption_datasets(data_args, model_args.image_size, training_args.seed)
    check_validation_data(training_args, eval_dataset)

    # Every process builds the same model (same seed, same LM): sharding engines (FSDP, ZeRO-3) start from it without
    # a broadcast.
    set_seed(training_args.seed)
    with model_construction(training_args):
        model, processor, lora = build_model_and_processor(model_args)

    trainer = make_trainer(model, processor, data_args, training_args, train_dataset, eval_dataset, callbacks)
    output = train_recording_status(trainer, resume, model_args, data_args, start)

    return save_trained_model(trainer, lora, model_args, data_args, output, eval_dataset, start)


def leave_distributed_run(status: int) -> None:
    """In a process of a multi-process run (``accelerate launch``), destroys the process group and ends the process
    here with `status`; elsewhere returns. Python's own exit is skipped on purpose: the run's files are written and
    closed, and at interpreter teardown a DeepSpeed ZeRO-3 process on CPU could abort after a finished run
    ("terminate called without an active exception", about one launch in ten on 2 busy cores), which turned a
    finished run into a failed one."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    torch.distributed.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the exit status (0 trained, 2 config or data error, 3 non-finite loss)."""
    status = train_from_command_line(argv)
    leave_distributed_run(status)
    return status


def train_from_command_line(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE.format(configs=", ".join(shipped_configs())))
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


if __name__ == "__main__":
    sys.exit(main())
