"""Inputs for serving Frozen checkpoints with vLLM: a Frozen prompt (text with `<image>` markers + its images, or a
`frozen_hf.eval.prompting.Prompt`) as a `vllm.LLM.generate` input or as OpenAI chat-completions messages.

Both keep the prompt exactly: the chat messages interleave text and base64 image parts in marker order, and the
model's chat template renders each image part as one `<image>` marker, so the server sees the same prompt text as
`vllm.LLM` and `FrozenProcessor`. Nothing here imports vLLM. See docs/serving.md.
"""

from __future__ import annotations

import base64
import io
import os
from typing import Any, Sequence

from PIL import Image

from ..constants import IMAGE_TOKEN


__all__ = ["chat_messages", "image_data_url", "split_prompt", "vllm_prompt"]


def _text_and_images(prompt: Any, images: Sequence[Any] | None) -> tuple[str, list[Any]]:
    """`(text, images)` of a `Prompt` or of a text and its images, checked to hold one image per marker."""
    if hasattr(prompt, "text") and hasattr(prompt, "images"):
        if images is not None:
            raise ValueError("Pass either a Prompt (which carries its images) or a text and its images, not both.")
        text, images = prompt.text, list(prompt.images)
    elif isinstance(prompt, str):
        text, images = prompt, list(images or [])
    else:
        raise ValueError(f"prompt must be a string or a frozen_hf Prompt, got {type(prompt).__name__}.")
    markers = text.count(IMAGE_TOKEN)
    if markers != len(images):
        raise ValueError(
            f"The prompt has {markers} {IMAGE_TOKEN} markers but {len(images)} images. Put exactly one "
            f"{IMAGE_TOKEN} in the text where each image goes, images in marker order."
        )
    return text, images


def _load_image(image: Any) -> Image.Image:
    if isinstance(image, Image.Image):
        return image
    if isinstance(image, (str, os.PathLike)):
        with Image.open(image) as opened:
            return opened.convert("RGB")
    raise ValueError(f"Images must be PIL images or file paths, got {type(image).__name__}.")


def vllm_prompt(prompt: Any, images: Sequence[Any] | None = None) -> dict[str, Any]:
    """A `vllm.LLM.generate` input: `{"prompt": text, "multi_modal_data": {"image": [...]}}`.

    vLLM's Transformers backend expands each `<image>` marker of the text to the model's `visual_prefix_length`
    placeholders, as `FrozenProcessor` does. Text-only prompts get no `multi_modal_data`.
    """
    text, images = _text_and_images(prompt, images)
    request: dict[str, Any] = {"prompt": text}
    if images:
        request["multi_modal_data"] = {"image": [_load_image(image) for image in images]}
    return request


def image_data_url(image: Any, image_format: str = "PNG") -> str:
    """The image as a base64 `data:` URL, for an `image_url` content part (PNG keeps the pixels exactly)."""
    buffer = io.BytesIO()
    image = _load_image(image)
    image.save(buffer, format=image_format)
    mime = f"image/{image_format.lower()}"
    return f"data:{mime};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


def split_prompt(text: str) -> list[str]:
    """The text around the `<image>` markers: one more piece than markers (pieces may be empty)."""
    return text.split(IMAGE_TOKEN)


def chat_messages(prompt: Any, images: Sequence[Any] | None = None, role: str = "user") -> list[dict[str, Any]]:
    """OpenAI chat-completions `messages` for a Frozen prompt: one message whose content interleaves text parts and
    `image_url` parts (base64 PNG) in marker order.

    The Frozen chat template concatenates the parts, an image part as `<image>`, so the server's prompt is `text`
    exactly; send it to a server started on the checkpoint folder (`vllm serve <folder> --trust-remote-code`).
    """
    text, images = _text_and_images(prompt, images)
    content: list[dict[str, Any]] = []
    pieces = split_prompt(text)
    for index, piece in enumerate(pieces):
        if piece:
            content.append({"type": "text", "text": piece})
        if index < len(images):
            content.append({"type": "image_url", "image_url": {"url": image_data_url(images[index])}})
    if not content:
        raise ValueError("The prompt is empty: give some text, one or more images, or both.")
    return [{"role": role, "content": content}]
