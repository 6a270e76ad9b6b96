"""frozen-verify: check that a Frozen checkpoint's language model is, bit for bit, the base language model it declares.

    frozen-verify <checkpoint> [--base <folder or Hub id>] [--revision <rev>] [--json]

Exit status: 0 when every LM tensor matches, 1 when some differ or are missing, 2 when verification could not run.
The program reads top to bottom: parse -> verify (`frozen_hf.hub.verify`) -> print the report.
"""

from __future__ import annotations

import argparse
import json
import sys

from frozen_hf.hub.verify import VerificationError, verify_language_model


def main(argv: list[str] | None = None) -> int:
    """Command line: `frozen-verify <checkpoint> [--base B] [--revision R] [--json]`; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="frozen-verify",
        description="Check that a Frozen checkpoint's language model is bit for bit its base language model.",
    )
    parser.add_argument("checkpoint", help="a saved Frozen checkpoint folder")
    parser.add_argument("--base", help="base causal LM folder or Hub id (default: the one recorded in config.json)")
    parser.add_argument("--revision", help="Hub revision of the base (default: the recorded one)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    try:
        report = verify_language_model(args.checkpoint, base=args.base, revision=args.revision)
    except VerificationError as err:
        print(f"frozen-verify: cannot verify: {err}", file=sys.stderr)
        return 2
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
