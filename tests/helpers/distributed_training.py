"""The training program under `accelerate launch`, recording how the engine holds the model.

    accelerate launch --config_file <cfg> tests/helpers/distributed_training.py <config.yaml>

Runs `frozen_hf.programs.train.run_training` on the config, as ``python -m training.train`` does, with one extra
callback: when training starts, every process writes ``engine-rank<R>.json`` into the output folder, saying which
engine accelerate set up (distributed type, FSDP version, ZeRO stage), how the model is wrapped, and how many
elements of the frozen LM's and of the trained parameters that process holds locally against their full size, so
that a test can tell sharding from replication and check that the trained parameters kept requires_grad.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from transformers import TrainerCallback  # noqa: E402

from frozen_hf.programs.train import leave_distributed_run, run_training  # noqa: E402
from frozen_hf.train.arguments import parse_arguments  # noqa: E402

LANGUAGE_MODEL_PREFIXES = ("model.language_model.", "lm_head.")


def _local_and_full(parameter) -> tuple[int, int]:
    """Elements this process stores of ``parameter``, and the parameter's full number of elements."""
    from torch.distributed.tensor import DTensor

    if isinstance(parameter, DTensor):  # FSDP2: a shard along dim 0
        return parameter.to_local().numel(), parameter.numel()
    if hasattr(parameter, "ds_numel"):  # DeepSpeed ZeRO-3: the partition in ds_tensor, the parameter emptied
        return parameter.ds_tensor.numel(), parameter.ds_numel
    return parameter.numel(), parameter.numel()


class EngineRecorder(TrainerCallback):
    def on_train_begin(self, args, state, control, model=None, **kwargs):
        from accelerate.state import AcceleratorState

        accelerator_state = AcceleratorState()
        record = {
            "rank": accelerator_state.process_index,
            "num_processes": accelerator_state.num_processes,
            "distributed_type": str(accelerator_state.distributed_type).split(".")[-1],
            "fsdp_version": getattr(getattr(accelerator_state, "fsdp_plugin", None), "fsdp_version", None),
            "zero_stage": getattr(getattr(accelerator_state, "deepspeed_plugin", None), "zero_stage", None),
            "model_classes": [cls.__name__ for cls in type(model).__mro__[:3]],
            "fsdp_units": sum(type(m).__name__.startswith("FSDP") for m in model.modules()),
            "language_model": [0, 0],
            "trained": [0, 0],
            "trained_names": [],
        }
        for name, parameter in model.named_parameters():
            local, full = _local_and_full(parameter)
            if parameter.requires_grad:
                record["trained"][0] += local
                record["trained"][1] += full
                record["trained_names"].append(name)
            elif name.startswith(LANGUAGE_MODEL_PREFIXES):
                record["language_model"][0] += local
                record["language_model"][1] += full
        path = Path(args.output_dir) / f"engine-rank{record['rank']}.json"
        path.write_text(json.dumps(record, indent=1))


def main(argv: list[str]) -> int:
    model_args, data_args, training_args = parse_arguments(argv[0], argv[1:])
    result = run_training(model_args, data_args, training_args, callbacks=[EngineRecorder()])
    if training_args.should_save:
        print(f"Trained {result.global_step} steps; output {result.output_dir}")
    leave_distributed_run(0)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main(sys.argv[1:]))
