"""Stand-in for transformers' `utils/fetch_hub_objects_for_ci.py`, which the release's sdist does not ship.

`test_processing_common.py` maps the Hub URLs of its sample inputs to local files with `url_to_local_path`. Nothing
may be downloaded here, so each sample image URL maps to a local PNG with random pixels, written on first use; the
video and audio URLs come back unchanged, as the original returns a URL it has not fetched (the Frozen processor
takes neither modality).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

SAMPLE_DIR = Path(__file__).resolve().parent / "sample_inputs"


def url_to_local_path(url: str) -> str:
    name = url.rsplit("/", 1)[-1]
    if not name.endswith((".png", ".jpg", ".jpeg")):
        return url
    path = SAMPLE_DIR / name
    if not path.exists():
        SAMPLE_DIR.mkdir(exist_ok=True)
        pixels = np.random.default_rng(0).integers(0, 256, size=(480, 640, 3), dtype=np.uint8)
        partial = path.with_suffix(f".{os.getpid()}.partial")
        Image.fromarray(pixels).save(partial, format="PNG")
        os.replace(partial, path)
    return str(path)
