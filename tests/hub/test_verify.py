"""`frozen_hf.hub.verify`: a Frozen checkpoint's LM tensors against its declared base LM, for Llama and GPT-2 naming,
tied and untied heads, sharded and pickled weights, and tampered, missing or re-typed tensors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import GPT2LMHeadModel, LlamaForCausalLM

from frozen_hf import FrozenForConditionalGeneration
from frozen_hf.hub.verify import VerificationError, verify_language_model
from frozen_hf.programs.verify import main
from tests.helpers.tiny import tiny_text_config, tiny_vision_config

REPO = Path(__file__).resolve().parents[2]
LM_CLASSES = {"llama": LlamaForCausalLM, "gpt2": GPT2LMHeadModel}


def save_base(folder: Path, family: str, seed: int = 0, **config_overrides) -> Path:
    """A tiny random causal LM saved as a normal transformers folder."""
    config = tiny_text_config(family)
    for key, value in config_overrides.items():
        setattr(config, key, value)
    torch.manual_seed(seed)
    LM_CLASSES[family](config).save_pretrained(folder)
    return folder


def save_frozen(folder: Path, base: Path, **save_kwargs) -> Path:
    model = FrozenForConditionalGeneration.from_language_model(
        base, vision_config=tiny_vision_config(), image_token_id=200
    )
    model.save_pretrained(folder, **save_kwargs)
    return folder


def tamper(folder: Path, name: str, change=lambda t: t + 1e-3) -> None:
    """Rewrites one tensor of `folder/model.safetensors` (or drops it when `change` returns None)."""
    path = folder / "model.safetensors"
    tensors = load_file(path)
    changed = change(tensors[name])
    if changed is None:
        del tensors[name]
    else:
        tensors[name] = changed.contiguous()
    save_file(tensors, path, metadata={"format": "pt"})


@pytest.fixture(scope="module")
def llama(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("llama")
    base = save_base(root / "base", "llama")
    return base, save_frozen(root / "frozen", base)


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("gpt2")
    base = save_base(root / "base", "gpt2")
    return base, save_frozen(root / "frozen", base)


def copy_checkpoint(source: Path, target: Path) -> Path:
    target.mkdir()
    for item in source.iterdir():
        (target / item.name).write_bytes(item.read_bytes())
    return target


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_checkpoint_from_language_model_verifies_clean(family, request):
    base, frozen = request.getfixturevalue(family)
    report = verify_language_model(frozen)  # base read from config.language_model_name_or_path
    assert report.ok, report.summary()
    assert report.base == str(base)
    expected = len(LM_CLASSES[family](tiny_text_config(family)).state_dict())
    assert report.checked == expected
    assert main([str(frozen)]) == 0


@pytest.mark.parametrize(
    "family,checkpoint_name,base_name",
    [
        ("llama", "model.language_model.layers.1.mlp.down_proj.weight", "model.layers.1.mlp.down_proj.weight"),
        ("llama", "model.language_model.norm.weight", "model.norm.weight"),
        ("gpt2", "model.language_model.h.0.attn.c_attn.bias", "transformer.h.0.attn.c_attn.bias"),
        ("gpt2", "model.language_model.wpe.weight", "transformer.wpe.weight"),
    ],
)
def test_one_tampered_tensor_is_reported_exactly(family, checkpoint_name, base_name, request, tmp_path, capsys):
    _, frozen = request.getfixturevalue(family)
    checkpoint = copy_checkpoint(frozen, tmp_path / "ckpt")
    tamper(checkpoint, checkpoint_name)
    report = verify_language_model(checkpoint)
    assert not report.ok
    assert [(m.name, m.checkpoint_name) for m in report.differing] == [(base_name, checkpoint_name)]
    assert "values differ" in report.differing[0].reason
    assert not report.missing_in_checkpoint and not report.missing_in_base
    assert main([str(checkpoint)]) == 1
    assert f"DIFFERS  {checkpoint_name}" in capsys.readouterr().out


def test_vision_weights_are_not_part_of_the_check(llama, tmp_path):
    _, frozen = llama
    checkpoint = copy_checkpoint(frozen, tmp_path / "ckpt")
    tamper(checkpoint, "model.visual_prefix.linear.weight")
    assert verify_language_model(checkpoint).ok


def test_tampered_tied_embedding_reports_embedding_and_head(llama, tmp_path):
    _, frozen = llama
    checkpoint = copy_checkpoint(frozen, tmp_path / "ckpt")
    tamper(checkpoint, "model.language_model.embed_tokens.weight")
    report = verify_language_model(checkpoint)
    assert sorted(m.name for m in report.differing) == ["lm_head.weight", "model.embed_tokens.weight"]


def test_untied_head_is_compared_as_its_own_tensor(tmp_path):
    base = save_base(tmp_path / "base", "llama", tie_word_embeddings=False)
    frozen = save_frozen(tmp_path / "frozen", base)
    assert "lm_head.weight" in load_file(frozen / "model.safetensors")
    assert verify_language_model(frozen).ok
    tamper(frozen, "lm_head.weight")
    report = verify_language_model(frozen)
    assert [(m.name, m.checkpoint_name) for m in report.differing] == [("lm_head.weight", "lm_head.weight")]


def test_missing_and_retyped_tensors_are_reported(llama, tmp_path):
    _, frozen = llama
    checkpoint = copy_checkpoint(frozen, tmp_path / "ckpt")
    tamper(checkpoint, "model.language_model.layers.0.input_layernorm.weight", change=lambda t: None)
    tamper(checkpoint, "model.language_model.layers.0.self_attn.q_proj.weight", change=lambda t: t.half())
    report = verify_language_model(checkpoint)
    assert report.missing_in_checkpoint == ["model.layers.0.input_layernorm.weight"]
    assert [m.name for m in report.differing] == ["model.layers.0.self_attn.q_proj.weight"]
    assert "dtype F16 vs base F32" in report.differing[0].reason


def test_a_different_base_fails_and_base_option_overrides_the_recorded_one(llama, tmp_path):
    base, frozen = llama
    other = save_base(tmp_path / "other", "llama", seed=1)
    report = verify_language_model(frozen, base=other)
    assert not report.ok and report.base == str(other)
    # Every randomly initialised tensor of a differently seeded LM differs; norm weights start at 1 in both.
    assert {m.name for m in report.differing} == {
        name for name in LlamaForCausalLM(tiny_text_config("llama")).state_dict() if "norm" not in name
    }
    assert main([str(frozen), "--base", str(base)]) == 0


def test_sharded_checkpoint_pickled_base_and_prefixless_base(gpt2, tmp_path):
    base, _ = gpt2
    sharded = save_frozen(tmp_path / "sharded", base, max_shard_size="20KB")
    assert (sharded / "model.safetensors.index.json").is_file()
    assert verify_language_model(sharded).ok

    # A base saved as a PyTorch pickle, with the base-model prefix left off as in the original `gpt2` repo.
    state = {name.removeprefix("transformer."): tensor for name, tensor in load_file(base / "model.safetensors").items()}
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "config.json").write_text((base / "config.json").read_text())
    torch.save(state, legacy / "pytorch_model.bin")
    report = verify_language_model(sharded, base=legacy)
    assert report.ok, report.summary()


def test_trained_parts_only_checkpoint_has_nothing_to_differ(llama, tmp_path):
    base, _ = llama
    model = FrozenForConditionalGeneration.from_language_model(base, vision_config=tiny_vision_config(),
                                                               image_token_id=200)
    model.config.trained_parts_only = True
    model.save_pretrained(tmp_path / "partial")
    report = verify_language_model(tmp_path / "partial")
    assert report.ok and report.checked == 0
    assert any("trained-parts-only" in note for note in report.notes)


def test_what_cannot_be_verified_exits_2(llama, tmp_path, capsys):
    base, frozen = llama
    with pytest.raises(VerificationError, match="not a Frozen model"):
        verify_language_model(base)
    assert main([str(tmp_path)]) == 2
    assert "has no config.json" in capsys.readouterr().err
    checkpoint = copy_checkpoint(frozen, tmp_path / "ckpt")
    config = json.loads((checkpoint / "config.json").read_text())
    config["language_model_name_or_path"] = None
    (checkpoint / "config.json").write_text(json.dumps(config))
    assert main([str(checkpoint)]) == 2
    assert "--base" in capsys.readouterr().err


def test_command_line_module(llama, tmp_path):
    _, frozen = llama
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "frozen_hf.programs.verify", str(frozen), "--json"],
                            capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["ok"] is True
    checkpoint = copy_checkpoint(frozen, tmp_path / "ckpt")
    tamper(checkpoint, "model.language_model.layers.0.mlp.up_proj.weight")
    result = subprocess.run([sys.executable, "-m", "frozen_hf.programs.verify", str(checkpoint)],
                            capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert result.returncode == 1
    assert "DIFFERS  model.language_model.layers.0.mlp.up_proj.weight" in result.stdout
