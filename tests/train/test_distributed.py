"""Every shipped accelerate config under ``accelerate launch``: trained on CPU over gloo where the engine allows it,
refused with the engine's own reason where it does not, and on a GPU when there is one.

On CPU, frozen_hf/configs/accelerate/{ddp,deepspeed-zero2,deepspeed-zero3}.yaml run with
``accelerate launch --config_file <cfg> --num_processes N --mixed_precision no`` for N = 1 and 2, through
`tests/helpers/distributed_training.py` (the training program plus a record of how the engine holds the model), a
few steps at the same global batch: 8 rows on one process, 4 on each of two. The tests check that

- the engine named by the config is the one that ran (ZeRO stage), that with two processes ZeRO-3 really partitions
  the frozen LM and the trained encoder (each process holds half), and that the trained parameters keep
  requires_grad beside the frozen LM;
- two processes give the same per-step losses and the same trained weights as one process (float tolerance), and
  every engine the same as DDP;
- the output folder loads with `FrozenForConditionalGeneration.from_pretrained`, its LM bitwise the base LM (a
  partitioned frozen LM is gathered whole before saving), and the last checkpoint holds the trained weights.

fsdp.yaml (FSDP2) does not run on CPU: accelerate sets FSDP up on accelerators only. Its FSDP1 plugin says so itself
when asked to sync module states ("There are currently no available devices found, ..."); otherwise accelerate falls
back to plain CPU data parallelism without a word, which the training program refuses. Both are asserted here; the
GPU test at the end (run by benchmarks/gpu.sh) trains with it.

``--mixed_precision no`` overrides the configs' bf16: the comparisons are float32 ones. DeepSpeed builds its
shared-memory communication op for CPUs with the C++ compiler on first use (cached afterwards under
~/.cache/torch_extensions).
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from frozen_hf import FrozenForConditionalGeneration
from frozen_hf.train.checkpoints import TRAINED_PREFIXES
from frozen_hf.train.errors import TrainingConfigError
from frozen_hf.train.loop import model_construction

from tests.helpers.fault_runner import training_env
from tests.helpers.tiny_training import tiny_config_values, write_caption_imagefolder, write_tiny_language_model, write_yaml

REPO = Path(__file__).resolve().parents[2]
ACCELERATE_CONFIGS = REPO / "frozen_hf" / "configs" / "accelerate"
RUNNER = REPO / "tests" / "helpers" / "distributed_training.py"
CONFIGS = ("ddp", "deepspeed-zero2", "deepspeed-zero3")  # those that train on CPU
GLOBAL_BATCH = 8
STEPS = 3
# What each config must have set up, as accelerate reports it.
ENGINES = {
    "ddp": {"distributed_type": "MULTI_CPU", "fsdp_version": None, "zero_stage": None},  # DDP over gloo
    "deepspeed-zero2": {"distributed_type": "DEEPSPEED", "fsdp_version": None, "zero_stage": 2},
    "deepspeed-zero3": {"distributed_type": "DEEPSPEED", "fsdp_version": None, "zero_stage": 3},
}
SHARDED = ("deepspeed-zero3",)
# accelerate's FSDP plugin, asked to sync module states without an accelerator.
FSDP_PLUGIN_REFUSAL = "There are currently no available devices found, must be one of 'XPU', 'CUDA'"
# The training program, when accelerate has quietly set up CPU data parallelism under an FSDP config.
FSDP_FALLBACK_REFUSAL = "The accelerate config asks for FSDP, but accelerate set up MULTI_CPU instead"


def _launch(root: Path, lm: str, data: str, config: str | Path, processes: int, *, name: str | None = None,
            mixed_precision: str = "no", gpus: str | None = None, program: tuple[str, ...] = (str(RUNNER),),
            **values) -> dict:
    """``accelerate launch`` of ``program`` (default: the recording runner) on the tiny config; ``config`` is a
    shipped accelerate config's name or a path."""
    name = name or f"{config}-{processes}"
    values = tiny_config_values(
        lm, data, str(root / name), per_device_train_batch_size=GLOBAL_BATCH // processes, max_steps=STEPS,
        save_steps=STEPS, learning_rate=5e-3, **values,
    )
    yaml_path = write_yaml(root / f"{name}.yaml", values)
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file",
        str(config if isinstance(config, Path) else ACCELERATE_CONFIGS / f"{config}.yaml"),
        "--num_processes", str(processes), "--mixed_precision", mixed_precision, "--main_process_port", "0",
        *program, yaml_path,
    ]
    env = training_env()
    if gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpus
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    return {"output": root / name, "returncode": result.returncode, "stderr": result.stderr, "stdout": result.stdout}


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("distributed")
    return {"root": root, "lm": write_tiny_language_model(root / "lm"), "data": write_caption_imagefolder(root / "data", 32)}


@pytest.fixture(scope="module")
def runs(assets):
    """Every CPU run, GPUs hidden. Two launches at a time: each spends part of its time starting up, which the other
    fills."""
    pytest.importorskip("deepspeed")
    root, lm, data = assets["root"], assets["lm"], assets["data"]
    # The shipped FSDP config as it was before FSDP2 (FSDP1, sync_module_states), where the plugin needs a device.
    fsdp_sync = root / "fsdp1-sync.yaml"
    shipped = (ACCELERATE_CONFIGS / "fsdp.yaml").read_text()
    assert "fsdp_version: 2" in shipped
    fsdp_sync.write_text(shipped.replace(
        "fsdp_version: 2", "fsdp_version: 1\n  fsdp_sync_module_states: true\n  fsdp_use_orig_params: true"
    ))
    program = ("-m", "training.train")  # the refusals are the program's own
    jobs = {(config, processes): dict(config=config, processes=processes) for config in CONFIGS for processes in (1, 2)}
    jobs["fsdp"] = dict(config="fsdp", processes=2, name="fsdp-2", program=program)
    jobs["fsdp sync_module_states"] = dict(config=fsdp_sync, processes=1, name="fsdp-sync-1", program=program)
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(jobs, pool.map(lambda key: _launch(root, lm, data, gpus="", **jobs[key]), jobs)))
    return {"lm": lm, "results": results}


def _finished(runs, config: str, processes: int) -> Path:
    run = runs["results"][(config, processes)]
    assert run["returncode"] == 0, run["stderr"][-4000:]
    return run["output"]


def _losses(output: Path) -> list[float]:
    log = json.loads((output / "training_log.json").read_text())
    assert log["status"] == "complete"
    return [entry["loss"] for entry in log["log_history"] if "loss" in entry]


def _engine_records(output: Path, processes: int) -> list[dict]:
    return [json.loads((output / f"engine-rank{rank}.json").read_text()) for rank in range(processes)]


def _trained(output: Path) -> dict[str, torch.Tensor]:
    return {k: v for k, v in load_file(output / "model.safetensors").items() if k.startswith(TRAINED_PREFIXES)}


@pytest.mark.parametrize("config", CONFIGS)
def test_engine_is_the_configured_one_and_shards_what_it_should(runs, config):
    one = _engine_records(_finished(runs, config, 1), 1)[0]
    records = _engine_records(_finished(runs, config, 2), 2)
    for record in [one, *records]:
        for key, value in ENGINES[config].items():
            assert record[key] == value, (key, record)
    assert [record["num_processes"] for record in records] == [2, 2]
    # The same parameters train under every process count and engine: mixed requires_grad survived the wrapping.
    assert all(record["trained_names"] == one["trained_names"] for record in records)
    assert one["trained_names"] and all(name.startswith(TRAINED_PREFIXES) for name in one["trained_names"])
    for part in ("language_model", "trained"):
        full = one[part][1]
        assert one[part][0] == full and all(record[part][1] == full for record in records)
        held = [record[part][0] for record in records]
        if config in SHARDED:
            # Each of two processes holds about half (shards are padded to equal sizes); together all of it.
            assert all(count <= 0.6 * full for count in held), (part, held, full)
            assert sum(held) >= full
        else:
            assert held == [full, full]


@pytest.mark.parametrize("config", CONFIGS)
def test_two_processes_match_one_process(runs, config):
    one, two = _finished(runs, config, 1), _finished(runs, config, 2)
    losses = _losses(one)
    assert len(losses) == STEPS and losses[-1] < losses[0]  # it trained
    assert _losses(two) == pytest.approx(losses, rel=1e-4, abs=1e-5)
    trained_one, trained_two = _trained(one), _trained(two)
    assert trained_one.keys() == trained_two.keys() and trained_one
    for key in trained_one:
        torch.testing.assert_close(trained_two[key], trained_one[key], rtol=1e-4, atol=1e-5)
    # Every engine computes the same training: the same losses as DDP's single process.
    if config != "ddp":
        assert losses == pytest.approx(_losses(_finished(runs, "ddp", 1)), rel=1e-4, abs=1e-5)


@pytest.mark.parametrize("processes", (1, 2))
@pytest.mark.parametrize("config", CONFIGS)
def test_output_and_checkpoint_load(runs, config, processes):
    output = _finished(runs, config, processes)
    model = FrozenForConditionalGeneration.from_pretrained(output)
    # The frozen LM was saved whole and unchanged, whatever the engine did with it in memory.
    base = load_file(Path(runs["lm"]) / "model.safetensors")
    lm = model.model.language_model.state_dict()
    assert base.keys() - {"lm_head.weight"} == {f"model.{key}" for key in lm}
    for key, value in lm.items():
        assert torch.equal(value, base[f"model.{key}"]), key
    # The trained parts load as saved.
    saved = _trained(output)
    state = model.state_dict()
    assert saved and set(saved) == {key for key in state if key.startswith(TRAINED_PREFIXES)}
    for key, value in saved.items():
        assert torch.equal(state[key], value), key
    # The checkpoint (at the last step) holds exactly the trained weights, equal to the final ones.
    checkpoint = load_file(output / f"checkpoint-{STEPS}" / "model.safetensors")
    assert checkpoint.keys() == saved.keys()
    for key, value in checkpoint.items():
        torch.testing.assert_close(value, saved[key], rtol=0, atol=0)


def test_fsdp_on_cpu_is_refused_with_the_engines_reason(runs):
    # accelerate's FSDP plugin itself (FSDP1 with sync_module_states), when it has to place module states on a device.
    plugin = runs["results"]["fsdp sync_module_states"]
    assert plugin["returncode"] != 0
    assert FSDP_PLUGIN_REFUSAL in plugin["stderr"]
    # The shipped config: accelerate would quietly train with CPU data parallelism; the program stops before training,
    # with its config-error exit status. Every process makes the same check, but the first to exit gets its siblings
    # terminated by the launcher, so their messages may never be printed: at least one message, no process trained.
    fallback = runs["results"]["fsdp"]
    assert fallback["returncode"] != 0
    assert f"error: {FSDP_FALLBACK_REFUSAL}" in fallback["stderr"], fallback["stderr"][-4000:]
    assert "exitcode  : 2" in fallback["stderr"]
    assert not (fallback["output"] / "training_log.json").exists()
    assert not list(fallback["output"].glob("engine-rank*.json"))  # no training step began


@pytest.mark.skipif(not torch.cuda.is_available(), reason="FSDP runs on accelerators only; benchmarks/gpu.sh runs this")
def test_fsdp_on_one_gpu(assets):
    """FSDP2 on one GPU: float32 losses equal DDP's, and with the shipped bf16 the run trains and saves the frozen LM
    unchanged (FSDP2 keeps float32 parameters and computes in bf16)."""
    root, lm, data = assets["root"], assets["lm"], assets["data"]
    fsdp = _launch(root, lm, data, "fsdp", 1, name="gpu-fsdp", use_cpu=False)
    ddp = _launch(root, lm, data, "ddp", 1, name="gpu-ddp", use_cpu=False)
    bf16 = _launch(root, lm, data, "fsdp", 1, name="gpu-fsdp-bf16", mixed_precision="bf16", use_cpu=False)
    for run in (fsdp, ddp, bf16):
        assert run["returncode"] == 0, run["stderr"][-4000:]
    record = _engine_records(fsdp["output"], 1)[0]
    assert (record["distributed_type"], record["fsdp_version"]) == ("FSDP", 2)
    assert record["fsdp_units"] > 1 and "FSDP" in record["model_classes"][0]  # decoder layers, blocks, the root
    assert record["trained_names"] and all(name.startswith(TRAINED_PREFIXES) for name in record["trained_names"])
    assert _losses(fsdp["output"]) == pytest.approx(_losses(ddp["output"]), rel=1e-3)
    assert _losses(bf16["output"])[-1] < _losses(bf16["output"])[0]
    base = load_file(Path(lm) / "model.safetensors")
    for run in (fsdp, bf16):
        model = FrozenForConditionalGeneration.from_pretrained(run["output"])
        for key, value in model.model.language_model.state_dict().items():
            assert torch.equal(value, base[f"model.{key}"]), key


def test_zero3_init_flag_is_refused_before_the_model_is_built():
    # ZeRO-3's partitioned construction cannot initialise the meta-device skeleton a Frozen model is assembled in.
    plugin = SimpleNamespace(hf_ds_config=SimpleNamespace(is_zero3=lambda: True), is_zero3_init_enabled=lambda: True)
    with pytest.raises(TrainingConfigError, match="zero3_init_flag: true is not supported"):
        with model_construction(SimpleNamespace(deepspeed_plugin=plugin)):
            pytest.fail("the model would have been built")
