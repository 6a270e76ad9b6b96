"""Fuzzing the training image path: bad image values through `FrozenCaptionCollator` (and through a `datasets`
imagefolder) must each be skipped and counted, or decoded into a proper RGB image; none may crash the batch, hang,
or blow up memory.

Two parts:
- a named corpus (`CASES`): corrupt, truncated, zero-byte, missing, decompression bombs, huge-but-thin images,
  animated GIF/APNG/WebP, CMYK JPEG, 16-bit and float images, palette and alpha modes, wrong extensions,
  non-image bytes, odd Python values; each given to the collator as raw bytes and as a file on disk;
- random mutations (truncation, byte flips, insertions, header overwrites) of valid files in six formats
  (hypothesis, `FUZZ_EXAMPLES` of them; `HYPOTHESIS_PROFILE=thorough` runs ten times more).
"""

from __future__ import annotations

import io
import os
import signal
import struct
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from frozen_hf.data.collator import FrozenCaptionCollator, ImageDecodeError, decode_image, undecoded_images
from tests.helpers.tiny import IMAGE_SIZE, tiny_processor

FUZZ_EXAMPLES = 2000 if os.environ.get("HYPOTHESIS_PROFILE") == "thorough" else 200
SECONDS_PER_CASE = 20


# ---------------------------------------------------------------------------------------------------------------
# Building files


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def noise(mode: str = "RGB", size: tuple[int, int] = (24, 16), seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).convert(mode)


def png_claiming(width: int, height: int) -> bytes:
    """A 1x1 PNG whose header claims `width` x `height` (valid CRC): a decompression bomb's calling card."""
    data = bytearray(encode(Image.new("L", (1, 1)), "PNG"))
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small JPEG whose frame header (SOF0) claims `width` x `height`."""
    data = bytearray(encode(noise(size=(8, 8)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def animated(fmt: str) -> bytes:
    frames = [noise(seed=seed) for seed in range(3)]
    kwargs = {"duration": 100, "loop": 0} if fmt != "PNG" else {"duration": 100}
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:], **kwargs)


def sixteen_bit_png() -> bytes:
    return encode(Image.fromarray(np.arange(24 * 16, dtype=np.uint16).reshape(16, 24) * 150), "PNG")


def palette_with_transparency() -> bytes:
    image = noise("P")
    return encode(image, "PNG", transparency=0)


VALID = {
    "png": lambda: encode(noise(), "PNG"),
    "jpeg": lambda: encode(noise(), "JPEG"),
    "gif": lambda: encode(noise("P"), "GIF"),
    "bmp": lambda: encode(noise(), "BMP"),
    "tiff": lambda: encode(noise(), "TIFF"),
    "webp": lambda: encode(noise(), "WEBP"),
}

# (name, value factory, file extension when written to disk, expected outcome: "decoded" or "skipped")
CASES: list[tuple[str, Callable[[], object], str, str]] = [
    # nothing there
    ("zero_bytes", lambda: b"", ".png", "skipped"),
    ("none", lambda: None, None, "skipped"),
    ("empty_entry", lambda: {"bytes": None, "path": None}, None, "skipped"),
    ("missing_file", lambda: {"bytes": None, "path": "/nonexistent/frozen-fuzz/missing.png"}, None, "skipped"),
    ("directory_path", lambda: {"bytes": None, "path": "/"}, None, "skipped"),
    # not images at all
    ("text", lambda: b"a red circle on the left\n" * 10, ".jpg", "skipped"),
    ("html", lambda: b"<!DOCTYPE html><html><body>404 Not Found</body></html>", ".jpg", "skipped"),
    ("pdf", lambda: b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n%%EOF", ".png", "skipped"),
    ("zip", lambda: b"PK\x03\x04" + bytes(100), ".png", "skipped"),
    ("svg", lambda: b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', ".svg", "skipped"),
    *[(f"random_bytes_{seed}", (lambda seed=seed: np.random.default_rng(seed).bytes(500)), ".jpg", "skipped")
      for seed in range(4)],
    ("png_signature_only", lambda: b"\x89PNG\r\n\x1a\n", ".png", "skipped"),
    ("jpeg_soi_only", lambda: b"\xff\xd8\xff", ".jpg", "skipped"),
    # truncated files
    *[(f"truncated_{fmt}_{int(fraction * 100)}", (lambda fmt=fmt, fraction=fraction:
                                                   VALID[fmt]()[: int(len(VALID[fmt]()) * fraction)]),
       f".{fmt}", "skipped")
      for fmt in ("png", "gif", "tiff", "webp") for fraction in (0.05, 0.5, 0.9)],
    ("truncated_jpeg_header", lambda: VALID["jpeg"]()[:100], ".jpg", "skipped"),
    ("truncated_bmp_header", lambda: VALID["bmp"]()[:40], ".bmp", "skipped"),
    # corrupt (structure broken, not only pixel values)
    ("png_bad_crc", lambda: VALID["png"]()[:40] + b"\x00\x00\x00\x00" + VALID["png"]()[44:], ".png", "skipped"),
    ("png_garbage_idat", lambda: VALID["png"]()[:41] + bytes(200) + VALID["png"]()[241:], ".png", "skipped"),
    # huge dimensions
    ("bomb_png_100000x100000", lambda: png_claiming(100_000, 100_000), ".png", "skipped"),
    ("bomb_png_10000x10000", lambda: png_claiming(10_000, 10_000), ".png", "skipped"),
    ("bomb_png_2000000x60", lambda: png_claiming(2_000_000, 60), ".png", "skipped"),
    ("bomb_jpeg_60000x60000", lambda: jpeg_claiming(60_000, 60_000), ".jpg", "skipped"),
    ("header_65535x1_no_data", lambda: png_claiming(65_535, 1), ".png", "skipped"),
    ("thin_40000x20", lambda: encode(Image.new("RGB", (40_000, 20), (200, 30, 30)), "PNG"), ".png", "decoded"),
    ("thin_16x30000", lambda: encode(Image.new("L", (16, 30_000), 90), "PNG"), ".png", "decoded"),
    ("one_pixel", lambda: encode(Image.new("RGB", (1, 1), (1, 2, 3)), "PNG"), ".png", "decoded"),
    # animated
    ("animated_gif", lambda: animated("GIF"), ".gif", "decoded"),
    ("apng", lambda: animated("PNG"), ".png", "decoded"),
    ("animated_webp", lambda: animated("WEBP"), ".webp", "decoded"),
    # odd modes and depths
    ("cmyk_jpeg", lambda: encode(noise("CMYK"), "JPEG"), ".jpg", "decoded"),
    ("grey_jpeg", lambda: encode(noise("L"), "JPEG"), ".jpg", "decoded"),
    ("progressive_jpeg", lambda: encode(noise(), "JPEG", progressive=True), ".jpg", "decoded"),
    ("png_16bit_grey", sixteen_bit_png, ".png", "decoded"),
    ("tiff_float32", lambda: encode(Image.fromarray(np.linspace(-5, 5, 384, dtype=np.float32).reshape(16, 24)), "TIFF"),
     ".tif", "decoded"),
    ("tiff_int32", lambda: encode(Image.fromarray(np.arange(384, dtype=np.int32).reshape(16, 24) * 10**6), "TIFF"),
     ".tif", "decoded"),
    ("tiff_cmyk", lambda: encode(noise("CMYK"), "TIFF"), ".tif", "decoded"),
    ("png_1bit", lambda: encode(noise("1"), "PNG"), ".png", "decoded"),
    ("png_palette_transparency", palette_with_transparency, ".png", "decoded"),
    ("png_la", lambda: encode(noise("LA"), "PNG"), ".png", "decoded"),
    ("png_rgba", lambda: encode(noise("RGBA"), "PNG"), ".png", "decoded"),
    ("ico", lambda: encode(noise(size=(16, 16)), "ICO"), ".ico", "decoded"),
    ("tga", lambda: encode(noise(), "TGA"), ".tga", "decoded"),
    ("ppm", lambda: encode(noise(), "PPM"), ".ppm", "decoded"),
    # wrong extensions
    ("png_named_jpg", lambda: VALID["png"](), ".jpg", "decoded"),
    ("jpeg_named_png", lambda: VALID["jpeg"](), ".png", "decoded"),
    ("gif_named_webp", lambda: VALID["gif"](), ".webp", "decoded"),
    ("webp_named_bmp", lambda: VALID["webp"](), ".bmp", "decoded"),
    # Python values that are not images
    ("pil_zero_area", lambda: Image.new("RGB", (0, 0)), None, "skipped"),
    ("pil_zero_width", lambda: Image.new("L", (0, 5)), None, "skipped"),
    ("array_zero_area", lambda: np.zeros((0, 0, 3), np.uint8), None, "skipped"),
    ("array_float64", lambda: np.random.default_rng(0).random((5, 5, 3)), None, "skipped"),
    ("array_4d", lambda: np.zeros((2, 5, 5, 3), np.uint8), None, "skipped"),
    ("integer", lambda: 5, None, "skipped"),
    ("list_of_bytes", lambda: [VALID["png"]()], None, "skipped"),
    ("pil_image", lambda: noise(), None, "decoded"),
    ("array_uint8", lambda: np.zeros((5, 7, 3), np.uint8), None, "decoded"),
]


# ---------------------------------------------------------------------------------------------------------------
# Running


@contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    """Fails the case instead of hanging the suite."""

    def expire(signum, frame):
        raise TimeoutError(f"image path took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def collator() -> FrozenCaptionCollator:
    return FrozenCaptionCollator(tiny_processor(), max_length=24)


def run_rows(collator: FrozenCaptionCollator, bad_values: list) -> dict:
    """A batch with a good row before and after each bad value; checks that nothing else is lost."""
    good = {"image": encode(noise(seed=99), "PNG"), "caption": "a red circle"}
    rows = [good]
    for value in bad_values:
        rows += [{"image": value, "caption": "a blue square"}, good]
    with time_limit(SECONDS_PER_CASE):
        batch = collator(rows)
    skipped = int(batch["num_skipped_images"])
    assert batch["pixel_values"].shape == (len(rows) - skipped, 3, IMAGE_SIZE, IMAGE_SIZE)
    assert torch.isfinite(batch["pixel_values"]).all()
    assert batch["input_ids"].shape[0] == batch["labels"].shape[0] == len(rows) - skipped
    assert int(batch["num_skipped_captions"]) == 0
    return batch


def as_entries(name: str, value, extension: str | None, folder: Path) -> list:
    """The value as `datasets.Image(decode=False)` gives it: inline bytes, and a file on disk."""
    if not isinstance(value, (bytes, bytearray)):
        return [value]
    path = folder / f"{name}{extension}"
    path.write_bytes(value)
    return [{"bytes": value, "path": None}, {"bytes": None, "path": str(path)}]


@pytest.mark.parametrize("name,factory,extension,expected", CASES, ids=[case[0] for case in CASES])
def test_each_bad_image_is_skipped_and_counted_or_decoded(collator, tmp_path, name, factory, extension, expected):
    for entry in as_entries(name, factory(), extension, tmp_path):
        batch = run_rows(collator, [entry])
        assert int(batch["num_skipped_images"]) == (1 if expected == "skipped" else 0), f"{name}: {entry!r:.80}"
        with time_limit(SECONDS_PER_CASE):
            if expected == "skipped":
                with pytest.raises(ImageDecodeError):
                    decode_image(entry)
            else:
                image = decode_image(entry)
                assert image.mode == "RGB" and image.width > 0 and image.height > 0


def test_whole_corpus_in_one_batch(collator, tmp_path):
    entries, skipped = [], 0
    for name, factory, extension, expected in CASES:
        for entry in as_entries(name, factory(), extension, tmp_path):
            entries.append(entry)
            skipped += expected == "skipped"
    batch = run_rows(collator, entries)
    assert int(batch["num_skipped_images"]) == skipped


def test_imagefolder_of_bad_files_loads_and_collates(collator, tmp_path):
    """The same files in a `datasets` imagefolder with captions: loading never decodes, collating skips and counts."""
    import json

    from datasets import load_dataset

    folder = tmp_path / "images"
    folder.mkdir()
    expected_skips = 0
    with open(folder / "metadata.jsonl", "w") as metadata:
        for name, factory, extension, expected in CASES:
            value = factory()
            # imagefolder only lists files with image extensions.
            if not isinstance(value, (bytes, bytearray)) or extension in (".svg",):
                continue
            (folder / f"{name}{extension}").write_bytes(value)
            metadata.write(json.dumps({"file_name": f"{name}{extension}", "caption": "a red square"}) + "\n")
            expected_skips += expected == "skipped"
    dataset = load_dataset("imagefolder", data_dir=str(folder), split="train")
    dataset = undecoded_images(dataset, "image")
    skipped = 0
    for start in range(0, len(dataset), 8):
        rows = [dataset[i] for i in range(start, min(start + 8, len(dataset)))]
        with time_limit(SECONDS_PER_CASE * len(rows)):
            batch = collator(rows)
        skipped += int(batch["num_skipped_images"])
    assert skipped == expected_skips


# ---------------------------------------------------------------------------------------------------------------
# Random mutations of valid files


@st.composite
def mutated_files(draw) -> bytes:
    fmt = draw(st.sampled_from(sorted(VALID)))
    data = bytearray(VALID[fmt]())
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(("truncate", "flip", "insert", "delete", "header")))
        if not data:
            break
        position = draw(st.integers(0, len(data) - 1))
        if kind == "truncate":
            del data[position:]
        elif kind == "flip":
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif kind == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=64))
        elif kind == "delete":
            del data[position:position + draw(st.integers(1, 64))]
        else:  # overwrite within the first bytes, where sizes and formats are declared
            position = draw(st.integers(0, min(len(data), 64) - 1))
            data[position:position + 4] = draw(st.binary(min_size=4, max_size=4))
    return bytes(data)


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(files=st.lists(mutated_files(), min_size=1, max_size=3))
def test_mutated_files_never_crash_the_batch(collator, files):
    batch = run_rows(collator, [{"bytes": data, "path": None} for data in files])
    decodable = 0
    for data in files:
        try:
            with time_limit(SECONDS_PER_CASE):
                decode_image(data)
            decodable += 1
        except ImageDecodeError:
            pass
    assert int(batch["num_skipped_images"]) == len(files) - decodable
