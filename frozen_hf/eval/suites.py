"""Running evaluations: load a Frozen model for evaluation, score one task in one variant as an `EvalRecord`, and
run the named suites (demo, full, ablation) into ``<output>/results.json`` and its report.

Scoring calls the metric functions of `frozen_hf.eval.metrics` directly (the `evaluate` modules under
``metric_modules/`` wrap the same functions for publishing).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

from .metrics import caption_scores, mean_vqa_accuracy, open_ended_accuracy
from .record import DEFAULT_LAYOUT, EvalRecord, merge_records
from .tasks import BINDING_TASKS, VARIANTS, ProtocolError, TaskData, TaskSettings, apply_variant, build_task

__all__ = ["ModelError", "SUITES", "chance_level", "evaluate_task", "load_frozen", "run_suite", "suite_cells"]

SUITES = ("demo", "full", "ablation")
# The category-only oracle names a category, so it applies to naming tasks; VQA cells run the other variants.
VQA_VARIANTS = tuple(v for v in VARIANTS if v != "text_oracle_category")


class ModelError(ValueError):
    """The --model argument does not name a Frozen model."""


def suite_cells(name: str) -> list[tuple[str, dict[str, Any], tuple[str, ...]]]:
    """The (task, setting overrides, variants) cells of a named suite, in the order they run."""
    binding = [
        ("shapes_open_ended", {"ways": ways, "inner_shots": shots, "num_episodes": 24 // ways * 2}, VARIANTS)
        for ways in (2, 5) for shots in (1, 3, 5)
    ]
    if name == "demo":
        # 100 queries a cell (a 2-way episode asks 2, a 5-way one 5). The compact layout gets every cell and
        # variant; the paper's layout and the adjacent one the cells that show what the layout changes.
        everything, cheap = VARIANTS, ("frozen", "blind", "text_oracle_category")

        def binding(task: str, ways: int, shots: int, layout: str, variants, **extra):
            return (task, {"ways": ways, "inner_shots": shots, "num_episodes": 100 // ways, "layout": layout,
                           **extra}, variants)

        return [
            ("shapes_captions", {"num_episodes": 200, "layout": "paper"}, ("frozen",)),
            ("shapes_captions", {"num_episodes": 40, "layout": "paper"}, ("blind",)),
            *[("shapes_vqa", {"shots": 0, "num_episodes": 100, "layout": layout}, VQA_VARIANTS)
              for layout in ("compact", "paper")],
            *[binding("shapes_open_ended", w, k, "compact", everything) for w, k in ((2, 1), (5, 1), (5, 3))],
            # Without the "Answer with ..." preamble the frozen LM copies a name less often at 1 shot and more often
            # at 3: both are reported.
            *[binding("shapes_open_ended", w, k, "compact", cheap, task_induction=False)
              for w, k in ((2, 1), (5, 1), (5, 3))],
            binding("shapes_real_name", 5, 1, "compact", everything),
            binding("shapes_open_ended", 5, 1, "compact", cheap, categories="novel"),
            ("shapes_fast_vqa", {"ways": 2, "inner_shots": 1, "num_episodes": 100, "layout": "compact"},
             VQA_VARIANTS),
            *[binding("shapes_open_ended", w, k, "paper", cheap) for w, k in ((2, 1), (5, 1), (5, 3))],
            binding("shapes_real_name", 5, 1, "adjacent", ("frozen", "text_oracle_category")),
            binding("shapes_open_ended", 5, 1, "adjacent", ("frozen", "text_oracle_category")),
        ]
    if name == "full":
        return (
            [("shapes_captions", {"num_episodes": 200}, ("frozen", "blind")),
             ("shapes_captions", {"num_episodes": 200, "split": "test_novel"}, ("frozen",))]
            + [("shapes_vqa", {"shots": k, "num_episodes": 200}, VQA_VARIANTS) for k in (0, 1, 4)]
            + [(t, dict(s, num_episodes=s["num_episodes"] * 4), v) for t, s, v in binding]
            + [("shapes_open_ended", {"ways": w, "inner_shots": 1, "task_induction": False, "num_episodes": 100 // w},
                VARIANTS) for w in (2, 5)]
            + [("shapes_real_name", {"ways": w, "inner_shots": k, "num_episodes": 100 // w}, VARIANTS)
               for w in (2, 5) for k in (1, 3, 5)]
            + [("shapes_fast_vqa", {"ways": 2, "inner_shots": k, "num_episodes": 100}, VQA_VARIANTS)
               for k in (1, 3, 5)]
        )
    if name == "ablation":
        # The columns of the ablation table, 100 queries each: captioning, and the demo suite's cells that show what
        # the model reads (real names in the adjacent layout, fast VQA) and what it does not (open-ended binding,
        # VQA 0-shot), in the layouts the demo suite reports them in.
        return [
            ("shapes_captions", {"num_episodes": 100, "layout": "paper"}, ("frozen", "blind")),
            ("shapes_real_name", {"ways": 5, "inner_shots": 1, "num_episodes": 20, "layout": "adjacent"},
             ("frozen", "blind", "text_oracle_category")),
            ("shapes_open_ended", {"ways": 5, "inner_shots": 3, "num_episodes": 20, "layout": "compact"}, VARIANTS),
            ("shapes_fast_vqa", {"ways": 2, "inner_shots": 1, "num_episodes": 100, "layout": "compact"},
             VQA_VARIANTS),
            ("shapes_vqa", {"shots": 0, "num_episodes": 100, "layout": "compact"}, VQA_VARIANTS),
        ]
    raise ProtocolError(f"Unknown suite {name!r}; choose from {', '.join(SUITES)}.")


def load_frozen(model_name_or_path: str, device: str | None = None, dtype: str | None = None):
    """Loads a Frozen model (eval mode) and its processor from a folder or Hub id, with a clear error when it is not
    one."""
    import torch
    from transformers import AutoConfig

    from frozen_hf import FrozenForConditionalGeneration, FrozenProcessor
    from frozen_hf.hub.folder import check_frozen_folder

    if Path(model_name_or_path).exists():
        check_frozen_folder(model_name_or_path, error=ModelError)
    else:
        fix = "Pass a folder written by the training program (frozen-train <config>) or a Hub id of a Frozen model."
        try:
            config = AutoConfig.from_pretrained(model_name_or_path, trust_remote_code=True)
        except Exception as err:  # noqa: BLE001 - any failure to find it means the same to the user
            raise ModelError(f"Cannot find a model at {model_name_or_path!r} (no such folder, and: {err}). {fix}") from err
        if config.model_type != "frozen":
            raise ModelError(f"{model_name_or_path} is a {config.model_type!r} model, not a Frozen model. {fix}")
    kwargs: dict[str, Any] = {"dtype": getattr(torch, dtype)} if dtype else {}
    model = FrozenForConditionalGeneration.from_pretrained(model_name_or_path, **kwargs)
    processor = FrozenProcessor.from_pretrained(model_name_or_path)
    if device:
        model.to(device)
    return model.eval(), processor


def _score(data: TaskData, answers: list[str]) -> tuple[str, list[float], dict[str, float]]:
    """(metric name, per-query scores in [0, 1], extra corpus metrics) for `answers` to `data`."""
    if data.kind == "open_ended":
        return "exact match", open_ended_accuracy(answers, data.references)["per_example"], {}
    if data.kind == "vqa":
        return "VQA accuracy", mean_vqa_accuracy(answers, data.references)["per_question"], {}
    from frozen_hf.data.shapes import caption_is_correct

    right = [float(caption_is_correct(a, objects)) for a, objects in zip(answers, data.references)]
    return "caption right", right, caption_scores(answers, data.extra_references)


def chance_level(prompts: Sequence[Any]) -> float | None:
    """The expected accuracy (%) of guessing uniformly among each prompt's candidates, measured on the prompts as
    built (so repeated or missing names count as they are); None when some prompt has no candidates."""
    hits = []
    for prompt in prompts:
        candidates = list(prompt.candidates or [])
        if not candidates or prompt.target is None:
            return None
        hits.append(candidates.count(prompt.target) / len(candidates))
    return 100 * sum(hits) / len(hits) if hits else None


def evaluate_task(
    model,
    processor,
    data: TaskData,
    variant: str = "frozen",
    *,
    closed_ended: bool = False,
    batch_size: int = 16,
    reuse_prefix_cache: bool = True,
    label: str = "Frozen",
    model_name: str = "",
) -> EvalRecord:
    """Runs one task in one variant and returns its record."""
    from .engine import EngineStats, generate_answers
    from .scoring import rank_candidates

    if closed_ended and data.task not in BINDING_TASKS:
        raise ProtocolError(
            f"--closed-ended ranks an episode's names; it applies to {', '.join(BINDING_TASKS)}, not {data.task}."
        )
    prompts = apply_variant(data, variant)
    stats = EngineStats()
    start = time.perf_counter()
    engine_options = dict(batch_size=batch_size, reuse_prefix_cache=reuse_prefix_cache, stats=stats)
    if closed_ended:
        answers = rank_candidates(model, processor, prompts, **engine_options)
    else:
        answers = generate_answers(model, processor, prompts, max_new_tokens=data.max_new_tokens, **engine_options)
    seconds = time.perf_counter() - start
    metric, scores, extra = _score(data, answers)
    s = data.settings
    episodes = data.task in BINDING_TASKS or data.task.endswith("fast_vqa")
    return EvalRecord.measured(
        successes=sum(scores), n=len(scores),
        label=label, model=model_name, variant=variant, task=data.task, kind=data.kind, setting=data.setting_label,
        metric=metric, layout=getattr(s, "layout", DEFAULT_LAYOUT), shots=s.shots,
        ways=s.ways if episodes else None, inner_shots=s.inner_shots if episodes else None, repeats=s.repeats,
        task_induction=s.task_induction,
        queries_per_episode=s.queries_per_episode or (s.ways if data.task in BINDING_TASKS else None),
        categories=getattr(s, "categories", "seen"), split=s.split, closed_ended=closed_ended, chance=chance_level(prompts), seed=s.seed, seconds=seconds,
        protocol=s.to_dict(), extra_metrics={k: float(v) for k, v in extra.items()},
        engine={k: v for k, v in vars(stats).items() if k != "notes"},
        examples=[
            {"prompt_end": p.text[-80:], "answer": a, "reference": r}
            for p, a, r in list(zip(prompts, answers, data.references))[:5]
        ],
    )


def run_suite(
    model,
    processor,
    suite: str,
    output: str | Path,
    *,
    label: str = "Frozen",
    model_name: str = "",
    base: TaskSettings | None = None,
    batch_size: int = 16,
    scale: float = 1.0,
    variants: Sequence[str] | None = None,
    log=print,
) -> list[EvalRecord]:
    """Runs a named suite, adding every record to ``<output>/results.json`` as it finishes; writes the report.

    `variants` keeps only those of the suite's variants (e.g. ``["frozen"]`` for an ablation model whose blind and
    text-oracle rows another run already gives); `scale` multiplies every episode count. Every cell uses `base`'s
    seed, and `base`'s layout unless the cell names its own (the demo suite's cells do).
    """
    from .report import write_report

    base = base or TaskSettings()
    if variants is not None:
        unknown = [v for v in variants if v not in VARIANTS]
        if unknown:
            raise ProtocolError(f"Unknown variants {unknown}; choose from {', '.join(VARIANTS)}.")
    records = []
    for task, overrides, suite_variants in suite_cells(suite):
        overrides = dict(overrides)
        overrides["num_episodes"] = max(1, round(overrides.get("num_episodes", base.num_episodes) * scale))
        chosen = [v for v in suite_variants if variants is None or v in variants]
        if not chosen:
            continue
        data = build_task(task, replace(base, **overrides))
        for variant in chosen:
            record = evaluate_task(
                model, processor, data, variant, batch_size=batch_size, label=label, model_name=model_name
            )
            records.append(record)
            merge_records(output, [record])
            log(f"{record.row:<24} {task:<18} {record.layout:<8} {record.setting:<14} {record.interval_text()}  "
                f"({record.seconds:.1f}s)")
    write_report(output)
    return records
