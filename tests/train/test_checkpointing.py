"""Activation checkpointing keeps every gradient: each freezing preset, on and off, gives equal non-zero gradients on
every trainable parameter; checkpointing is non-reentrant whatever the Trainer passes, and the reentrant failure mode
(a trainable layer above frozen ones gets no gradient) cannot be reached from the training program."""

from __future__ import annotations

import functools
import json

import pytest
import torch
from torch.utils.checkpoint import checkpoint
from transformers import PreTrainedModel

from frozen_hf import FrozenForConditionalGeneration
from frozen_hf.programs.train import run_training
from frozen_hf.train.arguments import FrozenModelArguments, parse_arguments
from frozen_hf.train.build import build_model_and_processor
from frozen_hf.train.errors import TrainingConfigError

from tests.helpers.tiny import random_images
from tests.helpers.tiny_training import TINY_RESNET, tiny_config_values, write_caption_imagefolder, write_tiny_language_model, write_yaml

# A two-layer ViT: its layers are checkpointed too, and one of them can be frozen below a trained one.
TINY_VIT = {
    "model_type": "vit", "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 32,
    "image_size": 32, "patch_size": 8,
}
PRESETS = {
    "default": {},
    "default-resnet": {"vision_config": TINY_RESNET},
    "projection-only": {"freeze_vision_backbone": True},
    "lora": {"lora": True},
    "partly-frozen-backbone": {"freeze_vision_layers": 1},
}


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    return write_tiny_language_model(tmp_path_factory.mktemp("checkpointing") / "lm")


def _model(lm, options):
    options = {"vision_config": TINY_VIT, **options}
    torch.manual_seed(0)
    args = FrozenModelArguments(language_model=lm, image_size=32, attn_implementation="sdpa", **options)
    built = build_model_and_processor(args)
    # LoRA starts with B = 0, which gives A no gradient; start from B != 0, as after a first step.
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, parameter in built.model.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.02)
    return built


def _gradients(model, processor):
    batch = processor(
        text=["<image> a red circle on the left .", "<image> a blue square . <image> a green star ."],
        images=[random_images(1, seed=1), random_images(2, seed=2)], return_tensors="pt", padding=True,
    )
    labels = processor.create_labels(batch["input_ids"], batch["attention_mask"])
    model.train()
    model(**batch, labels=labels).loss.backward()
    return {name: p.grad for name, p in model.named_parameters() if p.requires_grad}


def _checkpointed_layers(model) -> int:
    return sum(1 for module in model.modules() if getattr(module, "gradient_checkpointing", False))


@pytest.mark.parametrize("preset", list(PRESETS))
def test_checkpointing_keeps_every_gradient(lm, preset):
    gradients = {}
    for checkpointing in (False, True):
        model, processor, _ = _model(lm, PRESETS[preset])
        if checkpointing:
            model.activation_checkpointing_enable()
            assert model.model.language_model.gradient_checkpointing
            assert _checkpointed_layers(model) >= 2
        gradients[checkpointing] = _gradients(model, processor)
    assert gradients[False].keys() == gradients[True].keys() and gradients[False]
    for name, gradient in gradients[False].items():
        assert gradient is not None and gradients[True][name] is not None, name
        assert bool(gradient.abs().sum() > 0), f"{name} has an all-zero gradient"
        torch.testing.assert_close(gradients[True][name], gradient, rtol=1e-5, atol=1e-7)
    trainable = set(gradients[False])
    if preset == "lora":
        assert any("lora_" in name for name in trainable)
    if preset == "projection-only":
        assert all(name.startswith("model.visual_prefix.") for name in trainable)
    if preset == "partly-frozen-backbone":
        assert not any(".layers.0." in name or ".embeddings." in name for name in trainable if "vision" in name)
        assert any("vision_model.layers.1." in name for name in trainable)


def test_reentrant_checkpointing_is_refused(lm):
    model, processor, _ = _model(lm, PRESETS["partly-frozen-backbone"])
    with pytest.raises(ValueError, match="non-reentrant"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": True})
    with pytest.raises(TrainingConfigError, match="use_reentrant"):
        parse_arguments(None, ["--output_dir", "x", "--activation_checkpointing", "true",
                               "--activation_checkpointing_kwargs", '{"use_reentrant": true}'])
    # Any other kwargs (torch's own default would be reentrant) still checkpoint non-reentrantly.
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"preserve_rng_state": True})
    for module in model.modules():
        if getattr(module, "gradient_checkpointing", False):
            assert module._gradient_checkpointing_func.keywords["use_reentrant"] is False


def test_the_reentrant_failure_mode_exists(lm):
    # What the refusal prevents: installed behind the model's back, a reentrant checkpoint leaves the trained ViT
    # layer above the frozen one without a gradient.
    model, processor, _ = _model(lm, PRESETS["partly-frozen-backbone"])
    PreTrainedModel._set_gradient_checkpointing(model, True, functools.partial(checkpoint, use_reentrant=True))
    gradients = _gradients(model, processor)
    assert gradients["model.visual_prefix.linear.weight"] is not None
    above = [g for name, g in gradients.items() if "vision_model.layers.1." in name]
    assert above and all(g is None for g in above)


def test_training_program_trains_above_frozen_layers_with_checkpointing(lm, tmp_path):
    data = write_caption_imagefolder(tmp_path / "data", 16)
    values = tiny_config_values(
        lm, data, str(tmp_path / "out"), vision_config=TINY_VIT, freeze_vision_layers=1, max_steps=2, save_steps=2,
        activation_checkpointing=True, activation_checkpointing_kwargs={"preserve_rng_state": True},
    )
    model_args, data_args, training_args = parse_arguments(write_yaml(tmp_path / "c.yaml", values))
    start = {k: v.clone() for k, v in _model(lm, {"freeze_vision_layers": 1})[0].state_dict().items()}
    run_training(model_args, data_args, training_args)
    # Loaded, not read from the file: the file keeps the vision backbone's serialised key names.
    trained = FrozenForConditionalGeneration.from_pretrained(tmp_path / "out").state_dict()
    query = "model.vision_model.layers.{}.attention.q_proj.weight"
    assert torch.equal(trained[query.format(0)], start[query.format(0)])
    assert not torch.equal(trained[query.format(1)], start[query.format(1)])
    log = json.loads((tmp_path / "out" / "training_log.json").read_text())
    assert log["arguments"]["freeze_vision_layers"] == 1
