"""frozen-eval: few-shot evaluation of a Frozen model with the paper's protocol, on its benchmarks or their Shapes
analogs.

One task:

    frozen-eval --model <folder or Hub id> --task shapes_open_ended --ways 5 --inner-shots 3 \\
        [--blind | --text-oracle] [--closed-ended] [--layout paper] [--num-episodes 50] --output eval_out

A suite (several tasks and variants, then the report):

    frozen-eval --model <folder> --suite demo --output eval_out

(``python -m evaluation.run`` from a checkout is the same program.) Every run adds its records to
``<output>/results.json`` and rewrites ``report.md`` / ``report.json`` / plots (`frozen_hf.eval.report`). Answers are
greedy and open-ended (no answer list) unless ``--closed-ended`` ranks the episode's names by likelihood; prompts
that share task induction + support set reuse its KV cache (``--no-kv-reuse`` turns that off; the answers are the
same). The program reads top to bottom: parse -> load the model -> run -> report.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from frozen_hf.data.shapes import CAPTION_STYLES
from frozen_hf.eval.record import merge_records
from frozen_hf.eval.report import write_report
from frozen_hf.eval.suites import SUITES, ModelError, evaluate_task, load_frozen, run_suite
from frozen_hf.eval.tasks import TASKS, VARIANTS, ProtocolError, TaskSettings, build_task


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="frozen-eval", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", required=True, help="Frozen model folder or Hub id")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--task", help=f"one of: {', '.join(TASKS)}")
    what.add_argument("--suite", help=f"a named set of tasks and variants: {', '.join(SUITES)}")
    variant = p.add_mutually_exclusive_group()
    variant.add_argument("--variant", choices=VARIANTS, default=None, help="model variant (default: frozen)")
    variant.add_argument("--blind", action="store_const", const="blind", dest="variant",
                         help="images replaced by black images (= --variant blind)")
    variant.add_argument("--text-oracle", action="store_const", const="text_oracle", dest="variant",
                         help="images replaced by their true description, Shapes only (= --variant text_oracle)")
    p.add_argument("--layout", default=None, help="prompt layout of the few-shot tasks (default: the paper's)")
    p.add_argument("--shots", type=int, default=0, help="VQA: examples before the query")
    p.add_argument("--shot-selection", choices=("random", "retrieved"), default=None,
                   help="shapes_vqa / shapes_captions with --shots: the shots drawn at random or the most similar "
                        "train images (frozen_hf.retrieval), from one pool; the report labels the rows '<k>-shot random' "
                        "/ '<k>-shot retrieved'")
    p.add_argument("--caption-style", choices=CAPTION_STYLES, default=None,
                   help="shapes_captions with --shot-selection: the wording of the shots' captions (default: the "
                        "style the model was trained on, from its config; 'varied' when it is not recorded)")
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
                   help=f"suite only: comma-separated subset of {','.join(VARIANTS)} to run")
    p.add_argument("--output", default=None, help="folder for results.json, report.md, report.json and plots")
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", default=None, help="e.g. bfloat16 (default: as saved)")
    return p


def _settings(args: argparse.Namespace, image_size: int) -> TaskSettings:
    settings = TaskSettings(
        shots=args.shots, ways=args.ways, inner_shots=args.inner_shots, repeats=args.repeats,
        task_induction=args.task_induction, num_episodes=args.num_episodes,
        queries_per_episode=args.queries_per_episode, split=args.split, seed=args.seed, image_size=image_size,
        data_dir=args.data_dir,
    )
    # Only a given --layout is passed on, so that each task keeps its own default layout otherwise.
    return settings if args.layout is None else replace(settings, layout=args.layout)


def main(argv: Sequence[str] | None = None) -> int:
    # 1. parse
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.task is not None and args.task not in TASKS:
            raise ProtocolError(f"Unknown task {args.task!r}. Choose one of: {', '.join(TASKS)}.")
        if args.suite is not None and args.suite not in SUITES:
            raise ProtocolError(f"Unknown suite {args.suite!r}; choose from {', '.join(SUITES)}.")
        if args.suite is not None and args.shot_selection is not None:
            raise ProtocolError("--shot-selection applies to one --task (shapes_vqa or shapes_captions), not a suite.")
        if args.caption_style is not None and (args.task != "shapes_captions" or args.shot_selection is None):
            raise ProtocolError("--caption-style words the shots of --task shapes_captions with --shot-selection.")

        # 2. load the model
        model, processor = load_frozen(args.model, device=args.device, dtype=args.dtype)
        settings = _settings(args, args.image_size or int(processor.image_processor.size.get("height", 64)))

        # 3. run (a suite writes its records and report as it goes)
        if args.suite:
            output = args.output or f"eval_{args.suite}"
            start = time.perf_counter()
            run_suite(model, processor, args.suite, output, label=args.label, model_name=args.model, base=settings,
                      batch_size=args.batch_size, scale=args.scale,
                      variants=args.variants.split(",") if args.variants else None)
            print(f"suite {args.suite}: {time.perf_counter() - start:.0f}s; report: {Path(output) / 'report.md'}")
            return 0
        if args.shot_selection is None:
            data = build_task(args.task, settings)
        else:
            from frozen_hf.retrieval import shapes_task_with_shots

            data = shapes_task_with_shots(
                args.task, settings, model, processor, selection=args.shot_selection, caption_style=args.caption_style
            )
        record = evaluate_task(
            model, processor, data, args.variant or "frozen",
            closed_ended=args.closed_ended, batch_size=args.batch_size, reuse_prefix_cache=not args.no_kv_reuse,
            label=args.label, model_name=args.model,
        )
        print(f"{record.row} | {args.task} {record.layout} {record.setting} | {record.metric}: "
              f"{record.interval_text()}, {record.seconds:.1f}s")

        # 4. report
        if args.output:
            merge_records(args.output, [record])
            print(f"report: {write_report(args.output)['markdown']}")
        return 0
    except (ProtocolError, ModelError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
