"""The one check that a folder holds a saved Frozen model, used by evaluation, publishing, verification and cards.

A Frozen folder has a ``config.json`` whose ``model_type`` is ``"frozen"``; a complete one (what the training program
writes at the end, and what can be published or evaluated) also has the weights, the processor and the tokenizer.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["PROCESSOR_FILES", "TOKENIZER_FILES", "check_frozen_folder"]

PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")

_FIX = (
    "Pass the final output folder of the training program (frozen-train <config>), or a folder written by "
    "FrozenForConditionalGeneration.save_pretrained and FrozenProcessor.save_pretrained."
)


def check_frozen_folder(
    folder: str | os.PathLike, *, complete: bool = True, error: type[Exception] = ValueError
) -> dict[str, Any]:
    """The folder's ``config.json`` as a dict, if the folder holds a Frozen model; else `error` naming what is wrong.

    With `complete`, the weights (``model*.safetensors``), the processor and the tokenizer files must be there too
    (a Trainer ``checkpoint-*`` folder, which has no processor, passes with ``complete=False``).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise error(f"{folder} is not a folder. {_FIX}")
    config_path = folder / "config.json"
    if not config_path.is_file():
        fix = _FIX
        if any(folder.glob("checkpoint-*")):
            fix = f"It holds training checkpoints: pass the final output folder, or one checkpoint-* folder. {fix}"
        raise error(f"{folder} is not a Frozen model: it has no config.json. {fix}")
    try:
        config = json.loads(config_path.read_text())
    except ValueError as err:
        raise error(f"{config_path} is not valid JSON ({err}).") from err
    if not isinstance(config, dict) or config.get("model_type") != "frozen":
        model_type = config.get("model_type") if isinstance(config, dict) else None
        raise error(
            f"{folder} holds a {model_type!r} model, not a Frozen model (config.json model_type must be 'frozen'). "
            f"{_FIX}"
        )
    if complete:
        missing = []
        if not any(folder.glob("model*.safetensors")):
            missing.append("the model weights (model.safetensors)")
        if not any((folder / name).is_file() for name in PROCESSOR_FILES):
            missing.append("the processor (processor_config.json)")
        if not any((folder / name).is_file() for name in TOKENIZER_FILES):
            missing.append("the tokenizer (tokenizer.json)")
        if missing:
            raise error(f"{folder} is not a complete Frozen model: it lacks {', '.join(missing)}. {_FIX}")
    return config
