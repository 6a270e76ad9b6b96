"""Evaluation tasks: each turns its data (the Shapes world, or the paper's released files) into few-shot prompts
built by `frozen_hf.eval.prompting`, and says how to score the answers.

Tasks (``TASKS``):

==================  ==========================================================  =====================
task                data                                                        metric
==================  ==========================================================  =====================
vqav2, okvqa        official questions/annotations JSON + COCO images           VQA accuracy
open_ended_mi       the paper's released files (``--data-dir``)                 open-ended exact match
real_name_mi        idem                                                        open-ended exact match
fast_vqa            idem                                                        VQA accuracy
guided_vqa          idem                                                        VQA accuracy
shapes_captions     Shapes ``captions`` (held-out split)                        caption right (every
                                                                                attribute), BLEU, CIDEr
shapes_vqa          Shapes ``vqa``; shots from its ``train`` split               VQA accuracy
shapes_open_ended   Shapes ``open_ended`` episodes (nonsense names)             open-ended exact match
shapes_real_name    Shapes ``real_name`` episodes (real names)                  open-ended exact match
shapes_fast_vqa     Shapes ``fast_vqa`` episodes                                VQA accuracy
==================  ==========================================================  =====================

Variants (``VARIANTS``): ``frozen`` (the model as it is), ``blind`` (every image replaced by a black image),
``text_oracle`` (Shapes only: every image replaced by its full true description, read by the model's own frozen
LM) and ``text_oracle_category`` (binding tasks on Shapes: every image replaced by its category only, "a star":
the ceiling of name binding).

Every few-shot task takes a prompt layout (``TaskSettings.layout``, see `frozen_hf.eval.prompting.LAYOUTS`):
``paper`` (the default, also for the paper's released files) or ``compact``. Shapes binding and Fast VQA
tasks take ``TaskSettings.categories``: ``seen`` (the caption shapes, as in the paper) or ``novel`` (never seen
in training, the harder variant).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from frozen_hf.eval.prompting import (
    LAYOUTS,
    Prompt,
    Segment,
    build_prompts,
    caption_prompts,
    fast_vqa_prompts,
    open_ended_prompts,
    binding_support_text,
    get_layout,
    task_induction_text,
    to_blind,
    to_text_oracle,
    vqa_prompts,
)

__all__ = [
    "TASKS",
    "REAL_TASKS",
    "SHAPES_TASKS",
    "VARIANTS",
    "ProtocolError",
    "TaskSettings",
    "TaskData",
    "build_task",
    "apply_variant",
]

REAL_TASKS = ("vqav2", "okvqa", "open_ended_mi", "real_name_mi", "fast_vqa", "guided_vqa")
SHAPES_TASKS = ("shapes_captions", "shapes_vqa", "shapes_open_ended", "shapes_real_name", "shapes_fast_vqa")
TASKS = REAL_TASKS + SHAPES_TASKS
VARIANTS = ("frozen", "blind", "text_oracle", "text_oracle_category")
CATEGORY_SETS = ("seen", "novel")

BINDING_TASKS = ("open_ended_mi", "real_name_mi", "shapes_open_ended", "shapes_real_name")
EPISODE_TASKS = BINDING_TASKS + ("fast_vqa", "guided_vqa", "shapes_fast_vqa")
VQA_TASKS = ("vqav2", "okvqa", "shapes_vqa")

# Answer lengths: names and VQA answers are one or two words; Shapes captions up to about 15 tokens.
MAX_NEW_TOKENS = {"caption": 24, "open_ended": 4, "vqa": 5}


class ProtocolError(ValueError):
    """Protocol settings the task cannot support, or a task that does not exist."""


@dataclass
class TaskSettings:
    """The paper's protocol options plus the sizes of a run.

    Attributes:
        shots: VQA shots (examples before the query).
        ways, inner_shots, repeats, task_induction: fast-binding episode settings.
        num_episodes: episodes (binding / fast VQA) or questions / images (VQA, captions) to evaluate.
        queries_per_episode: queries asked after one support set (they share its KV cache). Binding tasks on
            Shapes default to ``ways`` (every category asked once: the data set's query plus fresh images of
            the other categories); 1 keeps exactly the data set's episodes. VQA with shots: queries sharing one
            set of shots (default 1: fresh shots per question, as in the paper).
        split: Shapes split (``test`` by default; ``test_novel`` for held-out attribute combinations).
        seed: the Shapes world seed and the shot sampler's seed.
        image_size: Shapes image side (default: the processor's).
        data_dir: folder of a real benchmark's files.
        real_split, support_split: VQAv2/OKVQA query and shot splits.
        layout: the prompt layout (``paper`` or ``compact``; `frozen_hf.eval.prompting.LAYOUTS`).
        categories: Shapes binding / Fast VQA categories: ``seen`` in caption training, or ``novel``.
    """

    shots: int = 0
    ways: int = 2
    inner_shots: int = 1
    repeats: int = 1
    task_induction: bool = True
    num_episodes: int = 100
    queries_per_episode: int | None = None
    split: str = "test"
    seed: int = 0
    image_size: int | None = None
    data_dir: str | None = None
    real_split: str = "val2014"
    support_split: str = "train2014"
    layout: str = "paper"
    categories: str = "seen"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TaskData:
    """Prompts of a task (frozen variant) and how to score answers to them.

    ``kind`` is ``"open_ended"`` (naming), ``"vqa"`` or ``"caption"``; ``references`` are aligned with
    ``prompts``: a name, a list of human answers, or a caption check (the objects of the scene).
    """

    task: str
    kind: str
    prompts: list[Prompt]
    references: list[Any]
    settings: TaskSettings
    max_new_tokens: int
    setting_label: str
    extra_references: list[Any] = field(default_factory=list)

    @property
    def has_descriptions(self) -> bool:
        return all(d is not None for p in self.prompts for d in p.descriptions)


def _check_settings(task: str, s: TaskSettings) -> None:
    if task not in TASKS:
        raise ProtocolError(
            f"Unknown task {task!r}. Choose one of: {', '.join(TASKS)} (the shapes_* tasks run offline; the others "
            "read the paper's benchmark files from --data-dir)."
        )
    if s.layout not in LAYOUTS:
        raise ProtocolError(f"Unknown --layout {s.layout!r}; choose from {', '.join(LAYOUTS)}.")
    if s.categories not in CATEGORY_SETS:
        raise ProtocolError(f"Unknown --categories {s.categories!r}; choose from {', '.join(CATEGORY_SETS)}.")
    if s.categories != "seen" and task not in ("shapes_open_ended", "shapes_real_name", "shapes_fast_vqa"):
        raise ProtocolError(f"--categories novel applies to the Shapes binding and Fast VQA tasks, not {task}.")
    if s.num_episodes < 1:
        raise ProtocolError(f"--num-episodes must be >= 1, got {s.num_episodes}.")
    if s.shots < 0:
        raise ProtocolError(f"--shots must be >= 0, got {s.shots}.")
    if s.shots and task not in VQA_TASKS:
        raise ProtocolError(
            f"--shots applies to VQA tasks ({', '.join(VQA_TASKS)}); {task} takes --ways / --inner-shots instead."
        )
    if task in EPISODE_TASKS:
        if s.ways < 1 or s.inner_shots < 1 or s.repeats < 1:
            raise ProtocolError(
                f"{task} needs --ways >= 1, --inner-shots >= 1 and --repeats >= 1 (got ways={s.ways}, "
                f"inner_shots={s.inner_shots}, repeats={s.repeats}): every category needs a support image."
            )
    if s.queries_per_episode is not None and s.queries_per_episode < 1:
        raise ProtocolError(f"--queries-per-episode must be >= 1, got {s.queries_per_episode}.")
    if task in REAL_TASKS and not s.data_dir:
        raise ProtocolError(
            f"{task} reads the benchmark's released files: pass --data-dir <folder>. For VQAv2/OKVQA the folder "
            "holds the official questions/annotations JSON and the COCO images in <split>/; for the Frozen "
            "benchmarks, the extracted <task>.tar.gz from "
            "https://storage.googleapis.com/dm-few-shot-learning-benchmarks/<task>.tar.gz."
        )
    if task in ("fast_vqa", "guided_vqa", "shapes_fast_vqa") and s.queries_per_episode not in (None, 1):
        raise ProtocolError(f"{task} asks one question per episode; drop --queries-per-episode.")


def setting_label(task: str, s: TaskSettings) -> str:
    """A short column label for the report, e.g. ``"2-way 3-shot"`` or ``"0-shot"``."""
    if task in VQA_TASKS:
        return f"{s.shots}-shot"
    if task in EPISODE_TASKS:
        label = f"{s.ways}-way {s.inner_shots}-shot"
        if s.repeats > 1:
            label += f" x{s.repeats}"
        if not s.task_induction:
            label += " no-TI"
        if s.categories != "seen":
            label += f" {s.categories}"
        return label
    return s.split


def build_task(task: str, settings: TaskSettings) -> TaskData:
    """Builds the prompts (frozen variant) and references of `task` under `settings`."""
    _check_settings(task, settings)
    builders: dict[str, Callable[[TaskSettings], TaskData]] = {
        "shapes_captions": _shapes_captions,
        "shapes_vqa": _shapes_vqa,
        "shapes_open_ended": lambda s: _shapes_binding("shapes_open_ended", s),
        "shapes_real_name": lambda s: _shapes_binding("shapes_real_name", s),
        "shapes_fast_vqa": _shapes_fast_vqa,
        "vqav2": lambda s: _real_vqa("vqav2", s),
        "okvqa": lambda s: _real_vqa("okvqa", s),
        "open_ended_mi": lambda s: _real_episodes("open_ended_mi", s),
        "real_name_mi": lambda s: _real_episodes("real_name_mi", s),
        "fast_vqa": lambda s: _real_episodes("fast_vqa", s),
        "guided_vqa": lambda s: _real_episodes("guided_vqa", s),
    }
    return builders[task](settings)


def apply_variant(data: TaskData, variant: str) -> list[Prompt]:
    """The task's prompts for a model variant: ``frozen`` as built, ``blind`` or ``text_oracle``."""
    if variant == "frozen":
        return data.prompts
    if variant == "blind":
        return to_blind(data.prompts)
    if variant in ("text_oracle", "text_oracle_category"):
        if data.kind == "caption":
            raise ProtocolError(
                "The text oracle is not defined for captioning (the description would be the answer); run it on "
                "the VQA and fast-binding tasks."
            )
        if not data.has_descriptions:
            raise ProtocolError(
                f"The text oracle needs the true description of every image, which only the Shapes world has; "
                f"{data.task} has none. Use a shapes_* task."
            )
        if variant == "text_oracle":
            return to_text_oracle(data.prompts)
        if data.kind != "open_ended" or not all(c is not None for p in data.prompts for c in p.categories):
            raise ProtocolError(
                f"The category-only text oracle needs the category of every image, which the Shapes binding tasks "
                f"give; {data.task} has none."
            )
        return to_text_oracle(data.prompts, strength="category")
    raise ProtocolError(f"Unknown variant {variant!r}; choose from {', '.join(VARIANTS)}.")


# --------------------------------------------------------------------------- Shapes


def _shapes_image_size(s: TaskSettings) -> int:
    return s.image_size or 64


def _load_shapes(task: str, s: TaskSettings, num: int, split: str | None = None, **kwargs):
    from frozen_hf.data.shapes import load_shapes

    try:
        return load_shapes(
            task, split or s.split, num_samples=num, image_size=_shapes_image_size(s), seed=s.seed, **kwargs
        )
    except ValueError as err:
        raise ProtocolError(f"Shapes {task}: {err}") from err


def _shapes_captions(s: TaskSettings) -> TaskData:
    rows = _load_shapes("captions", s, s.num_episodes)
    prompts = caption_prompts(list(rows["image"]), descriptions=list(rows["description"]))
    return TaskData(
        "shapes_captions", "caption", prompts, list(rows["objects"]), s, MAX_NEW_TOKENS["caption"],
        setting_label("shapes_captions", s), extra_references=[[c, d] for c, d in zip(rows["caption"], rows["description"])],
    )


def _shapes_vqa(s: TaskSettings) -> TaskData:
    rows = _load_shapes("vqa", s, s.num_episodes)
    images, questions = list(rows["image"]), list(rows["question"])
    descriptions, answers = list(rows["description"]), list(rows["answers"])
    pool = None
    if s.shots:
        pool = _load_shapes("vqa", s, max(200, 4 * s.shots), split="train")
    prompts: list[Prompt] = []
    block = s.queries_per_episode or 1
    rng = np.random.default_rng([s.seed, 104729, s.shots])
    for start in range(0, len(images), block):
        stop = min(start + block, len(images))
        shots, shot_descriptions = [], []
        if pool is not None:
            for index in rng.choice(len(pool), size=s.shots, replace=False):
                row = pool[int(index)]
                shots.append((row["image"], row["question"], row["answer"]))
                shot_descriptions.append(row["description"])
        prompts += vqa_prompts(
            images[start:stop], questions[start:stop], shots=shots, shot_descriptions=shot_descriptions,
            query_descriptions=descriptions[start:stop], layout=s.layout,
        )
    return TaskData("shapes_vqa", "vqa", prompts, answers, s, MAX_NEW_TOKENS["vqa"], setting_label("shapes_vqa", s))


def _extra_queries(episode: dict, count: int, s: TaskSettings) -> list[tuple[Any, str, str]]:
    """`count` fresh query images for an episode: (image, description, category), asking the categories in turn
    after the data set's own query category."""
    from PIL import Image

    from frozen_hf.data.shapes import describe, render_scene, sample_scene

    categories = list(episode["categories"])
    first = categories.index(episode["query_category"])
    rng = np.random.default_rng([s.seed, 7919, int(episode["episode_id"]), s.ways, s.inner_shots, s.repeats])
    out = []
    for k in range(1, count + 1):
        category = categories[(first + k) % len(categories)]
        scene = sample_scene(rng, 1, shapes=(category,))
        out.append((Image.fromarray(render_scene(scene, _shapes_image_size(s))), describe(scene), category))
    return out


def _shapes_binding(task: str, s: TaskSettings) -> TaskData:
    from frozen_hf.data.shapes import category_phrase

    rows = _load_shapes(
        task.removeprefix("shapes_"), s, s.num_episodes,
        ways=s.ways, inner_shots=s.inner_shots, repeats=s.repeats, task_induction=s.task_induction,
        categories=s.categories,
    )
    queries_per_episode = s.queries_per_episode or s.ways
    prompts: list[Prompt] = []
    references: list[str] = []
    for episode in rows:
        name_of = dict(zip(episode["support_categories"], episode["support_names"]))
        images, descriptions, targets = [episode["query_image"]], [episode["query_description"]], [episode["answer"]]
        categories = [episode["query_category"]]
        for image, description, category in _extra_queries(episode, queries_per_episode - 1, s):
            images.append(image)
            descriptions.append(description)
            categories.append(category)
            targets.append(name_of[category])
        prompts += open_ended_prompts(
            list(episode["support_images"]), list(episode["support_names"]), images,
            task_induction=s.task_induction, names=list(episode["names"]),
            support_descriptions=list(episode["support_descriptions"]), query_descriptions=descriptions,
            support_categories=[category_phrase(c) for c in episode["support_categories"]],
            query_categories=[category_phrase(c) for c in categories],
            targets=targets, layout=s.layout,
        )
        references += targets
    return TaskData(task, "open_ended", prompts, references, s, MAX_NEW_TOKENS["open_ended"], setting_label(task, s))


def _shapes_fast_vqa(s: TaskSettings) -> TaskData:
    rows = _load_shapes(
        "fast_vqa", s, s.num_episodes,
        ways=s.ways, inner_shots=s.inner_shots, repeats=s.repeats, task_induction=s.task_induction,
        categories=s.categories,
    )
    prompts: list[Prompt] = []
    for episode in rows:
        prompts += fast_vqa_prompts(
            list(episode["support_images"]), list(episode["support_names"]), [episode["query_image"]],
            [episode["question"]], task_induction=s.task_induction, names=list(episode["names"]),
            support_descriptions=list(episode["support_descriptions"]),
            query_descriptions=[episode["query_description"]], targets=[episode["answers"]], layout=s.layout,
        )
    return TaskData(
        "shapes_fast_vqa", "vqa", prompts, list(rows["answers"]), s, MAX_NEW_TOKENS["vqa"],
        setting_label("shapes_fast_vqa", s),
    )


# --------------------------------------------------------------------------- real benchmarks


def _real_vqa(task: str, s: TaskSettings) -> TaskData:
    from frozen_hf.data.paper_benchmarks import load_vqa_benchmark

    root = Path(s.data_dir)
    queries = load_vqa_benchmark(task, root, s.real_split, max_questions=s.num_episodes)
    pool = load_vqa_benchmark(task, root, s.support_split) if s.shots else None
    if pool is not None and len(pool) < s.shots:
        raise ProtocolError(f"{task}: {s.shots} shots asked but the {s.support_split} pool holds {len(pool)} questions.")
    rng = np.random.default_rng([s.seed, 15485863, s.shots])
    block = s.queries_per_episode or 1
    prompts: list[Prompt] = []
    for start in range(0, len(queries), block):
        part = queries[start : start + block]
        shots = []
        if pool is not None:
            for index in rng.choice(len(pool), size=s.shots, replace=False):
                row = pool[int(index)]
                shots.append((row["image"], row["question"], row["multiple_choice_answer"]))
        prompts += vqa_prompts(part["image"], part["question"], shots=shots, layout=s.layout)
    return TaskData(task, "vqa", prompts, list(queries["answers"]), s, MAX_NEW_TOKENS["vqa"], setting_label(task, s))


_NAME_IN_CAPTION = re.compile(r"^\s*(?:this is an?|this is the|it is an?)\s+(.+?)[\s.!]*$", re.IGNORECASE)


def _name_from_caption(caption: str) -> str | None:
    match = _NAME_IN_CAPTION.match(caption)
    return match.group(1).strip() if match else None


def _real_episodes(task: str, s: TaskSettings) -> TaskData:
    from frozen_hf.data.paper_benchmarks import FEWSHOT_SETTINGS, load_fewshot_benchmark

    if (s.inner_shots, s.ways) not in FEWSHOT_SETTINGS[task]:
        released = ", ".join(f"--ways {w} --inner-shots {n}" for n, w in FEWSHOT_SETTINGS[task])
        raise ProtocolError(f"{task} was released only for: {released}; got --ways {s.ways} --inner-shots {s.inner_shots}.")
    rows = load_fewshot_benchmark(task, s.data_dir, shots=s.inner_shots, ways=s.ways, max_questions=s.num_episodes)
    is_vqa = task in ("fast_vqa", "guided_vqa")
    prompts: list[Prompt] = []
    references: list[Any] = []
    for row in rows:
        captions = [c.strip() for c in row["support_captions"]]
        names = [_name_from_caption(c) for c in captions]
        preamble = None
        if s.task_induction:
            if any(n is None for n in names):
                raise ProtocolError(
                    f"{task}: cannot read the category names from the support captions (e.g. {captions[0]!r}) for "
                    "task induction; run with --no-task-induction."
                )
            preamble = task_induction_text(list(dict.fromkeys(names)))
        layout = get_layout(s.layout)
        if layout.name != "paper":
            if any(n is None for n in names):
                raise ProtocolError(
                    f"{task}: the {layout.name} layout rewrites each support caption around its name, and the name "
                    f"cannot be read from {captions[0]!r}; use --layout paper."
                )
            captions = [binding_support_text(n, layout) for n in names]
        support = [Segment(c, image, joiner=layout.joiner) for c, image in zip(captions, row["support_images"])]
        question = row["question"].strip()
        # Naming tasks ask "What is this?" (or nothing): the paper's query ends in "This is a" for the name.
        query_text = layout.fast_vqa_query.format(question=question) if is_vqa else layout.binding_query
        candidates = list(dict.fromkeys(names)) if not is_vqa and all(names) else None
        prompts += build_prompts(
            support, [Segment(query_text, row["question_image"], joiner=layout.joiner)], preamble=preamble, repeats=s.repeats,
            targets=[row["answer"]], candidates=candidates,
        )
        references.append([row["answer"]] if is_vqa else row["answer"])
    kind = "vqa" if is_vqa else "open_ended"
    return TaskData(task, kind, prompts, references, s, MAX_NEW_TOKENS[kind], setting_label(task, s))
