"""The output folder and checkpoint rules, without training: which arguments define a run, which checkpoint is
complete, what rotation deletes, and that `FrozenTrainer` changes `Trainer` through public hooks (and `_save`)."""

from __future__ import annotations

import json

import pytest
from transformers import Trainer

from frozen_hf.train.arguments import parse_arguments
from frozen_hf.train.checkpoints import (
    CHECKPOINT_COMPLETE_MARKER,
    RUN_RECORD,
    discard_checkpoints_after,
    last_complete_checkpoint,
    prepare_output_dir,
    rotate_complete_checkpoints,
)
from frozen_hf.train.errors import OutputDirError
from frozen_hf.train.trainer import FrozenTrainer

from tests.helpers.tiny_training import tiny_config_values, write_yaml


def _arguments(tmp_path, *overrides: str):
    values = tiny_config_values("lm-folder", "data-folder", str(tmp_path / "out"))
    return parse_arguments(write_yaml(tmp_path / "c.yaml", values), list(overrides))


def _checkpoint(folder, step: int, complete: bool = True):
    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"weights")
    if complete:
        (path / CHECKPOINT_COMPLETE_MARKER).write_text("{}")
    return path


def test_operational_fields_may_change_on_resume(tmp_path):
    assert prepare_output_dir(*_arguments(tmp_path)) is None
    _checkpoint(tmp_path / "out", 3)
    # Logging, saving and data loader options do not define the run: resuming with other values is the same run.
    resumed = _arguments(
        tmp_path, "--resume_from_checkpoint", "last", "--logging_steps", "7", "--save_steps", "5",
        "--dataloader_num_workers", "2", "--report_to", "tensorboard",
    )
    assert prepare_output_dir(*resumed) == str(tmp_path / "out" / "checkpoint-3")


@pytest.mark.parametrize("override", [["--learning_rate", "5e-4"], ["--gradient_accumulation_steps", "2"],
                                      ["--visual_prefix_length", "3"], ["--caption_template", "<image>{caption}"]])
def test_defining_fields_make_a_different_run(tmp_path, override):
    prepare_output_dir(*_arguments(tmp_path))
    name = override[0].lstrip("-")
    with pytest.raises(OutputDirError, match=rf"different training run.*{name}"):
        prepare_output_dir(*_arguments(tmp_path, "--resume_from_checkpoint", "auto", *override))


def test_a_record_with_fields_this_version_does_not_define_is_the_same_run(tmp_path):
    # A record written by a version whose arguments held more fields (say, a TrainingArguments field that a later
    # transformers release removed) still matches on the fields that define a run today.
    prepare_output_dir(*_arguments(tmp_path))
    record_path = tmp_path / "out" / RUN_RECORD
    record = json.loads(record_path.read_text())
    record["arguments"]["a_field_of_another_version"] = 1
    record_path.write_text(json.dumps(record))
    assert prepare_output_dir(*_arguments(tmp_path, "--resume_from_checkpoint", "auto")) is None


def test_rotation_keeps_the_newest_complete_checkpoints(tmp_path):
    for step in (3, 6, 9):
        _checkpoint(tmp_path, step)
    _checkpoint(tmp_path, 2, complete=False)  # a leftover of a killed save
    rotate_complete_checkpoints(tmp_path, limit=2, keep=str(tmp_path / "checkpoint-3"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-3", "checkpoint-6", "checkpoint-9"]
    rotate_complete_checkpoints(tmp_path, limit=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-6", "checkpoint-9"]
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-9")


def test_checkpoints_past_the_resumed_step_are_discarded(tmp_path):
    for step in (3, 6):
        _checkpoint(tmp_path, step)
    _checkpoint(tmp_path, 9, complete=False)
    discard_checkpoints_after(tmp_path, 3)
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint-3"]


def test_frozen_trainer_overrides_no_private_trainer_method_but_save():
    private = sorted(
        name for name in vars(FrozenTrainer)
        if name.startswith("_") and not name.startswith("__") and hasattr(Trainer, name)
    )
    assert private == ["_save"]
