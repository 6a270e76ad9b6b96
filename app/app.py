"""Frozen, in the browser: a Gradio page over `frozen_hf.app` (few-shot binding, free interleaved prompts, VQA and
captioning with retrieved examples). Only widgets live here; every answer comes from the library.

    python app/app.py [--model outputs/shapes-smollm2 | <folder> | <Hub id>] [--host 127.0.0.1] [--port 7860]

As a Hugging Face Space, the model comes from the FROZEN_MODEL variable (see app/README.md).
"""

from __future__ import annotations

import argparse
import html
import itertools
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

START = time.perf_counter()

try:
    import frozen_hf  # noqa: F401
except ImportError:  # a checkout (or a Space with the package copied beside app/) without an install
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import gradio as gr

from frozen_hf import app as lib

MAX_RETRIEVED = 8


class _Session:
    """The loaded checkpoint and its retrieval indexes, shared by all visitors (one model in memory)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.model = self.processor = None
        self.name = ""
        self.error = ""
        self.indexes: dict[str, object] = {}
        self.support: dict[str, object] = {}

    def load(self, name: str) -> str:
        with self.lock:
            try:
                model, processor = lib.load_app_model(name)
            except lib.AppInputError as err:
                self.error = str(err)
                return f"**Model not loaded.** {_plain(err)}"
            self.model, self.processor, self.name, self.error = model, processor, name, ""
            self.indexes.clear()
            return f"Loaded **{name}** ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters)."

    def require(self):
        if self.model is None:
            raise lib.AppInputError(self.error or "No model loaded: give a checkpoint above and press Load.")
        return self.model, self.processor

    def index(self, task: str):
        with self.lock:
            if task not in self.indexes:
                model, processor = self.require()
                self.indexes[task] = lib.shapes_support_index(model, processor, task, support=self.support.get(task))
            return self.indexes[task]


SESSION = _Session()
_REQUESTS = itertools.count(1)


def _plain(message) -> str:
    # Messages name the <image> marker; in Markdown it would be read as an HTML tag and vanish.
    return html.escape(str(message))


def _guarded(handler, outputs: int):
    """Runs `handler`; bad input (or any failure) becomes a readable message in the status line, never a traceback."""

    def run(*args, progress=gr.Progress()):
        # Numbered, so that two identical outcomes in a row still read as two answers.
        request = next(_REQUESTS)
        start = time.perf_counter()
        try:
            values = handler(*args, progress=progress)
        except lib.AppInputError as err:
            return (*[gr.skip()] * (outputs - 1), f"Request {request}: **Error:** {_plain(err)}")
        except Exception as err:  # noqa: BLE001 - the page shows what failed, not a traceback
            message = f"something went wrong: {type(err).__name__}: {err}"
            return (*[gr.skip()] * (outputs - 1), f"Request {request}: **Error:** {_plain(message)}")
        return (*values, f"Request {request}: done in {time.perf_counter() - start:.2f} s.")

    return run


def _paths(files) -> list[str]:
    if files is None:
        return []
    return [getattr(f, "name", f) for f in (files if isinstance(files, list) else [files])]


def _single(file):
    paths = _paths(file)
    return paths[0] if paths else None


def binding(support, names, query, task_induction, layout, progress=None):
    model, processor = SESSION.require()
    progress(0.2, desc="Reading the prompt")
    answer, prompt = lib.answer_binding(model, processor, _paths(support), names, _single(query),
                                        task_induction=task_induction, layout=layout)
    captions = [f"support: {n}" for n in lib.parse_names(names)] + ["query"]
    return answer, list(zip(prompt.images, captions)), prompt.text


def free(text, images, decoding, max_new_tokens, temperature, top_p, num_beams, seed, progress=None):
    model, processor = SESSION.require()
    progress(0.2, desc="Generating")
    settings = lib.GenerationSettings(int(max_new_tokens), decoding, float(temperature), float(top_p), int(num_beams),
                                      int(seed))
    return (lib.generate_interleaved(model, processor, text, _paths(images), settings),)


def _shown(rows, text_of):
    return [(row["image"], f"{text_of(row)} (similarity {row['score']:.3f})") for row in rows]


def _support_index(task: str, k, progress):
    """The task's retrieval index when examples are asked for (built on first use), else None."""
    if int(k) <= 0:
        return None
    progress(0.1, desc="Indexing the support set (first use only)")
    return SESSION.index(task)


def vqa(image, question, k, layout, progress=None):
    model, processor = SESSION.require()
    index = _support_index("vqa", k, progress)
    progress(0.5, desc="Answering")
    answer, prompt, rows = lib.answer_vqa(model, processor, _single(image), question, index=index, k=int(k),
                                          layout=layout)
    return answer, _shown(rows, lambda r: f"Q: {r['question']} A: {r['answer']}"), prompt.text


def caption(image, k, progress=None):
    model, processor = SESSION.require()
    index = _support_index("captions", k, progress)
    progress(0.5, desc="Captioning")
    text, prompt, rows = lib.caption_image(model, processor, _single(image), index=index, k=int(k))
    return text, _shown(rows, lambda r: r["caption"]), prompt.text


_EXAMPLES = Path(tempfile.mkdtemp(prefix="frozen-app-"))


def shapes_example(ways, seed):
    """Writes a Shapes episode's images as PNG files for the upload widgets, and its names."""
    try:
        episode = lib.shapes_binding_example(SESSION.processor, ways=int(ways), seed=int(seed))
    except lib.AppInputError as err:
        return gr.skip(), gr.skip(), gr.skip(), f"**Error:** {err}"
    folder = _EXAMPLES / f"{int(ways)}-{int(seed)}"
    folder.mkdir(exist_ok=True)
    support = []
    for i, image in enumerate(episode["support_images"]):
        support.append(str(folder / f"support-{i}.png"))
        image.save(support[-1])
    query = str(folder / "query.png")
    episode["query_image"].save(query)
    return (support, ", ".join(episode["names"]), query,
            f"Shapes episode {int(seed)}: support {', '.join(episode['categories'])}; the query is a "
            f"{episode['answer']}.")


def build(initial_status: str, initial_model: str) -> gr.Blocks:
    # No usage analytics: the page must start the same offline (no network) as on a Space.
    with gr.Blocks(title="Frozen: multimodal few-shot learning", analytics_enabled=False) as page:
        gr.Markdown(
            "# Frozen: a frozen language model that learns from images in its prompt\n"
            "Name a few pictures, show a new one, and the model answers with the name it just learned."
        )
        with gr.Row():
            checkpoint = gr.Textbox(initial_model, label="Checkpoint (folder or Hub id)", elem_id="checkpoint", scale=4)
            load = gr.Button("Load", elem_id="load", scale=1)
        model_status = gr.Markdown(initial_status, elem_id="model-status")
        load.click(SESSION.load, checkpoint, model_status)

        with gr.Tab("Few-shot binding", elem_id="tab-binding"):
            with gr.Row():
                ways = gr.Slider(2, 5, value=2, step=1, label="Categories in a Shapes example", elem_id="binding-ways")
                seed = gr.Number(0, precision=0, label="Example number", elem_id="binding-seed")
                example = gr.Button("Load a Shapes example", elem_id="binding-example")
            with gr.Row():
                support = gr.File(file_count="multiple", file_types=["image"], label="Support images",
                                  elem_id="binding-support")
                query = gr.File(file_types=["image"], label="Query image", elem_id="binding-query")
            names = gr.Textbox(label="Names of the support images, in order, comma-separated (e.g. dax, blicket)",
                               elem_id="binding-names")
            with gr.Row():
                task_induction = gr.Checkbox(True, label="Task induction (start with 'Answer with dax or blicket.')")
                layout = gr.Radio(list(lib.LAYOUTS), value=lib.DEFAULT_LAYOUT, elem_id="binding-layout",
                                  label="Prompt layout (compact: '<image>: dax'; paper: '<image> This is a dax.')")
            run = gr.Button("Answer", variant="primary", elem_id="binding-run")
            answer = gr.Textbox(label="Answer", interactive=False, elem_id="binding-answer")
            status = gr.Markdown(elem_id="binding-status")
            shown = gr.Gallery(label="The prompt's images", columns=6, height=260, fit_columns=False,
                               elem_id="binding-gallery")
            prompt = gr.Textbox(label="Prompt", lines=4, interactive=False, elem_id="binding-prompt")
            example.click(shapes_example, [ways, seed], [support, names, query, status])
            run.click(_guarded(binding, 4), [support, names, query, task_induction, layout],
                      [answer, shown, prompt, status])

        with gr.Tab("Free prompt", elem_id="tab-free"):
            text = gr.Textbox(label="Prompt: <image> marks where each image goes, in upload order", lines=4,
                              value="<image> This is a", elem_id="free-text")
            images = gr.File(file_count="multiple", file_types=["image"], label="Images", elem_id="free-images")
            with gr.Row():
                decoding = gr.Radio(["greedy", "sample", "beam"], value="greedy", label="Decoding", elem_id="free-decoding")
                max_new = gr.Slider(1, 128, value=20, step=1, label="Max new tokens", elem_id="free-max-new")
            with gr.Row():
                temperature = gr.Slider(0.05, 2.0, value=1.0, label="Temperature (sample)")
                top_p = gr.Slider(0.05, 1.0, value=0.9, label="Top-p (sample)")
                beams = gr.Slider(1, 8, value=3, step=1, label="Beams (beam)")
                gen_seed = gr.Number(0, precision=0, label="Seed")
            free_run = gr.Button("Generate", variant="primary", elem_id="free-run")
            free_out = gr.Textbox(label="Continuation", interactive=False, elem_id="free-answer")
            free_status = gr.Markdown(elem_id="free-status")
            free_run.click(_guarded(free, 2), [text, images, decoding, max_new, temperature, top_p, beams, gen_seed],
                           [free_out, free_status])

        for task, title in (("vqa", "VQA"), ("caption", "Captioning")):
            with gr.Tab(title, elem_id=f"tab-{task}"):
                image = gr.File(file_types=["image"], label="Image", elem_id=f"{task}-image")
                inputs = [image]
                if task == "vqa":
                    inputs.append(gr.Textbox(label="Question", value="What colour is the shape?",
                                             elem_id="vqa-question"))
                k = gr.Slider(0, MAX_RETRIEVED, value=0, step=1, elem_id=f"{task}-k",
                              label="Retrieved examples (the most similar Shapes training images, as shots; 0: none)")
                inputs.append(k)
                if task == "vqa":
                    inputs.append(gr.Radio(list(lib.LAYOUTS), value=lib.DEFAULT_LAYOUT, label="Prompt layout",
                                           elem_id="vqa-layout"))
                go = gr.Button("Answer" if task == "vqa" else "Caption", variant="primary", elem_id=f"{task}-run")
                out = gr.Textbox(label="Answer" if task == "vqa" else "Caption", interactive=False,
                                 elem_id=f"{task}-answer")
                task_status = gr.Markdown(elem_id=f"{task}-status")
                retrieved = gr.Gallery(label="Retrieved examples, in prompt order (nearest last)", height=300,
                                       columns=MAX_RETRIEVED, fit_columns=False, elem_id=f"{task}-retrieved")
                task_prompt = gr.Textbox(label="Prompt", lines=4, interactive=False, elem_id=f"{task}-prompt")
                go.click(_guarded(vqa if task == "vqa" else caption, 4), inputs,
                         [out, retrieved, task_prompt, task_status])
    return page


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=os.environ.get("FROZEN_MODEL", lib.DEFAULT_MODEL),
                        help="Frozen folder or Hub id (default: $FROZEN_MODEL, else the demo's trained output)")
    parser.add_argument("--vqa-support", default=None,
                        help="a data set folder (datasets.save_to_disk) with image/question/answer to retrieve from")
    parser.add_argument("--caption-support", default=None,
                        help="a data set folder with image/caption to retrieve from")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    args = parser.parse_args(argv)
    if args.vqa_support or args.caption_support:
        from datasets import load_from_disk

        for task, folder in (("vqa", args.vqa_support), ("captions", args.caption_support)):
            if folder:
                SESSION.support[task] = load_from_disk(folder)
    status = SESSION.load(args.model)
    page = build(status, args.model)
    page.queue(default_concurrency_limit=1)
    page.launch(server_name=args.host, server_port=args.port, prevent_thread_lock=True, quiet=True)
    # The line the browser test and the README's start-time measurement wait for.
    print(f"frozen-app ready on http://{args.host}:{args.port} in {time.perf_counter() - START:.1f} s: {status}",
          flush=True)
    page.block_thread()


if __name__ == "__main__":
    main()
