"""Train a Frozen model: ``frozen-train <config.yaml> [--field value ...]`` (or ``python -m training.train``).

The YAML file sets any field of ``FrozenModelArguments``, ``FrozenDataArguments`` and
``transformers.TrainingArguments`` (with Frozen's extras, see ``frozen_hf.train.training``); command-line
``--field value`` pairs override it. Unknown fields are an error. Multi-process and multi-GPU runs
go through Accelerate, e.g.::

    accelerate launch --config_file frozen_hf/configs/accelerate/ddp.yaml -m training.train frozen_hf/configs/training/coco.yaml

Shipped configs are in ``frozen_hf/configs/training/``; the offline demo is ``shapes-smollm2.yaml``.
"""

from __future__ import annotations

import sys
from typing import Sequence

from frozen_hf.train.training import main_cli


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point; exits with 0 on success, 2 on a config or data error, 3 on a non-finite loss."""
    sys.exit(main_cli(argv))


if __name__ == "__main__":
    main()
