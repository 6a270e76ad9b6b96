"""How well the frozen LM alone binds a new name to a category word in other compact wordings of the open-ended
episodes: the category-only text oracle of the Shapes `validation` split, 2-way and 5-way 1-shot, with and without
task induction, 100 queries a cell (README, "Where the targets are lost"). Layouts are chosen here, never on `test`.

    python scripts/probe_layouts.py outputs/shapes-smollm2 [variant,...]   (default variant: text_oracle_category)
"""

import sys
from dataclasses import replace

from frozen_hf.eval.prompting import LAYOUTS
from frozen_hf.eval.suites import evaluate_task, load_frozen
from frozen_hf.eval.tasks import TaskSettings, build_task

compact = LAYOUTS["compact"]
# Candidates registered for this probe only; `compact` is the shipped one.
candidates = {
    "compact": compact,  # a star: dax
    "period": replace(compact, name="period", binding_support=": {name}."),  # a star: dax.
    "quote": replace(compact, name="quote", binding_support=': "{name}"', binding_query=': "'),  # a star: "dax"
    "arrow": replace(compact, name="arrow", binding_support=" -> {name}", binding_query=" ->"),  # a star -> dax
    "equals": replace(compact, name="equals", binding_support=" = {name}", binding_query=" ="),  # a star = dax
    "is-a": replace(compact, name="is-a", joiner=" ", binding_support="is a {name}.", binding_query="is a"),
}
LAYOUTS.update({name: layout for name, layout in candidates.items() if name not in LAYOUTS})

model, processor = load_frozen(sys.argv[1])
variants = sys.argv[2].split(",") if len(sys.argv) > 2 else ["text_oracle_category"]
for name in candidates:
    for task_induction in (True, False):
        for ways, episodes in ((2, 50), (5, 20)):
            settings = TaskSettings(split="validation", layout=name, ways=ways, inner_shots=1, num_episodes=episodes,
                                    task_induction=task_induction)
            data = build_task("shapes_open_ended", settings)
            for variant in variants:
                record = evaluate_task(model, processor, data, variant)
                print(f"{name:8} task induction {task_induction!s:5} {ways}-way 1-shot {variant:22} "
                      f"{record.interval_text()}", flush=True)
