"""Reports in the paper's layout from evaluation results: markdown + JSON tables and PNG plots.

Rows are model variants (Frozen, blind, text oracle, ablations), columns are tasks and their settings (shots, or
ways x inner-shots). Results accumulate in ``<output>/results.json`` (one record per run of `frozen_hf.eval.run`);

    python -m frozen_hf.eval.report <output folder>

(re)writes ``report.md``, ``report.json`` and ``plot_*.png`` there.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import OrderedDict, defaultdict
from pathlib import Path
from typing import Any, Sequence

__all__ = [
    "RESULTS_FILE",
    "TASK_TITLES",
    "load_results",
    "merge_results",
    "build_table",
    "render_markdown",
    "write_report",
    "main",
]

RESULTS_FILE = "results.json"
TASK_TITLES = {
    "shapes_captions": "Shapes captions",
    "shapes_vqa": "Shapes VQA",
    "shapes_open_ended": "Shapes open-ended",
    "shapes_real_name": "Shapes real-name",
    "shapes_fast_vqa": "Shapes fast VQA",
    "vqav2": "VQAv2",
    "okvqa": "OKVQA",
    "open_ended_mi": "Open-Ended miniImageNet",
    "real_name_mi": "Real-Name miniImageNet",
    "fast_vqa": "Fast VQA",
    "guided_vqa": "Guided VQA",
}


def record_key(record: dict[str, Any]) -> tuple:
    """Records with the same key replace each other when merged (a rerun overwrites its earlier number)."""
    return (record["row"], record["task"], record["setting"])


def load_results(folder: str | Path) -> list[dict[str, Any]]:
    """The records in ``<folder>/results.json`` (empty if there is none yet)."""
    path = Path(folder) / RESULTS_FILE
    if not path.is_file():
        return []
    data = json.loads(path.read_text())
    if not isinstance(data, list):
        raise ValueError(f"{path} is not a results file written by frozen_hf.eval.run (expected a JSON list).")
    return data


def merge_results(folder: str | Path, records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Adds `records` to ``<folder>/results.json``, replacing records with the same row, task and setting."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    merged: "OrderedDict[tuple, dict]" = OrderedDict((record_key(r), r) for r in load_results(folder))
    for record in records:
        merged[record_key(record)] = record
    out = list(merged.values())
    (folder / RESULTS_FILE).write_text(json.dumps(out, indent=2, default=str))
    return out


def column_label(record: dict[str, Any]) -> str:
    return f"{TASK_TITLES.get(record['task'], record['task'])} {record['setting']}".strip()


def build_table(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``{"columns": [...], "rows": [...], "cells": {row: {column: score}}, "metrics": {column: metric}}``.

    Scores are percentages (accuracy x 100); columns keep the order in which tasks were run.
    """
    columns: list[str] = []
    rows: list[str] = []
    cells: dict[str, dict[str, float]] = defaultdict(dict)
    metrics: dict[str, str] = {}
    for record in records:
        column = column_label(record)
        if column not in columns:
            columns.append(column)
        if record["row"] not in rows:
            rows.append(record["row"])
        cells[record["row"]][column] = record["score"]
        metrics[column] = record["metric"]
    return {"columns": columns, "rows": rows, "cells": {r: dict(cells[r]) for r in rows}, "metrics": metrics}


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def render_markdown(records: Sequence[dict[str, Any]], title: str = "Few-shot evaluation") -> str:
    """The report: the table (one block per task), the protocol of every run, and the Done-means checks."""
    table = build_table(records)
    lines = [f"# {title}", ""]
    models = sorted({r.get("model", "") for r in records})
    if models:
        lines += ["Models: " + ", ".join(f"`{m}`" for m in models), ""]
    # One table per task keeps the paper's look (a task's settings side by side).
    by_task: "OrderedDict[str, list[str]]" = OrderedDict()
    for record in records:
        by_task.setdefault(record["task"], [])
        column = column_label(record)
        if column not in by_task[record["task"]]:
            by_task[record["task"]].append(column)
    for task, columns in by_task.items():
        rows = [r for r in table["rows"] if any(c in table["cells"][r] for c in columns)]
        metric = table["metrics"][columns[0]]
        lines += [f"## {TASK_TITLES.get(task, task)} ({metric}, %)", ""]
        short = [c[len(TASK_TITLES.get(task, task)) :].strip() or "-" for c in columns]
        lines.append("| model | " + " | ".join(short) + " |")
        lines.append("|---|" + "---|" * len(columns))
        for row in rows:
            lines.append(f"| {row} | " + " | ".join(_fmt(table["cells"][row].get(c)) for c in columns) + " |")
        lines.append("")
    checks = done_means_checks(records)
    if checks:
        lines += ["## Targets", "", "| target | measured | met |", "|---|---|---|"]
        lines += [f"| {c['target']} | {c['measured']} | {'yes' if c['met'] else 'no'} |" for c in checks]
        lines.append("")
    lines += ["## Runs", "", "| model | task | setting | examples | seconds | notes |", "|---|---|---|---|---|---|"]
    for r in records:
        notes = []
        if r.get("queries_per_episode"):
            notes.append(f"{r['queries_per_episode']} queries/episode")
        if r.get("closed_ended"):
            notes.append("closed-ended (ranks the episode's names)")
        stats = r.get("engine", {})
        if stats.get("prefix_groups_reused"):
            notes.append(f"KV reuse on {stats['prefix_groups_reused']} shared prefixes")
        lines.append(
            f"| {r['row']} | {r['task']} | {r['setting']} | {r['num_examples']} | {r.get('seconds', 0):.1f} | "
            + "; ".join(notes) + " |"
        )
    lines.append("")
    return "\n".join(lines)


def _find(records, row_prefix: str, task: str, setting: str) -> float | None:
    for r in records:
        if r["row"] == row_prefix and r["task"] == task and r["setting"] == setting:
            return r["score"]
    return None


def done_means_checks(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Shapes targets (captions >= 95 %, VQA 0-shot >= blind + 40, binding >= 0.9 x text oracle at 3 and 5
    inner-shots), for the rows named Frozen / Frozen, blind / Text oracle, where measured."""
    checks = []
    captions = _find(records, "Frozen", "shapes_captions", "test")
    if captions is not None:
        checks.append({"target": "Shapes captions right >= 95%", "measured": f"{captions:.1f}", "met": captions >= 95})
    vqa, blind = _find(records, "Frozen", "shapes_vqa", "0-shot"), _find(records, "Frozen, blind", "shapes_vqa", "0-shot")
    if vqa is not None and blind is not None:
        checks.append(
            {"target": "Shapes VQA 0-shot >= blind + 40", "measured": f"{vqa:.1f} vs blind {blind:.1f}",
             "met": vqa - blind >= 40}
        )
    for r in records:
        if r["row"] != "Frozen" or r["task"] != "shapes_open_ended" or r.get("closed_ended"):
            continue
        if not re.fullmatch(r"\d+-way [35]-shot", r["setting"]):
            continue
        oracle = _find(records, "Text oracle (LM)", "shapes_open_ended", r["setting"])
        if oracle is None:
            continue
        ratio = f" ({r['score'] / oracle:.2f}x)" if oracle else ""
        checks.append(
            {"target": f"Shapes open-ended {r['setting']} >= 0.9 x text oracle",
             "measured": f"{r['score']:.1f} vs oracle {oracle:.1f}{ratio}", "met": r["score"] >= 0.9 * oracle}
        )
    return checks


def _plot(records: Sequence[dict[str, Any]], folder: Path) -> list[Path]:
    """Accuracy vs inner-shots (one panel per ways) for binding tasks, and accuracy vs shots for VQA tasks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    tasks = list(OrderedDict.fromkeys(r["task"] for r in records))
    for task in tasks:
        rs = [r for r in records if r["task"] == task]
        series: dict[tuple[str, Any], list[tuple[int, float]]] = defaultdict(list)
        for r in rs:
            s = r["settings"]
            if r["kind"] == "open_ended" or task in ("shapes_fast_vqa", "fast_vqa", "guided_vqa"):
                if s.get("repeats", 1) != 1 or not s.get("task_induction", True):
                    continue
                series[(r["row"], s["ways"])].append((s["inner_shots"], r["score"]))
            elif r["kind"] == "vqa":
                series[(r["row"], None)].append((s["shots"], r["score"]))
        if not series or max(len(v) for v in series.values()) < 2:
            continue
        panels = sorted({k[1] for k in series}, key=lambda v: (v is None, v))
        fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
        for ax, panel in zip(axes[0], panels):
            for (row, ways), points in series.items():
                if ways != panel or len(points) < 1:
                    continue
                points = sorted(points)
                ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=row)
            ax.set_xlabel("inner-shots" if panel is not None else "shots")
            ax.set_ylabel("accuracy (%)")
            ax.set_ylim(0, 100)
            ax.set_title(f"{TASK_TITLES.get(task, task)}" + (f", {panel}-way" if panel is not None else ""))
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        fig.tight_layout()
        path = folder / f"plot_{task}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def write_report(folder: str | Path, title: str = "Few-shot evaluation") -> dict[str, Path]:
    """Writes ``report.md``, ``report.json`` and the plots for ``<folder>/results.json``; returns their paths."""
    folder = Path(folder)
    records = load_results(folder)
    if not records:
        raise FileNotFoundError(
            f"No results in {folder / RESULTS_FILE}: run `python -m frozen_hf.eval.run --output {folder} ...` first."
        )
    (folder / "report.md").write_text(render_markdown(records, title))
    table = build_table(records)
    table["checks"] = done_means_checks(records)
    (folder / "report.json").write_text(json.dumps(table, indent=2))
    paths = {"markdown": folder / "report.md", "json": folder / "report.json"}
    for path in _plot(records, folder):
        paths[path.stem] = path
    return paths


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="the --output folder of frozen_hf.eval.run (holds results.json)")
    parser.add_argument("--title", default="Few-shot evaluation")
    args = parser.parse_args(argv)
    for name, path in write_report(args.folder, args.title).items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
