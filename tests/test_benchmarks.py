"""The benchmark code at the tiny size: it runs, builds its table, and KV reuse gives the same answers.

Correctness only: no assertion on any time or memory figure.
"""

from __future__ import annotations

import pytest
import torch

from benchmarks import few_shot
from benchmarks.common import Results, Row, format_table, interleaved_times, paired_ratio, peak_call_bytes
from benchmarks.models import SIZES
from benchmarks.run import run_size


@pytest.fixture(scope="module")
def tiny_results() -> Results:
    return run_size("tiny", "cpu", torch.float32, log=lambda message: None)


def test_tiny_run_builds_the_table(tiny_results):
    table = format_table(tiny_results)
    benchmarks = {row.benchmark for row in tiny_results.rows}
    assert benchmarks == {"train step", "generate", "few-shot eval", "data"}
    assert table.count("\n") == len(tiny_results.rows) + 1
    for row in tiny_results.rows:
        if row.ratio is not None:
            assert row.ratio > 0
    train_rows = [row for row in tiny_results.rows if row.benchmark == "train step"]
    # Both settings, each with floor, LLaVA, Frozen and the Frozen/LLaVA comparison; memory measured for each.
    assert len(train_rows) == 8
    assert all(row.peak_mb and row.peak_mb > 0 for row in train_rows if row.value is not None)


def test_kv_reuse_gives_the_same_answers(tiny_results):
    assert tiny_results.meta["fewshot"]["same_answers"]
    row = next(row for row in tiny_results.rows if row.contender == "with KV reuse")
    assert row.note == "same answers"


def test_kv_reuse_answers_equal_plain_answers_on_varied_prompts():
    """A model whose answers depend on the images: reuse and plain paths agree prompt by prompt."""
    from benchmarks.models import load_frozen, load_processor, vision_config

    size = SIZES["tiny"]
    processor = load_processor(size, 2)
    model = load_frozen(size, vision_config(size), 2).eval()
    # Scale up the random prefix so that different images give different answers.
    with torch.no_grad():
        model.model.visual_prefix.linear.weight.mul_(50)
    prompts = few_shot.episode_prompts(size, 2)
    plain = few_shot.answers(model, processor, prompts, reuse=False)
    reused = few_shot.answers(model, processor, prompts, reuse=True)
    assert reused == plain
    assert len(plain) == 2 * few_shot.WAYS


def test_timing_helpers_pair_rounds():
    calls: list[str] = []
    times = interleaved_times({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, rounds=3, warmup=1)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]
    assert {len(v) for v in times.values()} == {3}
    assert paired_ratio([2.0, 4.0, 6.0], [1.0, 1.0, 3.0]) == 2.0


def test_cpu_peak_memory_sees_allocations():
    def allocate() -> None:
        first = torch.ones(1024, 1024)  # 4 MiB
        second = torch.ones(1024, 1024)
        del first, second

    peak = peak_call_bytes(allocate)
    assert 8 * 2**20 <= peak < 9 * 2**20


def test_table_marks_missed_targets():
    results = Results(rows=[Row("x", "s", "c", 1.0, "s", ratio=2.0, baseline="b", target="<= 1x", met=False)])
    assert "NO" in format_table(results)
