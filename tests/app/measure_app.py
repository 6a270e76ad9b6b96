"""Measures (does not assert) the app's start time and few-shot request times, through the browser:

    python -m tests.app.measure_app --model outputs/shapes-smollm2 [--threads 2] [--screenshots docs]

Start: launching ``app/app.py`` until its ready line (model loaded, server listening). Request: clicking Answer on
a Shapes binding example until the answer is on the page (browser wall time; the app's own time in brackets).
The first request of a process is reported apart: it warms up the engine.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

from tests.app.driver import chromium, fill, open_page, open_tab, run, running_app, upload, value


def _timed_binding(page, ways: int, seed: int) -> dict:
    fill(page, "binding-ways", ways)
    fill(page, "binding-seed", seed)
    page.click("#binding-example")
    page.wait_for_function(
        f"() => document.querySelector('#binding-names textarea').value.split(',').length == {ways}"
    )
    start = time.perf_counter()
    status = run(page, "binding")
    return {"ways": ways, "seed": seed, "browser_seconds": round(time.perf_counter() - start, 2),
            "app_status": status, "answer": value(page, "binding-answer")}


def _screenshot(page, path: str) -> None:
    """A full-page screenshot once no output is still dimmed: Gradio marks the outputs of a running event
    ``.pending`` (opacity 0.2, a 0.15 s transition), and the status line can be new before the others are."""
    page.wait_for_function("() => !document.querySelector('.pending')")
    page.wait_for_timeout(500)
    page.screenshot(path=path, full_page=True)


def _screenshots(page, folder: str) -> None:
    """Every tab after one request: binding as measured, the others on a held-out Shapes image."""
    from frozen_hf.app import shapes_binding_example

    _screenshot(page, os.path.join(folder, "app-binding.png"))
    image = os.path.join(tempfile.mkdtemp(), "shapes-query.png")
    shapes_binding_example(ways=2, seed=4)["query_image"].save(image)
    open_tab(page, "Free prompt")
    fill(page, "free-text", "<image> This is a")
    upload(page, "free-images", [image])
    run(page, "free")
    _screenshot(page, os.path.join(folder, "app-free.png"))
    for tab, task in (("VQA", "vqa"), ("Captioning", "caption")):
        open_tab(page, tab)
        upload(page, f"{task}-image", image)
        fill(page, f"{task}-k", 3)
        run(page, task)
        _screenshot(page, os.path.join(folder, f"app-{task}.png"))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="outputs/shapes-smollm2")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--screenshots", default=None, help="folder for a screenshot of each tab")
    args = parser.parse_args(argv)
    with running_app(args.model, threads=args.threads) as app, chromium() as browser:
        result = {"model": args.model, "threads": args.threads, "start_seconds": round(app.start_seconds, 1),
                  "ready_line": app.ready_line, "load_average_at_start": os.getloadavg()}
        page = open_page(browser, app.url)
        requests = [_timed_binding(page, ways, seed) for ways, seed in ((2, 0), (2, 1), (5, 2), (5, 3))]
        result["first_request"], result["requests"] = requests[0], requests[1:]
        if args.screenshots:
            _screenshots(page, args.screenshots)
        result["load_average_at_end"] = os.getloadavg()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
