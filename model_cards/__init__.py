"""Model card templates, filled by `frozen_hf.model_card.build_model_card` from a training output and its evaluation."""

from pathlib import Path

TEMPLATE_DIR = Path(__file__).resolve().parent

#: The Jinja template of a published Frozen model's README.md (YAML metadata + body).
FROZEN_MODEL_CARD_TEMPLATE = TEMPLATE_DIR / "frozen_model_card.md"

__all__ = ["FROZEN_MODEL_CARD_TEMPLATE", "TEMPLATE_DIR"]
