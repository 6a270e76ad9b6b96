"""Model cards for published Frozen models: the README.md of a Hub repo, rendered from a training output folder
and an evaluation report.

The card has YAML metadata the Hub validates (`library_name`, `pipeline_tag`, `base_model`, `datasets`, `tags`,
`license`, `model-index` with the evaluation results) and a body rendered from
`frozen_hf/hub/templates/frozen_model_card.md`: what the model is, how to load it with stock transformers, the training
recipe and loss curve, the results table (with 95% intervals) and plots, limitations and license notes. What the card
is made from is read by `frozen_hf.hub.card_data`.

Cards are deterministic (no dates, no absolute paths): publishing the same folder twice gives byte-identical
README.md files, so the second push changes nothing. Only the model's own rows (variant ``frozen`` under the model's
label, "Frozen" by default) go into `model-index` (baselines and ablations are other models); the card's table shows
them all.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .card_data import (
    EvalRow,
    collect_card_assets,
    eval_rows,
    format_value,
    image_size,
    language_model_reference,
    parameter_summary,
    recipe,
    training_datasets,
)
from .folder import check_frozen_folder

__all__ = ["build_model_card", "default_template_path", "eval_results_for_model_index", "usage_snippet"]

GEMMA_TERMS_URL = "https://ai.google.dev/gemma/terms"


def _task_type(task: str) -> str:
    name = task.lower()
    if "vqa" in name or "question" in name:
        return "visual-question-answering"
    if "caption" in name:
        return "image-to-text"
    return "image-text-to-text"


def eval_results_for_model_index(rows: Sequence[EvalRow], label: str = "Frozen") -> list[EvalResult]:
    """`model-index` entries for the model's own rows (baselines and ablations left out), values exactly as
    reported."""
    results = []
    for row in rows:
        if not row.is_model(label):
            continue
        metric_name = f"{row.metric} ({row.settings})" if row.settings else row.metric
        results.append(
            EvalResult(
                task_type=_task_type(row.task),
                task_name=row.task,
                dataset_type=row.dataset,
                dataset_name=row.dataset_name,
                dataset_config=row.settings or None,
                dataset_split=row.split,
                metric_type=row.metric,
                metric_name=metric_name,
                metric_value=row.value,
            )
        )
    return results



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
    width = config.vision_feature_dim
    return f"{name}, pooled features of width {width}" if width else name


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
    label: str = "Frozen",
) -> ModelCard:
    """The model card (README.md) for a Frozen training output folder.

    Args:
        output_dir: the training program's output folder (model, processor, training log, loss curve PNG).
        eval_report: the evaluation report (frozen-eval's output folder or results.json, or a JSON path or dict in
            the format of `frozen_hf.hub.card_data`); by default one found in `output_dir` (`eval_report.json`,
            `evaluation/`, `eval/`), else the card has no results.
        repo_id: the Hub repo the card is for; the usage snippet loads it.
        trained_parts_only: whether the repo holds only the trained weights (default: what the folder's config says).
        language_model_repo_id / language_model_revision: the LM's Hub id and commit, where the folder's config does
            not name them (e.g. a model trained from a bundled LM that was then pushed to the Hub).
        license: license id for the card when the LM does not impose one (Gemma does).
        datasets: Hub ids or names of the training data (default: read from the training log).
        template_path: a Jinja template to use instead of `frozen_hf/hub/templates/frozen_model_card.md`.
        label: the evaluation label of this model (frozen-eval's `--label`): its frozen rows go to `model-index`.
    """
    output_dir = Path(output_dir)
    check_frozen_folder(output_dir, complete=False)
    from ..configuration_frozen import FrozenConfig

    config = FrozenConfig.from_pretrained(output_dir)
    assets = collect_card_assets(output_dir, eval_report)
    if trained_parts_only is None:
        trained_parts_only = bool(config.trained_parts_only)

    hub_id, note = language_model_reference(config)
    if language_model_repo_id:
        hub_id, note = language_model_repo_id, None
    # Training's provenance (FrozenConfig fields): None on models saved outside the training program.
    modification = config.language_model_modification
    if modification:
        what = {"lora": "fine-tuned with LoRA adapters (merged)", "scratch": "re-initialised and trained from scratch"}
        note = " ".join(filter(None, [note, (
            f"**Ablation:** this model's language model is not frozen: it was {what.get(modification, modification)} "
            "during training, so its weights differ from the base model's."
        )]))
    revision = language_model_revision or (config.language_model_revision if hub_id and not note else None)

    rows = eval_rows(assets.eval_report) if assets.eval_report is not None else []
    datasets = list(datasets) if datasets is not None else training_datasets(assets.training_log, config)
    license_metadata, license_text = _license(config, hub_id, license)
    model_name = repo_id.split("/")[-1]
    card_data = ModelCardData(
        library_name="transformers",
        pipeline_tag="image-text-to-text",
        base_model=hub_id,
        datasets=datasets or None,
        tags=["frozen", "custom_code", "multimodal", "few-shot", "image-text-to-text", "vision-language"],
        model_name=model_name,
        eval_results=eval_results_for_model_index(rows, label) or None,
        **license_metadata,
    )
    if template_path is None:
        template_path = default_template_path()
    training_recipe = recipe(assets.training_log)
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
        parameter_summary=parameter_summary(output_dir),
        trained_parts_only=trained_parts_only,
        datasets=datasets,
        image_size=image_size(output_dir),
        loss_curve=assets.loss_curve[0] if assets.loss_curve else None,
        recipe=training_recipe,
        word_anchor_weight=dict(training_recipe).get("word_anchor_weight"),
        results=[
            {"row": r.row, "task": r.task, "dataset": r.dataset_name, "settings": r.settings or "-", "metric": r.metric,
             "value": " ".join(filter(None, [format_value(r.value), r.interval]))}
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
