"""Metric tests: hand-computed VQA accuracy, VQA normalization edge cases, open-ended exact match,
caption metrics, and the evaluate modules loaded by local path, offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from frozen_hf.eval.metrics import (
    METRIC_NAMES,
    bleu_score,
    caption_scores,
    caption_tokenize,
    cider_score,
    load_metric,
    mean_vqa_accuracy,
    metric_module_path,
    normalize_open_ended,
    normalize_vqa_answer,
    open_ended_accuracy,
    open_ended_match,
    vqa_accuracy,
    vqa_process_punctuation,
)

REPO = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------ VQA accuracy, by hand
# With 10 human answers, k of which equal the prediction, the official score averages 10
# leave-one-out subsets of 9 answers; a subset scores min(#matches in it / 3, 1).
#   Leaving out one of the k matching humans leaves k-1 matches; leaving out one of the 10-k
#   others leaves k matches. So acc(k) = (k * min((k-1)/3, 1) + (10-k) * min(k/3, 1)) / 10:
#   k=0: all subsets have 0 matches                        -> 0
#   k=1: 1 subset with 0, 9 subsets with 1 -> (0 + 9/3)/10 -> 0.3
#   k=2: 2 subsets with 1, 8 with 2 -> (2/3 + 16/3)/10 = 6/10 -> 0.6
#   k=3: 3 subsets with 2, 7 with 3 -> (3*2/3 + 7*1)/10 = 9/10 -> 0.9 (not 1.0: 3 agreeing
#        humans are not enough, because a subset that drops one of them has only 2)
#   k=4: 4 subsets with 3, 6 with 4 -> every subset is capped at 1 -> 1.0
@pytest.mark.parametrize(
    "k, expected", [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (7, 1.0), (10, 1.0)]
)
def test_vqa_accuracy_hand_computed(k: int, expected: float) -> None:
    others = ["blue", "green", "black", "white", "pink", "grey", "brown", "tan", "gold", "teal"]
    answers = ["red"] * k + others[: 10 - k]
    assert vqa_accuracy("red", answers) == pytest.approx(expected, abs=1e-12)


def test_vqa_accuracy_partial_agreement_with_normalization() -> None:
    # 2 humans said "2" in different spellings, so the prediction "Two." matches both: 0.6.
    answers = ["2", "two", "3", "3", "3", "4", "4", "4", "5", "5"]
    assert vqa_accuracy("Two.", answers) == pytest.approx(0.6)
    # "3" is given by 3 humans: 0.9.
    assert vqa_accuracy("three", answers) == pytest.approx(0.9)


def test_vqa_accuracy_official_script_mode() -> None:
    # Unanimous human answers are compared raw by the official script, so an unnormalized
    # reference "two" does not match the normalized prediction "2"; the default normalizes both.
    assert vqa_accuracy("two", ["two"] * 10) == 1.0
    assert vqa_accuracy("two", ["two"] * 10, official_script=True) == 0.0
    # Released answers are already normalized, so both modes agree on them.
    assert vqa_accuracy("Two", ["2"] * 10, official_script=True) == 1.0
    answers = ["yes"] * 2 + ["no"] * 8
    assert vqa_accuracy("Yes!", answers, official_script=True) == vqa_accuracy("Yes!", answers) == pytest.approx(0.6)


def test_vqa_accuracy_bad_input() -> None:
    with pytest.raises(ValueError):
        vqa_accuracy("yes", [])
    with pytest.raises(TypeError):
        vqa_accuracy("yes", "yes")
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        mean_vqa_accuracy(["a", "b"], [["a"] * 10])


def test_vqa_accuracy_single_reference_is_exact_match() -> None:
    assert vqa_accuracy("The dog", ["dog"]) == 1.0
    assert vqa_accuracy("cat", ["dog"]) == 0.0


def test_mean_vqa_accuracy() -> None:
    out = mean_vqa_accuracy(["red", "red"], [["red"] * 10, ["red"] + ["blue"] * 9])
    assert out["num_questions"] == 2
    assert out["per_question"] == pytest.approx([1.0, 0.3])
    assert out["vqa_accuracy"] == pytest.approx(0.65)


@settings(max_examples=60, deadline=None)
@given(k=st.integers(0, 10), pred=st.sampled_from(["red", "2", "yes", "don't"]))
def test_vqa_accuracy_matches_closed_form(k: int, pred: str) -> None:
    fillers = [f"other{i}" for i in range(10)]
    answers = [pred] * k + fillers[: 10 - k]
    closed = (k * min((k - 1) / 3, 1) + (10 - k) * min(k / 3, 1)) / 10 if k else 0.0
    assert vqa_accuracy(pred, answers) == pytest.approx(closed)


@settings(max_examples=100, deadline=None)
@given(pred=st.text(max_size=20), answers=st.lists(st.text(max_size=10), min_size=1, max_size=10))
def test_vqa_accuracy_in_unit_interval(pred: str, answers: list) -> None:
    assert 0.0 <= vqa_accuracy(pred, answers) <= 1.0


# ------------------------------------------------------------------ VQA normalization
@pytest.mark.parametrize(
    "raw, normalized",
    [
        # articles
        ("a dog", "dog"),
        ("an apple", "apple"),
        ("The Cat", "cat"),
        ("on the table", "on table"),
        ("theatre", "theatre"),  # only whole words
        # punctuation and periods
        ("yes.", "yes"),
        ("Yes!", "yes"),
        ("yes !", "yes"),  # a mark touching a space is deleted
        ("black/white", "black white"),  # elsewhere it becomes a space
        ("t-shirt", "t shirt"),
        ("3.5", "3.5"),  # a period before a digit stays
        ("5.", "5"),
        ("1,000", "1000"),  # comma between digits: marks are deleted, not spaced
        ("10,000 feet", "10000 feet"),
        ("red, white", "red white"),
        # number words -> digits (zero..ten only)
        ("two", "2"),
        ("Ten", "10"),
        ("none", "0"),
        ("eleven", "eleven"),
        ("two dogs", "2 dogs"),
        # contractions without apostrophes
        ("dont", "don't"),
        ("isnt", "isn't"),
        ("its", "its"),  # not in the official map
        ("don't", "don't"),
        # case and whitespace
        ("  YES \n", "yes"),
        ("\tNo\t", "no"),
        ("big   dog", "big dog"),
        ("", ""),
    ],
)
def test_normalize_vqa_answer(raw: str, normalized: str) -> None:
    assert normalize_vqa_answer(raw) == normalized


def test_punctuation_rule_uses_original_text() -> None:
    # The comma-between-digits test looks at the whole answer: once it holds "1,000", every
    # mark is deleted (not spaced), including the slash.
    assert vqa_process_punctuation("1,000/day") == "1000day"
    assert vqa_process_punctuation("yes/no") == "yes no"


def test_normalize_vqa_answer_rejects_non_str() -> None:
    with pytest.raises(TypeError):
        normalize_vqa_answer(3)  # type: ignore[arg-type]


# ------------------------------------------------------------------ open-ended exact match
@pytest.mark.parametrize(
    "generated, target, hit",
    [
        ("dax", "dax", True),
        (" Dax.", "dax", True),
        ("dax. This is a blicket.", "dax", True),  # first word only
        ("a dax", "dax", True),  # leading article ignored
        ("blicket dax", "dax", False),
        ("daxes", "dax", False),  # no stemming
        ("'dax',", "dax", True),
        ("", "dax", False),
        ("golden retriever on grass", "golden retriever", True),  # as many words as the target
        ("golden", "golden retriever", False),
        ("Golden Retriever.", "a golden retriever", True),
    ],
)
def test_open_ended_match(generated: str, target: str, hit: bool) -> None:
    assert open_ended_match(generated, target) is hit


def test_open_ended_articles_can_be_kept() -> None:
    assert open_ended_match("a dax", "dax", strip_articles=False) is False


def test_normalize_open_ended() -> None:
    assert normalize_open_ended("  Blicket. This is a dax.") == "blicket"
    assert normalize_open_ended("The big Dax!", num_words=None) == "big dax"
    assert normalize_open_ended("...") == ""


def test_open_ended_accuracy() -> None:
    out = open_ended_accuracy(["dax.", "wug", "a blicket is"], ["dax", "dax", "blicket"])
    assert out["per_example"] == [1, 0, 1]
    assert out["accuracy"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="empty after normalization"):
        open_ended_match("dax", "...")


# ------------------------------------------------------------------ captions
def test_caption_tokenize() -> None:
    assert caption_tokenize("A red square, on the LEFT.") == "a red square on the left"
    assert caption_tokenize("It's  a dog!") == "it's a dog"


def test_bleu() -> None:
    preds = ["a red square on the left", "a small blue circle at the top"]
    refs = [["a red square on the left", "red square left"], ["a small blue circle at the top"]]
    assert bleu_score(preds, refs) == pytest.approx(100.0)
    worse = bleu_score(["a green triangle", "a small blue circle at the bottom"], refs)
    assert 0.0 <= worse < 100.0
    # Punctuation and case do not change the score.
    assert bleu_score(["A red square on the left.", "A small blue circle at the top!"], refs) == pytest.approx(100.0)


CORPUS_REFS = [
    ["a red square on the left", "a red square at the left side"],
    ["a small blue circle at the top", "a blue circle near the top"],
    ["two green triangles", "a pair of green triangles"],
    ["a yellow star in the middle", "yellow star at the center"],
]


def test_cider() -> None:
    perfect = cider_score([r[0] for r in CORPUS_REFS], CORPUS_REFS)
    wrong = cider_score(["a blue star", "two red squares", "a circle", "green"], CORPUS_REFS)
    assert perfect > 1.0
    assert 0.0 <= wrong < perfect
    # A single image gives every n-gram IDF 0, hence CIDEr 0: the metric needs a corpus.
    assert cider_score(["a red square"], [["a red square"]]) == 0.0


def test_caption_scores() -> None:
    out = caption_scores([r[0] for r in CORPUS_REFS], CORPUS_REFS)
    assert set(out) == {"bleu", "cider"}
    with pytest.raises(ValueError, match="unknown caption metric"):
        caption_scores(["a"], [["a"]], metrics=["meteor"])


# ------------------------------------------------------------------ evaluate modules by path
def test_metric_module_paths_exist() -> None:
    for name in METRIC_NAMES:
        assert (metric_module_path(name) / f"{name}.py").is_file()
    with pytest.raises(ValueError, match="unknown metric module"):
        metric_module_path("bleurt")
    with pytest.raises(FileNotFoundError, match="metrics_dir"):
        metric_module_path("vqa_accuracy", metrics_dir=REPO / "no_such_dir")


VQA_PREDS = ["Two", "yes.", "red", "the cat"]
VQA_REFS = [["2"] * 10, ["yes"] * 2 + ["no"] * 8, ["red"] * 3 + ["blue"] * 7, ["cat"] + ["dog"] * 9]
OE_PREDS = ["dax. This is", "a blicket", "wug", "Golden retriever"]
OE_REFS = ["dax", "dax", "wug", "golden retriever"]


def test_evaluate_modules_match_library(tmp_path: Path) -> None:
    kw = {"cache_dir": str(tmp_path)}
    vqa = load_metric("vqa_accuracy", **kw).compute(predictions=VQA_PREDS, references=VQA_REFS)
    assert vqa == mean_vqa_accuracy(VQA_PREDS, VQA_REFS)
    assert vqa["vqa_accuracy"] == pytest.approx((1.0 + 0.6 + 0.9 + 0.3) / 4)
    vqa_official = load_metric("vqa_accuracy", **kw).compute(
        predictions=VQA_PREDS, references=VQA_REFS, official_script=True
    )
    assert vqa_official == mean_vqa_accuracy(VQA_PREDS, VQA_REFS, official_script=True)
    oe = load_metric("open_ended_accuracy", **kw).compute(predictions=OE_PREDS, references=OE_REFS)
    assert oe == open_ended_accuracy(OE_PREDS, OE_REFS)
    assert oe["accuracy"] == pytest.approx(0.75)  # "a blicket" is not "dax"
    preds = [r[0] for r in CORPUS_REFS]
    cap = load_metric("caption_metrics", **kw).compute(predictions=preds, references=CORPUS_REFS)
    assert cap == pytest.approx(caption_scores(preds, CORPUS_REFS))


def test_evaluate_load_by_path_offline(tmp_path: Path) -> None:
    """A fresh interpreter with the Hub switched off and empty HF caches loads the modules by path."""
    script = f"""
import json, evaluate
out = {{}}
m = evaluate.load("frozen_hf/eval/metric_modules/vqa_accuracy")
out["vqa"] = m.compute(predictions={VQA_PREDS!r}, references={VQA_REFS!r})["vqa_accuracy"]
m = evaluate.load("frozen_hf/eval/metric_modules/open_ended_accuracy")
out["oe"] = m.compute(predictions={OE_PREDS!r}, references={OE_REFS!r})["accuracy"]
m = evaluate.load("frozen_hf/eval/metric_modules/caption_metrics")
out["cap"] = m.compute(predictions={[r[0] for r in CORPUS_REFS]!r}, references={CORPUS_REFS!r})
print("RESULT" + json.dumps(out))
"""
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        HF_HOME=str(tmp_path / "hf_home"),
        HF_EVALUATE_CACHE=str(tmp_path / "evaluate_cache"),
        OMP_NUM_THREADS="1",
        PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1]
    out = json.loads(line[len("RESULT"):])
    assert out["vqa"] == pytest.approx(mean_vqa_accuracy(VQA_PREDS, VQA_REFS)["vqa_accuracy"])
    assert out["oe"] == pytest.approx(open_ended_accuracy(OE_PREDS, OE_REFS)["accuracy"])
    preds = [r[0] for r in CORPUS_REFS]
    assert out["cap"] == pytest.approx(caption_scores(preds, CORPUS_REFS))
