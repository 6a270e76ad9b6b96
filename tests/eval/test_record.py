"""The typed evaluation record, its 95% Wilson interval, and the report built from records: row groups per layout,
intervals in markdown and JSON, targets selected by fields, plots with error bars."""

from __future__ import annotations

import json
import math

import pytest

from frozen_hf.eval.record import EvalRecord, load_records, merge_records, wilson_interval
from frozen_hf.eval.report import build_tables, render_markdown, target_checks, write_report


@pytest.mark.parametrize(
    "successes, n, low, high",
    [
        # z^2 / (n + z^2) and n / (n + z^2) at the edges; the middle cases from the closed form by hand.
        (0, 10, 0.0, 0.2775),
        (10, 10, 0.7225, 1.0),
        (5, 10, 0.2366, 0.7634),
        (81, 100, 0.7222, 0.8749),
    ],
)
def test_wilson_interval_hand_cases(successes, n, low, high):
    got = wilson_interval(successes, n)
    assert got == pytest.approx((low, high), abs=5e-5)


@pytest.mark.parametrize("successes, n", [(3, 17), (50, 100), (1, 400)])
def test_wilson_bounds_solve_the_score_equation(successes, n):
    # A Wilson bound p is where the observed proportion sits exactly z standard errors (at p) from p.
    z, observed = 1.959963984540054, successes / n
    for p in wilson_interval(successes, n):
        assert abs(observed - p) == pytest.approx(z * math.sqrt(p * (1 - p) / n), rel=1e-9)


def test_wilson_interval_rejects_impossible_counts():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError, match="0 <= successes <= n"):
        wilson_interval(11, 10)


def record(variant="frozen", layout="paper", ways=2, inner_shots=1, successes=62, n=100, **kw) -> EvalRecord:
    values = dict(label="Frozen", variant=variant, task="shapes_open_ended", kind="open_ended",
                  setting=f"{ways}-way {inner_shots}-shot", metric="exact match", layout=layout, ways=ways,
                  inner_shots=inner_shots, chance=100 / ways, seed=3)
    values.update(kw)
    return EvalRecord.measured(successes=successes, n=n, **values)


def test_record_round_trips_through_json_and_names_rows_from_fields():
    r = record(variant="text_oracle_category", closed_ended=True)
    assert EvalRecord.from_dict(json.loads(json.dumps(r.to_dict()))) == r
    assert r.interval_text() == "62.0 [52.2, 70.9] (n=100)"
    assert r.row == "Text oracle, category only (LM) (closed-ended)"
    assert record(variant="text_oracle_masked").row == "Frozen, text_oracle_masked"  # a variant added later
    with pytest.raises(ValueError, match="missing accuracy, ci_high, ci_low, kind"):
        EvalRecord.from_dict({"row": "Frozen", "score": 50.0, "label": "Frozen", "variant": "frozen", "task": "t",
                              "setting": "s", "metric": "m", "n": 4})


def test_merge_replaces_the_same_cell_and_keeps_other_layouts(tmp_path):
    merge_records(tmp_path, [record(successes=10), record(layout="compact", successes=20)])
    merge_records(tmp_path, [record(successes=30)])
    assert [(r.layout, r.accuracy) for r in load_records(tmp_path)] == [("paper", 30.0), ("compact", 20.0)]


def test_report_groups_rows_by_layout_with_intervals(tmp_path):
    records = [
        record(successes=40), record(variant="blind", successes=48), record(inner_shots=3, successes=55),
        record(layout="compact", successes=81), record(layout="compact", inner_shots=3, successes=90),
        record(layout="compact", variant="text_oracle_category", successes=95),
    ]
    tables = build_tables(records)
    assert [(t["layout"], [r["variant"] for r in t["rows"]]) for t in tables] == [
        ("paper", ["frozen", "blind"]), ("compact", ["frozen", "text_oracle_category"])]
    assert tables[1]["rows"][0]["cells"]["2-way 1-shot"] == {
        "accuracy": 81.0, "ci_low": pytest.approx(72.22, abs=0.01), "ci_high": pytest.approx(87.49, abs=0.01),
        "n": 100, "text": "81.0 [72.2, 87.5] (n=100)"}
    markdown = render_markdown(records)
    assert "| layout | model | 2-way 1-shot | 2-way 3-shot |" in markdown
    assert "| paper | Frozen | 40.0 [30.9, 49.8] (n=100) | 55.0 [45.2, 64.4] (n=100) |" in markdown
    assert "|  | Frozen, blind | 48.0 [38.5, 57.7] (n=100) | - |" in markdown
    assert "| compact | Frozen | 81.0 [72.2, 87.5] (n=100) | 90.0 [82.6, 94.5] (n=100) |" in markdown
    assert "| chance (measured) | 50.0 | 50.0 |" in markdown

    checks = {c["target"]: c["met"] for c in target_checks(records)}
    assert checks["Shapes open-ended 2-way 1-shot >= 70 (compact layout)"] is True
    assert checks["Shapes open-ended 2-way 1-shot >= 70 (paper layout)"] is False
    assert checks["Shapes open-ended 2-way 1-shot >= 0.8 x Text oracle, category only (LM) (compact layout)"] is True
    assert checks["Shapes open-ended 2-way 1-shot blind within 8 of chance (paper layout)"] is True

    merge_records(tmp_path, records)
    paths = write_report(tmp_path)
    report = json.loads(paths["json"].read_text())
    assert [EvalRecord.from_dict(r) for r in report["records"]] == records
    assert paths["plot_shapes_open_ended"].stat().st_size > 1000


def test_five_way_gain_needs_intervals_apart():
    def five(k, successes):
        return record(ways=5, inner_shots=k, successes=successes, layout="compact")

    target = "Shapes open-ended 5-way: 3-shot above 1-shot, intervals apart (compact layout)"
    apart = {c["target"]: c["met"] for c in target_checks([five(1, 45), five(3, 70)])}
    close = {c["target"]: c["met"] for c in target_checks([five(1, 45), five(3, 55)])}
    assert apart[target] is True and close[target] is False


def test_targets_with_and_without_task_induction_are_checked_apart():
    # The no-induction records come first, so a finder that ignored the setting would check them twice.
    records = [
        record(layout="compact", task_induction=False, successes=20),
        record(layout="compact", task_induction=False, variant="text_oracle_category", successes=60),
        record(layout="compact", successes=75),
        record(layout="compact", variant="text_oracle_category", successes=50),
    ]
    checks = {c["target"]: (c["met"], c["measured"]) for c in target_checks(records)}
    assert checks["Shapes open-ended 2-way 1-shot >= 70 (compact layout)"] == (True, "75.0 [65.7, 82.5] (n=100)")
    assert checks["Shapes open-ended 2-way 1-shot >= 70 (compact layout, no task induction)"][0] is False
    oracle = "Shapes open-ended 2-way 1-shot >= 0.8 x Text oracle, category only (LM) (compact layout{})"
    assert checks[oracle.format("")] == (True, "75.0 vs 50.0")
    assert checks[oracle.format(", no task induction")] == (False, "20.0 vs 60.0")
