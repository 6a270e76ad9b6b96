"""The evaluation report: markdown and JSON tables with 95% intervals, the Shapes targets, and accuracy plots, written
from the `EvalRecord`s in ``<output>/results.json``.

One table per task; within it one row group per prompt layout, rows are model variants (Frozen, blind, text oracles,
ablations) and columns the task's settings (shots, or ways x inner-shots). Each cell reads
``62.0 [52.2, 71.0] (n=100)``: accuracy, its 95% Wilson interval and the number of scored queries; a ``chance`` row
gives the chance level measured on the prompts, where the task has candidates. Plots show accuracy against
inner-shots (or shots) per layout, with the intervals as error bars.

    python -m frozen_hf.eval.report <output folder> [--title T]

(re)writes ``report.md``, ``report.json`` and ``plot_*.png`` there.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable, Sequence

from .record import RESULTS_FILE, EvalRecord, load_records

__all__ = ["TASK_TITLES", "build_tables", "render_markdown", "target_checks", "write_report", "main"]

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


def _ordered(values) -> list:
    return list(dict.fromkeys(values))


def build_tables(records: Sequence[EvalRecord]) -> list[dict[str, Any]]:
    """One table per (task, layout), in the order the records were run.

    Each is ``{"task", "title", "layout", "metric", "columns": [setting, ...], "rows": [{"row", "label", "variant",
    "closed_ended", "cells": {setting: {"accuracy", "ci_low", "ci_high", "n", "text"}}}], "chance": {setting: %}}``.
    """
    tables = []
    for task in _ordered(r.task for r in records):
        for layout in _ordered(r.layout for r in records if r.task == task):
            cell_records = [r for r in records if r.task == task and r.layout == layout]
            rows = []
            for key in _ordered(r.row_key for r in cell_records):
                mine = [r for r in cell_records if r.row_key == key]
                rows.append({
                    "row": mine[0].row, "label": key[0], "variant": key[1], "closed_ended": key[2],
                    "cells": {r.setting: {"accuracy": r.accuracy, "ci_low": r.ci_low, "ci_high": r.ci_high,
                                          "n": r.n, "text": r.interval_text()} for r in mine},
                })
            chance = {}
            for r in cell_records:
                if r.chance is not None:
                    chance.setdefault(r.setting, r.chance)
            tables.append({
                "task": task, "title": TASK_TITLES.get(task, task), "layout": layout, "metric": cell_records[0].metric,
                "columns": _ordered(r.setting for r in cell_records), "rows": rows, "chance": chance,
            })
    return tables


def render_markdown(records: Sequence[EvalRecord], title: str = "Few-shot evaluation") -> str:
    """The report: a table per task with a row group per layout, the Shapes targets, and the protocol of every run."""
    lines = [f"# {title}", ""]
    models = sorted({r.model for r in records if r.model})
    if models:
        lines += ["Models: " + ", ".join(f"`{m}`" for m in models), ""]
    lines += ["Cells: accuracy (%) [95% Wilson interval] (n = scored queries).", ""]
    tables = build_tables(records)
    for task in _ordered(t["task"] for t in tables):
        groups = [t for t in tables if t["task"] == task]
        columns = _ordered(c for t in groups for c in t["columns"])
        lines += [f"## {groups[0]['title']} ({groups[0]['metric']}, %)", ""]
        lines.append("| layout | model | " + " | ".join(columns) + " |")
        lines.append("|---|---|" + "---|" * len(columns))
        for table in groups:
            layout = table["layout"]
            for row in table["rows"]:
                cells = [row["cells"][c]["text"] if c in row["cells"] else "-" for c in columns]
                lines.append(f"| {layout} | {row['row']} | " + " | ".join(cells) + " |")
                layout = ""
            if table["chance"]:
                cells = [f"{table['chance'][c]:.1f}" if c in table["chance"] else "-" for c in columns]
                lines.append(f"| {layout} | chance (measured) | " + " | ".join(cells) + " |")
        lines.append("")
    checks = target_checks(records)
    if checks:
        lines += ["## Targets", "", "| target | measured | met |", "|---|---|---|"]
        lines += [f"| {c['target']} | {c['measured']} | {'yes' if c['met'] else 'no'} |" for c in checks]
        lines.append("")
    lines += ["## Runs", "", "| model | task | layout | setting | n | seed | seconds | notes |",
              "|---|---|---|---|---|---|---|---|"]
    for r in records:
        notes = []
        if r.queries_per_episode:
            notes.append(f"{r.queries_per_episode} queries/episode")
        if r.closed_ended:
            notes.append("closed-ended (ranks the episode's names)")
        if r.engine.get("prefix_groups_reused"):
            notes.append(f"KV reuse on {r.engine['prefix_groups_reused']} shared prefixes")
        lines.append(f"| {r.row} | {r.task} | {r.layout} | {r.setting} | {r.n} | {r.seed} | {r.seconds:.1f} | "
                     + "; ".join(notes) + " |")
    lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------- targets


def _finder(records: Sequence[EvalRecord], label: str) -> Callable[..., EvalRecord | None]:
    """`find(variant, task, layout, **fields)`: the open-ended (not closed-ended) record of `label` in that cell."""

    def find(variant: str, task: str, layout: str, **wanted: Any) -> EvalRecord | None:
        for r in records:
            if (r.variant == variant and r.task == task and r.layout == layout and not r.closed_ended
                    and (r.label == label or variant.startswith("text_oracle"))
                    and all(getattr(r, k) == v for k, v in wanted.items())):
                return r
        return None

    return find


def target_checks(records: Sequence[EvalRecord], label: str | None = None) -> list[dict[str, Any]]:
    """The Shapes targets that the records measure, per layout, for the model labelled `label` (default: the first
    label with a frozen record): captions >= 95; VQA 0-shot >= 40 and >= blind + 25; open-ended binding >= 70 / 45 /
    65 at 2-way 1-shot / 5-way 1-shot / 5-way 3-shot and >= 0.8 x the category-only text oracle (the text oracle
    where that variant was not run); blind within 8 points of the measured chance; 5-way 3-shot above 1-shot with
    non-overlapping intervals; real-name 5-way 1-shot >= 90; fast VQA >= blind + 15."""
    if label is None:
        label = next((r.label for r in records if r.is_model), None)
    if label is None:
        return []
    find = _finder(records, label)
    checks: list[dict[str, Any]] = []

    def check(target: str, measured: str, met: bool) -> None:
        checks.append({"target": target, "measured": measured, "met": bool(met)})

    for layout in _ordered(r.layout for r in records):
        at = f" ({layout} layout)"
        captions = find("frozen", "shapes_captions", layout, split="test")
        if captions:
            check("Shapes captions right >= 95%" + at, captions.interval_text(), captions.accuracy >= 95)
        vqa, blind = find("frozen", "shapes_vqa", layout, shots=0), find("blind", "shapes_vqa", layout, shots=0)
        if vqa and blind:
            check("Shapes VQA 0-shot >= 40 and >= blind + 25" + at, f"{vqa.accuracy:.1f} vs blind {blind.accuracy:.1f}",
                  vqa.accuracy >= 40 and vqa.accuracy - blind.accuracy >= 25)
        cells = {"2-way 1-shot": (2, 1, 70), "5-way 1-shot": (5, 1, 45), "5-way 3-shot": (5, 3, 65)}
        # With and without the task-induction preamble, each on its own: either may be the better one for an LM.
        for task_induction in (True, False):
            where = at if task_induction else f" ({layout} layout, no task induction)"
            for name, (ways, inner, floor) in cells.items():
                cell = dict(ways=ways, inner_shots=inner, repeats=1, categories="seen", task_induction=task_induction)
                frozen = find("frozen", "shapes_open_ended", layout, **cell)
                if frozen:
                    check(f"Shapes open-ended {name} >= {floor}" + where, frozen.interval_text(),
                          frozen.accuracy >= floor)
                    oracle = (find("text_oracle_category", "shapes_open_ended", layout, **cell)
                              or find("text_oracle", "shapes_open_ended", layout, **cell))
                    if oracle:
                        check(f"Shapes open-ended {name} >= 0.8 x {oracle.row}" + where,
                              f"{frozen.accuracy:.1f} vs {oracle.accuracy:.1f}",
                              frozen.accuracy >= 0.8 * oracle.accuracy)
                blind = find("blind", "shapes_open_ended", layout, **cell)
                if blind and blind.chance is not None:
                    check(f"Shapes open-ended {name} blind within 8 of chance" + where,
                          f"{blind.accuracy:.1f} vs chance {blind.chance:.1f}", abs(blind.accuracy - blind.chance) <= 8)
            one, three = (
                find("frozen", "shapes_open_ended", layout, ways=5, inner_shots=k, repeats=1, categories="seen",
                     task_induction=task_induction)
                for k in (1, 3)
            )
            if one and three:
                check("Shapes open-ended 5-way: 3-shot above 1-shot, intervals apart" + where,
                      f"{three.interval_text()} vs {one.interval_text()}", three.ci_low > one.ci_high)
        real = find("frozen", "shapes_real_name", layout, ways=5, inner_shots=1, repeats=1, categories="seen")
        if real:
            check("Shapes real-name 5-way 1-shot >= 90" + at, real.interval_text(), real.accuracy >= 90)
        for fast in (r for r in records if r.task == "shapes_fast_vqa" and r.layout == layout and r.is_model
                     and r.label == label and not r.closed_ended):
            fast_blind = find("blind", "shapes_fast_vqa", layout, setting=fast.setting)
            if fast_blind:
                check(f"Shapes fast VQA {fast.setting} >= blind + 15" + at,
                      f"{fast.accuracy:.1f} vs blind {fast_blind.accuracy:.1f}", fast.accuracy - fast_blind.accuracy >= 15)
    return checks


# --------------------------------------------------------------------------- plots


def _plot(records: Sequence[EvalRecord], folder: Path) -> list[Path]:
    """Per task: accuracy against inner-shots (episode tasks, one panel per layout and ways) or shots (VQA, one
    panel per layout), with the 95% intervals as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for task in _ordered(r.task for r in records):
        mine = [r for r in records if r.task == task and r.repeats == 1]
        episodes = all(r.inner_shots is not None for r in mine)
        if not episodes and any(r.kind != "vqa" for r in mine):
            continue
        series: dict[tuple, list[EvalRecord]] = {}
        for r in mine:
            panel = (r.layout, r.ways if episodes else None)
            name = r.row + ("" if r.task_induction or not episodes else ", no task induction")
            name += "" if r.categories == "seen" else f", {r.categories} categories"
            series.setdefault((panel, name), []).append(r)
        if not series or max(len(v) for v in series.values()) < 2:
            continue
        panels = _ordered(panel for panel, _ in series)
        fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
        for ax, panel in zip(axes[0], panels):
            ticks = set()
            for (p, name), points in series.items():
                if p != panel:
                    continue
                points = sorted(points, key=lambda r: r.inner_shots if episodes else r.shots)
                xs = [r.inner_shots if episodes else r.shots for r in points]
                ys = [r.accuracy for r in points]
                errors = [[r.accuracy - r.ci_low for r in points], [r.ci_high - r.accuracy for r in points]]
                ax.errorbar(xs, ys, yerr=errors, marker="o", capsize=3, label=name)
                ticks.update(xs)
            ax.set_xticks(sorted(ticks))  # whole shot counts, also on a panel with one of them
            ax.set_xlabel("inner-shots" if episodes else "shots")
            ax.set_ylabel("accuracy (%)")
            ax.set_ylim(0, 100)
            layout, ways = panel
            ax.set_title(f"{TASK_TITLES.get(task, task)}, {layout}" + (f", {ways}-way" if ways is not None else ""),
                         fontsize=9)
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
    records = load_records(folder)
    if not records:
        raise FileNotFoundError(f"No results in {folder / RESULTS_FILE}: run `frozen-eval --output {folder} ...` first.")
    (folder / "report.md").write_text(render_markdown(records, title))
    report = {"title": title, "tables": build_tables(records), "checks": target_checks(records),
              "records": [r.to_dict() for r in records]}
    (folder / "report.json").write_text(json.dumps(report, indent=2, default=str))
    paths = {"markdown": folder / "report.md", "json": folder / "report.json"}
    for path in _plot(records, folder):
        paths[path.stem] = path
    return paths


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="the --output folder of frozen-eval (holds results.json)")
    parser.add_argument("--title", default="Few-shot evaluation")
    args = parser.parse_args(argv)
    for name, path in write_report(args.folder, args.title).items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
