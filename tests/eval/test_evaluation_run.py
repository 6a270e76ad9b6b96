"""The evaluation program: tasks, variants, suites, report files, and clear errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from frozen_hf.eval.record import load_records
from frozen_hf.eval.report import render_markdown, write_report
from frozen_hf.programs import evaluate as frozen_eval
from frozen_hf.eval.tasks import VARIANTS, ProtocolError, TaskSettings, apply_variant, build_task
from frozen_hf.eval.prompting import IMAGE_MARKER
from tests.helpers.tiny import tiny_model, tiny_processor

from tests.helpers import make_fixtures


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny_frozen")
    processor = tiny_processor()
    tiny_model(processor).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def run_cli(*args: str) -> int:
    return frozen_eval.main([str(a) for a in args])


# --------------------------------------------------------------------------- tasks


def test_shapes_binding_episodes_ask_every_category_and_share_the_prefix():
    data = build_task("shapes_open_ended", TaskSettings(ways=3, inner_shots=2, num_episodes=2, image_size=32))
    assert len(data.prompts) == 6 and data.kind == "open_ended"
    for episode in (data.prompts[:3], data.prompts[3:]):
        assert all(p.prefix is episode[0].prefix for p in episode)
        assert sorted(p.target for p in episode) == sorted(episode[0].candidates)  # each name asked once
        for p in episode:
            assert p.text.count(IMAGE_MARKER) == len(p.images) == 3 * 2 + 1
            assert p.text.startswith("Answer with ")
            assert all(d for d in p.descriptions)
    assert data.references == [p.target for p in data.prompts]


def test_queries_per_episode_one_keeps_the_data_set_episodes():
    from frozen_hf.data.shapes import load_shapes

    data = build_task("shapes_real_name", TaskSettings(ways=2, num_episodes=3, queries_per_episode=1, image_size=32,
                                                       task_induction=False))
    rows = load_shapes("real_name", "test", num_samples=3, image_size=32, ways=2, inner_shots=1)
    assert data.references == list(rows["answer"])
    assert not data.prompts[0].text.startswith("Answer with")


def test_variants_of_a_shapes_task():
    data = build_task("shapes_vqa", TaskSettings(shots=2, num_episodes=4, queries_per_episode=2, image_size=32))
    assert data.prompts[0].prefix is data.prompts[1].prefix and data.prompts[1].prefix is not data.prompts[2].prefix
    oracle = apply_variant(data, "text_oracle")
    assert all(not p.images and IMAGE_MARKER not in p.text for p in oracle)
    blind = apply_variant(data, "blind")
    assert all(im.getextrema() == ((0, 0),) * 3 for p in blind for im in p.images)


def test_real_benchmark_tasks_from_fixture_files(tmp_path):
    make_fixtures.make_fewshot_fixture(tmp_path, "open_ended_mi", 1, 2, n_questions=3)
    data = build_task("open_ended_mi", TaskSettings(ways=2, inner_shots=1, num_episodes=3, data_dir=str(tmp_path)))
    assert data.prompts[0].text.startswith("Answer with dax or blicket.\n<image> This is a dax.\n")
    assert data.prompts[0].text.endswith("<image> Q: What is this? A: This is a")
    assert data.references == ["dax", "blicket", "dax"]
    make_fixtures.make_fewshot_fixture(tmp_path, "fast_vqa", 1, 2)
    fast = build_task("fast_vqa", TaskSettings(ways=2, inner_shots=1, num_episodes=2, data_dir=str(tmp_path)))
    assert fast.prompts[0].text.endswith("<image> Q: What color is the dax? A:") and fast.references[0] == ["red"]
    make_fixtures.make_vqa_fixture(tmp_path / "vqa", "vqav2", "val2014")
    make_fixtures.make_vqa_fixture(tmp_path / "vqa", "vqav2", "train2014")
    vqa = build_task("vqav2", TaskSettings(shots=1, num_episodes=2, data_dir=str(tmp_path / "vqa")))
    assert vqa.prompts[0].num_prefix_images == 1 and len(vqa.references[0]) == 10


# --------------------------------------------------------------------------- program


def test_single_task_runs_and_writes_the_report(model_dir, tmp_path, capsys):
    out = tmp_path / "eval"
    common = ["--model", model_dir, "--num-episodes", 2, "--output", out]
    assert run_cli(*common, "--task", "shapes_open_ended", "--ways", 2, "--inner-shots", 1) == 0
    assert run_cli(*common, "--task", "shapes_open_ended", "--ways", 2, "--inner-shots", 3) == 0
    assert run_cli(*common, "--task", "shapes_open_ended", "--ways", 2, "--inner-shots", 3, "--blind") == 0
    assert run_cli(*common, "--task", "shapes_open_ended", "--ways", 2, "--inner-shots", 3, "--text-oracle") == 0
    assert run_cli(*common, "--task", "shapes_open_ended", "--ways", 2, "--inner-shots", 3, "--closed-ended") == 0
    assert run_cli(*common, "--task", "shapes_vqa", "--shots", 1, "--no-kv-reuse") == 0
    assert "exact match" in capsys.readouterr().out
    records = load_records(out)
    assert len(records) == 6
    assert [(r.variant, r.closed_ended) for r in records if r.task == "shapes_open_ended"] == [
        ("frozen", False), ("frozen", False), ("blind", False), ("text_oracle", False), ("frozen", True)]
    closed = [r for r in records if r.closed_ended][0]
    assert closed.n == 4 and all(e["answer"] in ("dax", "blicket", "wug", "zup", "fep", "tove", "gorp",
                                                 "mib", "kiki", "toma") for e in closed.examples)
    # Two names per episode, each the target of one query: a uniform guess is right half of the time.
    assert closed.chance == 50.0 and closed.ci_low <= closed.accuracy <= closed.ci_high
    assert [r.layout for r in records] == ["paper"] * 6
    report = (out / "report.md").read_text()
    assert "| layout | model | 2-way 1-shot | 2-way 3-shot |" in report
    assert f"| paper | Frozen | {records[0].interval_text()} |" in report
    assert "| chance (measured) | 50.0 | 50.0 |" in report
    tables = json.loads((out / "report.json").read_text())["tables"]
    binding = [t for t in tables if t["task"] == "shapes_open_ended"]
    assert [t["layout"] for t in binding] == ["paper"]
    assert [row["row"] for row in binding[0]["rows"]] == [
        "Frozen", "Frozen, blind", "Text oracle (LM)", "Frozen (closed-ended)"]
    assert set(binding[0]["rows"][0]["cells"]) == {"2-way 1-shot", "2-way 3-shot"}
    assert (out / "plot_shapes_open_ended.png").stat().st_size > 1000


def test_demo_suite_writes_every_row_and_column(model_dir, tmp_path):
    out = tmp_path / "suite"
    assert run_cli("--model", model_dir, "--suite", "demo", "--scale", 0.05, "--output", out) == 0
    report = json.loads((out / "report.json").read_text())
    tables = {(t["task"], t["layout"]): t for t in report["tables"]}
    assert list(tables) == [
        ("shapes_captions", "paper"), ("shapes_vqa", "compact"), ("shapes_vqa", "paper"),
        ("shapes_open_ended", "compact"), ("shapes_open_ended", "paper"), ("shapes_open_ended", "adjacent"),
        ("shapes_real_name", "compact"), ("shapes_real_name", "adjacent"), ("shapes_fast_vqa", "compact"),
    ]
    assert [r["variant"] for r in tables["shapes_captions", "paper"]["rows"]] == ["frozen", "blind"]
    compact = tables["shapes_open_ended", "compact"]
    assert [r["variant"] for r in compact["rows"]] == list(VARIANTS)
    assert compact["columns"] == ["2-way 1-shot", "5-way 1-shot", "5-way 3-shot", "2-way 1-shot no-TI",
                                  "5-way 1-shot no-TI", "5-way 3-shot no-TI", "5-way 1-shot novel"]
    assert compact["chance"] == {"2-way 1-shot": 50.0, "5-way 1-shot": 20.0, "5-way 3-shot": 20.0,
                                 "2-way 1-shot no-TI": 50.0, "5-way 1-shot no-TI": 20.0, "5-way 3-shot no-TI": 20.0,
                                 "5-way 1-shot novel": 20.0}
    paper = tables["shapes_open_ended", "paper"]
    assert [r["variant"] for r in paper["rows"]] == ["frozen", "blind", "text_oracle_category"]
    assert all(set(r["cells"]) == set(paper["columns"]) for r in paper["rows"])
    checks = [c["target"] for c in report["checks"]]
    for layout in ("paper layout", "compact layout", "compact layout, no task induction"):
        assert f"Shapes open-ended 5-way: 3-shot above 1-shot, intervals apart ({layout})" in checks
        assert f"Shapes open-ended 5-way 1-shot >= 0.8 x Text oracle, category only (LM) ({layout})" in checks
    assert "Shapes real-name 5-way 1-shot >= 90 (compact layout)" in checks
    assert "Shapes fast VQA 2-way 1-shot >= blind + 15 (compact layout)" in checks
    assert (out / "plot_shapes_open_ended.png").is_file()


def test_each_layout_is_its_own_row_group(model_dir, tmp_path):
    out = tmp_path / "layouts"
    common = ["--model", model_dir, "--num-episodes", 2, "--output", out, "--task", "shapes_open_ended"]
    assert run_cli(*common) == 0
    assert run_cli(*common, "--layout", "compact") == 0
    assert run_cli(*common, "--layout", "compact", "--variant", "text_oracle_category") == 0
    records = load_records(out)
    assert [(r.layout, r.variant) for r in records] == [
        ("paper", "frozen"), ("compact", "frozen"), ("compact", "text_oracle_category")]
    tables = json.loads((out / "report.json").read_text())["tables"]
    assert [(t["layout"], [r["row"] for r in t["rows"]]) for t in tables] == [
        ("paper", ["Frozen"]), ("compact", ["Frozen", "Text oracle, category only (LM)"])]
    report = (out / "report.md").read_text()
    assert f"| paper | Frozen | {records[0].interval_text()} |" in report
    assert f"| compact | Frozen | {records[1].interval_text()} |" in report


def test_report_regenerates_from_results(model_dir, tmp_path):
    out = tmp_path / "eval"
    assert run_cli("--model", model_dir, "--task", "shapes_captions", "--num-episodes", 2, "--output", out) == 0
    (out / "report.md").unlink()
    paths = write_report(out)
    assert paths["markdown"].is_file()
    assert "Shapes captions (caption right, %)" in render_markdown(load_records(out))


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "args, message",
    [
        (["--task", "imagenet"], "Unknown task 'imagenet'"),
        (["--suite", "everything"], "Unknown suite"),
        (["--task", "shapes_open_ended", "--shots", "2"], "--shots applies to VQA tasks"),
        (["--task", "shapes_open_ended", "--inner-shots", "0"], "--inner-shots >= 1"),
        (["--task", "shapes_open_ended", "--ways", "9"], "ways=9 is more than the 8 few-shot categories"),
        (["--task", "shapes_vqa", "--closed-ended"], "--closed-ended ranks an episode's names"),
        (["--task", "shapes_captions", "--text-oracle"], "not defined for captioning"),
        (["--task", "shapes_fast_vqa", "--queries-per-episode", "3"], "one question per episode"),
        (["--task", "shapes_vqa", "--split", "holdout"], "Unknown split 'holdout'"),
        (["--task", "open_ended_mi"], "pass --data-dir"),
    ],
)
def test_protocol_errors_name_the_fix(model_dir, capsys, args, message):
    assert run_cli("--model", model_dir, "--num-episodes", 1, *args) == 2
    assert message in capsys.readouterr().err


def test_missing_or_unreleased_benchmark_files(model_dir, tmp_path, capsys):
    assert run_cli("--model", model_dir, "--task", "open_ended_mi", "--data-dir", tmp_path) == 2
    err = capsys.readouterr().err
    assert "open_ended_mi_shots_1_ways_2_all_questions.json not found" in err and "tar -xzf" in err
    assert run_cli("--model", model_dir, "--task", "open_ended_mi", "--ways", 3, "--data-dir", tmp_path) == 2
    assert "released only for" in capsys.readouterr().err
    assert run_cli("--model", model_dir, "--task", "vqav2", "--data-dir", tmp_path) == 2
    assert "visualqa.org" in capsys.readouterr().err
    make_fixtures.make_fewshot_fixture(tmp_path, "open_ended_mi", 1, 2)
    assert run_cli("--model", model_dir, "--task", "open_ended_mi", "--text-oracle", "--data-dir", tmp_path) == 2
    assert "only the Shapes world has" in capsys.readouterr().err


def test_a_folder_that_is_not_a_frozen_model(tmp_path, capsys):
    assert run_cli("--model", tmp_path, "--task", "shapes_vqa") == 2
    assert "has no config.json" in capsys.readouterr().err
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    assert run_cli("--model", tmp_path, "--task", "shapes_vqa") == 2
    assert "holds a 'llama' model, not a Frozen model" in capsys.readouterr().err
    assert run_cli("--model", tmp_path / "nowhere", "--task", "shapes_vqa") == 2
    assert "Cannot find a model" in capsys.readouterr().err


def test_ablation_suite_rows_merge_into_one_report(model_dir, tmp_path):
    out = tmp_path / "ablations"
    common = ["--model", model_dir, "--suite", "ablation", "--scale", 0.05, "--output", out]
    assert run_cli(*common, "--label", "Frozen", "--variants", "frozen,blind") == 0
    assert run_cli(*common, "--label", "Frozen, n=1", "--variants", "frozen") == 0
    records = load_records(out)
    assert list(dict.fromkeys(r.row_key for r in records)) == [
        ("Frozen", "frozen", False), ("Frozen", "blind", False), ("Frozen, n=1", "frozen", False)]
    cells = {label: {(r.task, r.setting) for r in records if r.label == label and r.is_model}
             for label in ("Frozen", "Frozen, n=1")}
    assert cells["Frozen, n=1"] == cells["Frozen"]
    assert run_cli(*common, "--variants", "frozen,deaf") == 2
