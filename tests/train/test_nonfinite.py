"""Non-finite loss policies, in training subprocesses poisoned at a chosen step (see `tests/helpers/fault_injection.py`).

- ``nonfinite_loss: stop`` (the default): NaN loss, +inf loss, a NaN gradient behind a finite loss, or NaN flowing
  through the vision backbone stop the run with a message naming the step and the last good checkpoint and exit
  status 3; that checkpoint is bit for bit the one an unpoisoned run writes; no file in the output folder holds a
  non-finite weight; resuming from it finishes exactly like the unpoisoned run.
- ``nonfinite_loss: skip``: the poisoned step is dropped and counted, and the run finishes with finite weights
  (BatchNorm statistics included).
- Weights that became NaN by any route are never written: the checkpoint save refuses, and what resuming would
  pick stays the previous complete checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from frozen_hf.train.checkpoints import last_complete_checkpoint

from tests.helpers.fault_runner import reference_run_assets, run_training_subprocess, vision_state, write_run_config

STEPS, SAVE_EVERY = 8, 3
NONFINITE_EXIT = 3


def _config(assets: dict, folder: Path, name: str, **extra) -> tuple[str, Path]:
    return write_run_config(
        assets, folder, name, max_steps=STEPS, save_steps=SAVE_EVERY, save_total_limit=3, logging_steps=1, **extra
    )


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict:
    assets, out = reference_run_assets(tmp_path_factory.mktemp("nonfinite_assets"), _config)
    assets["reference"] = out
    return assets


def _assert_no_nonfinite_weights(out: Path) -> None:
    for path in out.rglob("*.safetensors"):
        for name, tensor in load_file(path).items():
            if tensor.is_floating_point():
                assert torch.isfinite(tensor).all(), f"{path.relative_to(out)}: {name} is not finite"


@pytest.mark.parametrize("poison", ["nan_loss", "inf_loss", "nan_grad", "nan_image"])
def test_stop_keeps_the_last_good_checkpoint_and_resumes_exactly(assets, tmp_path, poison):
    config, out = _config(assets, tmp_path, "run")
    result = run_training_subprocess(config, poison, 5)
    assert result.returncode == NONFINITE_EXIT, result.stderr[-3000:]
    assert "Non-finite loss or gradient at optimizer step 5" in result.stderr
    assert "checkpoint-3" in result.stderr  # the message names the last good checkpoint
    assert last_complete_checkpoint(out) == str(out / "checkpoint-3")
    _assert_no_nonfinite_weights(out)
    reference = load_file(assets["reference"] / "checkpoint-3" / "model.safetensors")
    kept = load_file(out / "checkpoint-3" / "model.safetensors")
    assert set(kept) == set(reference) and all(torch.equal(kept[k], reference[k]) for k in kept)

    resumed = run_training_subprocess(config, "none", 1, "--resume_from_checkpoint", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected, final = vision_state(assets["reference"]), vision_state(out)
    assert all(torch.equal(expected[k], final[k]) for k in expected)


@pytest.mark.parametrize("poison", ["nan_loss", "nan_grad", "nan_image"])
def test_skip_drops_the_step_and_finishes_with_finite_weights(assets, tmp_path, poison):
    config, out = _config(assets, tmp_path, "run", nonfinite_loss="skip")
    result = run_training_subprocess(config, poison, 5)
    assert result.returncode == 0, result.stderr[-3000:]
    log = json.loads((out / "training_log.json").read_text())
    assert log["global_step"] == STEPS
    assert json.dumps(log).count('"skipped_steps": 1') >= 1
    _assert_no_nonfinite_weights(out)


def test_nan_weights_are_never_written(assets, tmp_path):
    config, out = _config(assets, tmp_path, "run")
    result = run_training_subprocess(config, "nan_weights_at_save", 6)
    assert result.returncode != 0
    assert "holds NaN or inf" in result.stderr
    assert last_complete_checkpoint(out) == str(out / "checkpoint-3")
    _assert_no_nonfinite_weights(out)
