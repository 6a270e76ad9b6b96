"""frozen-prefix-geometry: where a trained model's visual prefixes sit, among themselves and against the word embeddings.

    frozen-prefix-geometry --model <folder> [--split validation] [--images-per-category 8] [--json]

The program reads top to bottom: parse -> load the model -> encode Shapes images (`frozen_hf.eval.prefix_geometry`) ->
print the table.
"""

from __future__ import annotations

import argparse
import json
import sys

from frozen_hf import FrozenForConditionalGeneration, FrozenProcessor
from frozen_hf.eval.prefix_geometry import format_prefix_geometry, shapes_prefix_geometry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="frozen-prefix-geometry", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a trained Frozen folder (Shapes-trained)")
    parser.add_argument("--split", default="validation", help="Shapes split of the images (never tune on test)")
    parser.add_argument("--images-per-category", type=int, default=8)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    model = FrozenForConditionalGeneration.from_pretrained(args.model).eval()
    processor = FrozenProcessor.from_pretrained(args.model)
    report = shapes_prefix_geometry(model, processor, split=args.split, images_per_category=args.images_per_category)
    print(json.dumps(report, indent=2) if args.json else format_prefix_geometry(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
