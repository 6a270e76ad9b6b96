"""Training program tests on a tiny random LM and a tiny imagefolder (CPU, seconds each).

Covers: YAML + command-line parsing and its errors; data set checks before training; the output
folder guard; the LM bitwise unchanged in the final output under every default option (changed and
flagged under LoRA and scratch); checkpoints that hold only trained weights; corrupt images skipped
and counted; the non-finite loss policies; resume after SIGKILL (bitwise); two-process DDP over gloo
matching one process.
"""

from __future__ import annotations

import dataclasses
import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from datasets import Dataset, Features, Image, Value
from safetensors.torch import load_file

from frozen_hf import FrozenForConditionalGeneration
from frozen_hf.data.collator import FrozenCaptionCollator
from frozen_hf.programs.train import run_training
from frozen_hf.train.arguments import parse_arguments
from frozen_hf.train.checkpoints import CHECKPOINT_COMPLETE_MARKER, TRAINED_PREFIXES, last_complete_checkpoint
from frozen_hf.train.errors import NonFiniteLossError, OutputDirError, TrainingConfigError

from tests.helpers.fault_runner import training_env, vision_state
from tests.helpers.tiny import tiny_processor
from tests.helpers.tiny_training import (
    TINY_RESNET,
    caption_for,
    synthetic_image,
    tiny_config_values,
    write_caption_imagefolder,
    write_tiny_language_model,
    write_yaml,
)


REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "frozen_hf" / "configs" / "training"


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("training_assets")
    lm = write_tiny_language_model(root / "lm")
    data = write_caption_imagefolder(root / "data", num_images=32)
    return {"root": root, "lm": lm, "data": data}


def _run(assets, tmp_path, name="out", callbacks=(), data_dir=None, **extra):
    values = tiny_config_values(assets["lm"], data_dir or assets["data"], str(tmp_path / name), **extra)
    config = write_yaml(tmp_path / f"{name}.yaml", values)
    model_args, data_args, training_args = parse_arguments(config)
    return run_training(model_args, data_args, training_args, callbacks=callbacks)


def _lm_state(folder_or_model) -> dict[str, torch.Tensor]:
    from transformers import AutoModelForCausalLM

    if isinstance(folder_or_model, (str, Path)):
        model = AutoModelForCausalLM.from_pretrained(folder_or_model)
        return {k: v for k, v in model.state_dict().items()}
    return {
        "model." + k: v for k, v in folder_or_model.model.language_model.state_dict().items()
    } | {"lm_head.weight": folder_or_model.lm_head.weight}


def _assert_lm_equal(output_dir, lm_path, expect_equal=True):
    trained = FrozenForConditionalGeneration.from_pretrained(output_dir)
    base = _lm_state(lm_path)
    mine = _lm_state(trained)
    assert set(base) == set(mine)
    differing = [key for key in base if not torch.equal(base[key], mine[key])]
    if expect_equal:
        assert differing == []
    else:
        assert differing, "the LM was expected to change"
    return trained


# --------------------------------------------------------------------------- parsing


def test_yaml_and_overrides(tmp_path):
    config = write_yaml(
        tmp_path / "c.yaml",
        {
            "output_dir": str(tmp_path / "o"),
            "learning_rate": "3e-4",
            "vision_config": TINY_RESNET,
            "lora_target_modules": ["q_proj"],
            "max_steps": 5,
        },
    )
    model_args, data_args, training_args = parse_arguments(
        config, ["--max_steps", "7", "--visual_prefix_length=4", "--train_blind", "true", "--adam_beta2", "0.95"]
    )
    assert training_args.max_steps == 7
    assert training_args.learning_rate == pytest.approx(3e-4)
    assert training_args.adam_beta2 == pytest.approx(0.95)
    assert model_args.visual_prefix_length == 4
    assert model_args.vision_config == TINY_RESNET
    assert model_args.lora_target_modules == ["q_proj"]
    assert data_args.train_blind is True
    assert training_args.remove_unused_columns is False


def test_unknown_field_in_yaml(tmp_path):
    config = write_yaml(tmp_path / "c.yaml", {"output_dir": str(tmp_path), "learning_rat": 1e-3})
    with pytest.raises(TrainingConfigError, match=r"learning_rat.*did you mean learning_rate"):
        parse_arguments(config)


def test_unknown_field_on_command_line(tmp_path):
    config = write_yaml(tmp_path / "c.yaml", {"output_dir": str(tmp_path)})
    with pytest.raises(TrainingConfigError, match=r"visual_prefix_lenght.*visual_prefix_length"):
        parse_arguments(config, ["--visual_prefix_lenght", "3"])


def test_bad_value(tmp_path):
    config = write_yaml(tmp_path / "c.yaml", {"output_dir": str(tmp_path), "nonfinite_loss": "ignore"})
    with pytest.raises(TrainingConfigError, match="nonfinite_loss"):
        parse_arguments(config)


def test_program_exit_code_and_message(tmp_path):
    config = write_yaml(tmp_path / "c.yaml", {"output_dir": str(tmp_path), "bogus_field": 1})
    result = subprocess.run(
        [sys.executable, "-m", "training.train", config], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert "bogus_field" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_shipped_configs_parse(name, tmp_path):
    # use_cpu: bf16 configs are for GPUs, and this machine may have none
    model_args, data_args, training_args = parse_arguments(
        CONFIGS / name, ["--output_dir", str(tmp_path), "--use_cpu", "true"]
    )
    assert model_args.visual_prefix_length >= 1
    if name == "paper-cc3m.yaml":
        assert training_args.adam_beta2 == pytest.approx(0.95)
        assert training_args.learning_rate == pytest.approx(3e-4)
        assert training_args.lr_scheduler_type == "constant"
        assert model_args.image_size == 224 and model_args.visual_prefix_length == 2
        assert training_args.load_best_model_at_end and training_args.metric_for_best_model == "eval_loss"
        assert data_args.streaming


def test_shipped_config_by_bare_name(tmp_path):
    overrides = ["--output_dir", str(tmp_path), "--use_cpu", "true"]
    by_name = parse_arguments("shapes-smollm2", overrides)
    by_path = parse_arguments(CONFIGS / "shapes-smollm2.yaml", overrides)
    assert [dataclasses.asdict(args) for args in by_name[:2]] == [dataclasses.asdict(args) for args in by_path[:2]]
    assert by_name[2].to_dict() == by_path[2].to_dict()
    with pytest.raises(TrainingConfigError, match=r"shapes-smollm3 does not exist.*shapes-smollm2"):
        parse_arguments("shapes-smollm3", overrides)


def test_visual_prefix_length_checked_by_the_model_config(tmp_path):
    config = write_yaml(tmp_path / "c.yaml", {"output_dir": str(tmp_path / "o"), "visual_prefix_length": 0})
    with pytest.raises(TrainingConfigError, match="visual_prefix_length must be"):
        parse_arguments(config)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("large", "visual_prefix_rms must be a positive number or 'match', got 'large'."),
        ("-2", "visual_prefix_rms must be a positive number (the root mean square each prefix embedding is rescaled to) or None, got -2.0."),
    ],
)
def test_visual_prefix_rms_checked_before_training(tmp_path, value, message):
    config = write_yaml(tmp_path / "c.yaml", {"output_dir": str(tmp_path / "o")})
    with pytest.raises(TrainingConfigError) as raised:
        parse_arguments(config, ["--visual_prefix_rms", value])
    assert str(raised.value) == message
    assert not (tmp_path / "o").exists()
    assert parse_arguments(config, ["--visual_prefix_rms", "match"])[0].visual_prefix_rms == "match"
    assert parse_arguments(config, ["--visual_prefix_rms", "0.5"])[0].visual_prefix_rms == 0.5


# --------------------------------------------------------------------------- data checks


def _disk_dataset(tmp_path, columns: dict, features: Features) -> str:
    path = tmp_path / "ds"
    Dataset.from_dict(columns, features=features).save_to_disk(str(path))
    return str(path)


@pytest.mark.parametrize(
    "columns, features, match",
    [
        ({"caption": ["a"]}, Features({"caption": Value("string")}), r"no column 'image'.*image_column"),
        (
            {"image": [synthetic_image(0)], "text": ["a"]},
            Features({"image": Image(), "text": Value("string")}),
            r"no column 'caption'.*\['image', 'text'\]",
        ),
        (
            {"image": [synthetic_image(0)], "caption": [3]},
            Features({"image": Image(), "caption": Value("int64")}),
            r"caption column 'caption' has type.*int64",
        ),
    ],
    ids=["no-image-column", "no-caption-column", "caption-not-text"],
)
def test_bad_dataset_rejected_before_training(assets, tmp_path, columns, features, match):
    data = _disk_dataset(tmp_path, columns, features)
    with pytest.raises(TrainingConfigError, match=match):
        _run(assets, tmp_path, dataset=data)
    assert last_complete_checkpoint(tmp_path / "out") is None


# --------------------------------------------------------------------------- output folder


def test_output_folder_of_a_different_run(assets, tmp_path):
    _run(assets, tmp_path, max_steps=2, save_steps=2)
    with pytest.raises(OutputDirError, match=r"different training run.*learning_rate"):
        _run(assets, tmp_path, max_steps=2, save_steps=2, learning_rate=5e-4)
    with pytest.raises(OutputDirError, match="already holds this run"):
        _run(assets, tmp_path, max_steps=2, save_steps=2)
    # overwrite replaces it
    _run(assets, tmp_path, max_steps=2, save_steps=2, learning_rate=5e-4, overwrite_output_dir=True)


def test_output_folder_that_is_not_a_run(assets, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(OutputDirError, match="does not hold a Frozen training run"):
        _run(assets, tmp_path, overwrite_output_dir=True)
    assert (tmp_path / "out" / "notes.txt").read_text() == "mine"


# --------------------------------------------------------------------------- the LM stays frozen


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"visual_prefix_length": 1},
        {"train_blind": True},
        {"vision_config": TINY_RESNET},
        {"activation_checkpointing": True},
    ],
    ids=["default", "n=1", "train-blind", "resnet-batchnorm", "activation-checkpointing"],
)
def test_lm_bitwise_unchanged(assets, tmp_path, options):
    result = _run(assets, tmp_path, max_steps=3, save_steps=3, **options)
    trained = _assert_lm_equal(result.output_dir, assets["lm"], expect_equal=True)
    assert trained.config.language_model_modification is None
    assert trained.config.visual_prefix_length == options.get("visual_prefix_length", 2)
    # the vision encoder did train
    log = json.loads((Path(result.output_dir) / "training_log.json").read_text())
    assert log["status"] == "complete" and log["global_step"] == 3
    assert (Path(result.output_dir) / "loss_curve.png").stat().st_size > 1000
    # checkpoints hold the trained weights only, never the LM
    keys = set(load_file(Path(result.output_dir) / "checkpoint-3" / "model.safetensors"))
    assert keys and all(k.startswith(TRAINED_PREFIXES) for k in keys)
    if options.get("vision_config") == TINY_RESNET:
        assert any("running_mean" in k for k in keys)


def test_projection_only_with_pretrained_backbone(assets, tmp_path):
    from transformers import AutoConfig, AutoModel

    backbone_dir = tmp_path / "backbone"
    torch.manual_seed(1)
    config = dict(TINY_RESNET)
    backbone = AutoModel.from_config(AutoConfig.for_model(config.pop("model_type"), **config))
    backbone.save_pretrained(backbone_dir)
    values = dict(vision_config=None, vision_model_name_or_path=str(backbone_dir), freeze_vision_backbone=True)
    result = _run(assets, tmp_path, max_steps=3, save_steps=3, **values)
    trained = _assert_lm_equal(result.output_dir, assets["lm"], expect_equal=True)
    reference = AutoModel.from_pretrained(backbone_dir).state_dict()
    for key, value in trained.model.vision_model.state_dict().items():
        assert torch.equal(value, reference[key]), key  # BatchNorm statistics included
    assert trained.config.frozen_training["freeze_vision_backbone"] is True


@pytest.mark.parametrize("ablation", ["lora", "reinit_language_model"])
def test_lm_changed_and_flagged(assets, tmp_path, ablation):
    result = _run(assets, tmp_path, max_steps=3, save_steps=3, **{ablation: True})
    trained = _assert_lm_equal(result.output_dir, assets["lm"], expect_equal=False)
    expected = "lora" if ablation == "lora" else "scratch"
    assert trained.config.language_model_modification == expected
    config = json.loads((Path(result.output_dir) / "config.json").read_text())
    assert config["language_model_modification"] == expected
    # LoRA is merged: the output is a plain Frozen model
    assert not any("lora_" in k for k in trained.state_dict())


# --------------------------------------------------------------------------- bad images


def test_corrupt_images_skipped_and_counted(assets, tmp_path):
    data = write_caption_imagefolder(tmp_path / "data", num_images=16, corrupt=[1, 5, 6])
    # one full epoch (4 batches of 4) so every corrupt file is met exactly once
    result = _run(assets, tmp_path, dataset="imagefolder", data_dir=data, max_steps=4, save_steps=4)
    assert result.counters["skipped_images"] == 3
    log = json.loads((Path(result.output_dir) / "training_log.json").read_text())
    assert log["counters"]["skipped_images"] == 3
    assert max(entry.get("skipped_images", 0) for entry in log["log_history"]) == 3


def test_missing_files_and_empty_captions(tmp_path):
    processor = tiny_processor()
    good = tmp_path / "good.png"
    synthetic_image(0).save(good)
    rows = [
        {"image": {"path": str(good), "bytes": None}, "caption": "a red circle"},
        {"image": {"path": str(tmp_path / "gone.png"), "bytes": None}, "caption": "a blue square"},
        {"image": {"path": None, "bytes": b""}, "caption": "a green circle"},
        {"image": {"path": str(good), "bytes": None}, "caption": "  "},
        {"image": None, "caption": "a red square"},
    ]
    batch = FrozenCaptionCollator(processor)(rows)
    assert int(batch["num_skipped_images"]) == 3
    assert int(batch["num_skipped_captions"]) == 1
    assert batch["pixel_values"].shape[0] == 1


def test_all_rows_bad_gives_an_ignored_batch():
    processor = tiny_processor()
    batch = FrozenCaptionCollator(processor)([{"image": {"bytes": b"junk", "path": None}, "caption": "a red circle"}])
    assert int(batch["num_skipped_images"]) == 1
    assert bool((batch["labels"] == -100).all())


def test_collator_labels_and_eos():
    processor = tiny_processor()
    collator = FrozenCaptionCollator(processor)
    caption, _ = caption_for(0)
    batch = collator([{"image": synthetic_image(0), "caption": caption}, {"image": synthetic_image(1), "caption": "a"}])
    tokenizer = processor.tokenizer
    ids = batch["input_ids"][0].tolist()
    assert ids[-1] == tokenizer.eos_token_id
    assert ids[:2] == [processor.image_token_id] * 2
    labels = batch["labels"][0].tolist()
    assert labels[:2] == [-100, -100] and labels[2:] == ids[2:]
    # left padding in the second row is ignored
    assert batch["labels"][1][batch["attention_mask"][1] == 0].eq(-100).all()


def test_collator_packs_rows_into_interleaved_sequences():
    processor = tiny_processor()
    rows = [{"image": synthetic_image(i), "caption": caption_for(i)[0]} for i in range(5)]
    packed = FrozenCaptionCollator(processor, images_per_sequence=2)(rows)
    single = FrozenCaptionCollator(processor)(rows)
    image_id, eos = processor.image_token_id, processor.tokenizer.eos_token_id
    assert packed["input_ids"].shape[0] == 3 and single["input_ids"].shape[0] == 5
    assert (packed["input_ids"] == image_id).sum(dim=1).tolist() == [4, 4, 2]  # 2 placeholders per image
    assert torch.equal(packed["pixel_values"], single["pixel_values"])  # the same images, in row order
    # one EOS per sequence, after its last caption; the captions are joined by new lines and all learned
    first = packed["input_ids"][0][packed["attention_mask"][0].bool()].tolist()
    assert first.count(eos) == 1 and first[-1] == eos
    text = f"<image> {rows[0]['caption']}\n<image> {rows[1]['caption']}{processor.tokenizer.eos_token}"
    expected = processor(text=[text], images=[[rows[0]["image"], rows[1]["image"]]], return_tensors="pt")
    assert first == expected["input_ids"][0].tolist()
    labels = packed["labels"][0][packed["attention_mask"][0].bool()]
    assert labels.eq(-100).sum() == 4
    with pytest.raises(ValueError, match="images_per_sequence must be an int >= 1, got 0"):
        FrozenCaptionCollator(processor, images_per_sequence=0)


def test_train_blind_uses_black_images():
    processor = tiny_processor()
    batch = FrozenCaptionCollator(processor, train_blind=True)(
        [{"image": {"bytes": b"never decoded", "path": None}, "caption": "a red circle"}]
    )
    black = processor.image_processor(FrozenCaptionCollator(processor).blank_image, return_tensors="pt")["pixel_values"]
    assert torch.equal(batch["pixel_values"], black)
    assert int(batch["num_skipped_images"]) == 0


# --------------------------------------------------------------------------- non-finite loss


def _poison_callback(step: int):
    from transformers import TrainerCallback

    class Poison(TrainerCallback):
        """Makes the visual prefix NaN during optimizer step `step` (1-based)."""

        handle = None

        def on_step_begin(self, args, state, control, model=None, **kwargs):
            if self.handle is not None:
                self.handle.remove()
                self.handle = None
            if state.global_step + 1 == step:
                self.handle = model.model.visual_prefix.register_forward_hook(lambda m, i, o: o * float("nan"))

    return Poison()


def test_nonfinite_loss_stops_before_the_update(assets, tmp_path):
    with pytest.raises(NonFiniteLossError, match="step 5"):
        _run(assets, tmp_path, max_steps=6, save_steps=3, callbacks=[_poison_callback(5)])
    out = tmp_path / "out"
    assert last_complete_checkpoint(out) == str(out / "checkpoint-3")
    log = json.loads((out / "training_log.json").read_text())
    assert log["status"].startswith("stopped")
    weights = load_file(out / "checkpoint-3" / "model.safetensors")
    assert all(torch.isfinite(v).all() for v in weights.values())


def test_nonfinite_loss_skip(assets, tmp_path):
    result = _run(
        assets, tmp_path, max_steps=6, save_steps=3, nonfinite_loss="skip", callbacks=[_poison_callback(2)]
    )
    assert result.counters["skipped_steps"] == 1
    trained = FrozenForConditionalGeneration.from_pretrained(result.output_dir)
    assert all(torch.isfinite(p).all() for p in trained.parameters())


# --------------------------------------------------------------------------- resume and DDP (subprocesses)


def test_resume_after_sigkill_is_bitwise_equal(assets, tmp_path):
    steps = 24
    common = dict(max_steps=steps, save_steps=4, vision_config=TINY_RESNET, logging_steps=4)
    reference = write_yaml(tmp_path / "ref.yaml", tiny_config_values(assets["lm"], assets["data"], str(tmp_path / "ref"), **common))
    subprocess.run([sys.executable, "-m", "training.train", reference], cwd=REPO, env=training_env(), check=True,
                   capture_output=True, timeout=600)

    out = tmp_path / "killed"
    config = write_yaml(tmp_path / "k.yaml", tiny_config_values(assets["lm"], assets["data"], str(out), **common))
    process = subprocess.Popen([sys.executable, "-m", "training.train", config], cwd=REPO, env=training_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    try:
        while time.time() < deadline and last_complete_checkpoint(out) in (None, str(out / "checkpoint-4")):
            if process.poll() is not None:
                break
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    killed_at = last_complete_checkpoint(out)
    assert killed_at is not None and not (out / "training_log.json").exists()

    subprocess.run([sys.executable, "-m", "training.train", config, "--resume_from_checkpoint", "last"], cwd=REPO,
                   env=training_env(), check=True, capture_output=True, timeout=600)
    expected, resumed = vision_state(tmp_path / "ref"), vision_state(out)
    assert set(expected) == set(resumed)
    for key in expected:
        assert torch.equal(expected[key], resumed[key]), key
    log = json.loads((out / "training_log.json").read_text())
    assert log["global_step"] == steps


def test_half_written_checkpoint_is_never_picked(tmp_path):
    (tmp_path / "checkpoint-4").mkdir()
    (tmp_path / "checkpoint-4" / CHECKPOINT_COMPLETE_MARKER).write_text("{}")
    (tmp_path / "checkpoint-8").mkdir()  # no marker: never renamed into place by the trainer
    (tmp_path / ".staging-checkpoint-12").mkdir()
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-4")


def test_two_process_ddp_matches_one_process(assets, tmp_path):
    common = dict(max_steps=4, save_steps=4, logging_steps=1, learning_rate=5e-3)
    single = write_yaml(
        tmp_path / "one.yaml",
        tiny_config_values(assets["lm"], assets["data"], str(tmp_path / "one"), per_device_train_batch_size=8, **common),
    )
    double = write_yaml(
        tmp_path / "two.yaml",
        tiny_config_values(assets["lm"], assets["data"], str(tmp_path / "two"), per_device_train_batch_size=4, **common),
    )
    subprocess.run([sys.executable, "-m", "training.train", single], cwd=REPO, env=training_env(), check=True,
                   capture_output=True, timeout=600)
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
              "-m", "training.train", double]
    result = subprocess.run(launch, cwd=REPO, env=training_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]

    def losses(folder):
        log = json.loads((Path(folder) / "training_log.json").read_text())
        return [entry["loss"] for entry in log["log_history"] if "loss" in entry]

    assert len(losses(tmp_path / "one")) == 4
    assert losses(tmp_path / "two") == pytest.approx(losses(tmp_path / "one"), rel=1e-4, abs=1e-5)
    one, two = vision_state(tmp_path / "one"), vision_state(tmp_path / "two")
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=1e-4, atol=1e-5)


def test_validation_perplexity_and_best_model(assets, tmp_path):
    data = write_caption_imagefolder(tmp_path / "data", num_images=16, validation=8)
    result = _run(
        assets, tmp_path, data_dir=data, eval_split="validation", eval_strategy="steps", eval_steps=2,
        save_steps=2, max_steps=4, early_stopping_patience=5,
    )
    log = json.loads((Path(result.output_dir) / "training_log.json").read_text())
    evals = [entry for entry in log["log_history"] if "eval_loss" in entry]
    assert len(evals) >= 2
    assert all(entry["eval_perplexity"] == pytest.approx(math.exp(entry["eval_loss"])) for entry in evals)
    assert "eval_perplexity" in result.metrics
    _assert_lm_equal(result.output_dir, assets["lm"], expect_equal=True)


def test_shapes_vqa_mixed_into_captioning():
    from frozen_hf.eval.prompting import vqa_segment_text
    from frozen_hf.data.shapes import load_shapes
    from frozen_hf.data.captions import load_caption_datasets
    from frozen_hf.train.arguments import FrozenDataArguments

    def rows(fraction: float) -> list[str]:
        args = FrozenDataArguments(dataset="shapes", shapes_num_train=40, shapes_vqa_fraction=fraction, eval_split="none")
        train, evaluation = load_caption_datasets(args, image_size=32)
        assert evaluation is None and len(train) == 40 and set(train.column_names) >= {"image", "caption"}
        return train["caption"]

    captions = rows(0.25)
    vqa = [c for c in captions if c.startswith("Question: ")]
    reference = load_shapes("vqa", "train", num_samples=10, image_size=32)
    # Laid out as the evaluation's VQA prompts, with the answer.
    assert sorted(vqa) == sorted(vqa_segment_text(q, a) for q, a in zip(reference["question"], reference["answer"]))
    assert captions == rows(0.25)  # the mix and its order are deterministic
    assert not any(c.startswith("Question: ") for c in rows(0.0))
    with pytest.raises(TrainingConfigError, match="shapes_vqa_fraction"):
        FrozenDataArguments(dataset="shapes", shapes_vqa_fraction=1.5)


def test_shapes_binding_episodes_mixed_into_captioning():
    from frozen_hf.data.captions import load_caption_datasets
    from frozen_hf.data.collator import EPISODE_IMAGES_COLUMN
    from frozen_hf.data.shapes import NONSENSE_NAMES, TRAINING_NONSENSE_NAMES
    from frozen_hf.train.arguments import FrozenDataArguments

    args = FrozenDataArguments(
        dataset="shapes", shapes_num_train=16, shapes_binding_episodes=12, shapes_binding_layout="compact",
        shapes_caption_style="shape_first", eval_split="none",
    )
    train, _ = load_caption_datasets(args, image_size=32)
    assert len(train) == 28
    episodes = [row for row in train if row[EPISODE_IMAGES_COLUMN]]
    assert len(episodes) == 12
    assert set(TRAINING_NONSENSE_NAMES).isdisjoint(NONSENSE_NAMES)
    settings = set()
    for row in episodes:
        text = row["caption"]
        lines = text.split("\n")
        induction, support, query = lines[0], lines[1:-1], lines[-1]
        names = induction.removeprefix("Answer with ").removesuffix(".").replace(" or ", ", ").split(", ")
        assert set(names) <= set(TRAINING_NONSENSE_NAMES)
        # one image per marker, each followed directly by its name; the query ends on the answer
        assert text.count("<image>") == len(row[EPISODE_IMAGES_COLUMN]) == len(support) + 1
        assert all(line.startswith("<image>: ") and line.removeprefix("<image>: ") in names for line in support)
        assert query.startswith("<image>: ") and query.removeprefix("<image>: ") in names
        settings.add((len(names), len(support) // len(names)))
    # 12 episodes spread over 2..5 ways x 1..3 shots: each setting once
    assert settings == {(ways, shots) for ways in range(2, 6) for shots in range(1, 4)}

    processor = tiny_processor()
    caption_row = next(row for row in train if not row[EPISODE_IMAGES_COLUMN])
    batch = FrozenCaptionCollator(processor, images_per_sequence=8)([caption_row, episodes[-1], caption_row])
    image_id = processor.image_token_id
    # the two caption rows share one packed sequence; the episode is a sequence of its own
    assert batch["input_ids"].shape[0] == 2
    assert (batch["input_ids"] == image_id).sum(dim=1).tolist() == [4, 2 * len(episodes[-1][EPISODE_IMAGES_COLUMN])]
    assert batch["pixel_values"].shape[0] == 2 + len(episodes[-1][EPISODE_IMAGES_COLUMN])
    episode_ids = batch["input_ids"][1][batch["attention_mask"][1].bool()].tolist()
    expected = processor(text=[episodes[-1]["caption"] + processor.tokenizer.eos_token],
                         images=[[synthetic_image(0)] * len(episodes[-1][EPISODE_IMAGES_COLUMN])])
    assert episode_ids == expected["input_ids"][0]

    for bad, match in (
        (dict(shapes_binding_episodes=-1), "shapes_binding_episodes must be >= 0"),
        (dict(shapes_binding_layout="sideways"), "shapes_binding_layout must be one of paper, compact, adjacent"),
        (dict(shapes_binding_max_ways=9), "shapes_binding_max_ways must be between 2 and 8"),
        (dict(shapes_binding_max_shots=0), "shapes_binding_max_shots must be >= 1"),
    ):
        with pytest.raises(TrainingConfigError, match=match):
            FrozenDataArguments(dataset="shapes", **bad)


def test_training_episode_with_markers_out_of_step_is_refused():
    from frozen_hf.data.collator import EPISODE_IMAGES_COLUMN

    row = {"image": None, "caption": "<image>: lorp\n<image>: lorp", EPISODE_IMAGES_COLUMN: [synthetic_image(0)]}
    with pytest.raises(ValueError, match="holds 2 <image> markers for 1 images in 'episode_images'"):
        FrozenCaptionCollator(tiny_processor())([row])


@pytest.mark.parametrize("weight", [-1.0, float("inf"), float("nan")])
def test_word_anchor_weight_checked(tmp_path, weight):
    config = write_yaml(tmp_path / "c.yaml", {"output_dir": str(tmp_path / "o"), "word_anchor_weight": weight})
    with pytest.raises(TrainingConfigError, match=r"word_anchor_weight must be a number >= 0, got"):
        parse_arguments(config)


def test_word_anchor_logged_and_falling_with_the_lm_unchanged(assets, tmp_path):
    result = _run(assets, tmp_path, max_steps=8, save_steps=8, word_anchor_weight=1.0, lr_scheduler_type="constant")
    _assert_lm_equal(result.output_dir, assets["lm"], expect_equal=True)
    history = json.loads((Path(result.output_dir) / "training_log.json").read_text())["log_history"]
    anchors = [entry["word_anchor_loss"] for entry in history if "word_anchor_loss" in entry]
    assert len(anchors) == 8
    assert anchors[-1] < anchors[0]


def test_word_anchor_reaches_the_encoder_by_its_scale(assets, tmp_path):
    # One step without gradient clipping, so that the clipping scale (which the anchor's gradients change) does not
    # reach the encoder: its update then depends on its own gradient alone.
    common = dict(max_steps=1, save_steps=1, max_grad_norm=0.0)

    def trained(name, **options):
        return FrozenForConditionalGeneration.from_pretrained(_run(assets, tmp_path, name, **common, **options).output_dir)

    plain = trained("plain")
    cut_off = trained("cut-off", word_anchor_weight=2.0, word_anchor_encoder_scale=0.0)
    whole = trained("whole", word_anchor_weight=2.0)
    encoder = plain.model.vision_model.state_dict()
    # At scale 0 captioning alone trains the encoder; the projection still learns the anchor.
    assert all(torch.equal(encoder[key], value) for key, value in cut_off.model.vision_model.state_dict().items())
    assert not torch.equal(plain.model.visual_prefix.linear.weight, cut_off.model.visual_prefix.linear.weight)
    assert not all(torch.equal(encoder[key], value) for key, value in whole.model.vision_model.state_dict().items())


@pytest.mark.parametrize("scale", [-0.5, 1.5])
def test_word_anchor_encoder_scale_checked(tmp_path, scale):
    config = write_yaml(tmp_path / "c.yaml", {"output_dir": str(tmp_path / "o"), "word_anchor_encoder_scale": scale})
    with pytest.raises(TrainingConfigError, match=r"word_anchor_encoder_scale must be a number from 0 to 1, got"):
        parse_arguments(config)


def test_word_anchor_refuses_a_centred_prefix(assets, tmp_path):
    with pytest.raises(TrainingConfigError, match="word_anchor_weight needs visual_prefix_centered off"):
        _run(assets, tmp_path, max_steps=1, word_anchor_weight=1.0, visual_prefix_centered=True)
