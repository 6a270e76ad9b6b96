"""The validation-split probe behind the README's word-anchor table: a trained Frozen folder on the binding cells
that decide a design (open-ended compact 2-way 1-shot, 5-way 1-shot and 5-way 3-shot with blind, real names in the
adjacent and compact layouts, captions), 100 queries a cell (captions 50). Designs are chosen here, never on `test`.

    python scripts/probe_binding.py outputs/<run> [no-task-induction] [paper] [novel]
"""

import sys
from dataclasses import replace

from frozen_hf.eval.suites import evaluate_task, load_frozen
from frozen_hf.eval.tasks import TaskSettings, build_task

model, processor = load_frozen(sys.argv[1])
extra = sys.argv[2:]
base = TaskSettings(split="validation", layout="compact")
open_ended = [
    ("shapes_open_ended", dict(ways=2, inner_shots=1, num_episodes=50), ("frozen", "blind")),
    ("shapes_open_ended", dict(ways=5, inner_shots=1, num_episodes=20), ("frozen", "blind")),
    ("shapes_open_ended", dict(ways=5, inner_shots=3, num_episodes=20), ("frozen", "blind")),
]
cells = open_ended + [
    ("shapes_real_name", dict(ways=5, inner_shots=1, num_episodes=20, layout="adjacent"), ("frozen",)),
    ("shapes_real_name", dict(ways=5, inner_shots=1, num_episodes=20), ("frozen",)),
    ("shapes_captions", dict(num_episodes=50, layout="paper"), ("frozen",)),
]
if "no-task-induction" in extra:
    cells += [(task, dict(options, task_induction=False), variants) for task, options, variants in open_ended]
if "paper" in extra:
    cells += [(task, dict(options, layout="paper"), ("frozen",)) for task, options, _ in open_ended]
if "novel" in extra:
    cells += [("shapes_open_ended", dict(ways=5, inner_shots=1, num_episodes=20, categories="novel"),
               ("frozen", "blind"))]
for task, options, variants in cells:
    data = build_task(task, replace(base, **options))
    for variant in variants:
        record = evaluate_task(model, processor, data, variant)
        print(f"{task:18} {str(options):80} {variant:7} {record.interval_text()}", flush=True)
