"""The evaluation record: one scored cell (a model variant on a task under one setting), typed, with its 95% interval.

`frozen_hf.eval.suites` writes these to ``<output>/results.json``; the report (`frozen_hf.eval.report`), the model
card and the publisher (`frozen_hf.hub`) read them back with `EvalRecord.from_dict` and use the fields, never the
display strings. `layout` and `variant` are plain strings, so new prompt layouts and oracle variants need no change
here: a variant without a display name below shows as ``"<label>, <variant>"``.
"""

from __future__ import annotations

import json
import math
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

__all__ = [
    "DEFAULT_LAYOUT",
    "EvalRecord",
    "RESULTS_FILE",
    "VARIANT_NAMES",
    "load_records",
    "merge_records",
    "wilson_interval",
]

RESULTS_FILE = "results.json"
DEFAULT_LAYOUT = "paper"

# How each variant's rows are named in tables; "{label}" is the model's label (e.g. "Frozen", "Frozen, n=1").
# The text oracles read descriptions with the model's LM only, so their name carries no model label.
VARIANT_NAMES = {
    "frozen": "{label}",
    "blind": "{label}, blind",
    "text_oracle": "Text oracle (LM)",
    "text_oracle_category": "Text oracle, category only (LM)",
}

# The normal quantile of a two-sided 95% interval.
_Z95 = 1.959963984540054


def wilson_interval(successes: float, n: int, z: float = _Z95) -> tuple[float, float]:
    """The Wilson score interval (95% by default) of a proportion, as fractions in [0, 1].

    `successes` may be fractional (mean VQA accuracy times n): the interval is then that of a proportion with the
    same mean, which is conservative for scores in [0, 1]. With ``n == 0`` nothing is known: ``(0.0, 1.0)``.
    """
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"wilson_interval needs 0 <= successes <= n, got successes={successes}, n={n}.")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    z2 = z * z
    denominator = 1 + z2 / n
    center = (p + z2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denominator
    # At p = 0 or 1 the bound is exactly 0 or 1; rounding must not move it past (center - half is 5.6e-17 at p = 0,
    # which put the interval above the point and made error bars negative).
    low = 0.0 if successes == 0 else max(0.0, center - half)
    high = 1.0 if successes == n else min(1.0, center + half)
    return low, high


@dataclass
class EvalRecord:
    """One scored cell of an evaluation.

    Attributes:
        label: the model's row label (``--label``, e.g. ``"Frozen"`` or ``"Frozen, n=1"``).
        model: the model folder or Hub id that was evaluated.
        variant: ``frozen``, ``blind``, or a text-oracle variant (see `frozen_hf.eval.tasks.VARIANTS`).
        task: the task name (`frozen_hf.eval.tasks.TASKS`); kind: ``open_ended``, ``vqa`` or ``caption``.
        setting: the cell's column label within its task and layout (``"2-way 3-shot"``, ``"0-shot"``, ``"test"``).
        layout: the prompt layout (``"paper"``, the paper's, by default).
        shots, ways, inner_shots, repeats, task_induction, queries_per_episode, split: the protocol.
        categories: the Shapes binding categories, ``seen`` in caption training (as in the paper) or ``novel``.
        closed_ended: answers ranked among the episode's names instead of generated.
        metric: the metric's name; accuracy: the score in percent; n: the number of scored queries.
        ci_low, ci_high: the 95% Wilson interval of `accuracy`, in percent.
        chance: the expected score of a uniform guess among each query's candidates, in percent, where the prompts
            carry candidates (binding tasks); None where the task gives no way to measure it.
        seed: the data and shot-sampling seed; seconds: time spent answering.
        protocol: every task setting as run (`TaskSettings.to_dict()`).
        extra_metrics: further scores (BLEU, CIDEr for captions); engine: the answer engine's counters;
        examples: a few (prompt end, answer, reference) triples to read.
    """

    label: str
    variant: str
    task: str
    kind: str
    setting: str
    metric: str
    accuracy: float
    n: int
    ci_low: float
    ci_high: float
    model: str = ""
    layout: str = DEFAULT_LAYOUT
    shots: int = 0
    ways: int | None = None
    inner_shots: int | None = None
    repeats: int = 1
    task_induction: bool = True
    queries_per_episode: int | None = None
    categories: str = "seen"
    split: str = "test"
    closed_ended: bool = False
    chance: float | None = None
    seed: int = 0
    seconds: float = 0.0
    protocol: dict[str, Any] = field(default_factory=dict)
    extra_metrics: dict[str, float] = field(default_factory=dict)
    engine: dict[str, Any] = field(default_factory=dict)
    examples: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def measured(cls, *, successes: float, n: int, **values: Any) -> "EvalRecord":
        """A record whose accuracy and interval come from `successes` out of `n` (interval by `wilson_interval`)."""
        low, high = wilson_interval(successes, n)
        accuracy = 100 * successes / n if n else 0.0
        return cls(accuracy=accuracy, n=n, ci_low=100 * low, ci_high=100 * high, **values)

    # ------------------------------------------------------------------ naming

    @property
    def row(self) -> str:
        """The row name in tables (display only: readers select records by their fields)."""
        name = VARIANT_NAMES.get(self.variant, "{label}, " + self.variant).format(label=self.label)
        return name + (" (closed-ended)" if self.closed_ended else "")

    @property
    def row_key(self) -> tuple:
        """What makes two records the same row of a table."""
        return (self.label, self.variant, self.closed_ended)

    @property
    def key(self) -> tuple:
        """Records with the same key replace each other when merged (a rerun overwrites its earlier number)."""
        return (*self.row_key, self.task, self.layout, self.setting)

    @property
    def is_model(self) -> bool:
        """Whether the record measures the model as it is (not a blind or oracle baseline)."""
        return self.variant == "frozen"

    def interval_text(self) -> str:
        """``"62.0 [52.2, 71.0] (n=100)"``."""
        return f"{self.accuracy:.1f} [{self.ci_low:.1f}, {self.ci_high:.1f}] (n={self.n})"

    # ------------------------------------------------------------------ JSON

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "EvalRecord":
        """The record of `data` (as `to_dict` wrote it); a clear error when required fields are missing."""
        if not isinstance(data, Mapping):
            raise ValueError(f"An evaluation record must be a JSON object, got {type(data).__name__}: {data!r}")
        names = {f.name for f in fields(cls)}
        required = {f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING}
        missing = sorted(required - set(data))
        if missing:
            raise ValueError(
                f"Not an evaluation record of frozen_hf.eval (missing {', '.join(missing)}): {dict(data)!r}. "
                "Records from before the typed format cannot be read; rerun the evaluation (frozen-eval)."
            )
        return cls(**{k: v for k, v in data.items() if k in names})


def load_records(folder: str | Path) -> list[EvalRecord]:
    """The records in ``<folder>/results.json`` (empty if there is none yet)."""
    path = Path(folder) / RESULTS_FILE
    if not path.is_file():
        return []
    data = json.loads(path.read_text())
    if not isinstance(data, list):
        raise ValueError(f"{path} is not a results file written by frozen-eval (expected a JSON list).")
    return [EvalRecord.from_dict(r) for r in data]


def merge_records(folder: str | Path, records: Sequence[EvalRecord]) -> list[EvalRecord]:
    """Adds `records` to ``<folder>/results.json``, replacing records with the same key; returns them all."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    merged = {r.key: r for r in load_records(folder)}
    for record in records:
        merged[record.key] = record
    out = list(merged.values())
    (folder / RESULTS_FILE).write_text(json.dumps([r.to_dict() for r in out], indent=2, default=str))
    return out
