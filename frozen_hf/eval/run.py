"""Few-shot evaluation of a Frozen model with the paper's protocol, on its benchmarks or their Shapes analogs.

One task:

    python -m frozen_hf.eval.run --model <folder or Hub id> --task shapes_open_ended --ways 5 --inner-shots 3 \\
        [--blind | --text-oracle] [--closed-ended] [--num-episodes 50] --output eval_out

A suite (several tasks and variants, then the report):

    python -m frozen_hf.eval.run --model <folder> --suite demo --output eval_out

Every run adds its records to ``<output>/results.json`` and rewrites ``report.md`` / ``report.json`` / plots
(`frozen_hf.eval.report`). Answers are greedy and open-ended (no answer list) unless ``--closed-ended`` ranks the
episode's names by likelihood; prompts that share task induction + support set reuse its KV cache
(``--no-kv-reuse`` turns that off; the answers are the same).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

from .tasks import (
    BINDING_TASKS,
    TASKS,
    VARIANTS,
    ProtocolError,
    TaskData,
    TaskSettings,
    apply_variant,
    build_task,
)

logger = logging.getLogger("evaluation")

__all__ = ["ModelError", "SUITES", "load_frozen", "evaluate_task", "run_suite", "main"]

ROW_NAMES = {"frozen": "{label}", "blind": "{label}, blind", "text_oracle": "Text oracle (LM)"}


class ModelError(ValueError):
    """The --model argument does not name a Frozen model."""


def _suite(name: str) -> list[tuple[str, dict[str, Any], tuple[str, ...]]]:
    binding = [
        ("shapes_open_ended", {"ways": ways, "inner_shots": shots, "num_episodes": 24 // ways * 2}, VARIANTS)
        for ways in (2, 5) for shots in (1, 3, 5)
    ]
    if name == "demo":
        # Sized for about 3 minutes on 2 CPU cores with SmolLM2-135M at 64 px (see the README).
        return [
            ("shapes_captions", {"num_episodes": 200}, ("frozen",)),
            ("shapes_captions", {"num_episodes": 40}, ("blind",)),
            ("shapes_vqa", {"shots": 0, "num_episodes": 60}, VARIANTS),
        ] + [(t, dict(s, num_episodes=s["num_episodes"] // 2), v) for t, s, v in binding]
    if name == "full":
        return (
            [("shapes_captions", {"num_episodes": 200}, ("frozen", "blind")),
             ("shapes_captions", {"num_episodes": 200, "split": "test_novel"}, ("frozen",))]
            + [("shapes_vqa", {"shots": k, "num_episodes": 200}, VARIANTS) for k in (0, 1, 4)]
            + [(t, dict(s, num_episodes=s["num_episodes"] * 4), v) for t, s, v in binding]
            + [("shapes_open_ended", {"ways": w, "inner_shots": 1, "task_induction": False, "num_episodes": 100 // w},
                VARIANTS) for w in (2, 5)]
            + [("shapes_real_name", {"ways": w, "inner_shots": k, "num_episodes": 100 // w}, VARIANTS)
               for w in (2, 5) for k in (1, 3, 5)]
            + [("shapes_fast_vqa", {"ways": 2, "inner_shots": k, "num_episodes": 100}, VARIANTS) for k in (1, 3, 5)]
        )
    if name == "ablation":
        # The columns of the ablation table: captioning, VQA and fast binding at 3 inner-shots.
        return [
            ("shapes_captions", {"num_episodes": 40}, ("frozen", "blind")),
            ("shapes_vqa", {"shots": 0, "num_episodes": 60}, ("frozen", "blind")),
            ("shapes_open_ended", {"ways": 2, "inner_shots": 3, "num_episodes": 12}, VARIANTS),
            ("shapes_open_ended", {"ways": 5, "inner_shots": 3, "num_episodes": 5}, VARIANTS),
        ]
    raise ProtocolError(f"Unknown suite {name!r}; choose from {', '.join(SUITES)}.")


SUITES = ("demo", "full", "ablation")


def load_frozen(model_name_or_path: str, device: str | None = None, dtype: str | None = None):
    """Loads a Frozen model and its processor from a folder or Hub id, with a clear error when it is not one."""
    import torch
    from transformers import AutoConfig

    from frozen_hf import FrozenForConditionalGeneration, FrozenProcessor

    path = Path(model_name_or_path)
    fix = (
        "Pass a folder written by the training program (python -m training.train <config>; its output folder holds "
        "config.json, the weights and the processor files) or a Hub id of a Frozen model."
    )
    if path.exists():
        config_file = path / "config.json"
        if not config_file.is_file():
            raise ModelError(f"{path} is not a Frozen model: it has no config.json. {fix}")
        model_type = json.loads(config_file.read_text()).get("model_type")
        if model_type != "frozen":
            raise ModelError(f"{path} holds a {model_type!r} model, not a Frozen model (model_type 'frozen'). {fix}")
    else:
        try:
            config = AutoConfig.from_pretrained(model_name_or_path, trust_remote_code=True)
        except Exception as err:  # noqa: BLE001 - any failure to find it means the same to the user
            raise ModelError(f"Cannot find a model at {model_name_or_path!r} (no such folder, and: {err}). {fix}") from err
        if config.model_type != "frozen":
            raise ModelError(f"{model_name_or_path} is a {config.model_type!r} model, not a Frozen model. {fix}")
    kwargs: dict[str, Any] = {}
    if dtype:
        kwargs["dtype"] = getattr(torch, dtype)
    model = FrozenForConditionalGeneration.from_pretrained(model_name_or_path, **kwargs)
    try:
        processor = FrozenProcessor.from_pretrained(model_name_or_path)
    except Exception as err:  # noqa: BLE001
        raise ModelError(
            f"{model_name_or_path} has a Frozen model but no processor files (tokenizer, preprocessor_config.json): "
            f"save the processor beside the model (processor.save_pretrained(folder)). ({err})"
        ) from err
    if device:
        model.to(device)
    return model.eval(), processor


def _score(data: TaskData, answers: list[str], metric_modules: dict) -> tuple[str, float, dict[str, float]]:
    """(metric name, score in %, extra metrics) for `answers` to `data`."""
    from frozen_hf.eval.metrics import load_metric

    def module(name: str):
        if name not in metric_modules:
            metric_modules[name] = load_metric(name)
        return metric_modules[name]

    if data.kind == "open_ended":
        result = module("open_ended_accuracy").compute(predictions=answers, references=data.references)
        return "exact match", 100 * result["accuracy"], {}
    if data.kind == "vqa":
        result = module("vqa_accuracy").compute(predictions=answers, references=data.references)
        return "VQA accuracy", 100 * result["vqa_accuracy"], {}
    from frozen_hf.data.shapes import caption_is_correct

    right = [caption_is_correct(a, objects) for a, objects in zip(answers, data.references)]
    extra = module("caption_metrics").compute(predictions=answers, references=data.extra_references)
    return "caption right", 100 * sum(right) / max(len(right), 1), {k: float(v) for k, v in extra.items()}


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
    metric_modules: dict | None = None,
) -> dict[str, Any]:
    """Runs one task in one variant and returns its result record (see `frozen_hf.eval.report`)."""
    from frozen_hf.eval.engine import EngineStats, generate_answers, rank_candidates

    if closed_ended and data.task not in BINDING_TASKS:
        raise ProtocolError(
            f"--closed-ended ranks an episode's names; it applies to {', '.join(BINDING_TASKS)}, not {data.task}."
        )
    prompts = apply_variant(data, variant)
    stats = EngineStats()
    start = time.perf_counter()
    if closed_ended:
        answers = rank_candidates(
            model, processor, prompts, batch_size=batch_size, reuse_prefix_cache=reuse_prefix_cache, stats=stats
        )
    else:
        answers = generate_answers(
            model, processor, prompts, max_new_tokens=data.max_new_tokens, batch_size=batch_size,
            reuse_prefix_cache=reuse_prefix_cache, stats=stats,
        )
    seconds = time.perf_counter() - start
    metric, score, extra = _score(data, answers, metric_modules if metric_modules is not None else {})
    row = ROW_NAMES[variant].format(label=label)
    if closed_ended:
        row += " (closed-ended)"
    setting = data.setting_label
    return {
        "row": row,
        "model": model_name,
        "variant": variant,
        "task": data.task,
        "kind": data.kind,
        "setting": setting,
        "settings": data.settings.to_dict(),
        "queries_per_episode": data.settings.queries_per_episode
        or (data.settings.ways if data.task in ("shapes_open_ended", "shapes_real_name") else None),
        "closed_ended": closed_ended,
        "metric": metric,
        "score": score,
        "extra_metrics": extra,
        "num_examples": len(answers),
        "seconds": seconds,
        "engine": {k: v for k, v in vars(stats).items() if k != "notes"},
        "examples": [
            {"prompt_end": p.text[-80:], "answer": a, "reference": r}
            for p, a, r in list(zip(prompts, answers, data.references))[:5]
        ],
    }


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
) -> list[dict[str, Any]]:
    """Runs a named suite, adding every record to ``<output>/results.json`` as it finishes; writes the report.

    `variants` keeps only those of the suite's variants (e.g. ``["frozen"]`` for an ablation model whose blind and
    text-oracle rows another run already gives); `scale` multiplies every episode count.
    """
    from .report import merge_results, write_report

    base = base or TaskSettings()
    records = []
    metric_modules: dict = {}
    if variants is not None:
        unknown = [v for v in variants if v not in VARIANTS]
        if unknown:
            raise ProtocolError(f"Unknown variants {unknown}; choose from {', '.join(VARIANTS)}.")
    for task, overrides, suite_variants in _suite(suite):
        overrides = dict(overrides)
        overrides["num_episodes"] = max(1, round(overrides.get("num_episodes", base.num_episodes) * scale))
        if variants is not None and not set(variants) & set(suite_variants):
            continue
        data = build_task(task, replace(base, **overrides))
        for variant in suite_variants:
            if variants is not None and variant not in variants:
                continue
            record = evaluate_task(
                model, processor, data, variant, batch_size=batch_size, label=label, model_name=model_name,
                metric_modules=metric_modules,
            )
            records.append(record)
            merge_results(output, [record])
            log(f"{record['row']:<24} {task:<18} {record['setting']:<14} {record['score']:6.1f}  "
                f"({record['num_examples']} in {record['seconds']:.1f}s)")
    write_report(output)
    return records


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="frozen-eval", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", required=True, help="Frozen model folder or Hub id")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--task", help=f"one of: {', '.join(TASKS)}")
    what.add_argument("--suite", help=f"a named set of tasks and variants: {', '.join(SUITES)}")
    variant = p.add_mutually_exclusive_group()
    variant.add_argument("--blind", action="store_true", help="images replaced by black images")
    variant.add_argument("--text-oracle", action="store_true", help="images replaced by their true description (Shapes)")
    p.add_argument("--shots", type=int, default=0, help="VQA: examples before the query")
    p.add_argument("--ways", type=int, default=2)
    p.add_argument("--inner-shots", type=int, default=1)
    p.add_argument("--repeats", type=int, default=1)
    ti = p.add_mutually_exclusive_group()
    ti.add_argument("--task-induction", dest="task_induction", action="store_true", default=True,
                    help="start binding prompts with 'Answer with dax or blicket.' (default)")
    ti.add_argument("--no-task-induction", dest="task_induction", action="store_false")
    p.add_argument("--closed-ended", action="store_true", help="rank the episode's names by likelihood instead of generating")
    p.add_argument("--num-episodes", type=int, default=100, help="episodes, questions or images to evaluate")
    p.add_argument("--queries-per-episode", type=int, default=None)
    p.add_argument("--split", default="test", help="Shapes split (test, test_novel for captions/vqa)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-size", type=int, default=None, help="Shapes image side (default: the processor's)")
    p.add_argument("--data-dir", default=None, help="folder of a real benchmark's files")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--no-kv-reuse", action="store_true", help="encode every prompt whole (same answers, slower)")
    p.add_argument("--label", default="Frozen", help="row name of this model in the report (e.g. 'Frozen, n=1')")
    p.add_argument("--scale", type=float, default=1.0, help="suite only: multiply every episode count")
    p.add_argument("--variants", default=None,
                   help="suite only: comma-separated subset of frozen,blind,text_oracle to run")
    p.add_argument("--output", default=None, help="folder for results.json, report.md, report.json and plots")
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", default=None, help="e.g. bfloat16 (default: as saved)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.task is not None and args.task not in TASKS:
            raise ProtocolError(f"Unknown task {args.task!r}. Choose one of: {', '.join(TASKS)}.")
        if args.suite is not None and args.suite not in SUITES:
            raise ProtocolError(f"Unknown suite {args.suite!r}; choose from {', '.join(SUITES)}.")
        model, processor = load_frozen(args.model, device=args.device, dtype=args.dtype)
        image_size = args.image_size or int(processor.image_processor.size.get("height", 64))
        settings = TaskSettings(
            shots=args.shots, ways=args.ways, inner_shots=args.inner_shots, repeats=args.repeats,
            task_induction=args.task_induction, num_episodes=args.num_episodes,
            queries_per_episode=args.queries_per_episode, split=args.split, seed=args.seed, image_size=image_size,
            data_dir=args.data_dir,
        )
        if args.suite:
            output = args.output or f"eval_{args.suite}"
            start = time.perf_counter()
            run_suite(model, processor, args.suite, output, label=args.label, model_name=args.model, base=settings,
                      batch_size=args.batch_size, scale=args.scale,
                      variants=args.variants.split(",") if args.variants else None)
            print(f"suite {args.suite}: {time.perf_counter() - start:.0f}s; report: {Path(output) / 'report.md'}")
            return 0
        variant = "blind" if args.blind else "text_oracle" if args.text_oracle else "frozen"
        data = build_task(args.task, settings)
        record = evaluate_task(
            model, processor, data, variant, closed_ended=args.closed_ended, batch_size=args.batch_size,
            reuse_prefix_cache=not args.no_kv_reuse, label=args.label, model_name=args.model,
        )
        print(f"{record['row']} | {args.task} {record['setting']} | {record['metric']}: {record['score']:.1f} "
              f"({record['num_examples']} examples, {record['seconds']:.1f}s)")
        if args.output:
            from .report import merge_results, write_report

            merge_results(args.output, [record])
            paths = write_report(args.output)
            print(f"report: {paths['markdown']}")
        return 0
    except (ProtocolError, ModelError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
