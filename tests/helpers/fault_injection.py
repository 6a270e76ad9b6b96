"""Runs the training program and SIGKILLs it at a chosen point, for fault-injection tests.

    python tests/helpers/fault_injection.py <point> <occurrence> <training args...>

Points (``occurrence`` counts from 1):

- ``step``: inside optimizer step ``occurrence``, after backward and before the update;
- ``model_file``: while checkpoint ``occurrence`` writes its weights (the file is left half written);
- ``optimizer_file``: while checkpoint ``occurrence`` writes the optimizer state (left half written);
- ``before_marker``: checkpoint ``occurrence`` fully written, completion marker not yet;
- ``before_rename``: the completion marker written to its temporary file, not yet renamed into place;
- ``rotate``: halfway through deleting an old checkpoint (``occurrence``-th deletion by checkpoint rotation);
- ``none``: no kill (the uninterrupted reference).

Poisons (no kill; ``occurrence`` is the optimizer step, counted from 1), for the non-finite loss policies:

- ``nan_loss`` / ``inf_loss``: the loss of that step's first micro-batch becomes NaN / +inf;
- ``nan_grad``: the loss stays finite but the visual prefix's weight gradient becomes NaN;
- ``nan_image``: that step's first micro-batch has a NaN pixel, so NaN flows through the vision backbone
  (and into BatchNorm running statistics, where the backbone has them);
- ``nan_weights_at_save``: a vision weight is set to NaN just before that step's checkpoint is written.

The process kills itself with SIGKILL, as the OOM killer or a preempted machine would: no handler, no cleanup.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path


def _die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _die_after_writing_half(owner: type, method: str, filename: str, due) -> None:
    """Patches ``owner.method(self, output_dir, ...)``, a save into a checkpoint folder, so that on its due call it
    leaves ``filename`` there half written and dies, as a kill in the middle of writing that file would."""
    save = getattr(owner, method)

    def save_then_die(self, output_dir=None, *args, **kwargs):
        result = save(self, output_dir, *args, **kwargs)
        if output_dir and Path(output_dir).name.startswith("checkpoint-") and due():
            path = os.path.join(output_dir, filename)
            with open(path, "r+b") as handle:
                handle.truncate(os.path.getsize(path) // 2)
            _die()
        return result

    setattr(owner, method, save_then_die)


def install(point: str, occurrence: int) -> None:
    """Patches the training code so that the process dies at `point`'s `occurrence`-th time."""
    import torch
    from transformers import Trainer

    from frozen_hf.train import checkpoints
    from frozen_hf.train.checkpoints import CHECKPOINT_COMPLETE_MARKER
    from frozen_hf.train.trainer import FrozenTrainer

    calls = {"count": 0}

    def due() -> bool:
        calls["count"] += 1
        return calls["count"] == occurrence

    if point == "step":
        guard = FrozenTrainer._guard_optimizer_step

        def guarded(self):
            guard(self)
            if self.state.global_step + 1 == occurrence:
                _die()

        FrozenTrainer._guard_optimizer_step = guarded
    elif point == "model_file":
        _die_after_writing_half(FrozenTrainer, "_save", "model.safetensors", due)
    elif point == "optimizer_file":
        _die_after_writing_half(Trainer, "_save_optimizer_and_scheduler", "optimizer.pt", due)
    elif point == "before_marker":
        write_json = checkpoints.write_json_atomic

        def write_unless_marker(path, value):
            if Path(path).name == CHECKPOINT_COMPLETE_MARKER and due():
                _die()
            write_json(path, value)

        checkpoints.write_json_atomic = write_unless_marker
    elif point == "before_rename":
        replace = os.replace

        def replace_unless_marker(src, dst, *args, **kwargs):
            if Path(dst).name == CHECKPOINT_COMPLETE_MARKER and due():
                _die()
            return replace(src, dst, *args, **kwargs)

        os.replace = replace_unless_marker
    elif point == "rotate":
        rmtree = shutil.rmtree

        def half_rmtree(path, *args, **kwargs):
            name = Path(path).name
            if name.startswith("checkpoint-") and due():
                # The worst order for a reader: weights and half the rest gone, completion marker still there.
                files = sorted(Path(path).iterdir(), key=lambda item: item.name != "model.safetensors")
                files = [item for item in files if item.name != CHECKPOINT_COMPLETE_MARKER]
                for item in files[: len(files) // 2]:
                    item.unlink() if item.is_file() else rmtree(item)
                _die()
            return rmtree(path, *args, **kwargs)

        shutil.rmtree = half_rmtree
    elif point in ("nan_loss", "inf_loss", "nan_grad", "nan_image"):
        compute_loss = FrozenTrainer.compute_loss
        poisoned = set()

        def poisoned_loss(self, model, inputs, *args, **kwargs):
            step = self.state.global_step + 1
            first = step == occurrence and step not in poisoned
            poisoned.add(step) if first else None
            if first and point == "nan_image":
                inputs["pixel_values"] = inputs["pixel_values"].clone()
                inputs["pixel_values"][0, 0, 0, 0] = float("nan")
            if first and point == "nan_grad":
                weight = self.accelerator.unwrap_model(model).model.visual_prefix.linear.weight
                hook = {}

                def nan_once(grad):
                    hook.pop("handle").remove()
                    return grad * float("nan")

                hook["handle"] = weight.register_hook(nan_once)
            result = compute_loss(self, model, inputs, *args, **kwargs)
            if first and point in ("nan_loss", "inf_loss"):
                factor = float("nan") if point == "nan_loss" else float("inf")
                result = (result[0] * factor, *result[1:]) if isinstance(result, tuple) else result * factor
            return result

        FrozenTrainer.compute_loss = poisoned_loss
    elif point == "nan_weights_at_save":
        save = FrozenTrainer._save

        def poison_then_save(self, output_dir=None, state_dict=None):
            if self.state.global_step == occurrence:
                with torch.no_grad():
                    self.accelerator.unwrap_model(self.model).model.visual_prefix.linear.weight[0, 0] = float("nan")
            return save(self, output_dir, state_dict)

        FrozenTrainer._save = poison_then_save
    elif point != "none":
        raise SystemExit(f"unknown kill point {point!r}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    install(sys.argv[1], int(sys.argv[2]))
    from frozen_hf.programs.train import main

    sys.exit(main(sys.argv[3:]))
