"""Fault injection: the training program SIGKILLed at chosen and at random points (inside a step, while a
checkpoint's weights or optimizer state are half written, before its completion marker, before its rename, halfway
through deleting an old checkpoint), then resumed with ``--resume_from_checkpoint auto``.

Checked after every kill: the checkpoint that resuming would pick is complete (every file loads, its step is its
name's), no final output claims the run finished. Checked at the end: the final vision weights equal an
uninterrupted run's bit for bit, and the language model still verifies against its base (`frozen_hf.hub.verify`).
Each case runs real training subprocesses (a few seconds each on the tiny model).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from frozen_hf.train.checkpoints import CHECKPOINT_COMPLETE_MARKER, last_complete_checkpoint
from frozen_hf.hub.verify import verify_language_model

from tests.helpers.fault_runner import (
    KILLED, reference_run_assets, run_training_subprocess, vision_state, write_run_config,
)

STEPS, SAVE_EVERY = 12, 3


def _config(assets: dict, folder: Path, name: str) -> tuple[str, Path]:
    return write_run_config(
        assets, folder, name, max_steps=STEPS, save_steps=SAVE_EVERY, save_total_limit=2, logging_steps=3
    )


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict:
    assets, out = reference_run_assets(tmp_path_factory.mktemp("fault_assets"), _config)
    assets["reference"] = vision_state(out)
    return assets


def _assert_resumable_state(out: Path) -> int:
    """What resuming would pick is a complete checkpoint; returns its step (0 for none)."""
    assert not (out / "training_log.json").exists(), "a killed run must not look finished"
    last = last_complete_checkpoint(out)
    if last is None:
        return 0
    last = Path(last)
    step = int(last.name.rsplit("-", 1)[1])
    assert (last / CHECKPOINT_COMPLETE_MARKER).is_file()
    assert json.loads((last / "trainer_state.json").read_text())["global_step"] == step
    weights = load_file(last / "model.safetensors")  # a half-written file does not parse
    assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())
    torch.load(last / "optimizer.pt", weights_only=True)
    torch.load(last / "scheduler.pt", weights_only=True)
    return step


def _finish_and_compare(assets: dict, config: str, out: Path) -> None:
    result = run_training_subprocess(config, "none", 1, "--resume_from_checkpoint", "auto")
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((out / "training_log.json").read_text())["global_step"] == STEPS
    resumed = vision_state(out)
    assert set(resumed) == set(assets["reference"])
    differing = [key for key in resumed if not torch.equal(resumed[key], assets["reference"][key])]
    assert differing == [], f"vision weights differ from the uninterrupted run: {differing[:5]}"
    report = verify_language_model(out)
    assert report.ok, report.summary()


@pytest.mark.parametrize(
    "point,occurrence,resumable_step",
    [
        ("step", 5, 3),  # inside step 5: after backward, before the update
        ("model_file", 2, 3),  # checkpoint-6's weights half written
        ("optimizer_file", 2, 3),  # checkpoint-6's optimizer state half written
        ("before_marker", 3, 6),  # checkpoint-9 fully written, marker missing
        ("before_rename", 3, 6),  # checkpoint-9's marker written to its temporary file, not yet renamed into place
        ("rotate", 1, 9),  # checkpoint-3 half deleted (marker left) while checkpoint-9 is current
    ],
)
def test_sigkill_then_resume_matches_uninterrupted_run(assets, tmp_path, point, occurrence, resumable_step):
    config, out = _config(assets, tmp_path, "run")
    killed = run_training_subprocess(config, point, occurrence)
    assert killed.returncode == KILLED, f"not killed at {point}: {killed.stderr[-2000:]}"
    assert _assert_resumable_state(out) == resumable_step
    _finish_and_compare(assets, config, out)


@pytest.mark.parametrize("seed", [0, 1])
def test_repeated_kills_at_random_points(assets, tmp_path, seed):
    """Two kills in a row, each at a random point of the remaining run, then a clean finish."""
    rng = random.Random(seed)
    config, out = _config(assets, tmp_path, "run")
    step = 0
    for attempt in range(2):
        remaining_saves = (STEPS - step) // SAVE_EVERY
        point = rng.choice(["step", "model_file", "optimizer_file", "before_marker", "before_rename", "rotate"])
        occurrence = rng.randint(step + 1, STEPS) if point == "step" else rng.randint(1, max(1, remaining_saves))
        extra = ("--resume_from_checkpoint", "auto") if attempt else ()
        result = run_training_subprocess(config, point, occurrence, *extra)
        if result.returncode == 0:
            break  # that point never came (e.g. no rotation left): the run simply finished
        assert result.returncode == KILLED, f"{point}@{occurrence}: {result.stderr[-2000:]}"
        new_step = _assert_resumable_state(out)
        assert new_step >= step, "a kill must never lose a checkpoint that was already complete"
        step = new_step
    _finish_and_compare(assets, config, out)
