"""Train a Frozen model: ``python -m training.train <config.yaml> [--field value ...]`` (or ``frozen-train``).

The YAML file sets any field of ``FrozenModelArguments``, ``FrozenDataArguments`` and
``transformers.TrainingArguments`` (with Frozen's extras, see ``frozen_hf.training``); command-line
``--field value`` pairs override it. Unknown fields are an error. Multi-process and multi-GPU runs
go through Accelerate, e.g.::

    accelerate launch --config_file training/accelerate/ddp.yaml -m training.train training/configs/coco.yaml

Shipped configs are in ``training/configs/``; the offline demo is ``shapes-smollm2.yaml``.
"""

from __future__ import annotations

import sys
from typing import Sequence

from frozen_hf.training import main_cli


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point; exits with 0 on success, 2 on a config or data error, 3 on a non-finite loss."""
    sys.exit(main_cli(argv))


if __name__ == "__main__":
    main()
