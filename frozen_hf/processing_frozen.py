"""Processor for Frozen: interleaved images and text -> model inputs."""

from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image
from tokenizers import AddedToken
from transformers import AutoTokenizer
from transformers.image_utils import make_flat_list_of_images
from transformers.processing_utils import ProcessorMixin

from .configuration_frozen import check_visual_prefix_length
from .constants import IMAGE_TOKEN
from .image_processing_frozen import FrozenImageProcessor


IGNORE_INDEX = -100

# Renders chat messages as a Frozen prompt: image blocks become `<image>` markers, text blocks stay as they are.
# Turns are separated by new lines; no role markers, because a Frozen model is trained on plain captions.
# In chat, images are image blocks: a marker typed into the text would have no image (serving engines such as vLLM
# match images to image blocks only), so the template refuses it.
_MARKER_IN_TEXT = (
    "{%- if '" + IMAGE_TOKEN + "' in text -%}{{ raise_exception('A chat message holds the text " + IMAGE_TOKEN
    + ", which marks an image: send each image as an image content part, where it goes in the text.') }}"
    "{%- endif -%}"
)
DEFAULT_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['content'] is string -%}{%- set text = message['content'] -%}" + _MARKER_IN_TEXT
    + "{{ message['content'] }}"
    "{%- else -%}{%- for block in message['content'] -%}"
    "{%- if block['type'] == 'image' -%}" + IMAGE_TOKEN +
    "{%- elif block['type'] == 'text' -%}{%- set text = block['text'] -%}" + _MARKER_IN_TEXT + "{{ block['text'] }}"
    "{%- endif -%}{%- endfor -%}{%- endif -%}"
    "{%- if not loop.last -%}{{ '\n' }}{%- endif -%}"
    "{%- endfor -%}"
)


class FrozenProcessor(ProcessorMixin):
    r"""
    Turns interleaved images and text into Frozen model inputs.

    `<image>` in the text marks where an image goes; it is expanded to `visual_prefix_length` placeholder tokens and
    images are matched to markers in order. A sample may hold any number of images anywhere; for a batch, pass
    `images` as a nested list (one list per sample). A sample with images but no marker gets one marker per image
    prepended (so `text=""` captions an image).

    Args:
        image_processor ([`FrozenImageProcessor`]): the image processor.
        tokenizer: the frozen language model's tokenizer. `<image>` is added as a special token when missing; it
            needs no embedding row (the model overwrites placeholder positions with the visual prefix).
        visual_prefix_length (`int`, defaults to 2): placeholders per image; must equal the model config's.
        image_token (`str`, defaults to `"<image>"`): the image marker.
        chat_template (`str`, *optional*): Jinja template for `apply_chat_template`; a plain interleaving by default.
    """

    def __init__(
        self,
        image_processor=None,
        tokenizer=None,
        visual_prefix_length: int = 2,
        image_token: str = IMAGE_TOKEN,
        chat_template: str | None = None,
        **kwargs,
    ):
        check_visual_prefix_length(visual_prefix_length)
        self.visual_prefix_length = visual_prefix_length
        self.image_token = image_token
        if tokenizer is not None:
            if image_token not in tokenizer.get_vocab():
                tokenizer.add_tokens([AddedToken(image_token, special=True, normalized=False)], special_tokens=True)
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            self.image_token_id = tokenizer.convert_tokens_to_ids(image_token)
        if chat_template is None:
            chat_template = DEFAULT_CHAT_TEMPLATE
        super().__init__(image_processor, tokenizer, chat_template=chat_template, **kwargs)

    @classmethod
    def from_language_model(
        cls,
        language_model_name_or_path: str | os.PathLike,
        visual_prefix_length: int = 2,
        image_size: int = 224,
        revision: str | None = None,
        **image_processor_kwargs,
    ) -> "FrozenProcessor":
        """The processor matching [`FrozenForConditionalGeneration.from_language_model`]: the LM's tokenizer
        (left padding, `<image>` added) and a [`FrozenImageProcessor`] producing `image_size` square images."""
        tokenizer = AutoTokenizer.from_pretrained(language_model_name_or_path, revision=revision, padding_side="left")
        image_processor = FrozenImageProcessor(
            size={"height": image_size, "width": image_size}, **image_processor_kwargs
        )
        return cls(image_processor=image_processor, tokenizer=tokenizer, visual_prefix_length=visual_prefix_length)

    def replace_image_token(self, image_inputs: dict, image_idx: int, **kwargs) -> str:
        return self.image_token * self.visual_prefix_length

    def prepare_inputs_layout(self, images=None, text=None, videos=None, audio=None, **kwargs):
        if text is None and images is not None:
            text = ""
        if images is not None:
            _check_image_types(images)
            images = _grey_arrays_to_pil(images)
        images, text, videos, audio = super().prepare_inputs_layout(
            images=images, text=text, videos=videos, audio=audio, **kwargs
        )
        if images is None or text is None:
            return images, text, videos, audio
        per_sample = _images_per_sample(images, text, self.image_token)
        if per_sample is not None:
            text = [
                self.image_token * len(sample_images) + sample_text
                if sample_images and self.image_token not in sample_text
                else sample_text
                for sample_text, sample_images in zip(text, per_sample)
            ]
        elif len(text) == 1 and self.image_token not in text[0]:
            text = [self.image_token * len(make_flat_list_of_images(images)) + text[0]]
        return images, text, videos, audio

    def validate_inputs(self, images=None, text=None, videos=None, audio=None, **kwargs):
        if text is not None and not isinstance(text, str):
            if not isinstance(text, (list, tuple)) or not all(isinstance(sample, str) for sample in text):
                raise ValueError(
                    f"text must be a string or a list of strings, got {type(text).__name__}"
                    f"{' of ' + ', '.join(sorted({type(s).__name__ for s in text})) if isinstance(text, (list, tuple)) else ''}."
                )
        if images is None and (text is None or all(not sample.strip() for sample in text)):
            raise ValueError(
                "Got empty text and no images: give a prompt, one or more images, or both "
                "(an image with text='' is captioned)."
            )
        if images is not None:
            per_sample = _images_per_sample(images, text, self.image_token)
            if per_sample is not None:
                for index, (sample_text, sample_images) in enumerate(zip(text, per_sample)):
                    markers = sample_text.count(self.image_token)
                    if markers != len(sample_images):
                        raise ValueError(
                            f"Sample {index} has {markers} {self.image_token} markers but {len(sample_images)} "
                            f"images. Give each sample exactly one {self.image_token} per image, with images as a "
                            "nested list (one list per sample, in marker order)."
                        )
        super().validate_inputs(images=images, text=text, videos=videos, audio=audio, **kwargs)

    def _process_images(self, images, **kwargs):
        if _holds_no_image(images):
            # A batch whose image lists are all empty is text only: an empty `pixel_values` would be rejected by
            # the model (and by `generate`), so leave the key out as for `images=None`.
            return {}, []
        return super()._process_images(make_flat_list_of_images(images), **kwargs)

    def _check_special_mm_tokens(self, text, text_inputs, modalities):
        input_ids = text_inputs["input_ids"]
        if hasattr(input_ids, "tolist"):
            input_ids = input_ids.tolist()
        for index, (sample_text, ids) in enumerate(zip(text, input_ids)):
            expected = sample_text.count(self.image_token)
            found = list(ids).count(self.image_token_id)
            if found != expected:
                raise ValueError(
                    f"Truncation would cut image placeholders in sample {index}: it needs {expected} placeholder "
                    f"tokens ({expected // self.visual_prefix_length} images x visual_prefix_length="
                    f"{self.visual_prefix_length}) but only {found} survive. Raise max_length, turn off "
                    "truncation, or drop images from that sample."
                )

    def create_labels(
        self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None
    ) -> torch.LongTensor:
        """Captioning targets for `input_ids`: a copy with `-100` at image placeholders and padding, unshifted
        (the model's causal-LM loss shifts them)."""
        labels = input_ids.clone()
        labels[labels == self.image_token_id] = IGNORE_INDEX
        if attention_mask is not None:
            labels[attention_mask == 0] = IGNORE_INDEX
        return labels

    def post_process_image_text_to_text(self, generated_outputs, skip_special_tokens: bool = True, **kwargs):
        """Decodes generated ids to text (placeholders and other special tokens dropped by default)."""
        return self.tokenizer.batch_decode(generated_outputs, skip_special_tokens=skip_special_tokens, **kwargs)

    def _get_num_multimodal_tokens(self, image_sizes=None, **kwargs):
        """Placeholder tokens per image for images of the given `(height, width)` sizes: always
        `visual_prefix_length`, one row of `pixel_values` each. Serving engines (vLLM's Transformers backend) size
        prompts and the encoder cache with it."""
        from transformers.processing_utils import MultiModalData

        vision_data = {}
        if image_sizes is not None:
            vision_data["num_image_tokens"] = [self.visual_prefix_length] * len(image_sizes)
            vision_data["num_image_patches"] = [1] * len(image_sizes)
        return MultiModalData(**vision_data)

    def save_pretrained(self, save_directory, push_to_hub: bool = False, **kwargs):
        # With remote code registered, transformers' save sets the processor's `auto_map` for the file it writes and
        # leaves it set, so that saving would change the processor (its `to_dict()` then differs from the reloaded
        # one's, which never carries it). The attribute is kept only for the write.
        had_auto_map = "auto_map" in self.__dict__
        try:
            return super().save_pretrained(save_directory, push_to_hub=push_to_hub, **kwargs)
        finally:
            if not had_auto_map:
                self.__dict__.pop("auto_map", None)

    @property
    def model_input_names(self) -> list[str]:
        return ["input_ids", "attention_mask", "pixel_values"]


def _images_per_sample(images, texts: list[str], image_token: str) -> list[list] | None:
    """Splits nested `images` into one list per text; `None` when images are given flat."""
    if isinstance(images, (list, tuple)) and images and all(isinstance(item, (list, tuple)) for item in images):
        if len(images) != len(texts):
            num_images = sum(len(item) for item in images)
            num_markers = sum(text.count(image_token) for text in texts)
            # The first sentence is transformers' own wording for this mismatch, which its processor tests expect.
            totals = (
                f"The total number of {image_token} tokens in the prompts should be the same as the number of images "
                f"passed ({num_markers} and {num_images}). "
                if num_markers != num_images
                else ""
            )
            raise ValueError(
                f"{totals}Got image lists for {len(images)} samples but {len(texts)} texts: pass one (possibly empty) "
                "list of images per text."
            )
        return [list(item) for item in images]
    if len(texts) == 1:
        return [make_flat_list_of_images(images) if _has_images(images) else []]
    return None


def _has_images(images) -> bool:
    return not (isinstance(images, (list, tuple)) and len(images) == 0)


def _holds_no_image(images) -> bool:
    """True for an empty list, or lists nested any depth that are all empty."""
    return isinstance(images, (list, tuple)) and all(_holds_no_image(item) for item in images)


def _check_image_types(images) -> None:
    flat = []
    stack = [images]
    while stack:
        item = stack.pop()
        if isinstance(item, (list, tuple)):
            stack.extend(reversed(item))
        else:
            flat.append(item)
    for index, image in enumerate(flat):
        if isinstance(image, (Image.Image, np.ndarray, torch.Tensor, str)):
            if isinstance(image, (np.ndarray, torch.Tensor)) and image.ndim not in (2, 3):
                raise ValueError(
                    f"Image {index} is an array of shape {tuple(image.shape)}; expected (H, W), (H, W, C) or (C, H, W)."
                )
            continue
        raise ValueError(
            f"Image {index} is a {type(image).__name__}, not an image: pass PIL.Image.Image, numpy arrays, torch "
            "tensors, or paths/URLs (open files with PIL.Image.open)."
        )


def _grey_arrays_to_pil(images):
    """Turns `(H, W)` arrays and tensors into PIL grey images, keeping the nesting.

    transformers cannot flatten 2-D arrays into a list of images, and adding a channel axis would leave the layout
    to its guess, which reads `(1, W, 1)` or `(3, W, 3)` as channels-first. PIL knows the layout and the bit depth.
    """
    if isinstance(images, (list, tuple)):
        return type(images)(_grey_arrays_to_pil(item) for item in images)
    if isinstance(images, (np.ndarray, torch.Tensor)) and images.ndim == 2:
        array = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else images
        if array.dtype == np.float64 or array.dtype == np.float16:
            array = array.astype(np.float32)
        elif array.dtype == np.int64:
            array = array.astype(np.int32)
        return Image.fromarray(np.ascontiguousarray(array))
    return images


__all__ = ["FrozenProcessor"]
