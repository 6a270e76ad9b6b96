"""Saved folders load with stock transformers: Auto classes, remote code in a process without frozen_hf, pipelines."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForImageTextToText,
    AutoProcessor,
    pipeline,
)
from transformers.utils import logging as transformers_logging

from frozen_hf import FrozenConfig, FrozenForConditionalGeneration, FrozenModel, FrozenProcessor
from tests.helpers.tiny import random_images, tiny_model, tiny_processor

# Makes `import frozen_hf` fail, as in an environment where the package is not installed.
BLOCK_PACKAGE = "import sys; sys.modules['frozen_hf'] = None\n"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("frozen_saved")
    processor = tiny_processor()
    model = tiny_model(processor)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder, model, processor


def reference_generation(model, processor) -> list[list[int]]:
    images = random_images(3, seed=11)
    batch = processor(text=["<image> this is a dax . <image> this is a", "<image> a red"],
                      images=[images[:2], images[2:]], return_tensors="pt", padding=True)
    return model.generate(**batch, max_new_tokens=4, do_sample=False).tolist()


def run_without_package(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK_PACKAGE + textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=300)


def test_saved_folder_holds_code_and_auto_map(saved):
    folder, _, _ = saved
    for name in ("configuration_frozen.py", "modeling_frozen.py", "processing_frozen.py", "image_processing_frozen.py"):
        assert (folder / name).is_file(), name
    auto_map = json.loads((folder / "config.json").read_text())["auto_map"]
    assert auto_map == {
        "AutoConfig": "configuration_frozen.FrozenConfig",
        "AutoModel": "modeling_frozen.FrozenModel",
        "AutoModelForImageTextToText": "modeling_frozen.FrozenForConditionalGeneration",
    }
    processor_config = json.loads((folder / "processor_config.json").read_text())
    assert processor_config["auto_map"]["AutoProcessor"] == "processing_frozen.FrozenProcessor"
    assert (folder / "chat_template.jinja").is_file()


def test_auto_classes_with_package_installed(saved):
    folder, model, processor = saved
    assert isinstance(AutoConfig.from_pretrained(folder), FrozenConfig)
    assert isinstance(AutoModel.from_pretrained(folder), FrozenModel)
    loaded = AutoModelForImageTextToText.from_pretrained(folder)
    assert isinstance(loaded, FrozenForConditionalGeneration)
    loaded_processor = AutoProcessor.from_pretrained(folder)
    assert isinstance(loaded_processor, FrozenProcessor)
    assert reference_generation(loaded, loaded_processor) == reference_generation(model, processor)


def test_remote_code_in_process_without_package(saved):
    folder, model, processor = saved
    expected = reference_generation(model, processor)
    images = random_images(3, seed=11)
    with torch.no_grad():
        expected_logits = model(**processor(text="<image> a red", images=images[:1], return_tensors="pt")).logits
    torch.save({"images": images, "logits": expected_logits}, folder / "inputs.pt")
    result = run_without_package(f"""
        import json, torch
        from transformers import AutoConfig, AutoModel, AutoModelForImageTextToText, AutoProcessor, pipeline
        folder = {str(folder)!r}
        data = torch.load(folder + "/inputs.pt", weights_only=False)
        images = data["images"]
        config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
        base = AutoModel.from_pretrained(folder, trust_remote_code=True)
        model = AutoModelForImageTextToText.from_pretrained(folder, trust_remote_code=True)
        processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
        assert not any(p.requires_grad for p in model.model.language_model.parameters())
        batch = processor(text=["<image> this is a dax . <image> this is a", "<image> a red"],
                          images=[images[:2], images[2:]], return_tensors="pt", padding=True)
        generated = model.generate(**batch, max_new_tokens=4, do_sample=False).tolist()
        single = processor(text="<image> a red", images=images[:1], return_tensors="pt")
        with torch.no_grad():
            logits_equal = torch.equal(model(**single).logits, data["logits"])
            hidden = base(**single).last_hidden_state
        pipe = pipeline("image-text-to-text", model=folder, trust_remote_code=True)
        captions = pipe(images[0], text="", generate_kwargs=dict(max_new_tokens=4, do_sample=False))
        print(json.dumps({{
            "classes": [type(config).__name__, type(base).__name__, type(model).__name__, type(processor).__name__],
            "generated": generated, "logits_equal": logits_equal, "hidden": list(hidden.shape),
            "caption": captions[0]["generated_text"],
        }}))
    """)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["classes"] == ["FrozenConfig", "FrozenModel", "FrozenForConditionalGeneration", "FrozenProcessor"]
    assert report["generated"] == expected
    assert report["logits_equal"]
    caption_ids = model.generate(**processor(text="", images=images[:1], return_tensors="pt"), max_new_tokens=4,
                                 do_sample=False)[0, 2:]
    assert report["caption"] == processor.tokenizer.decode(caption_ids, skip_special_tokens=True)


def test_remote_code_refused_without_trust(saved):
    folder, _, _ = saved
    result = run_without_package(f"""
        from transformers import AutoModelForImageTextToText
        AutoModelForImageTextToText.from_pretrained({str(folder)!r}, trust_remote_code=False)
    """)
    assert result.returncode != 0
    assert "contains custom code which must be executed" in result.stderr


@pytest.mark.parametrize("task", ["image-to-text", "image-text-to-text"])
def test_pipeline_calls(saved, task):
    folder, model, processor = saved
    # transformers logs the image-to-text redirect with a malformed format string; keep it out of pytest's handler.
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    try:
        pipe = pipeline(task, model=str(folder))
    finally:
        transformers_logging.set_verbosity(verbosity)
    assert pipe.task == "image-text-to-text"
    images = random_images(2, seed=5)
    generate_kwargs = dict(max_new_tokens=3, do_sample=False)

    caption = pipe(images[0], text="", generate_kwargs=generate_kwargs)[0]["generated_text"]
    expected = model.generate(**processor(text="", images=images[:1], return_tensors="pt"), **generate_kwargs)
    assert caption == processor.tokenizer.decode(expected[0, 2:], skip_special_tokens=True)

    prompt = "<image> a red"
    out = pipe(images[0], text=prompt, generate_kwargs=generate_kwargs, return_full_text=False)[0]["generated_text"]
    batch = processor(text=prompt, images=images[:1], return_tensors="pt")
    expected = model.generate(**batch, **generate_kwargs)[0, batch["input_ids"].shape[1]:]
    assert out.strip() == processor.tokenizer.decode(expected, skip_special_tokens=True)

    few_shot = "<image> this is a dax . <image> this is a"
    out = pipe([images], text=[few_shot], generate_kwargs=generate_kwargs, return_full_text=False)[0]["generated_text"]
    batch = processor(text=[few_shot], images=[images], return_tensors="pt")
    expected = model.generate(**batch, **generate_kwargs)[0, batch["input_ids"].shape[1]:]
    assert out.strip() == processor.tokenizer.decode(expected, skip_special_tokens=True)

    chat = [{"role": "user", "content": [{"type": "image", "image": images[0]}, {"type": "text", "text": " a red"}]}]
    reply = pipe(text=chat, generate_kwargs=generate_kwargs)[0]["generated_text"]
    assert reply[-1]["role"] == "assistant"
    image_only = [{"role": "user", "content": [{"type": "image", "image": images[0]}]}]
    reply = pipe(text=image_only, generate_kwargs=generate_kwargs)[0]["generated_text"]
    assert reply[-1]["role"] == "assistant" and reply[-1]["content"].strip() == caption.strip()
