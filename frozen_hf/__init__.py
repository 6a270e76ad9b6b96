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

from .bundled import bundled_language_model_path, default_language_model_path
from .configuration_frozen import FrozenConfig
from .image_processing_frozen import FrozenImageProcessor
from .modeling_frozen import (
    FrozenForConditionalGeneration,
    FrozenModel,
    FrozenPreTrainedModel,
    FrozenVisualPrefix,
    default_vision_config,
)
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

__all__ = [
    "bundled_language_model_path",
    "default_language_model_path",
    "FrozenConfig",
    "FrozenForConditionalGeneration",
    "FrozenImageProcessor",
    "FrozenModel",
    "FrozenPreTrainedModel",
    "FrozenProcessor",
    "FrozenVisualPrefix",
    "default_vision_config",
]
