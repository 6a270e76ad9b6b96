"""A picture of the Shapes world: a PNG grid with samples of every task (``python -m frozen_hf.data.shapes``)."""

from __future__ import annotations

import io
from typing import Any, Sequence

from PIL import Image as PILImage
from .dataset import load_shapes


# --------------------------------------------------------------------------- picture


def make_grid(path: str, image_size: int = 96, seed: int = 0) -> None:
    """Write a PNG grid with samples of every task (one row of panels per task)."""
    from PIL import ImageDraw, ImageFont

    try:
        font = ImageFont.load_default(size=11)
    except TypeError:  # Pillow < 10.1 has one fixed bitmap font
        font = ImageFont.load_default()
    cell, text_h, pad, label_w = image_size, 54, 6, 110
    columns = 7
    width = label_w + columns * (cell + pad) + pad
    rows_spec: list[tuple[str, list[tuple[bytes, list[str]]]]] = []

    caps = load_shapes("captions", "train", columns - 2, image_size, seed, caption_style="varied")
    multi = load_shapes("captions", "train", 2, image_size, seed + 1, min_objects=2, max_objects=3)
    rows_spec.append(("captions", [(_to_png(r["image"]), _wrap(r["caption"])) for r in list(caps) + list(multi)]))
    novel = load_shapes("captions", "test_novel", 2, image_size, seed)
    vqa = load_shapes("vqa", "test", columns - 2, image_size, seed)
    rows_spec.append(
        ("vqa / test_novel",
         [(_to_png(r["image"]), _wrap(f"Q: {r['question']} A: {r['answer']}")) for r in vqa]
         + [(_to_png(r["image"]), _wrap("novel: " + r["caption"])) for r in novel])
    )
    for task, label in (("open_ended", "open_ended\n2-way 2-shot"), ("real_name", "real_name\n3-way 1-shot")):
        ways, shots = (2, 2) if task == "open_ended" else (3, 1)
        ep = load_shapes(task, "test", 1, image_size, seed, ways=ways, inner_shots=shots)[0]
        items = [(_to_png(img), [f"this is a {name}."]) for img, name in zip(ep["support_images"], ep["support_names"])]
        items.append((_to_png(ep["query_image"]), ["query ->", ep["answer"]]))
        rows_spec.append((label + "\n" + ep["task_induction_text"], items))
    ep = load_shapes("fast_vqa", "test", 1, image_size, seed, ways=2, inner_shots=2)[0]
    items = [(_to_png(img), [f"this is a {name}."]) for img, name in zip(ep["support_images"], ep["support_names"])]
    items.append((_to_png(ep["query_image"]), _wrap(f"Q: {ep['question']} A: {ep['answer']}")))
    rows_spec.append(("fast_vqa\n2-way 2-shot", items))

    height = pad + len(rows_spec) * (cell + text_h + pad)
    canvas = PILImage.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for r, (label, items) in enumerate(rows_spec):
        top = pad + r * (cell + text_h + pad)
        draw.multiline_text((pad, top + 4), _wrap_label(label), fill=(0, 0, 0), font=font, spacing=2)
        for c, (data, lines) in enumerate(items[:columns]):
            left = label_w + pad + c * (cell + pad)
            canvas.paste(PILImage.open(io.BytesIO(data)).convert("RGB").resize((cell, cell), PILImage.NEAREST), (left, top))
            draw.multiline_text((left, top + cell + 2), "\n".join(lines[:4]), fill=(0, 0, 0), font=font, spacing=1)
    canvas.save(path)


def _to_png(image: Any) -> bytes:
    if isinstance(image, dict):
        return image["bytes"]
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _wrap(text: str, width: int = 17) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return lines + ([line] if line else [])


def _wrap_label(label: str) -> str:
    return "\n".join(line for part in label.split("\n") for line in _wrap(part, 18))


def main(argv: Sequence[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Shapes world utilities.")
    parser.add_argument("--grid", metavar="PNG", help="write a grid of samples of every task to this file")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not args.grid:
        parser.error("nothing to do; pass --grid PATH")
    make_grid(args.grid, args.image_size, args.seed)
    print(f"wrote {args.grid}")

