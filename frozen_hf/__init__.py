"""frozen-hf: Frozen (Tsimpoukelli et al., NeurIPS 2021) as a first-class transformers model family.

Importing the package registers the Frozen classes with transformers' Auto classes, and marks them for remote code
so that `save_pretrained` writes the model files and an `auto_map` that stock transformers loads with
`trust_remote_code=True`.
"""

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageTextToText,
    AutoProcessor,
)

from .bundled import BundledModelNotInstalledError, bundled_language_model_path, default_language_model_path
from .configuration_frozen import FrozenConfig, default_vision_config
from .image_processing_frozen import FrozenImageProcessor
from .loading_frozen import LanguageModelRevisionError
from .modeling_frozen import FrozenForConditionalGeneration, FrozenModel, FrozenPreTrainedModel, FrozenVisualPrefix
from .processing_frozen import FrozenProcessor


__version__ = "0.1.0"

AutoConfig.register(FrozenConfig.model_type, FrozenConfig, exist_ok=True)
AutoModel.register(FrozenConfig, FrozenModel, exist_ok=True)
AutoModelForImageTextToText.register(FrozenConfig, FrozenForConditionalGeneration, exist_ok=True)
AutoProcessor.register(FrozenConfig, FrozenProcessor, exist_ok=True)
AutoImageProcessor.register(FrozenConfig, slow_image_processor_class=FrozenImageProcessor, exist_ok=True)

FrozenConfig.register_for_auto_class()
FrozenModel.register_for_auto_class("AutoModel")
FrozenForConditionalGeneration.register_for_auto_class("AutoModelForImageTextToText")
FrozenProcessor.register_for_auto_class()
FrozenImageProcessor.register_for_auto_class("AutoImageProcessor")

# The Shapes world pulls in `datasets`; load it on first use so that `import frozen_hf` stays light.
_LAZY_EXPORTS = {"load_shapes": "data.shapes", "caption_is_correct": "data.shapes", "describe": "data.shapes"}


def __getattr__(name: str):
    if name in _LAZY_EXPORTS:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BundledModelNotInstalledError",
    "caption_is_correct",
    "describe",
    "load_shapes",
    "bundled_language_model_path",
    "default_language_model_path",
    "FrozenConfig",
    "FrozenForConditionalGeneration",
    "FrozenImageProcessor",
    "FrozenModel",
    "FrozenPreTrainedModel",
    "FrozenProcessor",
    "FrozenVisualPrefix",
    "LanguageModelRevisionError",
    "default_vision_config",
]
