"""A folder saved at one end of the supported transformers range loads at the other end, with the same logits.

Both ends run in their own interpreter: `./.venv` holds the newest supported release (setup.cfg's upper bound) and
`./.venv-lowest` the lowest (its lower bound; scripts/setup_lowest.sh builds it). Each saved folder is loaded twice at
the other end: by stock transformers as remote code (`trust_remote_code=True`, in a process where `frozen_hf` cannot
be imported, so the code shipped in the folder is what runs) and through the family classes of `frozen_hf`.
"""

from __future__ import annotations

import os
import re
import subprocess
import textwrap
from pathlib import Path

import pytest
import torch


ROOT = Path(__file__).resolve().parents[1]
INTERPRETERS = {"newest": ROOT / ".venv" / "bin" / "python", "lowest": ROOT / ".venv-lowest" / "bin" / "python"}
SETUP_SCRIPTS = {"newest": "scripts/setup.sh", "lowest": "scripts/setup_lowest.sh"}


def supported_range() -> dict[str, str]:
    """The lowest and newest transformers releases that setup.cfg declares (`transformers>=LOW,<=HIGH`)."""
    match = re.search(r"^\s*transformers>=([0-9.]+),<=([0-9.]+)\s*$", (ROOT / "setup.cfg").read_text(), re.MULTILINE)
    assert match, "setup.cfg must declare transformers as a closed range, transformers>=LOW,<=HIGH"
    return {"lowest": match.group(1), "newest": match.group(2)}


# A tiny random model and processor, saved beside a few-shot batch (two images, then one), its logits and greedy tokens.
SAVE = """
import sys, torch, transformers
from tests.helpers.tiny import random_images, tiny_model, tiny_processor

folder, reference = sys.argv[1:]
processor = tiny_processor()
model = tiny_model(processor, seed=3)
model.save_pretrained(folder)
processor.save_pretrained(folder)
images = random_images(3, seed=7)
texts = ["<image> this is a dax . <image> this is a", "<image> a red"]
batch = processor(text=texts, images=[images[:2], images[2:]], return_tensors="pt", padding=True)
with torch.no_grad():
    logits = model(**batch).logits
generated = model.generate(**batch, max_new_tokens=4, do_sample=False)
torch.save({"version": transformers.__version__, "images": images, "texts": texts, "batch": dict(batch),
            "logits": logits, "generated": generated}, reference)
"""

# The folder loaded as `mode` says, on the saved inputs; its batch, logits and greedy tokens written to `result`.
LOAD = """
import sys
mode, folder, reference, result = sys.argv[1:]
if mode == "remote":
    sys.modules["frozen_hf"] = None  # as where frozen-hf is not installed: only the folder's own code can run
import torch, transformers

if mode == "remote":
    from transformers import AutoModelForImageTextToText, AutoProcessor
    model = AutoModelForImageTextToText.from_pretrained(folder, trust_remote_code=True)
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
else:
    from frozen_hf import FrozenForConditionalGeneration, FrozenProcessor
    model = FrozenForConditionalGeneration.from_pretrained(folder)
    processor = FrozenProcessor.from_pretrained(folder)
saved = torch.load(reference, weights_only=False)
images = saved["images"]
batch = processor(text=saved["texts"], images=[images[:2], images[2:]], return_tensors="pt", padding=True)
with torch.no_grad():
    logits = model.eval()(**batch).logits
generated = model.generate(**batch, max_new_tokens=4, do_sample=False)
torch.save({"version": transformers.__version__, "class": f"{type(model).__module__}.{type(model).__name__}",
            "batch": dict(batch), "logits": logits, "generated": generated}, result)
"""


@pytest.fixture(scope="module")
def interpreters() -> dict[str, Path]:
    """Both ends' interpreters, each checked to hold the release its end of the range declares."""
    expected = supported_range()
    for end, interpreter in INTERPRETERS.items():
        if not interpreter.exists():
            pytest.fail(
                f"{interpreter.relative_to(ROOT)} does not exist: run `bash {SETUP_SCRIPTS[end]}` to build the {end} "
                f"supported transformers ({expected[end]}) environment that tests/test_cross_version.py needs."
            )
        version = subprocess.run(
            [str(interpreter), "-c", "import transformers; print(transformers.__version__)"],
            capture_output=True, text=True, timeout=300,
        ).stdout.strip()
        if version != expected[end]:
            pytest.fail(
                f"{interpreter.relative_to(ROOT)} has transformers {version or '(none)'}, but the {end} end of "
                f"setup.cfg's range is {expected[end]}: run `bash {SETUP_SCRIPTS[end]}`."
            )
    return INTERPRETERS


def run(interpreter: Path, code: str, *args, modules_cache: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HF_HUB_OFFLINE": "1",
        # Each process imports the remote code into its own cache, never one that the other release wrote.
        "HF_MODULES_CACHE": str(modules_cache),
    }
    result = subprocess.run(
        [str(interpreter), "-c", textwrap.dedent(code), *map(str, args)],
        capture_output=True, text=True, timeout=600, cwd=ROOT, env=env,
    )
    assert result.returncode == 0, f"{interpreter.relative_to(ROOT)} failed:\n{result.stderr[-4000:]}"


@pytest.mark.parametrize(("saved_with", "loaded_with"), [("newest", "lowest"), ("lowest", "newest")])
def test_folder_loads_at_the_other_end_of_the_range_with_the_same_logits(
    interpreters, tmp_path, saved_with, loaded_with
):
    expected_versions = supported_range()
    folder, reference = tmp_path / f"frozen-{saved_with}", tmp_path / "reference.pt"
    run(interpreters[saved_with], SAVE, folder, reference, modules_cache=tmp_path / "modules-save")
    saved = torch.load(reference, weights_only=False)
    assert saved["version"] == expected_versions[saved_with]

    for mode in ("remote", "family"):
        result = tmp_path / f"{mode}.pt"
        cache = tmp_path / f"modules-{mode}"
        run(interpreters[loaded_with], LOAD, mode, folder, reference, result, modules_cache=cache)
        loaded = torch.load(result, weights_only=False)
        assert loaded["version"] == expected_versions[loaded_with]
        if mode == "remote":
            assert not loaded["class"].startswith("frozen_hf."), loaded["class"]
        assert loaded["class"].endswith("modeling_frozen.FrozenForConditionalGeneration"), loaded["class"]
        # The saved processor gives the same inputs at the other end, so the logits compare the models alone.
        assert loaded["batch"].keys() == saved["batch"].keys()
        for name, tensor in saved["batch"].items():
            assert torch.equal(loaded["batch"][name], tensor), f"{mode}: the processor's {name} differs"
        torch.testing.assert_close(loaded["logits"], saved["logits"], msg=lambda m: f"{mode} logits: {m}")
        assert torch.equal(loaded["generated"], saved["generated"]), mode
