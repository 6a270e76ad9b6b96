"""Facts that several parts of frozen-hf rely on, each written once.

The model files import this module with a flat relative import, so `save_pretrained` ships it with them as
remote code: it must import nothing from this project.
"""

# The text marker of one image; the processor expands it to `visual_prefix_length` placeholder tokens.
IMAGE_TOKEN = "<image>"

# State-dict prefixes (under `model.`) of the trained parts; everything else is the frozen language model.
TRAINED_PARTS = ("vision_model.", "visual_prefix.")

# The files stock transformers imports from a saved folder or Hub repo (`trust_remote_code=True`).
REMOTE_CODE_FILES = (
    "configuration_frozen.py",
    "modeling_frozen.py",
    "loading_frozen.py",
    "processing_frozen.py",
    "image_processing_frozen.py",
    "constants.py",
)

# The remote-code `auto_map` of each saved JSON file.
AUTO_MAP = {
    "config.json": {
        "AutoConfig": "configuration_frozen.FrozenConfig",
        "AutoModel": "modeling_frozen.FrozenModel",
        "AutoModelForImageTextToText": "modeling_frozen.FrozenForConditionalGeneration",
    },
    "processor_config.json": {"AutoProcessor": "processing_frozen.FrozenProcessor"},
    "tokenizer_config.json": {"AutoProcessor": "processing_frozen.FrozenProcessor"},
}
