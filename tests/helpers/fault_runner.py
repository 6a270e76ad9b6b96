"""Runs the training program in subprocesses for the fault-injection and non-finite tests: the driver
(`fault_injection.py`, beside this file) kills or poisons it at a chosen point."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from frozen_hf.train.checkpoints import TRAINED_PREFIXES

REPO = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).resolve().parent / "fault_injection.py"
KILLED = -signal.SIGKILL


def training_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return env


def run_training_subprocess(config: str, point: str = "none", occurrence: int = 1, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(DRIVER), point, str(occurrence), config, *extra],
        cwd=REPO, env=training_env(), capture_output=True, text=True, timeout=600,
    )


def vision_state(output_dir: str | os.PathLike) -> dict[str, torch.Tensor]:
    weights = load_file(Path(output_dir) / "model.safetensors")
    return {k: v for k, v in weights.items() if k.startswith(TRAINED_PREFIXES)}


def write_run_config(assets: dict, folder: Path, name: str, **values) -> tuple[str, Path]:
    """A training config `folder/<name>.yaml` on the tiny ResNet and the assets' LM and captions, writing to
    `folder/<name>`; `values` set what a test module varies (length, saving, logging, policies).
    Returns `(config path, output folder)`."""
    from tests.helpers.tiny_training import TINY_RESNET, tiny_config_values, write_yaml

    out = folder / name
    config = tiny_config_values(assets["lm"], assets["data"], str(out), **{"vision_config": TINY_RESNET, **values})
    return write_yaml(folder / f"{name}.yaml", config), out


def reference_run_assets(root: Path, make_config) -> tuple[dict, Path]:
    """The tiny LM and caption folder of a fault test module under `root`, and its uninterrupted reference run:
    `make_config(assets, root, "reference")` gives `(config path, output folder)`; returns the assets and that folder.
    """
    from tests.helpers.tiny_training import write_caption_imagefolder, write_tiny_language_model

    assets = {
        "lm": write_tiny_language_model(root / "lm"),
        "data": write_caption_imagefolder(root / "data", num_images=32),
    }
    config, out = make_config(assets, root, "reference")
    result = run_training_subprocess(config)
    assert result.returncode == 0, result.stderr[-3000:]
    return assets, out
