"""A quantized frozen LM (bitsandbytes 8-bit and 4-bit, torchao int8) under the training program, on CPU.

The vision encoder and projection stay fp32 and train through the quantized LM; the LM's stored quantized weights are
bitwise unchanged by training; the loss after N = 8 steps is within 5% of the fp32 run's; the output folder and every
checkpoint hold the trained parts only and load back (quantizing the referenced base LM again) to the same weights and
logits.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from frozen_hf import FrozenForConditionalGeneration
from frozen_hf.loading_frozen import language_model_quantization_config
from frozen_hf.programs.train import run_training
from frozen_hf.train.arguments import parse_arguments
from frozen_hf.train.build import quantization_config_from_spec
from frozen_hf.train.checkpoints import TRAINED_PREFIXES, last_complete_checkpoint
from frozen_hf.train.errors import TrainingConfigError

from tests.helpers.tiny import random_images, tiny_processor
from tests.helpers.tiny_training import tiny_config_values, write_caption_imagefolder, write_tiny_language_model, write_yaml

pytest.importorskip("bitsandbytes")

STEPS = 8  # N: the loss after N optimizer steps is compared with the fp32 run's
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # bitsandbytes' "inputs will be cast to float16"


def stored_tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every stored tensor of ``module``, quantized ones taken apart into their plain inner tensors (int8 data,
    scales, 4-bit packing state), cloned."""
    out = {}
    for name, value in module.state_dict().items():
        if hasattr(value, "__tensor_flatten__") and type(value) is not torch.Tensor and not isinstance(value, torch.nn.Parameter):
            inner, _ = value.__tensor_flatten__()
            for part in inner:
                out[f"{name}.{part}"] = getattr(value, part).detach().clone()
        else:
            out[name] = value.detach().clone()
    return out


def assert_bitwise_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [key for key in a if a[key].dtype != b[key].dtype or not torch.equal(a[key], b[key])]
    assert not different, different[:5]


class _Capture(TrainerCallback):
    """Keeps the model and the LM's stored tensors as training starts."""

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.model = model
        self.lm_before = stored_tensors(model.model.language_model)
        self.vision_before = {k: v.clone() for k, v in model.state_dict().items() if k.startswith(TRAINED_PREFIXES)}


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("quantized")
    return {"root": root, "lm": write_tiny_language_model(root / "lm"), "data": write_caption_imagefolder(root / "data", 32)}


def _train(assets, name, **extra):
    values = tiny_config_values(
        assets["lm"], assets["data"], str(assets["root"] / name), max_steps=STEPS, save_steps=4, **extra
    )
    model_args, data_args, training_args = parse_arguments(write_yaml(assets["root"] / f"{name}.yaml", values))
    capture = _Capture()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        result = run_training(model_args, data_args, training_args, callbacks=[capture])
    log = json.loads((Path(result.output_dir) / "training_log.json").read_text())
    losses = [entry["loss"] for entry in log["log_history"] if "loss" in entry]
    return result, capture, losses


@pytest.fixture(scope="module")
def fp32_run(assets):
    return _train(assets, "fp32")


@pytest.mark.parametrize("spec, layer_class", [("8bit", "Linear8bitLt"), ("4bit", "Linear4bit")])
def test_quantized_lm_trains_like_fp32(assets, fp32_run, spec, layer_class):
    result, capture, losses = _train(assets, f"q{spec}", quantization_config=spec)
    model = capture.model
    assert type(model.model.language_model.layers[0].self_attn.q_proj).__name__ == layer_class
    # The trained parts are full precision, and they trained (through the quantized LM).
    assert {p.dtype for n, p in model.named_parameters() if p.requires_grad} == {torch.float32}
    trained = {k: v for k, v in model.state_dict().items() if k.startswith(TRAINED_PREFIXES)}
    assert any(not torch.equal(trained[k], capture.vision_before[k]) for k in trained)
    # The LM's stored quantized weights are bitwise those loaded.
    assert_bitwise_equal(stored_tensors(model.model.language_model), capture.lm_before)
    # Loss after N steps: within 5% of the fp32 run.
    fp32_losses = fp32_run[2]
    assert len(losses) == len(fp32_losses) == STEPS
    assert losses[-1] == pytest.approx(fp32_losses[-1], rel=0.05)
    assert losses[-1] < losses[0]

    # The output folder holds the trained parts only and references the base LM and its quantization.
    output = Path(result.output_dir)
    config = json.loads((output / "config.json").read_text())
    assert config["trained_parts_only"] is True
    assert config["language_model_name_or_path"] == assets["lm"]
    recorded = config["text_config"]["quantization_config"]
    assert recorded["quant_method"] == "bitsandbytes"
    assert recorded["load_in_8bit" if spec == "8bit" else "load_in_4bit"] is True
    assert all(key.startswith(TRAINED_PREFIXES) for key in load_file(output / "model.safetensors"))

    # Loading quantizes the base LM again, to the same stored tensors; the trained parts and the logits are those
    # of the model in memory. Checkpoints load the same way.
    loaded = FrozenForConditionalGeneration.from_pretrained(output)
    assert type(loaded.model.language_model.layers[0].self_attn.q_proj).__name__ == layer_class
    assert_bitwise_equal(stored_tensors(loaded.model.language_model), capture.lm_before)
    for key, value in loaded.state_dict().items():
        if key.startswith(TRAINED_PREFIXES):
            assert torch.equal(value, trained[key]), key
    processor = tiny_processor()
    batch = processor(text=["<image> a red circle on the left ."], images=[random_images(1)], return_tensors="pt")
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch).logits, model(**batch).logits, rtol=0, atol=0)
    checkpoint = last_complete_checkpoint(output)
    assert checkpoint is not None and checkpoint.endswith(f"checkpoint-{STEPS}")
    from_checkpoint = FrozenForConditionalGeneration.from_pretrained(checkpoint)
    assert language_model_quantization_config(from_checkpoint.config) is not None
    assert_bitwise_equal(stored_tensors(from_checkpoint.model.language_model), capture.lm_before)


def test_torchao_int8_lm_trains(assets, fp32_run):
    pytest.importorskip("torchao")
    result, capture, losses = _train(assets, "qtorchao", quantization_config="torchao-int8")
    model = capture.model
    assert type(model.model.language_model.layers[0].self_attn.q_proj.weight).__name__ == "Int8Tensor"
    assert_bitwise_equal(stored_tensors(model.model.language_model), capture.lm_before)
    assert losses[-1] == pytest.approx(fp32_run[2][-1], rel=0.05)
    loaded = FrozenForConditionalGeneration.from_pretrained(result.output_dir)
    assert_bitwise_equal(stored_tensors(loaded.model.language_model), capture.lm_before)


def test_from_language_model_keeps_trained_parts_fp32(assets):
    from transformers import BitsAndBytesConfig

    model = FrozenForConditionalGeneration.from_language_model(
        assets["lm"], quantization_config=BitsAndBytesConfig(load_in_4bit=True), dtype=torch.bfloat16
    )
    assert model.config.trained_parts_only
    assert model.model.visual_prefix.linear.weight.dtype == torch.float32
    assert {p.dtype for p in model.model.vision_model.parameters()} == {torch.float32}
    assert not any(p.requires_grad for p in model.model.language_model.parameters())
    # A quantized LM is never written out in full.
    model.config.trained_parts_only = False
    with pytest.raises(ValueError, match="quantized"):
        model.save_pretrained(assets["root"] / "refused")


def test_quantization_specs():
    assert quantization_config_from_spec(None) is None
    assert quantization_config_from_spec("8bit").load_in_8bit
    four = quantization_config_from_spec("4bit")
    assert four.load_in_4bit and four.bnb_4bit_quant_type == "nf4"
    assert quantization_config_from_spec({"quant_method": "bitsandbytes", "load_in_8bit": True}).load_in_8bit
    with pytest.raises(TrainingConfigError, match="8bit"):
        quantization_config_from_spec("3bit")
    with pytest.raises(TrainingConfigError, match="quant_method"):
        quantization_config_from_spec({"load_in_8bit": True})
    with pytest.raises(TrainingConfigError, match="reinit_language_model"):
        parse_arguments(None, ["--output_dir", "x", "--quantization_config", "8bit", "--reinit_language_model", "true"])
